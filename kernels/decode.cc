#include <algorithm>
#include <cmath>

#include "detect.h"

namespace xk {

namespace {

inline double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

struct Candidates {
  std::vector<float> boxes, scores;
  std::vector<int32_t> classes, anchors;
};

// The class sweep of attribute-major heads (classes x anchors, the hot loop) vectorises; the build
// targets a baseline CPU, so on x86 Linux GCC also compiles AVX2 and AVX-512 clones of it, picked
// once at load by CPU (ifunc). Compares and selects only: the result is the same on every clone.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define XK_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define XK_CLONES
#endif
XK_CLONES void sweepClasses(const float* d, int64_t n, int first, int nc, int a0, int len, float* best, int32_t* arg) {
  for (int c = 0; c < nc; c++) {
    const float* row = d + static_cast<int64_t>(first + c) * n + a0;
    for (int i = 0; i < len; i++)
      if (row[i] > best[i]) best[i] = row[i], arg[i] = c;
  }
}

// Best class and score of anchors [a0, a1) of one image, then box decode for those passing.
void decodeRange(const DecodeParams& p, const float* d, int a0, int a1, Candidates& out) {
  const int n = p.anchors, first = p.objectness ? 5 : 4, nc = p.attrs - first;
  const int len = a1 - a0;
  std::vector<float> best(static_cast<size_t>(len), -INFINITY);
  std::vector<int32_t> arg(static_cast<size_t>(len), 0);
  auto at = [&](int a, int c) -> float {
    return p.attrsFirst ? d[static_cast<int64_t>(c) * n + a] : d[static_cast<int64_t>(a) * p.attrs + c];
  };
  if (p.attrsFirst) {
    // Attribute-major: sweep each class row across the anchors (contiguous, vectorisable).
    sweepClasses(d, n, first, nc, a0, len, best.data(), arg.data());
  } else {
    for (int i = 0; i < len; i++) {
      const float* row = d + static_cast<int64_t>(a0 + i) * p.attrs + first;
      float b = -INFINITY;
      int k = 0;
      for (int c = 0; c < nc; c++)
        if (row[c] > b) b = row[c], k = c;
      best[i] = b, arg[i] = k;
    }
  }
  for (int i = 0; i < len; i++) {
    const int a = a0 + i;
    // Scores are rounded to float32 before the threshold, exactly as the portable code does.
    double s = p.sigmoid ? sigmoid(best[i]) : best[i];
    if (p.sigmoid) s = static_cast<float>(s);
    if (p.objectness) {
      const double obj = p.sigmoid ? static_cast<double>(static_cast<float>(sigmoid(at(a, 4)))) : at(a, 4);
      s = obj * s;
    }
    const float score = static_cast<float>(s);
    if (!(score == score) || !(static_cast<double>(score) >= p.scoreThreshold)) continue;
    double b0 = at(a, 0), b1 = at(a, 1), b2 = at(a, 2), b3 = at(a, 3);
    if (p.grid) {
      const float* g = p.grid + static_cast<int64_t>(a) * 5;
      const double tx = static_cast<float>(sigmoid(b0)), ty = static_cast<float>(sigmoid(b1));
      const double tw = static_cast<float>(sigmoid(b2)), th = static_cast<float>(sigmoid(b3));
      b0 = (tx * 2 - 0.5 + g[0]) * g[2];
      b1 = (ty * 2 - 0.5 + g[1]) * g[2];
      b2 = (tw * 2) * (tw * 2) * g[3];
      b3 = (th * 2) * (th * 2) * g[4];
    }
    double x1, y1, x2, y2;
    if (p.xyxy) {
      x1 = b0, y1 = b1, x2 = b2, y2 = b3;
    } else {
      x1 = b0 - b2 / 2, y1 = b1 - b3 / 2, x2 = b0 + b2 / 2, y2 = b1 + b3 / 2;
    }
    x1 = (x1 - p.padX) / p.scaleX, x2 = (x2 - p.padX) / p.scaleX;
    y1 = (y1 - p.padY) / p.scaleY, y2 = (y2 - p.padY) / p.scaleY;
    // Written as in the portable code (not std::min/max) so zero signs and NaN agree too.
    auto clamp = [](double v, double hi) { return v > 0 ? (v < hi ? v : hi) : 0.0; };
    if (p.clipWidth > 0) x1 = clamp(x1, p.clipWidth), x2 = clamp(x2, p.clipWidth);
    if (p.clipHeight > 0) y1 = clamp(y1, p.clipHeight), y2 = clamp(y2, p.clipHeight);
    out.boxes.insert(out.boxes.end(), {static_cast<float>(x1), static_cast<float>(y1), static_cast<float>(x2), static_cast<float>(y2)});
    out.scores.push_back(score);
    out.classes.push_back(arg[i]);
    out.anchors.push_back(a);
  }
}

}  // namespace

Detections decodeDetections(const DecodeParams& p) {
  const int first = p.objectness ? 5 : 4;
  if (p.batch < 0 || p.anchors < 0) throw KernelError("batch and anchors must be >= 0");
  // zero anchors is a real output (a detector whose in-graph NMS kept nothing): no data to point at
  if (!p.data && static_cast<int64_t>(p.batch) * p.anchors > 0) throw KernelError("detector output is null");
  if (p.attrs <= first) throw KernelError("detector output has no class scores");
  if (!(p.scaleX > 0) || !(p.scaleY > 0)) throw KernelError("letterbox scale must be positive");
  Detections det;
  det.counts.assign(static_cast<size_t>(p.batch), 0);
  std::vector<Detections> per(static_cast<size_t>(p.batch));
  // One image: split the anchors over threads; several images: one image per chunk.
  const int inner = p.batch == 1 ? p.threads : 1;
  parallelFor(p.batch, p.threads, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
      const float* d = p.data + b * static_cast<int64_t>(p.anchors) * p.attrs;
      const int parts = std::max(1, std::min(inner, p.anchors / 2048));
      std::vector<Candidates> cand(static_cast<size_t>(parts));
      parallelFor(parts, parts, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; c++)
          decodeRange(p, d, static_cast<int>(p.anchors * c / parts), static_cast<int>(p.anchors * (c + 1) / parts), cand[c]);
      });
      Candidates all;
      for (auto& c : cand) {
        all.boxes.insert(all.boxes.end(), c.boxes.begin(), c.boxes.end());
        all.scores.insert(all.scores.end(), c.scores.begin(), c.scores.end());
        all.classes.insert(all.classes.end(), c.classes.begin(), c.classes.end());
        all.anchors.insert(all.anchors.end(), c.anchors.begin(), c.anchors.end());
      }
      NmsParams q;
      q.boxes = all.boxes.data();
      q.scores = all.scores.data();
      q.classes = p.agnostic ? nullptr : all.classes.data();
      q.n = static_cast<int>(all.scores.size());
      q.iouThreshold = p.iouThreshold;
      q.scoreThreshold = -INFINITY;  // already applied
      q.preTopK = p.preTopK;
      q.maxOutput = p.maxOutput;
      std::vector<int32_t> keep(static_cast<size_t>(q.n));
      const int k = nms(q, keep.data());
      Detections& o = per[static_cast<size_t>(b)];
      for (int i = 0; i < k; i++) {
        const int j = keep[i];
        o.boxes.insert(o.boxes.end(), all.boxes.begin() + j * 4, all.boxes.begin() + j * 4 + 4);
        o.scores.push_back(all.scores[j]);
        o.classes.push_back(all.classes[j]);
        o.anchors.push_back(all.anchors[j]);
      }
    }
  });
  for (int b = 0; b < p.batch; b++) {
    Detections& o = per[static_cast<size_t>(b)];
    det.counts[b] = static_cast<int32_t>(o.scores.size());
    det.boxes.insert(det.boxes.end(), o.boxes.begin(), o.boxes.end());
    det.scores.insert(det.scores.end(), o.scores.begin(), o.scores.end());
    det.classes.insert(det.classes.end(), o.classes.begin(), o.classes.end());
    det.anchors.insert(det.anchors.end(), o.anchors.begin(), o.anchors.end());
  }
  return det;
}

}  // namespace xk
