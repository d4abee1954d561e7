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
  auto job = std::make_unique<PreprocessJob>();
  Opts o(info, job->io);
  xk::PreprocessParams& p = job->p;
  p.src = readImage(o);
  p.planeWidth = o.i32("planeWidth", 1, INT32_MAX);
  p.planeHeight = o.i32("planeHeight", 1, INT32_MAX);
  p.roiX = o.i32("roiX", 0, INT32_MAX);
  p.roiY = o.i32("roiY", 0, INT32_MAX);
  p.roiWidth = o.i32("roiWidth", 1, INT32_MAX);
  p.roiHeight = o.i32("roiHeight", 1, INT32_MAX);
  p.interp = static_cast<xk::Interp>(o.i32("interp", 0, 2));
  p.threads = o.threads();
  xk::checkRegion(p);
  p.out = readTensorOut(o, xk::mulSize(xk::mulSize(p.planeWidth, p.planeHeight), readOutChannels(o)));
  return dispatch(info, std::move(job));
}

struct CropJob : Job {
  xk::CropParams p;
  void run() override { xk::cropBatch(p); }
};

Napi::Value CropBatch(const Napi::CallbackInfo& info) {
  auto job = std::make_unique<CropJob>();
  Opts o(info, job->io);
  xk::CropParams& p = job->p;
  p.src = readImage(o);
  size_t hLen = 0, wLen = 0, sLen = 0;
  p.count = o.i32("count", 0, INT32_MAX);
  p.outWidth = o.i32("outWidth", 1, INT32_MAX);
  p.outHeight = o.i32("outHeight", 1, INT32_MAX);
  p.homographies = o.in<double>("homographies", napi_float64_array, &hLen);
  p.widths = o.in<int32_t>("widths", napi_int32_array, &wLen);
  p.samples = o.in<int32_t>("samples", napi_int32_array, &sLen);
  p.threads = o.threads();
  const size_t count = static_cast<size_t>(p.count);
  if (hLen / 9 < count || wLen < count || sLen < count) throw xk::KernelError("region arrays shorter than count");
  const int64_t plane = xk::mulSize(p.outWidth, p.outHeight);
  p.out = readTensorOut(o, xk::mulSize(xk::mulSize(p.count, plane), readOutChannels(o)));
  return dispatch(info, std::move(job));
}

}  // namespace

void registerImage(Napi::Env env, Napi::Object exports) {
  exports.Set("preprocess", Napi::Function::New<guarded<Preprocess>>(env, "preprocess"));
  exports.Set("cropBatch", Napi::Function::New<guarded<CropBatch>>(env, "cropBatch"));
}

}  // namespace xn
