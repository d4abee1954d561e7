#!/usr/bin/env bash
# On the GPU machine (see prepare-device.sh), from the repository root the device tool runs in:
#   bash .gpu/pK/dev.sh receive   keep this call's part in /tmp/gpu
#   bash .gpu/pN/dev.sh setup     after the last part: check, unpack to /tmp/gpu/app, put the CUDA provider in place
#   bash /tmp/gpu/dev.sh suite    the GPU suite       (writes suite.json, suite.err under $OUT)
#   bash /tmp/gpu/dev.sh bench    cuDNN search options and modes, the GPU variants' host pre-processing (preprocess-u8.txt), then the side-by-side benchmarks and the OCR steps (conv-search.json, bench.json, bench.txt, steps.txt under $OUT)
#   bash /tmp/gpu/dev.sh quick    detector and OCR side by side with CUDA graphs on and off, OCR steps (no cold starts);
#                                 PROFILE=1 first runs node-profile (the models' time by op, plain and as CUDA graphs)
#   bash /tmp/gpu/dev.sh cold     the cold starts of side-by-side alone
#   bash /tmp/gpu/dev.sh cupti    kernel time by kernel name over the OCR steps' timed runs (kernels.txt)
#   bash /tmp/gpu/dev.sh profile  the detector's GPU runs under V8's profiler ($OUT/prof/*.cpuprofile, profile.txt)
#   bash /tmp/gpu/dev.sh webgpu   with .gpu/gl/*.deb carried (Debian amd64 libvulkan1 libegl1 libglvnd0 libopengl0 libgl1
#                                 libglx0 libgles2, from apt-get download; vulkan1 + glvnd0 alone: no adapter on the H200):
#                                 unpacked, then `xpkg host`, and the suite forced onto webgpu (webgpu.json, webgpu.err)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
g=/tmp/gpu
out=${OUT:-/tmp/gpu/out}
mkdir -p "$g" "$out"
env_file=$g/env.sh
case "${1:?receive|setup|suite|bench|quick|cold|profile|webgpu}" in
  receive)
    mv "$here"/part.* "$g/"
    cp "$here/all.sha256" "$here/dev.sh" "$g/"
    echo "received: $(ls "$g" | grep -c '^part\.') parts in $g ($(du -sh "$g" | cut -f1))"
    ;;
  setup)
    cd "$g"
    cat part.* > all.tar
    [ "$(sha256sum all.tar | cut -d' ' -f1)" = "$(cat all.sha256)" ] || { echo "checksum mismatch: a part is missing ($(ls part.* | tr '\n' ' '))"; exit 1; }
    rm -f part.*; mkdir -p all && tar xf all.tar -C all && rm all.tar
    bash all/cuda/assemble.sh "$g/all/cuda" > "$env_file"
    mkdir -p app && tar xJf all/app.tar.xz -C app && rm all/app.tar.xz
    # the onnxruntime-node build the CUDA provider was made for, with the provider beside its library
    ln -sfn "$g/all/cuda/rt/node_modules/onnxruntime-node" app/node_modules/onnxruntime-node
    ln -sfn "$g/all/cuda/rt/node_modules/onnxruntime-common" app/node_modules/onnxruntime-common
    . "$env_file"
    echo "node $(node --version); $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
    ;;
  suite)
    . "$env_file"; cd "$g/app"
    set -o pipefail
    node dist-tools/bench/gpu/suite.js --data data --out "$out/suite.json" > /dev/null 2> >(tee "$out/suite.err" >&2)
    ;;
  bench)
    . "$env_file"; cd "$g/app"
    node dist-tools/bench/gpu/conv-search.js > "$out/conv-search.json" || echo "conv-search failed"
    node dist-tools/bench/gpu/conv-modes.js > "$out/conv-modes.json" || echo "conv-modes failed (needs the C API binding)"
    node dist-tools/bench/preprocess-u8.js --runs 300 | tee "$out/preprocess-u8.txt" || echo "preprocess-u8 failed"
    node dist-tools/bench/gpu/side-by-side.js --data data --out "$out/bench.json" | tee "$out/bench.txt"
    node dist-tools/bench/gpu/steps.js --data data | tee "$out/steps.txt" || echo "steps failed"
    cat "$out/conv-search.json"
    ;;
  quick)
    # the models' own time by op (node-profile), then the detector and OCR side by side and the OCR steps, without cold starts
    . "$env_file"; cd "$g/app"
    [ -n "${PROFILE:-}" ] && { node dist-tools/bench/gpu/node-profile.js --out "$out/node-profile.json" | tee "$out/node-profile.txt" || echo "node-profile failed"; }
    node dist-tools/bench/gpu/side-by-side.js --data data --only detector,ocr --out "$out/bench.json" | tee "$out/bench.txt"
    echo "--- without CUDA graphs (XPKG_ORT_CUDA_GRAPH=0)"
    XPKG_ORT_CUDA_GRAPH=0 node dist-tools/bench/gpu/side-by-side.js --data data --only detector,ocr --runs 100 --out "$out/bench-nograph.json" | tee "$out/bench-nograph.txt"
    node dist-tools/bench/gpu/steps.js --data data | tee "$out/steps.txt" || echo "steps failed"
    ;;
  cupti)
    # kernel time by name over the OCR steps' timed GPU runs (bench/gpu/cupti-trace.c; no Nsight here)
    . "$env_file"; cd "$g/app"
    inc=$(dirname "$(find / -name cupti.h -path '*include*' 2>/dev/null | head -1)")
    lib=$(dirname "$(find / -name 'libcupti.so*' 2>/dev/null | head -1)")
    for v in 12 11 10 9 8 7; do
      gcc -O2 -shared -fPIC -DKV=CUpti_ActivityKernel$v -I"$inc" -I/usr/local/cuda/include bench/gpu/cupti-trace.c \
        -o /tmp/gpu/cupti-trace.so -L"$lib" -lcupti -lpthread 2>/dev/null && { echo "CUpti_ActivityKernel$v ($inc)"; break; }
    done
    rm -f /tmp/gpu/arm.*
    LD_LIBRARY_PATH="$lib:${LD_LIBRARY_PATH:-}" LD_PRELOAD=/tmp/gpu/cupti-trace.so CUPTI_ARM=/tmp/gpu/arm CUPTI_OUT="$out/kernels.txt" \
      node dist-tools/bench/gpu/steps.js --data data --gpu-only --runs "${RUNS:-30}" | tee "$out/steps-cupti.txt"
    head -70 "$out/kernels.txt"
    ;;
  cold)
    . "$env_file"; cd "$g/app"
    node dist-tools/bench/gpu/side-by-side.js --data data --only cold --out "$out/cold.json" | tee "$out/cold.txt"
    ;;
  profile)
    . "$env_file"; cd "$g/app"
    node --cpu-prof --cpu-prof-dir="$out/prof" dist-tools/bench/gpu/side-by-side.js --data data --only detector --runs 300 | tee "$out/profile.txt"
    ;;
  webgpu)
    for f in .gpu/gl/*.deb; do dpkg -x "$f" /; done; ldconfig
    # the NVIDIA Vulkan driver's manifest lives beside the driver, outside the loader's folders
    icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
    . "$env_file"; cd "$g/app"
    node bin/xpkg.js host --json > "$out/host.json" || true
    node bin/xpkg.js host || true
    XPKG_SUITE_PROVIDER=webgpu XPKG_SUITE_MODE=forced node dist-tools/bench/gpu/suite.js --data data --runs 10 --out "$out/webgpu.json" \
      fixtures/dist/detector.xpkg fixtures/dist/multi-variant.xpkg > /dev/null 2> >(tee "$out/webgpu.err" >&2) || true
    ;;
esac
