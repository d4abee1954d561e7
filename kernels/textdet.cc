#include "textdet.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace xk {

namespace {

struct Rect {
  double cx = 0, cy = 0, w = 0, h = 0, ux = 1, uy = 0;
};

inline double cross(double ox, double oy, double ax, double ay, double bx, double by) {
  return (ax - ox) * (by - oy) - (ay - oy) * (bx - ox);
}

// Andrew's monotone chain over points sorted by (y, x); counter-clockwise in a y-down frame.
void convexHull(const std::vector<double>& pts, std::vector<double>& hull) {
  const int n = static_cast<int>(pts.size() / 2);
  hull.clear();
  if (n <= 2) {
    hull = pts;
    if (n == 2 && pts[0] == pts[2] && pts[1] == pts[3]) hull.resize(2);
    return;
  }
  std::vector<double> hx(2 * n), hy(2 * n);
  int k = 0;
  for (int i = 0; i < n; i++) {
    while (k >= 2 && cross(hx[k - 2], hy[k - 2], hx[k - 1], hy[k - 1], pts[2 * i], pts[2 * i + 1]) <= 0) k--;
    hx[k] = pts[2 * i], hy[k++] = pts[2 * i + 1];
  }
  for (int i = n - 2, lower = k + 1; i >= 0; i--) {
    while (k >= lower && cross(hx[k - 2], hy[k - 2], hx[k - 1], hy[k - 1], pts[2 * i], pts[2 * i + 1]) <= 0) k--;
    hx[k] = pts[2 * i], hy[k++] = pts[2 * i + 1];
  }
  k--;  // the last point repeats the first
  if (k < 1) k = 1;
  for (int i = 0; i < k; i++) hull.push_back(hx[i]), hull.push_back(hy[i]);
}

// Rotating calipers without trigonometry: the optimum has a side along a hull edge.
Rect minAreaRect(const std::vector<double>& hull) {
  Rect r;
  const int n = static_cast<int>(hull.size() / 2);
  if (n == 1) {
    r.cx = hull[0], r.cy = hull[1];
    return r;
  }
  double bestArea = INFINITY;
  for (int i = 0; i < n; i++) {
    const int j = (i + 1) % n;
    const double xi = hull[2 * i], yi = hull[2 * i + 1];
    const double dx = hull[2 * j] - xi, dy = hull[2 * j + 1] - yi;
    const double len = std::sqrt(dx * dx + dy * dy);
    if (!(len > 0)) continue;
    const double ux = dx / len, uy = dy / len;
    double minS = 0, maxS = 0, minT = 0, maxT = 0;
    for (int k = 0; k < n; k++) {
      const double ex = hull[2 * k] - xi, ey = hull[2 * k + 1] - yi;
      const double s = ex * ux + ey * uy;
      const double t = ey * ux - ex * uy;
      if (s < minS) minS = s;
      if (s > maxS) maxS = s;
      if (t < minT) minT = t;
      if (t > maxT) maxT = t;
    }
    const double area = (maxS - minS) * (maxT - minT);
    if (area < bestArea) {
      bestArea = area;
      const double cs = (minS + maxS) / 2, ct = (minT + maxT) / 2;
      r.w = maxS - minS, r.h = maxT - minT, r.ux = ux, r.uy = uy;
      r.cx = xi + ux * cs - uy * ct;
      r.cy = yi + uy * cs + ux * ct;
    }
  }
  return r;
}

// Corners in the rectangle's own order: (-w/2, -h/2), (+, -), (+, +), (-, +).
void corners(const Rect& r, double* q) {
  const double hw = r.w / 2, hh = r.h / 2;
  const double ax = r.ux * hw, ay = r.uy * hw, bx = -r.uy * hh, by = r.ux * hh;
  q[0] = r.cx - ax - bx, q[1] = r.cy - ay - by;
  q[2] = r.cx + ax - bx, q[3] = r.cy + ay - by;
  q[4] = r.cx + ax + bx, q[5] = r.cy + ay + by;
  q[6] = r.cx - ax + bx, q[7] = r.cy - ay + by;
}

// Mean probability over pixels whose centres lie in the convex quad (pixel centres at integers).
double quadMean(const DbParams& p, const double* q) {
  double minY = INFINITY, maxY = -INFINITY;
  for (int k = 0; k < 4; k++) minY = std::min(minY, q[2 * k + 1]), maxY = std::max(maxY, q[2 * k + 1]);
  const int y0 = static_cast<int>(std::max(0.0, std::ceil(minY - 1e-9)));
  const int y1 = static_cast<int>(std::min(p.height - 1.0, std::floor(maxY + 1e-9)));
  double sum = 0;
  int64_t cnt = 0;
  for (int y = y0; y <= y1; y++) {
    double lo = INFINITY, hi = -INFINITY;
    for (int k = 0; k < 4; k++) {
      const double ax = q[2 * k], ay = q[2 * k + 1], bx = q[(2 * k + 2) % 8], by = q[(2 * k + 3) % 8];
      if ((ay <= y && by >= y) || (by <= y && ay >= y)) {
        if (ay == by) {
          lo = std::min(lo, std::min(ax, bx)), hi = std::max(hi, std::max(ax, bx));
        } else {
          const double x = ax + (y - ay) / (by - ay) * (bx - ax);
          lo = std::min(lo, x), hi = std::max(hi, x);
        }
      }
    }
    if (!(lo <= hi)) continue;
    const int xa = static_cast<int>(std::max(0.0, std::ceil(lo - 1e-9)));
    const int xb = static_cast<int>(std::min(p.width - 1.0, std::floor(hi + 1e-9)));
    const float* row = p.prob + static_cast<int64_t>(y) * p.width;
    for (int x = xa; x <= xb; x++) {
      const float v = row[x];
      if (v == v) sum += v;
      cnt++;
    }
  }
  return cnt ? sum / static_cast<double>(cnt) : 0;
}

// PaddleOCR's corner order: sort by x (stable), then top/bottom within the left and right pairs.
void orderCorners(const double* q, double* o) {
  int idx[4] = {0, 1, 2, 3};
  for (int i = 1; i < 4; i++)
    for (int j = i; j > 0 && q[2 * idx[j]] < q[2 * idx[j - 1]]; j--) std::swap(idx[j], idx[j - 1]);
  int tl = idx[0], bl = idx[1], tr = idx[2], br = idx[3];
  if (q[2 * bl + 1] < q[2 * tl + 1]) std::swap(tl, bl);
  if (q[2 * br + 1] < q[2 * tr + 1]) std::swap(tr, br);
  const int order[4] = {tl, tr, br, bl};
  for (int k = 0; k < 4; k++) o[2 * k] = q[2 * order[k]], o[2 * k + 1] = q[2 * order[k] + 1];
}

}  // namespace

