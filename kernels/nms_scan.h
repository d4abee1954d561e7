// Part of nms.cc (included by it, after nms_collect.h): the suppress-forward phase.
//
// Suppress-forward keeps the live active candidates in index order, structure of arrays in float
// (the inputs are float; every double the contract computes is a converted float). A pass takes
// the best live box (score descending, index ascending: the argmax of the previous pass), drops
// every live box it suppresses and finds the next best; greedy NMS in rank order gives the same
// kept list (a box is only ever suppressed by a better kept box). The cost is the sum of the live
// counts, small when each kept box sweeps up many candidates (a detector head's clustered
// duplicates), and no sort is needed; when passes stop paying (spread-out input) the rest goes to
// the sorted grid phase. Each live box left there has been tested against every box kept here.
//
// Per lane the IoU test runs in float without a division: for intersecting boxes it compares
// A = inter against B = thr * union; with coordinates on collect()'s grid no float underflows or
// overflows, so A has relative error <= 3u and B <= 14u (u = 2^-24: a handful of roundings; the
// union is well conditioned as it is at least the larger area). A lane is decided only where A
// and B differ by more than 2^-16 relatively, then the true ratio is beyond thr by more than
// 2^-17 relatively, and the contract's double quotient, within 2^-49 of the true ratio, lies on
// the same side of thr. Lanes in between (and every lane when 0 < thr < 2^-20) get the exact
// double test, iouOver(). Whether two boxes intersect at all is exact in float: a difference of
// two floats has the true sign.
#pragma once

#include "nms_collect.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // see nms_collect.h
#endif

