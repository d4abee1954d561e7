// Entry points of the image kernels: preprocess and cropBatch. Geometry (output size, letterbox
// placement, crop homographies) is planned in TypeScript and passed in, so native and portable code
// share one plan and differ only in the pixel loop.
#include "crop.h"
#include "preprocess.h"
#include "util.h"

namespace xn {

namespace {

struct PreprocessJob : Job {
  xk::PreprocessParams p;
  void run() override { xk::preprocess(p); }
};

Napi::Value Preprocess(const Napi::CallbackInfo& info) {
  Opts o(info.Env(), info[0]);
  auto job = std::make_unique<PreprocessJob>();
  xk::PreprocessParams& p = job->p;
  p.src = readImage(o);
  size_t outLen = 0;
  p.out = readTensorOut(o, &outLen);
  p.planeWidth = o.i32("planeWidth");
  p.planeHeight = o.i32("planeHeight");
  p.roiX = o.i32("roiX");
  p.roiY = o.i32("roiY");
  p.roiWidth = o.i32("roiWidth");
  p.roiHeight = o.i32("roiHeight");
  const int interp = o.i32("interp");
  if (interp < 0 || interp > 2) throw xk::KernelError("interp must be 0, 1 or 2");
  p.interp = static_cast<xk::Interp>(interp);
  p.threads = o.i32("threads", 1);
  const int64_t need = p.out.offset + static_cast<int64_t>(p.planeWidth) * p.planeHeight * p.out.channels;
  if (p.out.offset < 0 || need > static_cast<int64_t>(outLen)) throw xk::KernelError("output buffer too small");
  return dispatch(info, o, std::move(job));
}

struct CropJob : Job {
  xk::CropParams p;
  void run() override { xk::cropBatch(p); }
};

Napi::Value CropBatch(const Napi::CallbackInfo& info) {
  Opts o(info.Env(), info[0]);
  auto job = std::make_unique<CropJob>();
  xk::CropParams& p = job->p;
  p.src = readImage(o);
  size_t outLen = 0, hLen = 0, wLen = 0, sLen = 0;
  p.out = readTensorOut(o, &outLen);
  p.count = o.i32("count");
  p.outWidth = o.i32("outWidth");
  p.outHeight = o.i32("outHeight");
  p.homographies = o.array<double>("homographies", napi_float64_array, &hLen);
  p.widths = o.array<int32_t>("widths", napi_int32_array, &wLen);
  p.samples = o.array<int32_t>("samples", napi_int32_array, &sLen);
  p.threads = o.i32("threads", 1);
  if (p.count < 0 || hLen < static_cast<size_t>(p.count) * 9 || wLen < static_cast<size_t>(p.count) ||
      sLen < static_cast<size_t>(p.count))
    throw xk::KernelError("region arrays shorter than count");
  const int64_t need = p.out.offset + static_cast<int64_t>(p.count) * p.outWidth * p.outHeight * p.out.channels;
  if (p.out.offset < 0 || need > static_cast<int64_t>(outLen)) throw xk::KernelError("output buffer too small");
  return dispatch(info, o, std::move(job));
}

}  // namespace

void registerImage(Napi::Env env, Napi::Object exports) {
  exports.Set("preprocess", Napi::Function::New<guarded<Preprocess>>(env, "preprocess"));
  exports.Set("cropBatch", Napi::Function::New<guarded<CropBatch>>(env, "cropBatch"));
}

}  // namespace xn
