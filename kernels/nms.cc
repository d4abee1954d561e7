#include <algorithm>
#include <cmath>
#include <memory>

#include "detect.h"

namespace xk {

namespace {

// Ascending key for a float sorted descending: order-preserving bit transform, inverted.
inline uint32_t descKey(float f) {
  if (f == 0) f = 0;  // -0 and +0 tie, as they compare equal
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return ~u;
}

// Candidate indices (non-NaN, >= threshold) by score descending, index ascending. LSD radix sort
// (stable, so equal scores keep index order) for large inputs, stable_sort for small ones. The
// three 11-bit histograms come from one pass, and a digit every key shares costs no pass.
std::vector<int32_t> sortCandidates(const float* scores, int n, double threshold) {
  std::vector<int32_t> idx(static_cast<size_t>(n));
  std::unique_ptr<uint32_t[]> key(new uint32_t[static_cast<size_t>(n) + 1]);
  size_t m = 0;
  for (int i = 0; i < n; i++) {
    const float s = scores[i];
    if (s == s && static_cast<double>(s) >= threshold) idx[m] = i, key[m++] = descKey(s);
  }
  idx.resize(m);
  if (m < 512) {
    std::vector<int32_t> pos(m);
    for (size_t i = 0; i < m; i++) pos[i] = static_cast<int32_t>(i);
    std::stable_sort(pos.begin(), pos.end(), [&](int32_t a, int32_t b) { return key[a] < key[b]; });
    std::vector<int32_t> out(m);
    for (size_t i = 0; i < m; i++) out[i] = idx[pos[i]];
    return out;
  }
  std::vector<uint32_t> hist(3 * 2048, 0);
  for (size_t i = 0; i < m; i++) {
    const uint32_t k = key[i];
    hist[k & 2047u]++, hist[2048 + ((k >> 11) & 2047u)]++, hist[4096 + (k >> 22)]++;
  }
  std::vector<int32_t> idx2(m);
  std::unique_ptr<uint32_t[]> key2(new uint32_t[m]);
  uint32_t* kin = key.get();
  uint32_t* kout = key2.get();
  for (int pass = 0; pass < 3; pass++) {
    uint32_t* h = &hist[static_cast<size_t>(pass) * 2048];
    const int shift = 11 * pass;
    if (h[(kin[0] >> shift) & 2047u] == m) continue;  // every key has this digit
    uint32_t sum = 0;
    for (int b = 0; b < 2048; b++) {
      const uint32_t c = h[b];
      h[b] = sum;
      sum += c;
    }
    for (size_t i = 0; i < m; i++) {
      const uint32_t d = h[(kin[i] >> shift) & 2047u]++;
      idx2[d] = idx[i];
      kout[d] = kin[i];
    }
    idx.swap(idx2);
    std::swap(kin, kout);
  }
  return idx;
}

struct SortedBoxes {
  std::unique_ptr<double[]> mem;  // uninitialised: every entry is written before use
  double *x1, *y1, *x2, *y2, *area;
  std::vector<uint8_t> nan;
  explicit SortedBoxes(int m) : mem(new double[static_cast<size_t>(m) * 5]), nan(static_cast<size_t>(m)) {
    x1 = mem.get(), y1 = x1 + m, x2 = y1 + m, y2 = x2 + m, area = y2 + m;
  }
};

// IoU of sorted boxes a and b; the operation order matches native/portable/nms.ts exactly.
inline double iou(const SortedBoxes& s, int a, int b) {
  if (s.nan[a] || s.nan[b]) return 0;
  const double iw = std::min(s.x2[a], s.x2[b]) - std::max(s.x1[a], s.x1[b]);
  const double ih = std::min(s.y2[a], s.y2[b]) - std::max(s.y1[a], s.y1[b]);
  if (!(iw > 0 && ih > 0)) return 0;
  const double inter = iw * ih;
  const double uni = s.area[a] + s.area[b] - inter;
  return uni > 0 ? inter / uni : 0;
}

}  // namespace

int nms(const NmsParams& p, int32_t* keep) {
  if (p.n < 0) throw KernelError("box count is negative");
  if (p.n == 0) return 0;
  if (!p.boxes || !p.scores || !keep) throw KernelError("nms buffers are null");
  std::vector<int32_t> order = sortCandidates(p.scores, p.n, p.scoreThreshold);
  if (p.preTopK >= 0 && order.size() > static_cast<size_t>(p.preTopK)) order.resize(static_cast<size_t>(p.preTopK));
  const int m = static_cast<int>(order.size());
  const int maxOut = p.maxOutput < 0 ? m : std::min(m, p.maxOutput);
  if (m == 0 || maxOut == 0) return 0;
  SortedBoxes s(m);
  std::vector<int32_t> cls(static_cast<size_t>(m), 0);
  bool finite = true;
  double minX = INFINITY, minY = INFINITY, maxX = -INFINITY, maxY = -INFINITY, sumW = 0, sumH = 0;
  for (int i = 0; i < m; i++) {
    const float* b = p.boxes + static_cast<int64_t>(order[i]) * 4;
    const double a0 = b[0], a1 = b[1], a2 = b[2], a3 = b[3];
    s.nan[i] = (a0 != a0 || a1 != a1 || a2 != a2 || a3 != a3) ? 1 : 0;
    s.x1[i] = a0 < a2 ? a0 : a2, s.x2[i] = a0 < a2 ? a2 : a0;
    s.y1[i] = a1 < a3 ? a1 : a3, s.y2[i] = a1 < a3 ? a3 : a1;
    s.area[i] = (s.x2[i] - s.x1[i]) * (s.y2[i] - s.y1[i]);
    if (p.classes) cls[i] = p.classes[order[i]];
    if (!std::isfinite(a0) || !std::isfinite(a1) || !std::isfinite(a2) || !std::isfinite(a3)) {
      finite = false;
      continue;
    }
    minX = std::min(minX, s.x1[i]), maxX = std::max(maxX, s.x2[i]);
    minY = std::min(minY, s.y1[i]), maxY = std::max(maxY, s.y2[i]);
    sumW += s.x2[i] - s.x1[i], sumH += s.y2[i] - s.y1[i];
  }
  const double thr = p.iouThreshold;
  int kept = 0;
  auto suppressedBy = [&](int i, int k) { return (!p.classes || cls[i] == cls[k]) && iou(s, k, i) > thr; };
  // Small or non-finite inputs: the textbook loop over kept boxes.
  if (m <= 64 || !finite || !(maxX > minX) || !(maxY > minY)) {
    std::vector<int32_t> keptPos;
    for (int i = 0; i < m && kept < maxOut; i++) {
      bool drop = false;
      for (int k : keptPos)
        if (suppressedBy(i, k)) {
          drop = true;
          break;
        }
      if (!drop) {
        keptPos.push_back(i);
        keep[kept++] = order[i];
      }
    }
    return kept;
  }
  // Uniform grid over the kept boxes: a candidate only meets kept boxes sharing a cell with it,
  // which is every box it can intersect (IoU > thr >= 0 needs a positive intersection). Cells about
  // one mean box wide, at most 128 per axis; a box spanning over 64 cells goes on a list everyone
  // checks. (A linear vectorised scan over few kept boxes was tried: slower on clustered input.)
  const double cw = std::max(sumW / m, (maxX - minX) / 128), ch = std::max(sumH / m, (maxY - minY) / 128);
  const int gx = std::max(1, std::min(128, static_cast<int>(std::ceil((maxX - minX) / cw))));
  const int gy = std::max(1, std::min(128, static_cast<int>(std::ceil((maxY - minY) / ch))));
  // Any monotone coordinate -> cell map keeps intersecting boxes in a shared cell; multiply, don't divide.
  const double icw = 1 / cw, ich = 1 / ch;
  auto cellX = [&](double x) { return std::max(0, std::min(gx - 1, static_cast<int>((x - minX) * icw))); };
  auto cellY = [&](double y) { return std::max(0, std::min(gy - 1, static_cast<int>((y - minY) * ich))); };
  // Per cell a list in insertion order (head/tail/next): older kept boxes score higher and are the
  // likeliest to suppress, so they are tried first.
  std::vector<int32_t> head(static_cast<size_t>(gx) * gy, -1), tail(static_cast<size_t>(gx) * gy, -1), next, entry, big, all;
  next.reserve(static_cast<size_t>(m)), entry.reserve(static_cast<size_t>(m));
  std::vector<int32_t> stamp(static_cast<size_t>(m), -1);
  auto insert = [&](int k) {
    const int cx0 = cellX(s.x1[k]), cx1 = cellX(s.x2[k]), cy0 = cellY(s.y1[k]), cy1 = cellY(s.y2[k]);
    all.push_back(k);
    if (static_cast<int64_t>(cx1 - cx0 + 1) * (cy1 - cy0 + 1) > 64) {
      big.push_back(k);
      return;
    }
    for (int y = cy0; y <= cy1; y++)
      for (int x = cx0; x <= cx1; x++) {
        const size_t c = static_cast<size_t>(y) * gx + x;
        const int32_t e = static_cast<int32_t>(entry.size());
        entry.push_back(k);
        next.push_back(-1);
        if (tail[c] < 0) head[c] = e;
        else next[tail[c]] = e;
        tail[c] = e;
      }
  };
  // Per cell, the kept box that last suppressed a candidate centred there: on clustered input (a
  // detector head's duplicates) it nearly always suppresses the next one too, so one IoU test
  // replaces the cell walk. Checking one extra kept box first never changes the greedy result.
  std::vector<int32_t> lastSuppressor(static_cast<size_t>(gx) * gy, -1);
  for (int i = 0; i < m && kept < maxOut; i++) {
    const size_t centre = static_cast<size_t>(cellY(0.5 * (s.y1[i] + s.y2[i]))) * gx + cellX(0.5 * (s.x1[i] + s.x2[i]));
    const int hint = lastSuppressor[centre];
    if (hint >= 0 && suppressedBy(i, hint)) continue;
    const int cx0 = cellX(s.x1[i]), cx1 = cellX(s.x2[i]), cy0 = cellY(s.y1[i]), cy1 = cellY(s.y2[i]);
    const bool wide = static_cast<int64_t>(cx1 - cx0 + 1) * (cy1 - cy0 + 1) > 64;
    bool drop = false;
    // A wide candidate checks every kept box (walking its many cells would cost more).
    for (int k : wide ? all : big)
      if (suppressedBy(i, k)) {
        drop = true;
        lastSuppressor[centre] = k;
        break;
      }
    for (int y = cy0; y <= cy1 && !drop && !wide; y++)
      for (int x = cx0; x <= cx1 && !drop; x++)
        for (int e = head[static_cast<size_t>(y) * gx + x]; e >= 0; e = next[e]) {
          const int k = entry[e];
          if (stamp[k] == i) continue;
          stamp[k] = i;
          if (suppressedBy(i, k)) {
            drop = true;
            lastSuppressor[centre] = k;
            break;
          }
        }
    if (drop) continue;
    keep[kept++] = order[i];
    if (s.x2[i] > s.x1[i] && s.y2[i] > s.y1[i]) insert(i);
  }
  return kept;
}

}  // namespace xk