namespace xk {
namespace {

#if defined(XK_NMS_X86)

// The kept box of a pass. Modes of the IoU test: 0 thr == 0 (suppressed iff intersecting);
// 1 the float margin test (thr in [2^-20, 1)); 2 every intersecting lane exact (0 < thr < 2^-20);
// 3 as 1 for thr >= 1, which also has to skip the kept box itself (below 1 its IoU of 1 drops it).
struct Pivot {
  Box box;
  float area;
  int32_t id, cls;
};

inline bool exactLane(const NmsParams& p, const Pivot& k, int32_t i) { return iouOver(k.box, boxAt(p.boxes, i), p.iouThreshold); }

// Compaction runs once over 1/kCompactDead of the slots are dead.
constexpr int kCompactDead = 3;

// Highest score, lowest index among per-lane bests (NaN: lane saw no survivor).
inline void pickBest(const float* bv, const int32_t* bx, int lanes, float* bs, int32_t* bi) {
  int at = -1;
  for (int j = 0; j < lanes; j++)
    if (bv[j] == bv[j] && (at < 0 || bv[j] > bv[at] || (bv[j] == bv[at] && bx[j] < bx[at]))) at = j;
  *bs = bv[at], *bi = bx[at];
}

// Marks slots [0, n) live and the rest of their last block dead (kLanes: 16 AVX-512, 8 AVX2).
template <int kLanes>
inline void resetAlive(Work& w, int n) {
  uint16_t* a = w.alive.data();
  for (int b = 0; b < n / kLanes; b++) a[b] = static_cast<uint16_t>((1u << kLanes) - 1);
  if (n % kLanes) a[n / kLanes] = static_cast<uint16_t>((1u << (n % kLanes)) - 1);
}

// A pass marks the live boxes k suppresses dead in w.alive (a lane mask per block of kLanes slots)
// and finds the best survivor (*bs, *bi); it returns the live count. Dead slots cost a little
// until a compacting pass (Compact) moves the survivors to the front, in order (writes never pass
// reads), so compaction, the dearest part, runs only when enough slots are dead.
template <bool Aware, int Mode, bool Compact>
XK_TARGET_AVX512 int pass512(Work& w, const NmsParams& p, int len, const Pivot& k, float* bs, int32_t* bi) {
  float *X1 = w.x1.data(), *Y1 = w.y1.data(), *X2 = w.x2.data(), *Y2 = w.y2.data(), *AR = w.area.data(), *S = w.score.data();
  int32_t *ID = w.id.data(), *CL = w.cls.data();
  uint16_t* alive = w.alive.data();
  const __m512 kx1 = _mm512_set1_ps(k.box.x1), ky1 = _mm512_set1_ps(k.box.y1), kx2 = _mm512_set1_ps(k.box.x2), ky2 = _mm512_set1_ps(k.box.y2);
  const __m512 kar = _mm512_set1_ps(k.area), zero = _mm512_setzero_ps();
  const __m512 thr = _mm512_set1_ps(static_cast<float>(p.iouThreshold));
  const __m512 up = _mm512_set1_ps(1 + 1.0f / 65536), down = _mm512_set1_ps(1 - 1.0f / 65536);
  const __m512i kid = _mm512_set1_epi32(k.id), kcl = _mm512_set1_epi32(k.cls);
  __m512 best = _mm512_set1_ps(NAN);
  __m512i bestI = _mm512_set1_epi32(INT32_MAX);
  int wp = 0;
  for (int r = 0; r < len; r += 16) {
    const __mmask16 v = alive[r / 16];
    if (!v) continue;
    const __m512 x1 = _mm512_loadu_ps(X1 + r), y1 = _mm512_loadu_ps(Y1 + r), x2 = _mm512_loadu_ps(X2 + r), y2 = _mm512_loadu_ps(Y2 + r);
    const __m512 iw = _mm512_sub_ps(_mm512_min_ps(x2, kx2), _mm512_max_ps(x1, kx1));
    const __m512 ih = _mm512_sub_ps(_mm512_min_ps(y2, ky2), _mm512_max_ps(y1, ky1));
    __mmask16 in = _mm512_mask_cmp_ps_mask(v, iw, zero, _CMP_GT_OQ);
    in = _mm512_mask_cmp_ps_mask(in, ih, zero, _CMP_GT_OQ);
    const __m512i id = _mm512_loadu_si512(ID + r);
    const __m512i cl = Aware ? _mm512_loadu_si512(CL + r) : _mm512_setzero_si512();
    if (Aware) in = _mm512_mask_cmpeq_epi32_mask(in, cl, kcl);
    __mmask16 sup = in;
    if (Mode != 0) {
      __mmask16 unsure = in;
      sup = 0;
      if (Mode != 2 && in) {
        const __m512 a = _mm512_mul_ps(iw, ih);
        const __m512 b = _mm512_mul_ps(thr, _mm512_sub_ps(_mm512_add_ps(kar, _mm512_loadu_ps(AR + r)), a));
        sup = _mm512_mask_cmp_ps_mask(in, a, _mm512_mul_ps(b, up), _CMP_GT_OQ);
        unsure = _mm512_mask_cmp_ps_mask(in & ~sup, a, _mm512_mul_ps(b, down), _CMP_GE_OQ);
      }
      for (unsigned u = unsure; u; u &= u - 1) {
        const int j = __builtin_ctz(u);
        if (exactLane(p, k, ID[r + j])) sup |= static_cast<__mmask16>(1u << j);
      }
    }
    __mmask16 keep = v & ~sup;
    if (Mode == 3) keep = _mm512_mask_cmpneq_epi32_mask(keep, id, kid);
    const __m512 s = _mm512_loadu_ps(S + r);
    if (Compact) {
      _mm512_mask_compressstoreu_ps(X1 + wp, keep, x1);
      _mm512_mask_compressstoreu_ps(Y1 + wp, keep, y1);
      _mm512_mask_compressstoreu_ps(X2 + wp, keep, x2);
      _mm512_mask_compressstoreu_ps(Y2 + wp, keep, y2);
      _mm512_mask_compressstoreu_ps(AR + wp, keep, _mm512_loadu_ps(AR + r));
      _mm512_mask_compressstoreu_ps(S + wp, keep, s);
      _mm512_mask_compressstoreu_epi32(ID + wp, keep, id);
      if (Aware) _mm512_mask_compressstoreu_epi32(CL + wp, keep, cl);
    } else {
      alive[r / 16] = keep;
    }
    // Per lane the first (lowest index) of the highest scores: NaN start, "not <=" replaces it.
    const __mmask16 better = _mm512_mask_cmp_ps_mask(keep, s, best, _CMP_NLE_UQ);
    best = _mm512_mask_mov_ps(best, better, s);
    bestI = _mm512_mask_mov_epi32(bestI, better, id);
    wp += __builtin_popcount(keep);
  }
  if (Compact) resetAlive<16>(w, wp);
  if (wp == 0) return 0;
  alignas(64) float bv[16];
  alignas(64) int32_t bx[16];
  _mm512_store_ps(bv, best);
  _mm512_store_si512(bx, bestI);
  pickBest(bv, bx, 16, bs, bi);
  return wp;
}
// AVX2: 8 lanes; masks as bits, compaction by a permutation from the table, full-vector stores
// (at wp <= r, so they only overwrite lanes already read).
template <bool Aware, int Mode, bool Compact>
XK_TARGET_AVX2 int pass256(Work& w, const NmsParams& p, int len, const Pivot& k, float* bs, int32_t* bi) {
  float *X1 = w.x1.data(), *Y1 = w.y1.data(), *X2 = w.x2.data(), *Y2 = w.y2.data(), *AR = w.area.data(), *S = w.score.data();
  int32_t *ID = w.id.data(), *CL = w.cls.data();
  uint16_t* alive = w.alive.data();
  const __m256 kx1 = _mm256_set1_ps(k.box.x1), ky1 = _mm256_set1_ps(k.box.y1), kx2 = _mm256_set1_ps(k.box.x2), ky2 = _mm256_set1_ps(k.box.y2);
  const __m256 kar = _mm256_set1_ps(k.area), zero = _mm256_setzero_ps();
  const __m256 thr = _mm256_set1_ps(static_cast<float>(p.iouThreshold));
  const __m256 up = _mm256_set1_ps(1 + 1.0f / 65536), down = _mm256_set1_ps(1 - 1.0f / 65536);
  const __m256i kid = _mm256_set1_epi32(k.id), kcl = _mm256_set1_epi32(k.cls);
  const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  __m256 best = _mm256_set1_ps(NAN);
  __m256i bestI = _mm256_set1_epi32(INT32_MAX);
  int wp = 0;
  for (int r = 0; r < len; r += 8) {
    const int v = alive[r / 8];
    if (!v) continue;
    const __m256 x1 = _mm256_loadu_ps(X1 + r), y1 = _mm256_loadu_ps(Y1 + r), x2 = _mm256_loadu_ps(X2 + r), y2 = _mm256_loadu_ps(Y2 + r);
    const __m256 iw = _mm256_sub_ps(_mm256_min_ps(x2, kx2), _mm256_max_ps(x1, kx1));
    const __m256 ih = _mm256_sub_ps(_mm256_min_ps(y2, ky2), _mm256_max_ps(y1, ky1));
    __m256 inv = _mm256_and_ps(_mm256_cmp_ps(iw, zero, _CMP_GT_OQ), _mm256_cmp_ps(ih, zero, _CMP_GT_OQ));
    const __m256i id = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ID + r));
    const __m256i cl = Aware ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(CL + r)) : _mm256_setzero_si256();
    if (Aware) inv = _mm256_and_ps(inv, _mm256_castsi256_ps(_mm256_cmpeq_epi32(cl, kcl)));
    const int in = _mm256_movemask_ps(inv) & v;
    int sup = in;
    if (Mode != 0) {
      int unsure = in;
      sup = 0;
      if (Mode != 2 && in) {
        const __m256 a = _mm256_mul_ps(iw, ih);
        const __m256 b = _mm256_mul_ps(thr, _mm256_sub_ps(_mm256_add_ps(kar, _mm256_loadu_ps(AR + r)), a));
        sup = in & _mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_mul_ps(b, up), _CMP_GT_OQ));
        unsure = in & ~sup & _mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_mul_ps(b, down), _CMP_GE_OQ));
      }
      for (unsigned u = static_cast<unsigned>(unsure); u; u &= u - 1) {
        const int j = __builtin_ctz(u);
        if (exactLane(p, k, ID[r + j])) sup |= 1 << j;
      }
    }
    int keep = v & ~sup;
    if (Mode == 3) keep &= ~_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(id, kid)));
    const __m256 s = _mm256_loadu_ps(S + r);
    if (Compact) {
      const __m256i perm = compactPerm(keep);
      _mm256_storeu_ps(X1 + wp, _mm256_permutevar8x32_ps(x1, perm));
      _mm256_storeu_ps(Y1 + wp, _mm256_permutevar8x32_ps(y1, perm));
      _mm256_storeu_ps(X2 + wp, _mm256_permutevar8x32_ps(x2, perm));
      _mm256_storeu_ps(Y2 + wp, _mm256_permutevar8x32_ps(y2, perm));
      _mm256_storeu_ps(AR + wp, _mm256_permutevar8x32_ps(_mm256_loadu_ps(AR + r), perm));
      _mm256_storeu_ps(S + wp, _mm256_permutevar8x32_ps(s, perm));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ID + wp), _mm256_permutevar8x32_epi32(id, perm));
      if (Aware) _mm256_storeu_si256(reinterpret_cast<__m256i*>(CL + wp), _mm256_permutevar8x32_epi32(cl, perm));
    } else {
      alive[r / 8] = static_cast<uint16_t>(keep);
    }
    const __m256 keepv = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(keep), lane), lane));
    const __m256 better = _mm256_and_ps(keepv, _mm256_cmp_ps(s, best, _CMP_NLE_UQ));
    best = _mm256_blendv_ps(best, s, better);
    bestI = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(bestI), _mm256_castsi256_ps(id), better));
    wp += __builtin_popcount(static_cast<unsigned>(keep));
  }
  if (Compact) resetAlive<8>(w, wp);
  if (wp == 0) return 0;
  alignas(32) float bv[8];
  alignas(32) int32_t bx[8];
  _mm256_store_ps(bv, best);
  _mm256_store_si256(reinterpret_cast<__m256i*>(bx), bestI);
  pickBest(bv, bx, 8, bs, bi);
  return wp;
}

