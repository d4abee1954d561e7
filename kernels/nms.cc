// Greedy NMS (contract in detect.h). Candidates fall into two sets:
//  - inert boxes (a NaN or infinite coordinate, or no positive width and height): their IoU with
//    anything is 0 or NaN, so they are never suppressed and never suppress; they are merged into
//    the output by rank at the end;
//  - active boxes, which go through suppress-forward (nms_scan.h: keep the best live box, drop every
//    live box it suppresses, repeat; SIMD, no sort) while that pays, then, for whatever is left
//    (spread-out input; everything without AVX2), through the sorted grid phase below.
// Every decision is the exact double test of iouOver(), so the result is the textbook loop's.
#include <algorithm>
#include <cmath>

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

// Rank key of candidate i: smaller ranks first (score descending, then index ascending).
inline uint64_t rankKey(const float* scores, int32_t i) {
  return (static_cast<uint64_t>(descKey(scores[i])) << 32) | static_cast<uint32_t>(i);
}

// A box as the portable code normalises it (corners in either order), in float: the double values
// it computes with are these floats converted, so nothing is lost.
struct Box {
  float x1, y1, x2, y2;
};
inline Box boxAt(const float* boxes, int32_t i) {
  const float* b = boxes + static_cast<int64_t>(i) * 4;
  return {b[0] < b[2] ? b[0] : b[2], b[1] < b[3] ? b[1] : b[3], b[0] < b[2] ? b[2] : b[0], b[1] < b[3] ? b[3] : b[1]};
}

// iou(a, b) > thr, computed in double in the order of native/portable/nms.ts; boxes that do not
// intersect (or have a NaN coordinate) never suppress, whatever thr is.
inline bool iouOver(const Box& a, const Box& b, double thr) {
  const double ax1 = a.x1, ay1 = a.y1, ax2 = a.x2, ay2 = a.y2, bx1 = b.x1, by1 = b.y1, bx2 = b.x2, by2 = b.y2;
  if (ax1 != ax1 || ay1 != ay1 || ax2 != ax2 || ay2 != ay2 || bx1 != bx1 || by1 != by1 || bx2 != bx2 || by2 != by2)
    return false;
  const double iw = std::min(ax2, bx2) - std::max(ax1, bx1);
  const double ih = std::min(ay2, by2) - std::max(ay1, by1);
  if (!(iw > 0 && ih > 0)) return false;
  const double inter = iw * ih;
  const double uni = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter;
  return (uni > 0 ? inter / uni : 0) > thr;
}

// Per-thread scratch reused across calls (no allocation or page faults per call once warm).
struct Work {
  // Live active candidates in index order, structure of arrays (nms_scan.h).
  std::vector<float> x1, y1, x2, y2, area, score;
  std::vector<int32_t> id, cls;
  std::vector<uint16_t> alive;  // live lanes per block of slots
  std::vector<int32_t> inert, kept, order;
  std::vector<uint32_t> hist, key;
  std::vector<uint64_t> rank, rank2;
  std::vector<double> g;  // grid phase: x1, y1, x2, y2, area
  std::vector<int32_t> head, tail, next, entry, stamp, last, wide, all, gcls;
  std::vector<uint8_t> ginert;
  void reserve(int n) {
    const size_t s = static_cast<size_t>(n) + 16;  // SIMD passes read and write whole vectors
    if (x1.size() >= s) return;
    for (auto* v : {&x1, &y1, &x2, &y2, &area, &score}) v->resize(s);
    for (auto* v : {&id, &cls, &inert, &kept, &order}) v->resize(s);
    alive.resize(s / 8 + 1);
  }
};

// Per-thread scratch, kept between calls up to this many boxes (a few MB); larger calls use their own.
constexpr int kCachedBoxes = 1 << 16;

Work& work() {
  thread_local Work w;
  return w;
}

