// GPU NMS and YOLO decode with no host round trip:
//   1. candidates: score test, key = (descending score bits << 16 | index), compacted by atomics
//      (the order is fixed again by the sort, since keys are unique);
//   2. CUB radix sort of the 48-bit keys (the candidate count stays on the device: the tail is
//      filled with keys that sort last);
//   3. IoU bit mask over the upper triangle of 64 x 64 tiles (torchvision's IoU formula), stored
//      column-major;
//   4. exact greedy result as the fixed point of a parallel iteration (clusterKernel), one
//      cooperative grid; the sequential tile scan (scanKernel) takes over if it has not converged
//      after kMaxIt iterations, so the result is the greedy one for any input;
//   5. kept candidates written in score order (emitKernel).
#include <cuda_runtime.h>

#include <cooperative_groups.h>
#include <cub/cub.cuh>

#include <algorithm>

#include "xpkg_cuda.h"

using u64 = unsigned long long;

namespace {

constexpr int kKeyBits = 48;  // 32 score bits above 16 index bits
constexpr int kMaxTiles = 1024;  // removed words in shared memory: max_n <= 65536

__device__ __forceinline__ unsigned descKey(float f) {
  if (f == 0.0f) f = 0.0f;
  unsigned u = __float_as_uint(f);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return ~u;
}

__device__ __forceinline__ int keyIndex(u64 key) { return static_cast<int>(key & 0xffffu); }

__device__ __forceinline__ void push(u64* keys, int* count, float score, int index) {
  const int at = atomicAdd(count, 1);
  keys[at] = (static_cast<u64>(descKey(score)) << 16) | static_cast<unsigned>(index);
}

__global__ void prepareKernel(const float* __restrict__ boxes, const float* __restrict__ scores, const int32_t* __restrict__ classes,
                              int n, float thr, u64* keys, float4* box4, float* sc, int* cls, int* count) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float s = scores[i];
  box4[i] = reinterpret_cast<const float4*>(boxes)[i];
  sc[i] = s;
  cls[i] = classes ? classes[i] : 0;
  if (s == s && s >= thr) push(keys, count, s, i);
}

__global__ void decodeKernel(const float* __restrict__ head, XpkgDetect p, u64* keys, float4* box4, float* sc, int* cls, int* count) {
  const int a = blockIdx.x * blockDim.x + threadIdx.x;
  const int n = p.anchors;
  if (a >= n) return;
  const int first = p.objectness ? 5 : 4;
  float best = -INFINITY;
  int arg = 0;
  const float* row = head + static_cast<size_t>(first) * n + a;
#pragma unroll 4
  for (int c = 0; c < p.attrs - first; c++) {
    const float v = __ldg(row + static_cast<size_t>(c) * n);
    if (v > best) best = v, arg = c;
  }
  const float s = p.objectness ? __ldg(head + 4 * static_cast<size_t>(n) + a) * best : best;
  if (!(s == s && s >= p.score_threshold)) return;
  const float cx = head[a], cy = head[n + a], w = head[2 * static_cast<size_t>(n) + a], h = head[3 * static_cast<size_t>(n) + a];
  float x1 = (cx - w * 0.5f - p.pad_x) / p.scale_x, x2 = (cx + w * 0.5f - p.pad_x) / p.scale_x;
  float y1 = (cy - h * 0.5f - p.pad_y) / p.scale_y, y2 = (cy + h * 0.5f - p.pad_y) / p.scale_y;
  if (p.clip_width > 0) x1 = fminf(fmaxf(x1, 0.0f), p.clip_width), x2 = fminf(fmaxf(x2, 0.0f), p.clip_width);
  if (p.clip_height > 0) y1 = fminf(fmaxf(y1, 0.0f), p.clip_height), y2 = fminf(fmaxf(y2, 0.0f), p.clip_height);
  box4[a] = make_float4(x1, y1, x2, y2);
  sc[a] = s;
  cls[a] = arg;
  push(keys, count, s, a);
}

