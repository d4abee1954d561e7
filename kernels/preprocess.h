// Fused image pre-processing: u8 pixels (any stride) -> resample into a region of an output plane ->
// per-channel affine normalisation -> channel order -> NCHW or NHWC -> f32, f16 or u8, one pass.
#pragma once

#include "common.h"

namespace xk {

enum class Interp { Bilinear = 0, Area = 1, Auto = 2 };

// Filter taps for one axis: output index o reads source indices start[o] .. start[o]+count[o]-1 with
// weights w[o*maxTaps + k]. Built in double and stored as float, exactly as the portable
// TypeScript builds them, so both sides resample with the same weights.
struct Taps {
  std::vector<int32_t> start;
  std::vector<int32_t> count;
  std::vector<float> w;
  int maxTaps = 0;
};

// Bilinear: half-pixel centres, source coordinate clamped at 0 (PyTorch align_corners=false, OpenCV
// INTER_LINEAR). Area: each output pixel averages the source interval it covers, weighted by overlap
// (OpenCV INTER_AREA); used for shrinking only. Auto: area where the axis shrinks by 2x or more.
Taps makeTaps(int srcSize, int dstSize, Interp interp);

struct PreprocessParams {
  ImageView src;
  TensorOut out;
  int planeWidth = 0;   // output plane
  int planeHeight = 0;
  int roiX = 0;         // where the resized image lands in the plane; the rest is padding
  int roiY = 0;
  int roiWidth = 0;
  int roiHeight = 0;
  Interp interp = Interp::Auto;
  int threads = 1;
};

// Throws unless the resize region lies inside the output plane.
void checkRegion(const PreprocessParams& p);
void preprocess(const PreprocessParams& p);

}  // namespace xk
