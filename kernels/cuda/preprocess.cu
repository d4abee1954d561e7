// Fused letterbox pre-processing on the GPU: one pass, each thread writes 4 adjacent output
// pixels of all 3 planes with 16-byte stores; padding rows and columns cost only the stores.
#include <cuda_runtime.h>

#include "xpkg_cuda.h"

namespace {

__device__ __forceinline__ float sample(const uint8_t* __restrict__ r0, const uint8_t* __restrict__ r1, int i0, int i1,
                                        float hx, float lx, float hy, float ly) {
  const float a = __ldg(r0 + i0), b = __ldg(r0 + i1), c = __ldg(r1 + i0), d = __ldg(r1 + i1);
  return hy * (hx * a + lx * b) + ly * (hx * c + lx * d);
}

__global__ void __launch_bounds__(256) letterboxKernel(const uint8_t* __restrict__ src, float* __restrict__ dst,
                                                       XpkgPreprocess p, float scaleX, float scaleY) {
  const int x4 = (blockIdx.x * blockDim.x + threadIdx.x) * 4;
  const int y = blockIdx.y * blockDim.y + threadIdx.y;
  if (y >= p.height || x4 >= p.width) return;
  float v[3][4];
#pragma unroll
  for (int k = 0; k < 3; k++)
#pragma unroll
    for (int i = 0; i < 4; i++) v[k][i] = p.pad[k];
  if (y >= p.roi_y && y < p.roi_y + p.roi_height) {
    // Source row taps exactly as PyTorch's upsample_bilinear2d (align_corners = false).
    const float sy = fmaxf((y - p.roi_y + 0.5f) * scaleY - 0.5f, 0.0f);
    const int y0 = static_cast<int>(sy);
    const int y1 = y0 + (y0 < p.src_height - 1 ? 1 : 0);
    const float ly = sy - y0, hy = 1.0f - ly;
    const uint8_t* r0 = src + static_cast<size_t>(y0) * p.src_stride;
    const uint8_t* r1 = src + static_cast<size_t>(y1) * p.src_stride;
    const int C = p.src_channels;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int x = x4 + i - p.roi_x;
      if (x < 0 || x >= p.roi_width) continue;
      const float sx = fmaxf((x + 0.5f) * scaleX - 0.5f, 0.0f);
      const int x0 = static_cast<int>(sx);
      const int x1 = x0 + (x0 < p.src_width - 1 ? 1 : 0);
      const float lx = sx - x0, hx = 1.0f - lx;
#pragma unroll
      for (int k = 0; k < 3; k++)
        v[k][i] = sample(r0, r1, x0 * C + p.chan_map[k], x1 * C + p.chan_map[k], hx, lx, hy, ly) * p.mul[k] + p.add[k];
    }
  }
  const size_t plane = static_cast<size_t>(p.width) * p.height;
  float* d = dst + static_cast<size_t>(y) * p.width + x4;
  if ((p.width & 3) == 0) {
#pragma unroll
    for (int k = 0; k < 3; k++) *reinterpret_cast<float4*>(d + k * plane) = make_float4(v[k][0], v[k][1], v[k][2], v[k][3]);
  } else {
    for (int k = 0; k < 3; k++)
      for (int i = 0; i < 4 && x4 + i < p.width; i++) d[k * plane + i] = v[k][i];
  }
}

}  // namespace

extern "C" int xpkg_cuda_device_count(void) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  return e == cudaSuccess ? n : -static_cast<int>(e);
}

extern "C" int xpkg_cuda_preprocess(const uint8_t* d_src, float* d_dst, const XpkgPreprocess* p, void* stream) {
  if (!d_src || !d_dst || !p || p->src_width < 1 || p->src_height < 1 || p->width < 1 || p->height < 1 ||
      (p->src_channels != 3 && p->src_channels != 4) || p->src_stride < p->src_width * p->src_channels ||
      p->roi_width < 1 || p->roi_height < 1 || p->roi_x < 0 || p->roi_y < 0 || p->roi_x + p->roi_width > p->width ||
      p->roi_y + p->roi_height > p->height)
    return cudaErrorInvalidValue;
  // float scale as PyTorch computes it (input / output size), so the taps match F.interpolate.
  const float scaleX = static_cast<float>(p->src_width) / p->roi_width;
  const float scaleY = static_cast<float>(p->src_height) / p->roi_height;
  const dim3 block(32, 8);
  const dim3 grid((p->width / 4 + (p->width % 4 ? 1 : 0) + block.x - 1) / block.x, (p->height + block.y - 1) / block.y);
  // 16-byte stores need a 16-byte aligned output and rows that keep that alignment.
  if ((p->width & 3) == 0 && (reinterpret_cast<uintptr_t>(d_dst) & 15) != 0) return cudaErrorMisalignedAddress;
  letterboxKernel<<<grid, block, 0, static_cast<cudaStream_t>(stream)>>>(d_src, d_dst, *p, scaleX, scaleY);
  return static_cast<int>(cudaGetLastError());
}