__global__ void fillTailKernel(u64* keys, const int* count, int maxN) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < maxN && i >= *count) keys[i] = ~0ull;
}


// Column-major bit mask: maskT[word * P + row] holds, for `row`, the columns of 64-candidate tile
// `word` (only columns > row) whose IoU with it exceeds the threshold. Column-major so the passes
// below read contiguous rows. One block per tile of the upper triangle (row tile <= column tile).
__global__ void __launch_bounds__(64) maskKernel(const u64* __restrict__ sorted, const float4* __restrict__ box4, const int* __restrict__ cls,
                                                 const int* count, float thr, int P, int tiles, int classAware, u64* maskT) {
  const int n = *count;
  // Linear block index -> (rb, cb) with rb <= cb, row-major over the upper triangle.
  const int L = blockIdx.x;
  int rb = static_cast<int>((2.0 * tiles + 1 - sqrt((2.0 * tiles + 1) * (2.0 * tiles + 1) - 8.0 * L)) / 2);
  while (rb > 0 && rb * tiles - rb * (rb - 1) / 2 > L) rb--;
  while ((rb + 1) * tiles - (rb + 1) * rb / 2 <= L) rb++;
  const int cb = rb + (L - (rb * tiles - rb * (rb - 1) / 2));
  if (rb * 64 >= n || cb * 64 >= n) return;
  __shared__ float4 cbox[64];
  __shared__ float carea[64];
  __shared__ int ccls[64];
  const int t = threadIdx.x;
  const int cols = min(64, n - cb * 64);
  if (t < cols) {
    const int a = keyIndex(sorted[cb * 64 + t]);
    const float4 b = box4[a];
    cbox[t] = b;
    carea[t] = (b.z - b.x) * (b.w - b.y);
    ccls[t] = cls[a];
  }
  __syncthreads();
  const int i = rb * 64 + t;
  if (i >= n) return;
  const int a = keyIndex(sorted[i]);
  const float4 b = box4[a];
  const float sa = (b.z - b.x) * (b.w - b.y);
  const int c = cls[a];
  // A pair without positive overlap has IoU 0 (or NaN for empty boxes): never above thr >= 0.
  const bool skip = thr >= 0;
  u64 bits = 0;
  for (int k = rb == cb ? t + 1 : 0; k < cols; k++) {
    const float4 o = cbox[k];
    const float w = fmaxf(fminf(b.z, o.z) - fmaxf(b.x, o.x), 0.0f);
    const float h = fmaxf(fminf(b.w, o.w) - fmaxf(b.y, o.y), 0.0f);
    if (skip && !(w > 0 && h > 0)) continue;
    if (classAware && ccls[k] != c) continue;
    const float inter = w * h;
    if (inter / (sa + carea[k] - inter) > thr) bits |= 1ull << k;
  }
  maskT[static_cast<size_t>(cb) * P + i] = bits;
}

__device__ __forceinline__ u64 validWord(int j, int n) {
  const int rows = n - j * 64;
  return rows >= 64 ? ~0ull : rows <= 0 ? 0ull : ((1ull << rows) - 1);
}

