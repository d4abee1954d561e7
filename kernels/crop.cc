#include "crop.h"

#include <cmath>
#include <vector>

namespace xk {

namespace {

// The output element types, as storeValue writes them (the same conversions, without its per-value branch).
struct StoreU8 {
  static void put(void* d, int64_t i, float v) { static_cast<uint8_t*>(d)[i] = floatToU8(v); }
};
struct StoreF16 {
  static void put(void* d, int64_t i, float v) { static_cast<uint16_t*>(d)[i] = floatToHalf(v); }
};
struct StoreF32 {
  static void put(void* d, int64_t i, float v) { static_cast<float*>(d)[i] = v; }
};

// Where output row y of region r goes in the batch tensor, and its padding right of `from`.
template <bool NHWC, int K>
struct RowOut {
  int64_t base, plane;
  int W, y;
  RowOut(const CropParams& p, int r, int row)
      : base(p.out.offset + static_cast<int64_t>(r) * p.outWidth * p.outHeight * K),
        plane(static_cast<int64_t>(p.outWidth) * p.outHeight),
        W(p.outWidth),
        y(row) {}
  int64_t at(int x, int k) const {
    return base + (NHWC ? (static_cast<int64_t>(y) * W + x) * K + k : k * plane + static_cast<int64_t>(y) * W + x);
  }
  template <class Store>
  void pad(const TensorOut& o, int from) const {
    for (int x = from; x < W; x++)
      for (int k = 0; k < K; k++) Store::put(o.data, at(x, k), o.pad[k]);
  }
};

// One output row of one region. Every value is computed by the same operations, in the same order,
// as the plain per-sample loop it replaced (bit-identical), with the per-row work hoisted:
// sub-sample offsets (i + 0.5) / s, the row coordinate v and its products h[1] v, h[4] v, h[7] v.
// Affine: h[6] = h[7] = 0 and h[8] = 1 (upright and rotated rectangles), where the denominator
// h[6] u + h[7] v + h[8] is exactly 1 for every finite u, v and dividing by it changes nothing, so
// the two divisions a sample are skipped.
template <bool NHWC, bool Affine, int K, class Store>
void cropRow(const CropParams& p, int r, int y) {
  const ImageView& im = p.src;
  const TensorOut& o = p.out;
  const RowOut<NHWC, K> out(p, r, y);
  const double* h = p.homographies + static_cast<size_t>(r) * 9;
  const double h0 = h[0], h2 = h[2], h3 = h[3], h5 = h[5], h6 = h[6], h8 = h[8];
  const int valid = p.widths[r];
  const int s = p.samples[r];
  const double maxX = im.width - 1, maxY = im.height - 1;
  const int lastX = im.width - 1, lastY = im.height - 1;
  const float inv = 1.0f / static_cast<float>(s * s);
  double off[8], hv1[8], hv4[8], hv7[8];
  for (int j = 0; j < s; j++) {
    off[j] = (j + 0.5) / s;
    const double v = y + off[j];
    hv1[j] = h[1] * v;
    hv4[j] = h[4] * v;
    hv7[j] = h[7] * v;
  }
  int ch[K];
  float mul[K], add[K];
  for (int k = 0; k < K; k++) {
    ch[k] = o.chanMap[k];
    mul[k] = o.mul[k];
    add[k] = o.add[k];
  }
  const int c = im.channels;
  const uint8_t* const data = im.data;
  const int64_t stride = im.stride;
  for (int x = 0; x < valid; x++) {
    float acc[K];
    for (int k = 0; k < K; k++) acc[k] = 0;
    for (int j = 0; j < s; j++) {
      for (int i = 0; i < s; i++) {
        const double u = x + off[i];
        double px, py;
        if (Affine) {
          px = h0 * u + hv1[j] + h2 - 0.5;
          py = h3 * u + hv4[j] + h5 - 0.5;
        } else {
          const double den = h6 * u + hv7[j] + h8;
          px = (h0 * u + hv1[j] + h2) / den - 0.5;
          py = (h3 * u + hv4[j] + h5) / den - 0.5;
        }
        // Edge replication; NaN (a degenerate quad) lands on the first pixel.
        if (!(px >= 0)) px = 0;
        else if (px > maxX) px = maxX;
        if (!(py >= 0)) py = 0;
        else if (py > maxY) py = maxY;
        const int ix = static_cast<int>(px), iy = static_cast<int>(py);
        const float fx = static_cast<float>(px - ix), fy = static_cast<float>(py - iy);
        const int ix1 = ix < lastX ? ix + 1 : ix;
        const int iy1 = iy < lastY ? iy + 1 : iy;
        const uint8_t* r0 = data + static_cast<int64_t>(iy) * stride;
        const uint8_t* r1 = data + static_cast<int64_t>(iy1) * stride;
        const int c0 = ix * c, c1 = ix1 * c;
        for (int k = 0; k < K; k++) {
          const float top = (1 - fx) * r0[c0 + ch[k]] + fx * r0[c1 + ch[k]];
          const float bot = (1 - fx) * r1[c0 + ch[k]] + fx * r1[c1 + ch[k]];
          acc[k] += (1 - fy) * top + fy * bot;
        }
      }
    }
    for (int k = 0; k < K; k++) Store::put(o.data, out.at(x, k), acc[k] * inv * mul[k] + add[k]);
  }
  out.template pad<Store>(o, valid);
}

// An upright rectangle read at one sample a pixel (the usual text line: h[1] = h[3] = 0, affine):
// the source row depends on y alone and the column on x alone, so each column's interpolation
// terms are found once per region (Columns) and each row's once per row, instead of per pixel. The
// values are cropRow's bit for bit: h[1] v and h[3] u are exactly 0 there, and adding an exact 0
// changes no sum that is then clamped at 0.
struct Column {
  int c0, c1;
  float fx;
};
bool upright(const CropParams& p, int r) {
  const double* h = p.homographies + static_cast<size_t>(r) * 9;
  return h[6] == 0 && h[7] == 0 && h[8] == 1 && h[1] == 0 && h[3] == 0 && p.samples[r] == 1;
}
void columns(const CropParams& p, int r, std::vector<Column>& cols) {
  const double* h = p.homographies + static_cast<size_t>(r) * 9;
  const double h0 = h[0], h2 = h[2];
  const double maxX = p.src.width - 1;
  const int lastX = p.src.width - 1, c = p.src.channels;
  cols.resize(static_cast<size_t>(p.widths[r]));
  for (int x = 0; x < p.widths[r]; x++) {
    double px = h0 * (x + 0.5) + h2 - 0.5;
    if (!(px >= 0)) px = 0;
    else if (px > maxX) px = maxX;
    const int ix = static_cast<int>(px);
    cols[static_cast<size_t>(x)] = {ix * c, (ix < lastX ? ix + 1 : ix) * c, static_cast<float>(px - ix)};
  }
}
// One source row interpolated along x at every column of the region (K values a column, in
// output channel order): `top` and `bot` of cropRow, which rows of an enlarged line share.
template <int K>
void interpolateRow(const CropParams& p, int iy, const std::vector<Column>& cols, std::vector<float>& out) {
  const uint8_t* row = p.src.data + static_cast<int64_t>(iy) * p.src.stride;
  int ch[K];
  for (int k = 0; k < K; k++) ch[k] = p.out.chanMap[k];
  out.resize(cols.size() * K);
  float* o = out.data();
  for (size_t x = 0; x < cols.size(); x++) {
    const Column& col = cols[x];
    const float fx = col.fx;
    for (int k = 0; k < K; k++) o[x * K + k] = (1 - fx) * row[col.c0 + ch[k]] + fx * row[col.c1 + ch[k]];
  }
}

// The interpolated source rows an upright region's output rows read: two kept, as consecutive output
// rows read the same pair or the next one (down, or up for a quad listed bottom first).
struct RowCache {
  std::vector<float> rows[2];
  int of[2] = {-1, -1};
  int region = -1;
  std::vector<Column> cols;
  template <int K>
  void get(const CropParams& p, int iy, int iy1, const float*& top, const float*& bot) {
    int a = of[0] == iy ? 0 : of[1] == iy ? 1 : -1;
    if (a < 0) {
      a = of[0] == iy1 ? 1 : 0;  // keep iy1 where it is
      interpolateRow<K>(p, iy, cols, rows[a]);
      of[a] = iy;
    }
    int b = iy1 == iy ? a : of[a ^ 1] == iy1 ? (a ^ 1) : -1;
    if (b < 0) {
      b = a ^ 1;
      interpolateRow<K>(p, iy1, cols, rows[b]);
      of[b] = iy1;
    }
    top = rows[a].data();
    bot = rows[b].data();
  }
};

template <bool NHWC, int K, class Store>
void cropRowUpright(const CropParams& p, int r, int y, RowCache& cache) {
  const TensorOut& o = p.out;
  const RowOut<NHWC, K> out(p, r, y);
  const double* h = p.homographies + static_cast<size_t>(r) * 9;
  const int valid = p.widths[r];
  const double maxY = p.src.height - 1;
  const int lastY = p.src.height - 1;
  double py = h[4] * (y + 0.5) + h[5] - 0.5;
  if (!(py >= 0)) py = 0;
  else if (py > maxY) py = maxY;
  const int iy = static_cast<int>(py);
  const float fy = static_cast<float>(py - iy);
  const int iy1 = iy < lastY ? iy + 1 : iy;
  const float *top, *bot;
  cache.get<K>(p, iy, iy1, top, bot);
  float mul[K], add[K];
  for (int k = 0; k < K; k++) {
    mul[k] = o.mul[k];
    add[k] = o.add[k];
  }
  const float gy = 1 - fy;
  for (int x = 0; x < valid; x++)
    for (int k = 0; k < K; k++) {
      const float acc = 0 + (gy * top[x * K + k] + fy * bot[x * K + k]);
      Store::put(o.data, out.at(x, k), acc * 1.0f * mul[k] + add[k]);
    }
  out.template pad<Store>(o, valid);
}

template <bool NHWC, bool Affine, class Store>
void cropRowK(const CropParams& p, int r, int y) {
  if (p.out.channels == 1) cropRow<NHWC, Affine, 1, Store>(p, r, y);
  else cropRow<NHWC, Affine, 3, Store>(p, r, y);
}
template <bool NHWC, class Store>
void cropRowA(const CropParams& p, int r, int y) {
  const double* h = p.homographies + static_cast<size_t>(r) * 9;
  if (h[6] == 0 && h[7] == 0 && h[8] == 1) cropRowK<NHWC, true, Store>(p, r, y);
  else cropRowK<NHWC, false, Store>(p, r, y);
}
template <bool NHWC, class Store>
void cropRowU(const CropParams& p, int r, int y, RowCache& cache) {
  if (p.out.channels == 1) cropRowUpright<NHWC, 1, Store>(p, r, y, cache);
  else cropRowUpright<NHWC, 3, Store>(p, r, y, cache);
}
template <class Store>
void cropRows(const CropParams& p, int64_t a, int64_t b) {
  RowCache cache;
  for (int64_t i = a; i < b; i++) {
    const int r = static_cast<int>(i / p.outHeight), y = static_cast<int>(i % p.outHeight);
    if (upright(p, r)) {
      if (cache.region != r) {
        columns(p, cache.region = r, cache.cols);
        cache.of[0] = cache.of[1] = -1;
      }
      if (p.out.nhwc) cropRowU<true, Store>(p, r, y, cache);
      else cropRowU<false, Store>(p, r, y, cache);
    } else if (p.out.nhwc) {
      cropRowA<true, Store>(p, r, y);
    } else {
      cropRowA<false, Store>(p, r, y);
    }
  }
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
    if (o.u8) cropRows<StoreU8>(p, a, b);
    else if (o.f16) cropRows<StoreF16>(p, a, b);
    else cropRows<StoreF32>(p, a, b);
  });
}

}  // namespace xk
