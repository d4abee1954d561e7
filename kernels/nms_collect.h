// Part of nms.cc (included by it, after the shared helpers): collecting the candidates.
//
// One pass over the input sets apart inert boxes (never suppressed, never suppressing: merged by
// rank at the end) and writes the active ones, in index order, as the float structure of arrays
// the suppress-forward passes (nms_scan.h) work on. With AVX-512 or AVX2 it runs 16 or 8 boxes at
// a time; the score test there is s >= f in float, f the least float >= scoreThreshold, which is
// the contract's double test exactly.
#pragma once

#include <type_traits>

// SIMD passes with GCC-style intrinsics (GCC, Clang) on x86: AVX-512 and AVX2 versions are both
// compiled, each with its own target attribute (the file itself is built for the baseline), and
// xk::simdSupport() picks one at run time; without either every candidate goes through the sorted
// phase. XPKG_NATIVE_SIMD=baseline|avx2 caps the choice (an older CPU, for tests).
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define XK_NMS_X86 1
#include <immintrin.h>
#define XK_TARGET_AVX2 __attribute__((target("avx2,popcnt")))
#define XK_TARGET_AVX512 __attribute__((target("avx512f,avx2,popcnt")))
#endif

#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 reports _mm512_undefined_ps() inside _mm512_min_ps/_mm512_max_ps as maybe-uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace xk {
namespace {

#if defined(XK_NMS_X86)
// Lane permutation that moves the lanes set in a mask to the front, as 8 byte indices.
struct CompactTable {
  uint64_t v[256];
  constexpr CompactTable() : v() {
    for (int m = 0; m < 256; m++)
      for (int b = 0, k = 0; b < 8; b++)
        if (m >> b & 1) v[m] |= static_cast<uint64_t>(b) << (8 * k++);
  }
};
constexpr CompactTable kCompact{};

XK_TARGET_AVX2 inline __m256i compactPerm(int m) { return _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(kCompact.v[m]))); }
#endif

// The SIMD level NMS runs at: 2 AVX-512, 1 AVX2, 0 none (scalar and the sorted phase only).
inline int nmsSimd() {
#if defined(XK_NMS_X86)
  return simdSupport();
#else
  return 0;
#endif
}

constexpr float kMaxCoord = 1152921504606846976.0f;  // 2^60: float areas and sums cannot overflow
constexpr float kMinCoord = 9.53674316e-07f;         // 2^-20: see collect()

#if defined(XK_NMS_X86)
// The block passes of collect(): candidates [0, returned index) in blocks of 16 or 8.
XK_TARGET_AVX512 int collect512(Work& w, const NmsParams& p, float f, int& nl, int& ni, bool& safe) {
  int i = 0;
  // 16 boxes at a time, deinterleaved by permutes.
  const __m512 sf = _mm512_set1_ps(f), big = _mm512_set1_ps(kMaxCoord), inf = _mm512_set1_ps(INFINITY), tiny = _mm512_set1_ps(kMinCoord);
  const __m512i ix = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 2, 6, 10, 14, 18, 22, 26, 30);
  const __m512i iy = _mm512_add_epi32(ix, _mm512_set1_epi32(1));
  const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
  const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (; i + 16 <= p.n; i += 16) {
    const float* b = p.boxes + static_cast<int64_t>(i) * 4;
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), b2 = _mm512_loadu_ps(b + 32), b3 = _mm512_loadu_ps(b + 48);
    const __m512 xa = _mm512_permutex2var_ps(b0, ix, b1), xb = _mm512_permutex2var_ps(b2, ix, b3);
    const __m512 ya = _mm512_permutex2var_ps(b0, iy, b1), yb = _mm512_permutex2var_ps(b2, iy, b3);
    const __m512 a0 = _mm512_permutex2var_ps(xa, lo, xb), a2 = _mm512_permutex2var_ps(xa, hi, xb);
    const __m512 a1 = _mm512_permutex2var_ps(ya, lo, yb), a3 = _mm512_permutex2var_ps(ya, hi, yb);
    // min_ps(a, b) is a < b ? a : b and max_ps(a, b) is a > b ? a : b: boxAt() exactly.
    const __m512 x1 = _mm512_min_ps(a0, a2), x2 = _mm512_max_ps(a2, a0);
    const __m512 y1 = _mm512_min_ps(a1, a3), y2 = _mm512_max_ps(a3, a1);
    const __m512 s = _mm512_loadu_ps(p.scores + i);
    const __mmask16 ok = _mm512_cmp_ps_mask(s, sf, _CMP_GE_OQ);
    __mmask16 act = _mm512_mask_cmp_ps_mask(ok, x2, x1, _CMP_GT_OQ);
    act = _mm512_mask_cmp_ps_mask(act, y2, y1, _CMP_GT_OQ);
    __mmask16 fin = act, small = act;
    for (const __m512 c : {x1, y1, x2, y2}) {
      const __m512 m = _mm512_abs_ps(c);  // AVX-512F (and_ps would need DQ)
      fin = _mm512_mask_cmp_ps_mask(fin, m, inf, _CMP_LT_OQ);
      small = _mm512_mask_cmp_ps_mask(small, m, big, _CMP_LE_OQ);
      small &= _mm512_cmp_ps_mask(m, tiny, _CMP_GE_OQ) | _mm512_cmp_ps_mask(m, _mm512_setzero_ps(), _CMP_EQ_OQ);
    }
    act = fin;
    safe = safe && small == fin;
    const __m512i id = _mm512_add_epi32(iota, _mm512_set1_epi32(i));
    _mm512_mask_compressstoreu_epi32(w.inert.data() + ni, ok & ~act, id);
    ni += __builtin_popcount(ok & ~act);
    if (!act) continue;
    _mm512_mask_compressstoreu_ps(w.x1.data() + nl, act, x1);
    _mm512_mask_compressstoreu_ps(w.y1.data() + nl, act, y1);
    _mm512_mask_compressstoreu_ps(w.x2.data() + nl, act, x2);
    _mm512_mask_compressstoreu_ps(w.y2.data() + nl, act, y2);
    _mm512_mask_compressstoreu_ps(w.area.data() + nl, act, _mm512_mul_ps(_mm512_sub_ps(x2, x1), _mm512_sub_ps(y2, y1)));
    _mm512_mask_compressstoreu_ps(w.score.data() + nl, act, s);
    _mm512_mask_compressstoreu_epi32(w.id.data() + nl, act, id);
    const __m512i c = p.classes ? _mm512_loadu_si512(p.classes + i) : _mm512_setzero_si512();
    _mm512_mask_compressstoreu_epi32(w.cls.data() + nl, act, c);
    nl += __builtin_popcount(act);
  }
  return i;
}