__device__ __forceinline__ u64 warpOr(u64 v) {
  for (int o = 16; o > 0; o >>= 1) v |= __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

constexpr int kMaxIt = 48;

// Exact greedy NMS as a fixed point (the Cluster-NMS iteration): kept_i = no kept k < i suppresses
// i. Starting from "all kept", X_{t+1} = f(X_t) makes the first entries final one dependency level
// at a time, and greedy NMS is f's unique fixed point, so stopping when X stops changing gives
// exactly the greedy result. Each iteration is one parallel pass over the mask; the number of
// iterations is the longest suppression chain (small on real detector output). Runs as a
// cooperative grid (grid-wide barrier) or as one block; state = {converged, iterations, buffer}.
__global__ void __launch_bounds__(256) clusterKernel(const u64* __restrict__ maskT, int P, const int* count, int maxIt, u64* X,
                                                     int* changed, int* state) {
  const int n = *count, nt = (n + 63) / 64;
  __shared__ u64 xs[kMaxTiles];
  __shared__ u64 red[8];
  const bool coop = gridDim.x > 1;
  auto gsync = [&]() {
    if (coop) cooperative_groups::this_grid().sync();
    else __syncthreads();
  };
  for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < nt; j += gridDim.x * blockDim.x) X[j] = validWord(j, n);
  gsync();
  int it = 0, converged = 0;
  for (; it < maxIt; it++) {
    const u64* cur = X + (it & 1) * kMaxTiles;
    u64* nxt = X + ((it + 1) & 1) * kMaxTiles;
    // L1 is not coherent across blocks: read what other blocks wrote through L2.
    for (int j = threadIdx.x; j < nt; j += blockDim.x) xs[j] = __ldcg(cur + j);
    __syncthreads();
    for (int j = blockIdx.x; j < nt; j += gridDim.x) {
      const int rows = min(n, (j + 1) * 64);
      const u64* col = maskT + static_cast<size_t>(j) * P;
      u64 acc = 0;
      for (int k = threadIdx.x; k < rows; k += blockDim.x)
        if ((xs[k >> 6] >> (k & 63)) & 1) acc |= col[k];
      acc = warpOr(acc);
      if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = acc;
      __syncthreads();
      if (threadIdx.x == 0) {
        u64 r = 0;
        for (int w = 0; w < static_cast<int>(blockDim.x >> 5); w++) r |= red[w];
        const u64 v = validWord(j, n) & ~r;
        nxt[j] = v;
        if (v != xs[j]) atomicOr(changed + it, 1);
      }
      __syncthreads();
    }
    gsync();
    if (__ldcg(changed + it) == 0) {
      converged = 1;
      break;
    }
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) state[0] = converged, state[1] = it, state[2] = it & 1;
}

__device__ __forceinline__ void emitOne(int pos, const u64* sorted, int k, const float4* box4, const float* sc, const int* cls, int32_t* keep, float* dets) {
  const int a = keyIndex(sorted[k]);
  if (keep) keep[pos] = a;
  if (dets) {
    const float4 b = box4[a];
    float* d = dets + static_cast<size_t>(pos) * 6;
    d[0] = b.x, d[1] = b.y, d[2] = b.z, d[3] = b.w, d[4] = sc[a], d[5] = static_cast<float>(cls[a]);
  }
}

// Writes the converged kept set in score order (prefix sums of the kept bits), at most maxOut.
__global__ void __launch_bounds__(256) emitKernel(const u64* __restrict__ sorted, const float4* __restrict__ box4, const float* __restrict__ sc,
                                                  const int* __restrict__ cls, const int* count, const u64* X, const int* state, int maxOut,
                                                  int32_t* keep, float* dets, int32_t* outCount) {
  if (!state[0]) return;  // not converged: scanKernel does the work
  const int n = *count, nt = (n + 63) / 64;
  const u64* xf = X + state[2] * kMaxTiles;
  __shared__ int base[kMaxTiles + 1];
  const int lane = threadIdx.x & 31;
  if (threadIdx.x < 32) {
    int carry = 0;
    for (int j0 = 0; j0 < nt; j0 += 32) {
      const int j = j0 + lane;
      const int c = j < nt ? __popcll(xf[j]) : 0;
      int incl = c;
      for (int o = 1; o < 32; o <<= 1) {
        const int v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
      }
      if (j < nt) base[j] = carry + incl - c;
      carry += __shfl_sync(0xffffffffu, incl, 31);
    }
    if (lane == 0) base[nt] = carry;
  }
  __syncthreads();
  for (int k = threadIdx.x; k < n; k += blockDim.x) {
    const u64 w = xf[k >> 6];
    if (!((w >> (k & 63)) & 1)) continue;
    const int pos = base[k >> 6] + __popcll(w & ((1ull << (k & 63)) - 1));
    if (pos < maxOut) emitOne(pos, sorted, k, box4, sc, cls, keep, dets);
  }
  if (threadIdx.x == 0) *outCount = min(base[nt], maxOut);
}