// One pass at SIMD level L (2 AVX-512, 1 AVX2).
template <int L, bool Aware, int Mode, bool Compact>
inline int pass(Work& w, const NmsParams& p, int len, const Pivot& k, float* bs, int32_t* bi) {
  return L == 2 ? pass512<Aware, Mode, Compact>(w, p, len, k, bs, bi) : pass256<Aware, Mode, Compact>(w, p, len, k, bs, bi);
}

template <int L, bool Aware, int Mode>
int forwardLoop(Work& w, const NmsParams& p, int len, size_t limit) {
  constexpr int kLanes = L == 2 ? 16 : 8;
  resetAlive<kLanes>(w, len);
  // A first pass with a box that meets nothing finds the best candidate.
  Pivot k{{INFINITY, INFINITY, -INFINITY, -INFINITY}, 0, -1, 0};
  float bs = 0;
  int32_t bi = -1;
  int live = pass<L, Aware, Mode, false>(w, p, len, k, &bs, &bi);
  const int64_t m0 = len;
  int64_t spent = 0;
  int weak = 0;
  while (live > 0 && w.kept.size() < limit) {
    w.kept.push_back(bi);
    k.box = boxAt(p.boxes, bi);
    k.area = (k.box.x2 - k.box.x1) * (k.box.y2 - k.box.y1);
    k.id = bi, k.cls = p.classes ? p.classes[bi] : 0;
    const int before = live;
    spent += len;
    if ((len - live) * kCompactDead > len) {
      live = len = pass<L, Aware, Mode, true>(w, p, len, k, &bs, &bi);
    } else {
      live = pass<L, Aware, Mode, false>(w, p, len, k, &bs, &bi);
    }
    // Passes over a long list that sweep up little: the grid phase does better per candidate.
    if (before > 1024 && (before - live) * 64 < before) weak++;
    if (weak >= 2 || spent > 48 * m0 + 65536) break;
  }
  // The live ids, in order, to the front of w.id for the sorted phase.
  int n = 0;
  for (int r = 0; r < len; r += kLanes)
    for (unsigned u = w.alive[static_cast<size_t>(r / kLanes)]; u; u &= u - 1) w.id[static_cast<size_t>(n++)] = w.id[static_cast<size_t>(r + __builtin_ctz(u))];
  return n;
}

