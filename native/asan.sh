#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer into native/build-asan and
# runs the native tests against it (node itself is not instrumented, so the ASan runtime is
# preloaded). Any sanitizer report aborts the test process and fails this script.
# Usage: native/asan.sh [vitest args]   (default: every test/native-*.test.ts)
set -euo pipefail
cd "$(dirname "$0")/.."
out=native/build-asan
mkdir -p "$out"
inc=$(node -p "require('node-addon-api').include_dir")
nodeinc=${npm_config_nodedir:-$(dirname "$(dirname "$(command -v node)")")}/include/node
[ -d "$nodeinc" ] || nodeinc=$(node -p "require('path').join(process.execPath, '../../include/node')")
g++ -std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
  -ffp-contract=off -march="${XPKG_NATIVE_MARCH:-x86-64-v2}" -fPIC -shared -pthread \
  -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -I"$inc" -I"$nodeinc" -Ikernels \
  native/src/*.cc kernels/*.cc -o "$out/xpkg_native.node" -ldl
asan=$(g++ -print-file-name=libasan.so)
export LD_PRELOAD="$asan"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export XPKG_NATIVE_PATH="$PWD/$out/xpkg_native.node" XPKG_NATIVE=native
node --input-type=module -e "
  import { createRequire } from 'node:module';
  const a = createRequire(import.meta.url)(process.env.XPKG_NATIVE_PATH);
  if (!a.buildInfo().sanitized) { console.error('asan.sh: the loaded addon is not sanitized'); process.exit(1); }
  console.log('asan.sh: sanitized addon', JSON.stringify(a.buildInfo()));"
if [ $# -eq 0 ]; then set -- test/native-*.test.ts; fi
npx vitest run "$@"