// Fallback when the iteration did not converge (adversarial suppression chains): the classic
// sequential scan over 64-candidate tiles. A warp resolves a tile with shuffles; then each warp
// folds the kept rows into later tiles' removed words with coalesced column reads.
__global__ void __launch_bounds__(256) scanKernel(const u64* __restrict__ sorted, const float4* __restrict__ box4, const float* __restrict__ sc,
                                                  const int* __restrict__ cls, const int* count, const u64* __restrict__ maskT, int P,
                                                  const int* state, int maxOut, int32_t* keep, float* dets, int32_t* outCount) {
  if (state[0]) return;
  __shared__ u64 removed[kMaxTiles];
  __shared__ u64 keptMask;
  __shared__ int nKept;
  const int n = *count, nt = (n + 63) / 64;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int j = threadIdx.x; j < nt; j += blockDim.x) removed[j] = 0;
  if (threadIdx.x == 0) nKept = 0;
  __syncthreads();
  for (int t = 0; t < nt; t++) {
    if (warp == 0) {
      const int rows = min(64, n - t * 64);
      const u64 valid = validWord(t, n);
      u64 r = removed[t];
      u64 kept = 0;
      if ((r & valid) != valid) {
        const u64* d = maskT + static_cast<size_t>(t) * P + t * 64;
        const u64 lo = lane < rows ? d[lane] : 0;
        const u64 hi = lane + 32 < rows ? d[lane + 32] : 0;
#pragma unroll
        for (int i = 0; i < 64; i++) {
          const u64 di = __shfl_sync(0xffffffffu, i < 32 ? lo : hi, i & 31);
          if (!((r >> i) & 1)) r |= di;
        }
        kept = ~r & valid;
      }
      const int base = nKept;
      while (__popcll(kept) > maxOut - base) kept &= ~(1ull << (63 - __clzll(kept)));
      for (int i = lane; i < 64; i += 32)
        if ((kept >> i) & 1) emitOne(base + __popcll(kept & ((1ull << i) - 1)), sorted, t * 64 + i, box4, sc, cls, keep, dets);
      __syncwarp();
      if (lane == 0) keptMask = kept, nKept = base + __popcll(kept);
    }
    __syncthreads();
    const u64 km = keptMask;
    if (km)
      for (int j = t + 1 + warp; j < nt; j += warps) {
        const u64* c = maskT + static_cast<size_t>(j) * P + t * 64;
        u64 v = 0;
        if ((km >> lane) & 1) v |= c[lane];
        if ((km >> (lane + 32)) & 1) v |= c[lane + 32];
        v = warpOr(v);
        if (lane == 0) removed[j] |= v;
      }
    const bool full = nKept >= maxOut;
    __syncthreads();
    if (full) break;
  }
  if (threadIdx.x == 0) *outCount = min(nKept, maxOut);
}

}  // namespace

struct XpkgNmsWorkspace {
  int maxN = 0, T = 0, coopBlocks = 1, mode = 0, debugStop = 0;
  u64* keys = nullptr;
  u64* sorted = nullptr;
  float4* box4 = nullptr;
  float* sc = nullptr;
  int* cls = nullptr;
  int* count = nullptr;   // count, changed[kMaxIt], state[3] in one allocation
  u64* mask = nullptr;
  u64* X = nullptr;
  int32_t* keepTmp = nullptr;
  void* cubTemp = nullptr;
  size_t cubBytes = 0;
  int* changed() { return count + 1; }
  int* state() { return count + 1 + kMaxIt; }
};

