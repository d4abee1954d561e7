// Classification-style reductions: segmentation argmax, softmax + top-k, CTC greedy decoding.
// NaN inputs rank below every number (they never win an argmax and add nothing to a softmax);
// ties go to the lowest class index.
#pragma once

#include "common.h"

namespace xk {

struct ArgmaxParams {
  const float* data = nullptr;
  int batch = 1, classes = 0, height = 0, width = 0;
  bool nhwc = false;           // [N, H, W, C] instead of [N, C, H, W]
  bool softmax = false;        // scores are max softmax probabilities instead of the max logit
  void* labels = nullptr;      // N*H*W labels: uint8 when classes <= 256, else uint16
  float* scores = nullptr;     // optional N*H*W
  int threads = 1;
};
void segmentArgmax(const ArgmaxParams& p);

struct TopKParams {
  const float* data = nullptr;
  int rows = 0, classes = 0, k = 1;
  bool softmax = true;
  int32_t* indices = nullptr;  // rows * k
  float* values = nullptr;     // rows * k
  int threads = 1;
};
void softmaxTopK(const TopKParams& p);

struct CtcParams {
  const float* data = nullptr;      // [batch, steps, classes]
  int batch = 0, steps = 0, classes = 0;
  const int32_t* lengths = nullptr; // optional valid steps per sequence
  int blank = 0;
  bool mergeRepeats = true;
  bool softmax = false;             // inputs are logits: confidences are softmax probabilities
  int threads = 1;
};
struct CtcResult {
  std::vector<int32_t> ids;          // emitted class ids, all sequences concatenated
  std::vector<float> confidences;    // per emitted id: its probability (or score) at its first step
  std::vector<int32_t> offsets;      // batch + 1
};
CtcResult ctcGreedy(const CtcParams& p);

}  // namespace xk
