// Greedy non-maximum suppression and detector-output decoding.
//
// Exactness contract (shared with native/portable/nms.ts): candidates are the non-NaN scores >=
// scoreThreshold, ordered by float32 score descending then index ascending; a candidate is dropped
// when its IoU (computed in double, in the order written in iou()) with an already kept box of the
// same class (or any class when agnostic) is > iouThreshold. A box with a NaN coordinate overlaps
// nothing. The result is the same index list as the textbook O(n^2) loop; only the speed differs.
#pragma once

#include <cmath>

#include "common.h"

namespace xk {

struct NmsParams {
  const float* boxes = nullptr;     // n * 4: x1, y1, x2, y2 (corners in either order)
  const float* scores = nullptr;    // n
  const int32_t* classes = nullptr; // n, or null for class-agnostic suppression
  int n = 0;
  double iouThreshold = 0.5;        // in [0, 1]
  double scoreThreshold = -INFINITY;
  int preTopK = -1;                 // consider only the best k candidates (< 0: all)
  int maxOutput = -1;               // keep at most this many (< 0: all)
};

// Writes kept indices (best first) into keep (capacity n) and returns how many.
int nms(const NmsParams& p, int32_t* keep);

// Detector head output for one image: `anchors` rows of `attrs` values, stored anchor-major
// ([anchors, attrs]) or attribute-major ([attrs, anchors], as YOLOv8 exports).
struct DecodeParams {
  const float* data = nullptr;
  int batch = 1;
  int anchors = 0;
  int attrs = 0;
  bool attrsFirst = true;
  bool objectness = false;     // [box4, obj, classes...] (YOLOv5-style) vs [box4, classes...]
  bool xyxy = false;           // box as corners instead of centre + size
  bool sigmoid = false;        // raw logits: apply the logistic function to obj, classes and (with grid) box
  // Optional raw-head grid, 5 floats per anchor: gridX, gridY, stride, anchorW, anchorH. With it the
  // box is decoded YOLOv5-style: xy = (2*sig(t) - 0.5 + grid) * stride, wh = (2*sig(t))^2 * anchor.
  const float* grid = nullptr;
  double scoreThreshold = 0.25;
  // Inverse letterbox: image = (model - pad) / scale, then clipped to [0, clip] when clip > 0.
  double padX = 0, padY = 0, scaleX = 1, scaleY = 1, clipWidth = 0, clipHeight = 0;
  bool agnostic = false;
  double iouThreshold = 0.45;
  int preTopK = -1;
  int maxOutput = 300;
  int threads = 1;
};

struct Detections {
  std::vector<float> boxes;     // count * 4, x1 y1 x2 y2 in image coordinates
  std::vector<float> scores;
  std::vector<int32_t> classes;
  std::vector<int32_t> anchors; // source row of each detection
  std::vector<int32_t> counts;  // per batch item
};

Detections decodeDetections(const DecodeParams& p);

}  // namespace xk