// Sorts idx[0, m) (ascending indices) by score descending; equal scores keep index order. LSD
// radix sort (stable) of (key, index) pairs for large inputs: three 11-bit digits counted in one
// pass, and a digit every key shares costs no pass.
void sortByScore(Work& w, const float* scores, int32_t* idx, int m) {
  if (m < 2) return;
  if (m < 256) {
    std::stable_sort(idx, idx + m, [&](int32_t a, int32_t b) { return descKey(scores[a]) < descKey(scores[b]); });
    return;
  }
  w.rank.resize(static_cast<size_t>(m)), w.rank2.resize(static_cast<size_t>(m));
  w.hist.assign(3 * 2048, 0);
  uint64_t* __restrict a = w.rank.data();
  uint64_t* __restrict b = w.rank2.data();
  uint32_t* __restrict h = w.hist.data();
  for (int i = 0; i < m; i++) {
    const uint32_t k = descKey(scores[idx[i]]);
    a[i] = static_cast<uint64_t>(k) << 32 | static_cast<uint32_t>(idx[i]);
    h[k & 2047u]++, h[2048 + ((k >> 11) & 2047u)]++, h[4096 + (k >> 22)]++;
  }
  for (int pass = 0; pass < 3; pass++, h += 2048) {
    const int shift = 32 + 11 * pass;
    if (h[(a[0] >> shift) & 2047u] == static_cast<uint32_t>(m)) continue;
    uint32_t sum = 0;
    for (int d = 0; d < 2048; d++) {
      const uint32_t c = h[d];
      h[d] = sum;
      sum += c;
    }
    for (int i = 0; i < m; i++) {
      const uint64_t v = a[i];
      b[h[(v >> shift) & 2047u]++] = v;
    }
    std::swap(a, b);
  }
  for (int i = 0; i < m; i++) idx[i] = static_cast<int32_t>(static_cast<uint32_t>(a[i]));
}

// Moves to the front of ids[0, m) (ascending indices) at least the k best-ranked candidates and
// returns how many it moved; both parts stay in index order. A histogram of score keys finds the
// cut in three linear passes, so a maxOutput-bound call sorts a head of the list, not all of it.
int selectBest(Work& w, const float* scores, int32_t* ids, int m, int k) {
  if (k >= m) return m;
  w.key.resize(static_cast<size_t>(m));
  uint32_t* key = w.key.data();
  uint32_t lo = UINT32_MAX, hi = 0;
  for (int i = 0; i < m; i++) {
    key[i] = descKey(scores[ids[i]]);
    lo = std::min(lo, key[i]), hi = std::max(hi, key[i]);
  }
  int shift = 0;
  while (((hi - lo) >> shift) >= 1024) shift++;
  w.hist.assign(1024, 0);
  for (int i = 0; i < m; i++) w.hist[(key[i] - lo) >> shift]++;
  uint32_t cut = 0, sum = w.hist[0];
  while (sum < static_cast<uint32_t>(k)) sum += w.hist[++cut];
  if (sum == static_cast<uint32_t>(m)) return m;
  int32_t* rest = w.order.data();
  int front = 0, back = 0;
  for (int i = 0; i < m; i++) {
    if (((key[i] - lo) >> shift) <= cut) ids[front++] = ids[i];
    else rest[back++] = ids[i];
  }
  std::copy(rest, rest + back, ids + front);
  return front;
}

}  // namespace
}  // namespace xk

#include "nms_scan.h"  // collect() (nms_collect.h) and suppressForward()