// Runs suppress-forward over the nLive live boxes, appending kept ones to w.kept (at most limit);
// returns how many live boxes are left (ids in w.id, index order) for the sorted phase.
int suppressForward(Work& w, const NmsParams& p, int nLive, size_t limit) {
  if (nLive == 0) return 0;
  const double thr = p.iouThreshold;
  const int mode = thr == 0 ? 0 : thr < 1.0 / (1 << 20) ? 2 : thr < 1 ? 1 : 3;
  auto run = [&](auto level, auto aware) {
    constexpr int L = decltype(level)::value;
    constexpr bool A = decltype(aware)::value;
    switch (mode) {
      case 0: return forwardLoop<L, A, 0>(w, p, nLive, limit);
      case 1: return forwardLoop<L, A, 1>(w, p, nLive, limit);
      case 2: return forwardLoop<L, A, 2>(w, p, nLive, limit);
      default: return forwardLoop<L, A, 3>(w, p, nLive, limit);
    }
  };
  using Avx512 = std::integral_constant<int, 2>;
  using Avx2 = std::integral_constant<int, 1>;
  if (nmsSimd() == 2) return p.classes ? run(Avx512(), std::true_type()) : run(Avx512(), std::false_type());
  return p.classes ? run(Avx2(), std::true_type()) : run(Avx2(), std::false_type());
}

#else
int suppressForward(Work&, const NmsParams&, int nLive, size_t) { return nLive; }
#endif

}  // namespace
}  // namespace xk

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