XK_TARGET_AVX2 int collect256(Work& w, const NmsParams& p, float f, int& nl, int& ni, bool& safe) {
  int i = 0;
  // 8 boxes at a time: a 4x4 transpose per 128-bit half, then boxes back in order; survivors are
  // moved to the front by a permutation and stored as whole vectors (the arrays have slack).
  const __m256 sf = _mm256_set1_ps(f), big = _mm256_set1_ps(kMaxCoord), inf = _mm256_set1_ps(INFINITY), tiny = _mm256_set1_ps(kMinCoord);
  const __m256 signless = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), zero = _mm256_setzero_ps();
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (; i + 8 <= p.n; i += 8) {
    const float* b = p.boxes + static_cast<int64_t>(i) * 4;
    const __m256 r0 = _mm256_loadu_ps(b), r1 = _mm256_loadu_ps(b + 8), r2 = _mm256_loadu_ps(b + 16), r3 = _mm256_loadu_ps(b + 24);
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    const __m256 a0 = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)), order);
    const __m256 a1 = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)), order);
    const __m256 a2 = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)), order);
    const __m256 a3 = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)), order);
    const __m256 x1 = _mm256_min_ps(a0, a2), x2 = _mm256_max_ps(a2, a0);  // as boxAt()
    const __m256 y1 = _mm256_min_ps(a1, a3), y2 = _mm256_max_ps(a3, a1);
    const __m256 s = _mm256_loadu_ps(p.scores + i);
    __m256 fin = _mm256_and_ps(_mm256_cmp_ps(x2, x1, _CMP_GT_OQ), _mm256_cmp_ps(y2, y1, _CMP_GT_OQ)), small = fin;
    for (const __m256 c : {x1, y1, x2, y2}) {
      const __m256 m = _mm256_and_ps(c, signless);
      fin = _mm256_and_ps(fin, _mm256_cmp_ps(m, inf, _CMP_LT_OQ));
      small = _mm256_and_ps(small, _mm256_and_ps(_mm256_cmp_ps(m, big, _CMP_LE_OQ),
                                                 _mm256_or_ps(_mm256_cmp_ps(m, tiny, _CMP_GE_OQ), _mm256_cmp_ps(m, zero, _CMP_EQ_OQ))));
    }
    const int ok = _mm256_movemask_ps(_mm256_cmp_ps(s, sf, _CMP_GE_OQ));
    const int act = ok & _mm256_movemask_ps(fin), inert = ok & ~act;
    safe = safe && (act & ~_mm256_movemask_ps(small)) == 0;
    const __m256i id = _mm256_add_epi32(iota, _mm256_set1_epi32(i));
    if (inert) _mm256_storeu_si256(reinterpret_cast<__m256i*>(w.inert.data() + ni), _mm256_permutevar8x32_epi32(id, compactPerm(inert)));
    ni += __builtin_popcount(static_cast<unsigned>(inert));
    if (!act) continue;
    const __m256i perm = compactPerm(act);
    const __m256i c = p.classes ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.classes + i)) : _mm256_setzero_si256();
    _mm256_storeu_ps(w.x1.data() + nl, _mm256_permutevar8x32_ps(x1, perm));
    _mm256_storeu_ps(w.y1.data() + nl, _mm256_permutevar8x32_ps(y1, perm));
    _mm256_storeu_ps(w.x2.data() + nl, _mm256_permutevar8x32_ps(x2, perm));
    _mm256_storeu_ps(w.y2.data() + nl, _mm256_permutevar8x32_ps(y2, perm));
    _mm256_storeu_ps(w.area.data() + nl, _mm256_permutevar8x32_ps(_mm256_mul_ps(_mm256_sub_ps(x2, x1), _mm256_sub_ps(y2, y1)), perm));
    _mm256_storeu_ps(w.score.data() + nl, _mm256_permutevar8x32_ps(s, perm));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(w.id.data() + nl), _mm256_permutevar8x32_epi32(id, perm));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(w.cls.data() + nl), _mm256_permutevar8x32_epi32(c, perm));
    nl += __builtin_popcount(static_cast<unsigned>(act));
  }
  return i;
}