DbResult dbPostprocess(const DbParams& p) {
  if (p.width < 0 || p.height < 0) throw KernelError("negative map size");
  DbResult out;
  const int W = p.width, H = p.height;
  const int64_t n = static_cast<int64_t>(W) * H;
  if (n == 0) return out;
  if (n > INT32_MAX) throw KernelError("probability map over 2^31 - 1 pixels");  // int32 pixel indices below
  if (!p.prob) throw KernelError("probability map is null");
  std::vector<uint8_t> mask(static_cast<size_t>(n));
  parallelFor(n, p.threads, 65536, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; i++) mask[i] = p.prob[i] > p.threshold ? 1 : 0;
  });
  if (p.dilate) {
    std::vector<uint8_t> d(static_cast<size_t>(n));
    for (int y = 0; y < H; y++) {
      const int64_t row = static_cast<int64_t>(y) * W, up = y > 0 ? row - W : row;
      for (int x = 0; x < W; x++) {
        const int xl = x > 0 ? x - 1 : x;
        d[row + x] = mask[row + x] | mask[row + xl] | mask[up + x] | mask[up + xl];
      }
    }
    mask.swap(d);
  }
  // 8-connected components over runs of mask pixels (a text map is a few runs a row), numbered in
  // raster order of their first pixel, as a flood fill numbers them; only the first maxCandidates.
  // Runs replace a per-pixel label map and stack (2 × 4 bytes a pixel, zeroed) and the 9-neighbour
  // visit of every mask pixel: ~8 → ~1 ms on a 960×544 page map (perf: the fill was ~2/3 of the op).
  std::vector<int32_t> rx0, rx1, ry, parent;
  std::vector<int32_t> rowStart(static_cast<size_t>(H) + 1, 0);
  for (int y = 0; y < H; y++) {
    rowStart[y] = static_cast<int32_t>(rx0.size());
    const uint8_t* row = mask.data() + static_cast<int64_t>(y) * W;
    int x = 0;
    while (x < W) {
      // skip zero bytes eight at a time: most of a page map is background
      while (x + 8 <= W) {
        uint64_t w8;
        std::memcpy(&w8, row + x, 8);
        if (w8) break;
        x += 8;
      }
      while (x < W && !row[x]) x++;
      if (x >= W) break;
      const int a = x;
      while (x < W && row[x]) x++;
      rx0.push_back(a), rx1.push_back(x - 1), ry.push_back(y);
    }
  }
  rowStart[H] = static_cast<int32_t>(rx0.size());
  const int32_t runs = rowStart[H];
  parent.resize(static_cast<size_t>(runs));
  for (int32_t i = 0; i < runs; i++) parent[i] = i;
  auto find = [&](int32_t i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
  };
  // the root of a component is its first run in raster order (the smaller index wins)
  for (int y = 1; y < H; y++) {
    int32_t q = rowStart[y - 1];
    const int32_t qEnd = rowStart[y];
    for (int32_t r = rowStart[y]; r < rowStart[y + 1]; r++) {
      while (q < qEnd && rx1[q] < rx0[r] - 1) q++;
      for (int32_t k = q; k < qEnd && rx0[k] <= rx1[r] + 1; k++) {
        const int32_t a = find(r), b = find(k);
        if (a != b) parent[std::max(a, b)] = std::min(a, b);
      }
    }
  }
  std::vector<int32_t> runComp(static_cast<size_t>(runs), 0), bounds;
  int count = 0;
  for (int32_t r = 0; r < runs; r++) {
    const int32_t root = find(r);
    if (root == r) {
      if (count >= p.maxCandidates) continue;  // runComp 0: not a candidate
      runComp[r] = ++count;
      bounds.insert(bounds.end(), {rx0[r], ry[r], rx1[r], ry[r]});
      continue;
    }
    const int id = runComp[root];
    runComp[r] = id;
    if (!id) continue;
    int* b = &bounds[static_cast<size_t>(id - 1) * 4];
    b[0] = std::min(b[0], rx0[r]), b[2] = std::max(b[2], rx1[r]), b[3] = std::max(b[3], ry[r]);
  }
  // each component's runs, in raster order
  std::vector<int32_t> compStart(static_cast<size_t>(count) + 2, 0), compRuns;
  for (int32_t r = 0; r < runs; r++)
    if (runComp[r]) compStart[runComp[r] + 1]++;
  for (int c = 1; c <= count + 1; c++) compStart[c] += compStart[c - 1];
  compRuns.resize(static_cast<size_t>(compStart[count + 1]));
  {
    std::vector<int32_t> at(compStart.begin(), compStart.end() - 1);
    for (int32_t r = 0; r < runs; r++)
      if (runComp[r]) compRuns[at[runComp[r]]++] = r;
  }
  // Per component: hull -> rectangle -> score -> unclip, independent, so in parallel.
  std::vector<double> quads(static_cast<size_t>(count) * 8);
  std::vector<double> scores(static_cast<size_t>(count));
  std::vector<uint8_t> ok(static_cast<size_t>(count), 0);
  parallelFor(count, p.threads, 16, [&](int64_t c0, int64_t c1) {
    std::vector<double> pts, hull;
    for (int64_t c = c0; c < c1; c++) {
      const int id = static_cast<int>(c) + 1;
      const int* b = &bounds[static_cast<size_t>(c) * 4];
      if (b[2] - b[0] + 1 < p.minSize && b[3] - b[1] + 1 < p.minSize) continue;
      pts.clear();
      // per row: its leftmost and rightmost pixel (the first run's start, the last run's end)
      for (int32_t i = compStart[id], end = compStart[id + 1]; i < end;) {
        const int y = ry[compRuns[i]], lo = rx0[compRuns[i]];
        int hi = rx1[compRuns[i]];
        for (i++; i < end && ry[compRuns[i]] == y; i++) hi = rx1[compRuns[i]];
        pts.push_back(lo), pts.push_back(y);
        if (hi != lo) pts.push_back(hi), pts.push_back(y);
      }
      convexHull(pts, hull);
      Rect r = minAreaRect(hull);
      if (std::min(r.w, r.h) < p.minSize) continue;
      double q[8];
      corners(r, q);
      const double score = quadMean(p, q);
      if (!(score >= p.boxThreshold)) continue;
      const double perimeter = 2 * (r.w + r.h);
      const double d = perimeter > 0 ? r.w * r.h * p.unclipRatio / perimeter : 0;
      r.w = r.w + 2 * d, r.h = r.h + 2 * d;
      if (std::min(r.w, r.h) < p.minSize + 2) continue;
      corners(r, q);
      double o[8];
      orderCorners(q, o);
      for (int k = 0; k < 4; k++) {
        double x = (o[2 * k] + 0.5) * p.scaleX, y = (o[2 * k + 1] + 0.5) * p.scaleY;
        if (p.clipWidth > 0) x = std::min(std::max(x, 0.0), p.clipWidth);
        if (p.clipHeight > 0) y = std::min(std::max(y, 0.0), p.clipHeight);
        quads[static_cast<size_t>(c) * 8 + 2 * k] = x, quads[static_cast<size_t>(c) * 8 + 2 * k + 1] = y;
      }
      scores[c] = score;
      ok[c] = 1;
    }
  });
  for (int c = 0; c < count; c++) {
    if (!ok[c]) continue;
    for (int k = 0; k < 8; k++) out.quads.push_back(static_cast<float>(quads[static_cast<size_t>(c) * 8 + k]));
    out.scores.push_back(static_cast<float>(scores[c]));
  }
  return out;
}

}  // namespace xk
