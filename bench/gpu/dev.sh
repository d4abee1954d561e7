#!/usr/bin/env bash
# On the GPU machine (see prepare-device.sh), from the repository root the device tool runs in:
#   bash .gpu/pK/dev.sh receive   keep this call's part in /tmp/gpu
#   bash .gpu/pN/dev.sh setup     after the last part: check, unpack to /tmp/gpu/app, put the CUDA provider in place
#   bash /tmp/gpu/dev.sh suite    the GPU suite       (writes suite.json, suite.err under $OUT)
#   bash /tmp/gpu/dev.sh bench    cuDNN search options, then the side-by-side benchmarks (conv-search.json, bench.json, bench.txt under $OUT)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
g=/tmp/gpu
out=${OUT:-/tmp/gpu/out}
mkdir -p "$g" "$out"
env_file=$g/env.sh
case "${1:?receive|setup|suite|bench}" in
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
    node dist-tools/bench/gpu/side-by-side.js --data data --out "$out/bench.json" | tee "$out/bench.txt"
    cat "$out/conv-search.json"
    ;;
esac