namespace xk {
namespace {

// Greedy NMS over candidates order[0, m) (index order; it sorts them by rank), appending kept ones
// to w.kept until it holds `limit`. Boxes kept by suppress-forward before (w.kept on entry) rank above all of these
// and were already tested against each of them, so they take no part here. Inert candidates (only
// where collect() did not set them apart) are kept and never indexed.
// A uniform grid over the kept boxes: a candidate only meets kept boxes sharing a cell with it,
// which is every box it can intersect (IoU > thr >= 0 needs a positive intersection). Cells about
// one mean box wide, at most 128 per axis; a box spanning over 64 cells goes on a list everyone
// checks.
template <bool Aware>
void sortedPhase(Work& w, const NmsParams& p, int32_t* order, int m, size_t limit) {
  const double thr = p.iouThreshold;
  const int t = m;
  w.g.resize(static_cast<size_t>(t) * 5), w.gcls.resize(static_cast<size_t>(t)), w.ginert.resize(static_cast<size_t>(t));
  double *x1 = w.g.data(), *y1 = x1 + t, *x2 = y1 + t, *y2 = x2 + t, *area = y2 + t;
  int32_t* cls = w.gcls.data();
  uint8_t* inert = w.ginert.data();
  double minX = INFINITY, minY = INFINITY, maxX = -INFINITY, maxY = -INFINITY, sumW = 0, sumH = 0;
  int nActive = 0;
  // Rank order: the best `first` ids sorted now, the rest only once the loop gets there (few kept
  // boxes wanted: a maxOutput). Grid bounds come from the first part; any bounds are correct.
  const size_t want = limit - w.kept.size();
  const int first = want < static_cast<size_t>(m) / 4 ? selectBest(w, p.scores, order, m, static_cast<int>(2 * want + 256)) : m;
  auto load = [&](int from, int to) {
    sortByScore(w, p.scores, order + from, to - from);
    for (int j = from; j < to; j++) {
      const int32_t i = order[j];
      const Box b = boxAt(p.boxes, i);
      x1[j] = b.x1, y1[j] = b.y1, x2[j] = b.x2, y2[j] = b.y2;
      area[j] = (x2[j] - x1[j]) * (y2[j] - y1[j]);
      cls[j] = Aware ? p.classes[i] : 0;
      inert[j] = !(x2[j] > x1[j] && y2[j] > y1[j] && std::isfinite(x1[j]) && std::isfinite(y1[j]) && std::isfinite(x2[j]) && std::isfinite(y2[j]));
      if (inert[j] || from > 0) continue;
      nActive++;
      minX = std::min(minX, x1[j]), maxX = std::max(maxX, x2[j]);
      minY = std::min(minY, y1[j]), maxY = std::max(maxY, y2[j]);
      sumW += x2[j] - x1[j], sumH += y2[j] - y1[j];
    }
  };
  load(0, first);
  // Same class (or agnostic) and IoU > thr; the operation order of iouOver() (both boxes active).
  auto suppressedBy = [&](int i, int k) {
    if (Aware && cls[i] != cls[k]) return false;
    const double iw = std::min(x2[k], x2[i]) - std::max(x1[k], x1[i]);
    const double ih = std::min(y2[k], y2[i]) - std::max(y1[k], y1[i]);
    if (!(iw > 0 && ih > 0)) return false;
    const double inter = iw * ih;
    const double uni = area[k] + area[i] - inter;
    return (uni > 0 ? inter / uni : 0) > thr;
  };
  if (m <= 64 || nActive == 0) {  // the textbook loop over kept boxes
    std::vector<int32_t>& kp = w.all;
    kp.clear();
    for (int i = 0; i < t && w.kept.size() < limit; i++) {
      if (i == first) load(first, t);
      bool drop = false;
      for (size_t a = 0; a < kp.size() && !inert[i] && !drop; a++) drop = suppressedBy(i, kp[a]);
      if (drop) continue;
      if (!inert[i]) kp.push_back(i);
      w.kept.push_back(order[i]);
    }
    return;
  }
  const double cw = std::max(sumW / nActive, (maxX - minX) / 128), ch = std::max(sumH / nActive, (maxY - minY) / 128);
  const int gx = std::max(1, std::min(128, static_cast<int>(std::ceil((maxX - minX) / cw))));
  const int gy = std::max(1, std::min(128, static_cast<int>(std::ceil((maxY - minY) / ch))));
  // Any monotone coordinate -> cell map keeps intersecting boxes in a shared cell; multiply, don't divide.
  const double icw = 1 / cw, ich = 1 / ch;
  auto cellX = [&](double x) { return std::max(0, std::min(gx - 1, static_cast<int>((x - minX) * icw))); };
  auto cellY = [&](double y) { return std::max(0, std::min(gy - 1, static_cast<int>((y - minY) * ich))); };
  // Per cell a list in insertion order (head/tail/next): older kept boxes score higher and are the
  // likeliest to suppress, so they are tried first.
  const size_t cells = static_cast<size_t>(gx) * gy;
  w.head.assign(cells, -1), w.tail.assign(cells, -1), w.last.assign(cells, -1);
  w.next.clear(), w.entry.clear(), w.wide.clear(), w.all.clear();
  w.stamp.assign(static_cast<size_t>(t), -1);
  int32_t *head = w.head.data(), *tail = w.tail.data(), *stamp = w.stamp.data(), *lastSuppressor = w.last.data();
  const int32_t *next = nullptr, *entry = nullptr;
  auto insert = [&](int k) {
    const int cx0 = cellX(x1[k]), cx1 = cellX(x2[k]), cy0 = cellY(y1[k]), cy1 = cellY(y2[k]);
    w.all.push_back(k);
    if (static_cast<int64_t>(cx1 - cx0 + 1) * (cy1 - cy0 + 1) > 64) {
      w.wide.push_back(k);
      return;
    }
    for (int y = cy0; y <= cy1; y++)
      for (int x = cx0; x <= cx1; x++) {
        const size_t c = static_cast<size_t>(y) * gx + x;
        const int32_t e = static_cast<int32_t>(w.entry.size());
        w.entry.push_back(k), w.next.push_back(-1);
        if (tail[c] < 0) head[c] = e;
        else w.next[static_cast<size_t>(tail[c])] = e;
        tail[c] = e;
      }
    next = w.next.data(), entry = w.entry.data();  // the walk below reads through plain pointers
  };
  // Per cell, the kept box that last suppressed a candidate centred there: on clustered input (a
  // detector head's duplicates) it nearly always suppresses the next one too, so one IoU test
  // replaces the cell walk. Checking one extra kept box first never changes the greedy result.
  for (int i = 0; i < t && w.kept.size() < limit; i++) {
    if (i == first) load(first, t);
    if (inert[i]) {
      w.kept.push_back(order[i]);
      continue;
    }
    const size_t centre = static_cast<size_t>(cellY(0.5 * (y1[i] + y2[i]))) * gx + cellX(0.5 * (x1[i] + x2[i]));
    const int hint = lastSuppressor[centre];
    if (hint >= 0 && suppressedBy(i, hint)) continue;
    const int cx0 = cellX(x1[i]), cx1 = cellX(x2[i]), cy0 = cellY(y1[i]), cy1 = cellY(y2[i]);
    const bool isWide = static_cast<int64_t>(cx1 - cx0 + 1) * (cy1 - cy0 + 1) > 64;
    bool drop = false;
    // A wide candidate checks every kept box (walking its many cells would cost more).
    for (int k : isWide ? w.all : w.wide)
      if (suppressedBy(i, k)) {
        drop = true;
        lastSuppressor[centre] = k;
        break;
      }
    for (int y = cy0; y <= cy1 && !drop && !isWide; y++)
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
    w.kept.push_back(order[i]);
    insert(i);
  }
}

// The textbook loop over every candidate, any threshold (used only outside [0, 1], where the
// faster paths' "no intersection, no suppression" shortcut does not hold).
int textbook(Work& w, const NmsParams& p, int32_t* keep, int maxOut) {
  int m = 0;
  for (int i = 0; i < p.n; i++) {
    const float s = p.scores[i];
    if (s == s && static_cast<double>(s) >= p.scoreThreshold) w.order[static_cast<size_t>(m++)] = i;
  }
  sortByScore(w, p.scores, w.order.data(), m);
  if (p.preTopK >= 0) m = std::min(m, p.preTopK);
  int kept = 0;
  for (int a = 0; a < m && kept < maxOut; a++) {
    const int32_t i = w.order[static_cast<size_t>(a)];
    const Box bi = boxAt(p.boxes, i);
    bool drop = false;
    for (int j = 0; j < kept && !drop; j++) {
      const int32_t k = keep[j];
      const Box bk = boxAt(p.boxes, k);
      // As the portable loop: only kept boxes with positive width and height suppress.
      drop = bk.x2 > bk.x1 && bk.y2 > bk.y1 && (!p.classes || p.classes[k] == p.classes[i]) && iouOver(bk, bi, p.iouThreshold);
    }
    if (!drop) keep[kept++] = i;
  }
  return kept;
}

}  // namespace

int nms(const NmsParams& p, int32_t* keep) {
  if (p.n < 0) throw KernelError("box count is negative");
  if (p.n == 0) return 0;
  if (!p.boxes || !p.scores || !keep) throw KernelError("nms buffers are null");
  Work own;
  Work& w = p.n <= kCachedBoxes ? work() : own;
  w.reserve(p.n);
  const int maxOut = p.maxOutput < 0 ? p.n : std::min(p.n, p.maxOutput);
  if (maxOut == 0) return 0;
  const double thr = p.iouThreshold;
  if (!(thr >= 0 && thr <= 1)) return textbook(w, p, keep, maxOut);
  // Candidates: live active boxes (w.x1 ... in index order) and inert ones (w.inert); without a
  // SIMD pass, all of them in w.id.
  int nInert = 0;
  bool floatSafe = false;
  const int nLive = collect(w, p, &nInert, &floatSafe);
  w.kept.clear();
  // Suppress-forward while it pays; the live boxes left (index order) go to the sorted phase.
  const int left = floatSafe ? suppressForward(w, p, nLive, static_cast<size_t>(maxOut)) : nLive;
  if (left > 0 && w.kept.size() < static_cast<size_t>(maxOut)) {
    if (p.classes) sortedPhase<true>(w, p, w.id.data(), left, static_cast<size_t>(maxOut));
    else sortedPhase<false>(w, p, w.id.data(), left, static_cast<size_t>(maxOut));
  }
  // Merge the kept active boxes (rank order) with the inert ones by rank.
  sortByScore(w, p.scores, w.inert.data(), nInert);
  const int32_t *a = w.kept.data(), *b = w.inert.data();
  const int na = static_cast<int>(w.kept.size()), nb = nInert;
  int ia = 0, ib = 0, out = 0;
  while (out < maxOut && (ia < na || ib < nb)) {
    if (ib == nb || (ia < na && rankKey(p.scores, a[ia]) < rankKey(p.scores, b[ib]))) keep[out++] = a[ia++];
    else keep[out++] = b[ib++];
  }
  return out;
}

}  // namespace xk
