// Batched region crop: for each region, a projective map from an upright w x H box onto a
// quadrilateral of the source (rotation and perspective alike), bilinear samples (supersampled when
// shrinking) -> normalise -> one padded batch tensor [N, C, H, W] or [N, H, W, C].
#pragma once

#include "common.h"

namespace xk {

struct CropParams {
  ImageView src;
  TensorOut out;  // offset = start of region 0
  int count = 0;
  int outWidth = 0;   // padded batch width
  int outHeight = 0;
  // Per region: 9 homography coefficients (row-major, h[8] = 1) mapping output coordinates
  // (x + 0.5, y + 0.5) to continuous source coordinates, where pixel i spans [i, i + 1).
  const double* homographies = nullptr;
  const int32_t* widths = nullptr;    // valid width per region (<= outWidth); the rest is padding
  const int32_t* samples = nullptr;   // supersampling factor per axis per region (1..4)
  int threads = 1;
};

void cropBatch(const CropParams& p);

}  // namespace xk
