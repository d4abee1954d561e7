#include "crop.h"

#include <cmath>

namespace xk {

namespace {

template <bool NHWC>
void cropRow(const CropParams& p, int r, int y) {
  const ImageView& im = p.src;
  const TensorOut& o = p.out;
  const int K = o.channels, W = p.outWidth, H = p.outHeight;
  const int64_t plane = static_cast<int64_t>(W) * H;
  const int64_t base = o.offset + static_cast<int64_t>(r) * plane * K;
  auto index = [&](int x, int k) -> int64_t {
    return base + (NHWC ? (static_cast<int64_t>(y) * W + x) * K + k : k * plane + static_cast<int64_t>(y) * W + x);
  };
  const double* h = p.homographies + static_cast<size_t>(r) * 9;
  const int valid = p.widths[r];
  const int s = p.samples[r];
  const double maxX = im.width - 1, maxY = im.height - 1;
  const float inv = 1.0f / static_cast<float>(s * s);
  for (int x = 0; x < valid; x++) {
    float acc[3] = {0, 0, 0};
    for (int j = 0; j < s; j++) {
      const double v = y + (j + 0.5) / s;
      for (int i = 0; i < s; i++) {
        const double u = x + (i + 0.5) / s;
        const double den = h[6] * u + h[7] * v + h[8];
        double px = (h[0] * u + h[1] * v + h[2]) / den - 0.5;
        double py = (h[3] * u + h[4] * v + h[5]) / den - 0.5;
        // Edge replication; NaN (a degenerate quad) lands on the first pixel.
        if (!(px >= 0)) px = 0;
        else if (px > maxX) px = maxX;
        if (!(py >= 0)) py = 0;
        else if (py > maxY) py = maxY;
        const int ix = static_cast<int>(px), iy = static_cast<int>(py);
        const float fx = static_cast<float>(px - ix), fy = static_cast<float>(py - iy);
        const int ix1 = ix < im.width - 1 ? ix + 1 : ix;
        const int iy1 = iy < im.height - 1 ? iy + 1 : iy;
        const uint8_t* r0 = im.data + static_cast<int64_t>(iy) * im.stride;
        const uint8_t* r1 = im.data + static_cast<int64_t>(iy1) * im.stride;
        const int c = im.channels;
        for (int k = 0; k < K; k++) {
          const int ch = o.chanMap[k];
          const float top = (1 - fx) * r0[ix * c + ch] + fx * r0[ix1 * c + ch];
          const float bot = (1 - fx) * r1[ix * c + ch] + fx * r1[ix1 * c + ch];
          acc[k] += (1 - fy) * top + fy * bot;
        }
      }
    }
    for (int k = 0; k < K; k++) storeValue(o, index(x, k), acc[k] * inv * o.mul[k] + o.add[k]);
  }
  for (int x = valid; x < W; x++)
    for (int k = 0; k < K; k++) storeValue(o, index(x, k), o.pad[k]);
}

}  // namespace

void cropBatch(const CropParams& p) {
  checkImage(p.src);
  const TensorOut& o = p.out;
  if (p.count < 0) throw KernelError("region count is negative");
  if (p.count == 0) return;
  if (!o.data || !p.homographies || !p.widths || !p.samples) throw KernelError("crop buffers are null");
  if (p.outWidth < 1 || p.outHeight < 1) throw KernelError("crop output must be at least 1x1");
  if (o.channels != 1 && o.channels != 3) throw KernelError("output channels must be 1 or 3");
  for (int k = 0; k < o.channels; k++)
    if (o.chanMap[k] < 0 || o.chanMap[k] >= p.src.channels) throw KernelError("channel map out of range");
  for (int r = 0; r < p.count; r++) {
    if (p.widths[r] < 0 || p.widths[r] > p.outWidth) throw KernelError("region width outside the batch width");
    if (p.samples[r] < 1 || p.samples[r] > 8) throw KernelError("supersampling factor must be 1..8");
  }
  const int64_t rows = static_cast<int64_t>(p.count) * p.outHeight;
  parallelFor(rows, p.threads, 8, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; i++) {
      const int r = static_cast<int>(i / p.outHeight), y = static_cast<int>(i % p.outHeight);
      if (o.nhwc) cropRow<true>(p, r, y);
      else cropRow<false>(p, r, y);
    }
  });
}

}  // namespace xk
