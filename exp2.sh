#!/usr/bin/env bash
# device round 4 (temporary): OCR steps serial vs side by side, then the OCR side-by-side bench
. /tmp/gpu/env.sh; cd /tmp/gpu/app
S="node dist-tools/bench/gpu/steps.js --data data --gpu-only --runs 40"
for i in 1 2; do
  echo "--- serial $i"; XPKG_PIPELINE_SERIAL=1 $S 2>&1 | tail -1
  echo "--- parallel $i"; $S 2>&1 | tail -1
done
node dist-tools/bench/gpu/side-by-side.js --data data --only ocr --out "$OUT/bench-ocr.json" 2>&1 | tail -8
