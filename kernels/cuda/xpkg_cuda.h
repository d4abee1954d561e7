// C API of the xpkg CUDA kernels (libxpkg_cuda.so). Every pointer argument named d_* is device
// memory; every call is asynchronous on `stream` (a cudaStream_t, 0 = legacy default) and returns
// a cudaError_t value (0 = launched). No call synchronises or copies to the host, so a whole
// pre-processing -> model -> decode -> NMS chain can be captured in one CUDA graph.
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Number of CUDA devices, or -cudaError_t on failure (probed by the Node addon through dlopen).
int xpkg_cuda_device_count(void);

// Fused letterbox pre-processing: u8 interleaved pixels (3 or 4 channels, any row stride) ->
// bilinear resize (half-pixel centres, as torch F.interpolate(align_corners=False)) into the
// region roi of a W x H plane -> out = v * mul[k] + add[k] -> f32 NCHW; pad[k] elsewhere.
// chan_map[k] is the source channel of output channel k.
typedef struct {
  int src_width, src_height, src_stride, src_channels;
  int chan_map[3];
  int width, height;                      // output plane
  int roi_x, roi_y, roi_width, roi_height;
  float mul[3], add[3], pad[3];
} XpkgPreprocess;
int xpkg_cuda_preprocess(const uint8_t* d_src, float* d_dst, const XpkgPreprocess* p, void* stream);

// NMS / detector decode workspace for up to max_n candidates (allocates device memory once).
typedef struct XpkgNmsWorkspace XpkgNmsWorkspace;
XpkgNmsWorkspace* xpkg_cuda_nms_create(int max_n);
void xpkg_cuda_nms_destroy(XpkgNmsWorkspace* ws);

// Tuning and diagnostics: mode 0 = cooperative-grid iteration (default), 1 = the same iteration in
// one block (no cooperative launch), 2 = sequential tile scan only; debug_stop 1..4 ends a call
// after candidates / sort / mask / iteration (for timing breakdowns; results are then undefined).
int xpkg_cuda_nms_configure(XpkgNmsWorkspace* ws, int mode, int debug_stop);
// Synchronous read of the last call's iteration outcome (diagnostics only).
int xpkg_cuda_nms_last_state(XpkgNmsWorkspace* ws, int32_t* converged, int32_t* iterations);

// Greedy NMS of n boxes (x1,y1,x2,y2; float IoU as torchvision computes it): kept indices, best
// first, into d_keep (capacity max_output), their number into *d_count. d_classes may be null
// (class-agnostic). Scores below score_threshold and NaN scores are dropped first.
int xpkg_cuda_nms(XpkgNmsWorkspace* ws, const float* d_boxes, const float* d_scores, const int32_t* d_classes, int n,
                  float iou_threshold, float score_threshold, int max_output, int32_t* d_keep, int32_t* d_count, void* stream);

// YOLO head decode + NMS: d_head is [attrs, anchors] (attribute-major, as YOLOv8 exports), boxes
// cx,cy,w,h then (objectness) then class scores. Boxes are mapped back through the letterbox
// ((v - pad) / scale) and clipped to [0, clip] when clip > 0. Writes up to max_output detections
// (x1, y1, x2, y2, score, class as float) to d_dets and their number to *d_count.
typedef struct {
  int anchors, attrs, objectness, agnostic, max_output;
  float score_threshold, iou_threshold;
  float pad_x, pad_y, scale_x, scale_y, clip_width, clip_height;
} XpkgDetect;
int xpkg_cuda_detect(XpkgNmsWorkspace* ws, const float* d_head, const XpkgDetect* p, float* d_dets, int32_t* d_count, void* stream);

// Segmentation argmax over [batch, classes, height*width] logits: uint8 labels (classes <= 256)
// and, when d_scores is not null, the max logit (softmax = 0) or max softmax probability.
int xpkg_cuda_argmax(const float* d_logits, int batch, int classes, int pixels, int softmax, uint8_t* d_labels,
                     float* d_scores, void* stream);

// CTC greedy decode of [batch, steps, classes] scores: per sequence b, up to `steps` ids at
// d_ids[b * steps ...] with confidences, and the number emitted in d_counts[b]. d_lengths may be
// null. Needs d_work of batch * steps * 8 bytes.
int xpkg_cuda_ctc(const float* d_probs, int batch, int steps, int classes, const int32_t* d_lengths, int blank,
                  int merge_repeats, int softmax, void* d_work, int32_t* d_ids, float* d_conf, int32_t* d_counts,
                  void* stream);

#ifdef __cplusplus
}
#endif