extern "C" XpkgNmsWorkspace* xpkg_cuda_nms_create(int max_n) {
  if (max_n < 1 || max_n > kMaxTiles * 64) return nullptr;
  auto* ws = new XpkgNmsWorkspace();
  ws->maxN = max_n;
  ws->T = (max_n + 63) / 64;
  bool ok = cudaMalloc(&ws->keys, sizeof(u64) * max_n) == cudaSuccess && cudaMalloc(&ws->sorted, sizeof(u64) * max_n) == cudaSuccess &&
            cudaMalloc(&ws->box4, sizeof(float4) * max_n) == cudaSuccess && cudaMalloc(&ws->sc, sizeof(float) * max_n) == cudaSuccess &&
            cudaMalloc(&ws->cls, sizeof(int) * max_n) == cudaSuccess && cudaMalloc(&ws->count, sizeof(int) * (4 + kMaxIt)) == cudaSuccess &&
            cudaMalloc(&ws->mask, sizeof(u64) * max_n * ws->T) == cudaSuccess && cudaMalloc(&ws->X, sizeof(u64) * 2 * kMaxTiles) == cudaSuccess &&
            cudaMalloc(&ws->keepTmp, sizeof(int32_t) * max_n) == cudaSuccess;
  if (ok) {
    cub::DeviceRadixSort::SortKeys(nullptr, ws->cubBytes, ws->keys, ws->sorted, max_n, 0, kKeyBits);
    ok = cudaMalloc(&ws->cubTemp, ws->cubBytes) == cudaSuccess;
  }
  // Set-up that is not allowed (or not wanted) inside a graph capture happens once, here.
  int dev = 0, sms = 1, perSm = 0, coop = 0;
  ok = ok && cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
       cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev) == cudaSuccess &&
       cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, clusterKernel, 256, 0) == cudaSuccess;
  ws->coopBlocks = coop ? std::max(1, std::min(perSm * sms, ws->T)) : 1;
  if (!ok) {
    xpkg_cuda_nms_destroy(ws);
    return nullptr;
  }
  return ws;
}

extern "C" void xpkg_cuda_nms_destroy(XpkgNmsWorkspace* ws) {
  if (!ws) return;
  cudaFree(ws->keys), cudaFree(ws->sorted), cudaFree(ws->box4), cudaFree(ws->sc), cudaFree(ws->cls);
  cudaFree(ws->count), cudaFree(ws->mask), cudaFree(ws->X), cudaFree(ws->keepTmp), cudaFree(ws->cubTemp);
  delete ws;
}

extern "C" int xpkg_cuda_nms_configure(XpkgNmsWorkspace* ws, int mode, int debug_stop) {
  if (!ws || mode < 0 || mode > 2 || debug_stop < 0 || debug_stop > 4) return cudaErrorInvalidValue;
  ws->mode = mode, ws->debugStop = debug_stop;
  return 0;
}

extern "C" int xpkg_cuda_nms_last_state(XpkgNmsWorkspace* ws, int32_t* converged, int32_t* iterations) {
  int s[3] = {0, 0, 0};
  const cudaError_t e = cudaMemcpy(s, ws->state(), sizeof(s), cudaMemcpyDeviceToHost);
  *converged = s[0], *iterations = s[1];
  return static_cast<int>(e);
}

