#!/usr/bin/env bash
# Builds the CUDA kernels (kernels/cuda) into native/build-cuda/libxpkg_cuda.so and the standalone
# sanity executable, when nvcc exists. CUDA runtime linked statically: the library needs only the
# driver. Usage: bench/cuda/build.sh [extra nvcc flags]
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v nvcc >/dev/null; then echo "xpkg: nvcc not found, CUDA kernels not built"; exit 0; fi
out=native/build-cuda
mkdir -p "$out"
flags=(-O3 -std=c++17 -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_80,code=sm_80 -Xcompiler -fPIC -cudart static "$@")
srcs=(kernels/cuda/preprocess.cu kernels/cuda/detect.cu kernels/cuda/classify.cu)
nvcc "${flags[@]}" -shared "${srcs[@]}" -o "$out/libxpkg_cuda.so"
nvcc "${flags[@]}" -Ikernels/cuda bench/cuda/sanity.cu "${srcs[@]}" -o "$out/sanity"
echo "built $out/libxpkg_cuda.so $out/sanity"
