// Segmentation argmax and CTC greedy decoding on the GPU. Same tie and NaN rules as the CPU
// kernels: ties go to the lowest class, NaN never wins, all-NaN gives class 0.
#include <cuda_runtime.h>

#include <cub/cub.cuh>

#include "xpkg_cuda.h"

namespace {

__global__ void argmaxKernel(const float* __restrict__ x, int batch, int C, int pixels, int softmax, uint8_t* labels, float* scores) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= static_cast<long long>(batch) * pixels) return;
  const long long b = i / pixels, p = i - b * pixels;
  const float* base = x + b * C * static_cast<long long>(pixels) + p;
  float best = -INFINITY;
  int arg = 0;
  for (int c = 0; c < C; c++) {
    const float v = __ldg(base + static_cast<long long>(c) * pixels);
    if (v > best) best = v, arg = c;
  }
  labels[i] = static_cast<uint8_t>(arg);
  if (!scores) return;
  if (!softmax) {
    scores[i] = best;
    return;
  }
  float sum = 0;
  if (best > -INFINITY)
    for (int c = 0; c < C; c++) {
      const float v = __ldg(base + static_cast<long long>(c) * pixels);
      if (v == v) sum += __expf(v - best);
    }
  scores[i] = best > -INFINITY ? 1.0f / sum : 0.0f;
}

// One warp per (sequence, step): argmax (lowest index on ties) and its confidence.
__global__ void ctcStepKernel(const float* __restrict__ x, int rows, int C, int softmax, int* best, float* conf) {
  const int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float* r = x + static_cast<long long>(row) * C;
  float bv = -INFINITY;
  int ba = C;  // sentinel: no value above -inf seen
  for (int c = lane; c < C; c += 32) {
    const float v = __ldg(r + c);
    if (v > bv) bv = v, ba = c;
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oa = __shfl_xor_sync(0xffffffffu, ba, o);
    if (ov > bv || (ov == bv && oa < ba)) bv = ov, ba = oa;
  }
  float cv = bv;
  if (softmax) {
    float sum = 0;
    if (bv > -INFINITY)
      for (int c = lane; c < C; c += 32) {
        const float v = __ldg(r + c);
        if (v == v) sum += __expf(v - bv);
      }
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    cv = bv > -INFINITY ? 1.0f / sum : 0.0f;
  }
  if (lane == 0) {
    best[row] = ba == C ? 0 : ba;
    conf[row] = cv;
  }
}

// One block per sequence: emit flags, block-wide exclusive scan, scatter.
constexpr int kCtcThreads = 256;
__global__ void __launch_bounds__(kCtcThreads) ctcCollapseKernel(const int* best, const float* conf, int steps, const int32_t* lengths, int blank,
                                                                 int merge, int32_t* ids, float* confOut, int32_t* counts) {
  using Scan = cub::BlockScan<int, kCtcThreads>;
  __shared__ typename Scan::TempStorage tmp;
  __shared__ int carry;
  const int b = blockIdx.x;
  int len = steps;
  if (lengths) len = max(0, min(steps, lengths[b]));
  const int* bb = best + static_cast<long long>(b) * steps;
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  for (int t0 = 0; t0 < len; t0 += kCtcThreads) {
    const int t = t0 + threadIdx.x;
    int emit = 0, c = 0;
    if (t < len) {
      c = bb[t];
      emit = c != blank && (!merge || t == 0 || bb[t - 1] != c);
    }
    int pos, total;
    Scan(tmp).ExclusiveSum(emit, pos, total);
    if (emit) {
      const long long o = static_cast<long long>(b) * steps + carry + pos;
      ids[o] = c;
      confOut[o] = conf[static_cast<long long>(b) * steps + t];
    }
    __syncthreads();
    if (threadIdx.x == 0) carry += total;
    __syncthreads();
  }
  if (threadIdx.x == 0) counts[b] = carry;
}

}  // namespace

extern "C" int xpkg_cuda_argmax(const float* d_logits, int batch, int classes, int pixels, int softmax, uint8_t* d_labels, float* d_scores,
                                void* stream) {
  if (!d_logits || !d_labels || batch < 0 || pixels < 0 || classes < 1 || classes > 256) return cudaErrorInvalidValue;
  const long long n = static_cast<long long>(batch) * pixels;
  if (n == 0) return 0;
  argmaxKernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(d_logits, batch, classes, pixels,
                                                                                                     softmax, d_labels, d_scores);
  return static_cast<int>(cudaGetLastError());
}

extern "C" int xpkg_cuda_ctc(const float* d_probs, int batch, int steps, int classes, const int32_t* d_lengths, int blank, int merge_repeats,
                             int softmax, void* d_work, int32_t* d_ids, float* d_conf, int32_t* d_counts, void* stream) {
  if (!d_probs || !d_work || !d_ids || !d_conf || !d_counts || batch < 0 || steps < 0 || classes < 1) return cudaErrorInvalidValue;
  if (batch == 0) return 0;
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  const int rows = batch * steps;
  int* best = static_cast<int*>(d_work);
  float* conf = reinterpret_cast<float*>(best + rows);
  if (rows > 0) ctcStepKernel<<<(rows * 32 + 255) / 256, 256, 0, st>>>(d_probs, rows, classes, softmax, best, conf);
  ctcCollapseKernel<<<batch, kCtcThreads, 0, st>>>(best, conf, steps, d_lengths, blank, merge_repeats, d_ids, d_conf, d_counts);
  return static_cast<int>(cudaGetLastError());
}