namespace {

// Steps 2-4 once the candidates' keys, boxes, scores and classes are in the workspace.
int sortMaskScan(XpkgNmsWorkspace* ws, int n, float iouThr, int classAware, int maxOut, int32_t* keep, float* dets, int32_t* outCount, cudaStream_t st) {
  if (ws->debugStop == 1) return static_cast<int>(cudaGetLastError());
  fillTailKernel<<<(n + 255) / 256, 256, 0, st>>>(ws->keys, ws->count, n);
  size_t bytes = ws->cubBytes;
  cub::DeviceRadixSort::SortKeys(ws->cubTemp, bytes, ws->keys, ws->sorted, n, 0, kKeyBits, st);
  const u64* sorted = ws->sorted;
  if (ws->debugStop == 2) return static_cast<int>(cudaGetLastError());
  const int P = ws->maxN;
  const int tiles = (n + 63) / 64;
  maskKernel<<<tiles * (tiles + 1) / 2, 64, 0, st>>>(sorted, ws->box4, ws->cls, ws->count, iouThr, P, tiles, classAware, ws->mask);
  if (ws->debugStop == 3) return static_cast<int>(cudaGetLastError());
  if (ws->mode != 2) {
    int maxIt = kMaxIt;
    const u64* maskC = ws->mask;
    const int* countC = ws->count;
    int* changed = ws->changed();
    int* state = ws->state();
    u64* X = ws->X;
    int Pv = P;
    if (ws->mode == 0 && ws->coopBlocks > 1) {
      void* args[] = {&maskC, &Pv, &countC, &maxIt, &X, &changed, &state};
      const cudaError_t e = cudaLaunchCooperativeKernel(reinterpret_cast<void*>(clusterKernel), dim3(std::min(ws->coopBlocks, tiles)), dim3(256), args, 0, st);
      if (e != cudaSuccess) return static_cast<int>(e);
    } else {
      clusterKernel<<<1, 256, 0, st>>>(maskC, Pv, countC, maxIt, X, changed, state);
    }
  }
  if (ws->debugStop == 4) return static_cast<int>(cudaGetLastError());
  int32_t* k = keep ? keep : ws->keepTmp;
  emitKernel<<<1, 256, 0, st>>>(sorted, ws->box4, ws->sc, ws->cls, ws->count, ws->X, ws->state(), maxOut, k, dets, outCount);
  scanKernel<<<1, 256, 0, st>>>(sorted, ws->box4, ws->sc, ws->cls, ws->count, ws->mask, P, ws->state(), maxOut, k, dets, outCount);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

extern "C" int xpkg_cuda_nms(XpkgNmsWorkspace* ws, const float* d_boxes, const float* d_scores, const int32_t* d_classes, int n,
                             float iou_threshold, float score_threshold, int max_output, int32_t* d_keep, int32_t* d_count, void* stream) {
  if (!ws || n < 0 || n > ws->maxN || !d_keep || !d_count || max_output < 0) return cudaErrorInvalidValue;
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  // count, changed flags and state start at zero (state[0] = 0: "not converged" unless the iteration says so).
  cudaMemsetAsync(ws->count, 0, sizeof(int) * (4 + kMaxIt), st);
  if (n > 0) prepareKernel<<<(n + 255) / 256, 256, 0, st>>>(d_boxes, d_scores, d_classes, n, score_threshold, ws->keys, ws->box4, ws->sc, ws->cls, ws->count);
  if (n == 0) return static_cast<int>(cudaMemsetAsync(d_count, 0, sizeof(int32_t), st));
  return sortMaskScan(ws, n, iou_threshold, d_classes != nullptr, max_output, d_keep, nullptr, d_count, st);
}

extern "C" int xpkg_cuda_detect(XpkgNmsWorkspace* ws, const float* d_head, const XpkgDetect* p, float* d_dets, int32_t* d_count, void* stream) {
  if (!ws || !p || !d_head || !d_dets || !d_count || p->anchors < 1 || p->anchors > ws->maxN || p->attrs <= (p->objectness ? 5 : 4) ||
      p->max_output < 0 || !(p->scale_x > 0) || !(p->scale_y > 0))
    return cudaErrorInvalidValue;
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  cudaMemsetAsync(ws->count, 0, sizeof(int) * (4 + kMaxIt), st);
  decodeKernel<<<(p->anchors + 255) / 256, 256, 0, st>>>(d_head, *p, ws->keys, ws->box4, ws->sc, ws->cls, ws->count);
  return sortMaskScan(ws, p->anchors, p->iou_threshold, !p->agnostic, p->max_output, nullptr, d_dets, d_count, st);
}
