#include "preprocess.h"

#include <algorithm>
#include <cmath>

namespace xk {

Taps makeTaps(int srcSize, int dstSize, Interp interp) {
  Taps t;
  if (srcSize < 1 || dstSize < 1) throw KernelError("resize sizes must be positive");
  const double scale = static_cast<double>(srcSize) / dstSize;
  const bool area = interp == Interp::Area ? scale > 1 : interp == Interp::Auto ? scale >= 2 : false;
  const int last = srcSize - 1;
  t.start.resize(dstSize);
  t.count.resize(dstSize);
  if (!area) {
    t.maxTaps = 2;
    t.w.assign(static_cast<size_t>(dstSize) * 2, 0.0f);
    for (int o = 0; o < dstSize; o++) {
      double c = (o + 0.5) * scale - 0.5;
      if (c < 0) c = 0;
      int i0 = static_cast<int>(std::floor(c));
      if (i0 >= last) {
        t.start[o] = last;
        t.count[o] = 1;
        t.w[o * 2] = 1.0f;
        continue;
      }
      const double f = c - i0;
      t.start[o] = i0;
      t.count[o] = 2;
      t.w[o * 2] = static_cast<float>(1 - f);
      t.w[o * 2 + 1] = static_cast<float>(f);
    }
    return t;
  }
  t.maxTaps = static_cast<int>(std::ceil(scale)) + 1;
  t.w.assign(static_cast<size_t>(dstSize) * t.maxTaps, 0.0f);
  for (int o = 0; o < dstSize; o++) {
    const double a = o * scale;
    double b = (o + 1) * scale;
    if (b > srcSize) b = srcSize;
    const int i0 = static_cast<int>(std::floor(a));
    int i1 = static_cast<int>(std::ceil(b)) - 1;
    if (i1 > last) i1 = last;
    if (i1 < i0) i1 = i0;
    t.start[o] = i0;
    t.count[o] = i1 - i0 + 1;
    for (int i = i0; i <= i1; i++) {
      const double lo = a > i ? a : i;
      const double hi = b < i + 1 ? b : i + 1;
      t.w[static_cast<size_t>(o) * t.maxTaps + (i - i0)] = static_cast<float>((hi - lo) / scale);
    }
  }
  return t;
}

namespace {

// The vertical pass (b = w * row, or b += w * row) is the vectorising loop; the build targets a
// baseline CPU, so on x86 Linux GCC also compiles AVX2 and AVX-512 clones, picked once at load by
// CPU (ifunc). Element-wise multiply and add without contraction: every clone gives the same bits.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define XK_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define XK_CLONES
#endif
XK_CLONES void blendRow(float* __restrict b, const uint8_t* __restrict r, float w, int len, bool first) {
  if (first)
    for (int i = 0; i < len; i++) b[i] = w * static_cast<float>(r[i]);
  else
    for (int i = 0; i < len; i++) b[i] += w * static_cast<float>(r[i]);
}

template <class OutT>
inline void put(OutT* dst, int64_t i, float v);
template <>
inline void put<float>(float* dst, int64_t i, float v) {
  dst[i] = v;
}
template <>
inline void put<uint16_t>(uint16_t* dst, int64_t i, float v) {
  dst[i] = floatToHalf(v);
}
template <>
inline void put<uint8_t>(uint8_t* dst, int64_t i, float v) {
  dst[i] = floatToU8(v);
}

template <class OutT, bool NHWC>
void runRows(const PreprocessParams& p, const Taps& tx, const Taps& ty, int64_t y0, int64_t y1) {
  const ImageView& im = p.src;
  const TensorOut& o = p.out;
  const int C = im.channels, K = o.channels;
  const int W = p.planeWidth, H = p.planeHeight;
  const int64_t plane = static_cast<int64_t>(W) * H;
  OutT* dst = static_cast<OutT*>(o.data) + o.offset;
  // Source columns any output column reads: the vertical pass covers only these.
  const int x0 = tx.start[0];
  const int x1 = tx.start[p.roiWidth - 1] + tx.count[p.roiWidth - 1];
  const int len = (x1 - x0) * C;
  std::vector<float> buf(static_cast<size_t>(len) + 8);
  std::vector<int32_t> xoff(static_cast<size_t>(p.roiWidth));
  for (int ox = 0; ox < p.roiWidth; ox++) xoff[ox] = (tx.start[ox] - x0) * C;
  const int ch0 = o.chanMap[0], ch1 = K > 1 ? o.chanMap[1] : 0, ch2 = K > 2 ? o.chanMap[2] : 0;
  const float m0 = o.mul[0], m1 = o.mul[1], m2 = o.mul[2], a0 = o.add[0], a1 = o.add[1], a2 = o.add[2];
  const bool twoTaps = tx.maxTaps == 2;
  for (int64_t y = y0; y < y1; y++) {
    // Row pointers: plane k of row y (NCHW) or the interleaved row (NHWC).
    OutT* d0 = NHWC ? dst + y * W * K : dst + y * W;
    OutT* d1 = NHWC ? d0 + 1 : d0 + plane;
    OutT* d2 = NHWC ? d0 + 2 : d0 + 2 * plane;
    const int step = NHWC ? K : 1;
    auto pad = [&](int xa, int xb) {
      for (int x = xa; x < xb; x++) {
        put<OutT>(d0, static_cast<int64_t>(x) * step, o.pad[0]);
        if (K > 1) put<OutT>(d1, static_cast<int64_t>(x) * step, o.pad[1]), put<OutT>(d2, static_cast<int64_t>(x) * step, o.pad[2]);
      }
    };
    if (y < p.roiY || y >= p.roiY + p.roiHeight) {
      pad(0, W);
      continue;
    }
    const int oy = static_cast<int>(y - p.roiY);
    const int s = ty.start[oy], cnt = ty.count[oy];
    const float* wy = &ty.w[static_cast<size_t>(oy) * ty.maxTaps];
    // Vertical pass: blend the contributing source rows into one float row (vectorises well).
    float* b = buf.data();
    for (int k = 0; k < cnt; k++)
      blendRow(b, im.data + static_cast<int64_t>(s + k) * im.stride + static_cast<int64_t>(x0) * C, wy[k], len, k == 0);
    pad(0, p.roiX);
    // Horizontal pass + normalise + layout.
    const int n = tx.maxTaps;
    for (int ox = 0; ox < p.roiWidth; ox++) {
      const float* wx = &tx.w[static_cast<size_t>(ox) * n];
      const float* q = b + xoff[ox];
      float v0, v1, v2;
      if (twoTaps) {
        // Bilinear: a single-tap column has weight 0 on a second tap that still lies in the row.
        const float w0 = wx[0], w1 = wx[1];
        v0 = w0 * q[ch0] + w1 * q[C + ch0];
        v1 = w0 * q[ch1] + w1 * q[C + ch1];
        v2 = w0 * q[ch2] + w1 * q[C + ch2];
      } else {
        v0 = 0, v1 = 0, v2 = 0;
        const int c = tx.count[ox];
        for (int j = 0; j < c; j++, q += C) {
          v0 += wx[j] * q[ch0];
          v1 += wx[j] * q[ch1];
          v2 += wx[j] * q[ch2];
        }
      }
      const int64_t x = static_cast<int64_t>(p.roiX + ox) * step;
      put<OutT>(d0, x, v0 * m0 + a0);
      if (K > 1) put<OutT>(d1, x, v1 * m1 + a1), put<OutT>(d2, x, v2 * m2 + a2);
    }
    pad(p.roiX + p.roiWidth, W);
  }
}

}  // namespace

void checkRegion(const PreprocessParams& p) {
  if (p.planeWidth < 1 || p.planeHeight < 1) throw KernelError("output plane must be at least 1x1");
  // In int64: roiX + roiWidth overflows int for hostile raw options.
  if (p.roiWidth < 1 || p.roiHeight < 1 || p.roiX < 0 || p.roiY < 0 ||
      static_cast<int64_t>(p.roiX) + p.roiWidth > p.planeWidth || static_cast<int64_t>(p.roiY) + p.roiHeight > p.planeHeight)
    throw KernelError("resize region outside the output plane");
}

void preprocess(const PreprocessParams& p) {
  checkImage(p.src);
  const TensorOut& o = p.out;
  if (!o.data) throw KernelError("output is null");
  if (o.channels != 1 && o.channels != 3) throw KernelError("output channels must be 1 or 3");
  for (int k = 0; k < o.channels; k++)
    if (o.chanMap[k] < 0 || o.chanMap[k] >= p.src.channels) throw KernelError("channel map out of range");
  checkRegion(p);
  const Taps tx = makeTaps(p.src.width, p.roiWidth, p.interp);
  const Taps ty = makeTaps(p.src.height, p.roiHeight, p.interp);
  // ~16k output values per chunk: below that a thread costs more than it saves.
  const int64_t minRows = std::max<int64_t>(1, 16384 / (static_cast<int64_t>(p.planeWidth) * o.channels));
  parallelFor(p.planeHeight, p.threads, minRows, [&](int64_t a, int64_t b) {
    if (o.u8) {
      if (o.nhwc) runRows<uint8_t, true>(p, tx, ty, a, b);
      else runRows<uint8_t, false>(p, tx, ty, a, b);
    } else if (o.f16) {
      if (o.nhwc) runRows<uint16_t, true>(p, tx, ty, a, b);
      else runRows<uint16_t, false>(p, tx, ty, a, b);
    } else {
      if (o.nhwc) runRows<float, true>(p, tx, ty, a, b);
      else runRows<float, false>(p, tx, ty, a, b);
    }
  });
}

}  // namespace xk