#endif

// Candidates with a non-NaN score >= scoreThreshold (and among the best preTopK): active boxes go
// to the live arrays, inert ones to w.inert, both in index order. *floatSafe: a SIMD pass exists
// and every active coordinate c is 0 or 2^-20 <= |c| <= 2^60. Such floats are multiples of 2^-43,
// so a positive intersection is at least 2^-43 wide and high, and its float area (>= 2^-86), the
// union and thr * union (thr >= 2^-20) are normal floats: no underflow, and no overflow either.
int collect(Work& w, const NmsParams& p, int* nInert, bool* floatSafe) {
  const int simd = nmsSimd();
  const bool forward = simd > 0;
  uint64_t cutoff = UINT64_MAX;  // rank keys above it are past preTopK
  const double st = p.scoreThreshold;
  if (p.preTopK >= 0 && p.preTopK < p.n) {
    w.rank.clear();
    for (int i = 0; i < p.n; i++) {
      const float s = p.scores[i];
      if (s == s && static_cast<double>(s) >= st) w.rank.push_back(rankKey(p.scores, i));
    }
    if (w.rank.size() > static_cast<size_t>(p.preTopK)) {
      if (p.preTopK == 0) return *nInert = 0;
      std::nth_element(w.rank.begin(), w.rank.begin() + (p.preTopK - 1), w.rank.end());
      cutoff = w.rank[static_cast<size_t>(p.preTopK - 1)];
    }
  }
  int nl = 0, ni = 0;
  bool safe = true;
  auto one = [&](int i) {
    const float s = p.scores[i];
    if (!(s == s && static_cast<double>(s) >= st) || (cutoff != UINT64_MAX && rankKey(p.scores, i) > cutoff)) return;
    if (!forward) {  // the sorted phase sets inert boxes apart itself
      w.id[static_cast<size_t>(nl++)] = i;
      return;
    }
    const Box b = boxAt(p.boxes, i);
    if (!(b.x2 > b.x1 && b.y2 > b.y1 && std::isfinite(b.x1) && std::isfinite(b.y1) && std::isfinite(b.x2) && std::isfinite(b.y2))) {
      w.inert[static_cast<size_t>(ni++)] = i;
      return;
    }
    const size_t j = static_cast<size_t>(nl++);
    w.id[j] = i;
    for (const float c : {b.x1, b.y1, b.x2, b.y2}) safe = safe && std::fabs(c) <= kMaxCoord && (c == 0 || std::fabs(c) >= kMinCoord);
    w.x1[j] = b.x1, w.y1[j] = b.y1, w.x2[j] = b.x2, w.y2[j] = b.y2;
    w.area[j] = (b.x2 - b.x1) * (b.y2 - b.y1);
    w.score[j] = s, w.cls[j] = p.classes ? p.classes[i] : 0;
  };
  // The score test in float: s >= f, f the least float >= the threshold (NaN fails both ways).
  float f = static_cast<float>(st);
  if (static_cast<double>(f) < st) f = std::nextafter(f, INFINITY);
  const bool blocks = cutoff == UINT64_MAX && st == st;
  int i = 0;
#if defined(XK_NMS_X86)
  if (blocks && simd == 2) i = collect512(w, p, f, nl, ni, safe);
  else if (blocks && simd == 1) i = collect256(w, p, f, nl, ni, safe);
#endif
  (void)f, (void)blocks;
  for (; i < p.n; i++) one(i);
  *nInert = ni;
  *floatSafe = forward && safe;
  return nl;
}

}  // namespace
}  // namespace xk

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
