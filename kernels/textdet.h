// Text-detection post-processing (DB): binarise the probability map, 8-connected components,
// convex hull of each component, minimum-area rotated rectangle, box score (mean probability inside),
// unclip (grow by area * ratio / perimeter), corner ordering, mapping to image coordinates.
//
// Exactness contract (shared with native/portable/textdet.ts): all geometry is double arithmetic
// with +, -, *, /, sqrt in the order written here, so quads and scores match bit for bit.
#pragma once

#include "common.h"

namespace xk {

struct DbParams {
  const float* prob = nullptr;
  int width = 0, height = 0;
  double threshold = 0.3;       // pixel threshold: prob > threshold is text
  double boxThreshold = 0.6;    // drop boxes whose mean probability is below this
  double unclipRatio = 1.5;
  double minSize = 3;           // drop boxes whose short side is below this (below minSize + 2 after unclip)
  int maxCandidates = 1000;     // components examined, in raster order of their first pixel
  bool dilate = false;          // 2x2 dilation of the mask first
  // Output mapping: continuous map coordinates (pixel i spans [i, i + 1)) times scale, clipped to
  // [0, clip] when clip > 0.
  double scaleX = 1, scaleY = 1, clipWidth = 0, clipHeight = 0;
  int threads = 1;
};

struct DbResult {
  std::vector<float> quads;   // 8 per box: TL, TR, BR, BL
  std::vector<float> scores;
};

DbResult dbPostprocess(const DbParams& p);

}  // namespace xk
