#!/usr/bin/env bash
# The one command for the GPU machine: build (unless a carried build loads), sanity under
# compute-sanitizer, then tests + benchmarks against PyTorch/torchvision. Logs and JSON go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/xpkg-cuda-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv
if ! python3 -c "import ctypes; ctypes.CDLL('native/build-cuda/libxpkg_cuda.so')" 2>/dev/null || [ ! -x native/build-cuda/sanity ]; then
  bash bench/cuda/build.sh
fi
native/build-cuda/sanity 2>&1 | tee "$OUT/sanity.log"
for tool in memcheck racecheck; do
  timeout 240 compute-sanitizer --tool $tool --error-exitcode 9 native/build-cuda/sanity > "$OUT/sanitizer-$tool.log" 2>&1
  echo "compute-sanitizer $tool: exit $? ($(grep -c -E 'ERROR SUMMARY: 0 errors|RACECHECK SUMMARY: 0 hazards' "$OUT/sanitizer-$tool.log") clean summaries)"
  tail -3 "$OUT/sanitizer-$tool.log"
done
cd bench/cuda && PYTHONUNBUFFERED=1 python3 bench.py "$OUT/cuda_results.json" 2>&1 | tee "$OUT/bench.log"
