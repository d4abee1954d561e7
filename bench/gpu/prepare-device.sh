#!/usr/bin/env bash
# Packs everything the GPU suite and benchmarks need on a GPU machine that has no registry access
# into parts small enough to carry one per call of the device tool (the working tree travels too,
# and tree + carry must stay under 64 MiB: parts of 36 MB beside a ~28 MiB tree):
#
#   npm run build && npm run build:tools && npm run fixtures      # what is packed must be built
#   bench/gpu/prepare-device.sh [part-bytes, default 36000000]
#
# It needs ../shared/gpu/prepare-cuda-carry.sh's bundle in .gpu/cuda (node, onnxruntime-node 1.29.0,
# the CUDA provider; made once: ../shared/gpu/prepare-cuda-carry.sh .gpu/cuda 33). Writes
# .gpu/p0 … .gpu/pN, each holding one part, all.sha256 and dev.sh. The device tool sends the
# checkout the session was started in (not a helper's worktree): run this there, or move the
# folders into an ignored folder of that checkout. Then, one call per part, back to back (the
# machine keeps /tmp only while warm: about 30 s between calls):
#   carry [.gpu/pK], command: bash .gpu/pK/dev.sh receive
# and with the last part: bash .gpu/pN/dev.sh receive && bash .gpu/pN/dev.sh setup && bash /tmp/gpu/dev.sh suite
# then: bash /tmp/gpu/dev.sh bench. On the H200 the 7 parts took about 4 s each.
set -euo pipefail
cd "$(dirname "$0")/../.."
size=${1:-36000000}
[ -d .gpu/cuda/pending ] || { echo "no .gpu/cuda/pending: run ../shared/gpu/prepare-cuda-carry.sh .gpu/cuda 33 first"; exit 1; }
[ -f dist-tools/bench/gpu/suite.js ] && [ -f fixtures/dist/detector.xpkg ] || { echo "build first (npm run build:tools, npm run fixtures)"; exit 1; }
node dist-tools/bench/gpu/make-data.js .gpu/data >/dev/null
w=.gpu/stage; rm -rf "$w" .gpu/p[0-9]*; mkdir -p "$w/app/fixtures/dist" "$w/app/native/build/Release" "$w/app/bench/gpu" \
  "$w/app/fixtures/detector" "$w/app/fixtures/synthetic" "$w/app/fixtures/keys"
# the app: the built library and tools, the packages, the PyTorch reference, the test images, the runtime dependencies
cp -r dist dist-tools bin package.json "$w/app/"
cp native/build/Release/xpkg_native.node "$w/app/native/build/Release/"
# xpkg's C API binding (cuDNN HEURISTIC search), built here by `xpkg gpu install` (the GPU machine has no npm)
if [ -f native/ort/build/Release/xpkg_ort.node ]; then
  mkdir -p "$w/app/native/ort/build/Release" && cp native/ort/build/Release/xpkg_ort.node "$w/app/native/ort/build/Release/"
else
  echo "note: native/ort/build/Release/xpkg_ort.node not built: the GPU machine gets the stock binding only" >&2
fi
cp fixtures/dist/detector.xpkg fixtures/dist/paddleocr-v4.xpkg fixtures/dist/multi-variant.xpkg "$w/app/fixtures/dist/"
cp fixtures/keys/test.pub "$w/app/fixtures/keys/"
# other builds of the packages to compare with on the GPU machine (steps.js --package ab/<file>)
if ls .gpu/ab/*.xpkg >/dev/null 2>&1; then mkdir -p "$w/app/ab" && cp .gpu/ab/*.xpkg "$w/app/ab/"; fi
cp fixtures/detector/train.py fixtures/detector/model.onnx "$w/app/fixtures/detector/"
cp fixtures/synthetic/*.py "$w/app/fixtures/synthetic/"
cp bench/gpu/*.py bench/gpu/*.c "$w/app/bench/gpu/"
cp bench/serve_floor.py "$w/app/bench/"
cp -r .gpu/data "$w/app/data"
# production dependencies without onnxruntime (the CUDA bundle brings the build it matches)
npm ls --omit=dev --parseable --all 2>/dev/null | sed "s#^$PWD/##" | grep '^node_modules/' | grep -v onnxruntime |
  while read -r d; do mkdir -p "$w/app/$(dirname "$d")" && cp -r "$d" "$w/app/$d"; done
rm -rf "$w/app/node_modules/node-addon-api"
tar cJf "$w/app.tar.xz" -C "$w/app" .
mkdir -p "$w/all/cuda"
cat .gpu/cuda/pending/part.* > "$w/all/cuda/part.00"
cp .gpu/cuda/go/assemble.sh .gpu/cuda/go/bundle.sha256 "$w/all/cuda/"
mv "$w/app.tar.xz" "$w/all/"
tar cf "$w/all.tar" -C "$w/all" .
sum=$(sha256sum "$w/all.tar" | cut -d' ' -f1)
split -b "$size" -d "$w/all.tar" "$w/part."
n=0
for p in "$w"/part.*; do
  mkdir -p ".gpu/p$n"; mv "$p" ".gpu/p$n/"
  echo "$sum" > ".gpu/p$n/all.sha256"; cp bench/gpu/dev.sh ".gpu/p$n/"
  n=$((n + 1))
done
rm -rf "$w"
echo "$n parts: .gpu/p0 … .gpu/p$((n - 1)) ($(du -sh .gpu/p0 | cut -f1) each); app $(du -sh "$w" 2>/dev/null | cut -f1)"
