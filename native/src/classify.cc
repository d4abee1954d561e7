// Entry points of the reductions (segmentation argmax, softmax top-k, CTC) and DB post-processing.
#include "classify.h"
#include "textdet.h"
#include "util.h"

namespace xn {

namespace {

struct ArgmaxJob : Job {
  xk::ArgmaxParams p;
  void run() override { xk::segmentArgmax(p); }
};

Napi::Value Argmax(const Napi::CallbackInfo& info) {
  auto job = std::make_unique<ArgmaxJob>();
  Opts o(info, job->io);
  xk::ArgmaxParams& p = job->p;
  size_t nd = 0;
  p.batch = o.i32("batch", 0, INT32_MAX), p.classes = o.i32("classes", 1, 65536);
  p.height = o.i32("height", 0, INT32_MAX), p.width = o.i32("width", 0, INT32_MAX);
  p.nhwc = o.flag("nhwc");
  p.softmax = o.flag("softmax");
  p.threads = o.threads();
  const int64_t pixels = xk::mulSize(xk::mulSize(p.batch, p.height), p.width);
  const int64_t size = xk::mulSize(pixels, p.classes);
  p.data = o.in<float>("data", napi_float32_array, &nd);
  if (nd < static_cast<uint64_t>(size)) throw xk::KernelError("argmax buffers too small");
  p.labels = p.classes > 256 ? static_cast<void*>(o.out<uint16_t>("labels", napi_uint16_array, 0, pixels))
                             : static_cast<void*>(o.out<uint8_t>("labels", napi_uint8_array, 0, pixels));
  p.scores = o.has("scores") ? o.out<float>("scores", napi_float32_array, 0, pixels) : nullptr;
  return dispatch(info, std::move(job));
}

struct TopKJob : Job {
  xk::TopKParams p;
  void run() override { xk::softmaxTopK(p); }
};

Napi::Value TopK(const Napi::CallbackInfo& info) {
  auto job = std::make_unique<TopKJob>();
  Opts o(info, job->io);
  xk::TopKParams& p = job->p;
  size_t nd = 0;
  p.rows = o.i32("rows", 0, INT32_MAX), p.classes = o.i32("classes", 1, INT32_MAX);
  p.k = o.i32("k", 1, p.classes);
  p.softmax = o.flag("softmax", true);
  p.threads = o.threads();
  const int64_t rk = xk::mulSize(p.rows, p.k);
  const int64_t size = xk::mulSize(p.rows, p.classes);
  p.data = o.in<float>("data", napi_float32_array, &nd);
  if (nd < static_cast<uint64_t>(size)) throw xk::KernelError("top-k buffers too small");
  p.indices = o.out<int32_t>("indices", napi_int32_array, 0, rk);
  p.values = o.out<float>("values", napi_float32_array, 0, rk);
  return dispatch(info, std::move(job));
}

struct CtcJob : Job {
  xk::CtcParams p;
  xk::CtcResult r;
  void run() override { r = xk::ctcGreedy(p); }
  Napi::Value result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("ids", i32(env, r.ids));
    o.Set("confidences", f32(env, r.confidences));
    o.Set("offsets", i32(env, r.offsets));
    return o;
  }
};

Napi::Value Ctc(const Napi::CallbackInfo& info) {
  auto job = std::make_unique<CtcJob>();
  Opts o(info, job->io);
  xk::CtcParams& p = job->p;
  size_t nd = 0, nl = 0;
  p.batch = o.i32("batch", 0, INT32_MAX), p.steps = o.i32("steps", 0, INT32_MAX), p.classes = o.i32("classes", 1, INT32_MAX);
  p.blank = o.i32("blank", 0, INT32_MAX, 0);
  p.mergeRepeats = o.flag("mergeRepeats", true);
  p.softmax = o.flag("softmax");
  p.threads = o.threads();
  const int64_t size = xk::mulSize(xk::mulSize(p.batch, p.steps), p.classes);
  p.data = o.in<float>("data", napi_float32_array, &nd);
  p.lengths = o.in<int32_t>("lengths", napi_int32_array, &nl, true);
  if (nd < static_cast<uint64_t>(size) || (p.lengths && nl < static_cast<size_t>(p.batch))) throw xk::KernelError("ctc buffers too small");
  return dispatch(info, std::move(job));
}

struct DbJob : Job {
  xk::DbParams p;
  xk::DbResult r;
  void run() override { r = xk::dbPostprocess(p); }
  Napi::Value result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("quads", f32(env, r.quads));
    o.Set("scores", f32(env, r.scores));
    return o;
  }
};

Napi::Value Db(const Napi::CallbackInfo& info) {
  auto job = std::make_unique<DbJob>();
  Opts o(info, job->io);
  xk::DbParams& p = job->p;
  size_t nd = 0;
  p.width = o.i32("width", 0, INT32_MAX), p.height = o.i32("height", 0, INT32_MAX);
  p.threshold = o.num("threshold"), p.boxThreshold = o.num("boxThreshold"), p.unclipRatio = o.num("unclipRatio");
  p.minSize = o.num("minSize"), p.maxCandidates = o.i32("maxCandidates", 0, INT32_MAX), p.dilate = o.flag("dilate");
  p.scaleX = o.num("scaleX", 1), p.scaleY = o.num("scaleY", 1);
  p.clipWidth = o.num("clipWidth", 0), p.clipHeight = o.num("clipHeight", 0);
  p.threads = o.threads();
  // The flood fill indexes pixels with int32.
  const int64_t pixels = xk::mulSize(p.width, p.height);
  if (pixels > INT32_MAX) throw xk::KernelError("probability map over 2^31 - 1 pixels");
  p.prob = o.in<float>("prob", napi_float32_array, &nd);
  if (nd < static_cast<uint64_t>(pixels)) throw xk::KernelError("probability map shorter than width * height");
  return dispatch(info, std::move(job));
}

}  // namespace

void registerClassify(Napi::Env env, Napi::Object exports) {
  exports.Set("segmentArgmax", Napi::Function::New<guarded<Argmax>>(env, "segmentArgmax"));
  exports.Set("softmaxTopK", Napi::Function::New<guarded<TopK>>(env, "softmaxTopK"));
  exports.Set("ctcGreedy", Napi::Function::New<guarded<Ctc>>(env, "ctcGreedy"));
  exports.Set("dbPostprocess", Napi::Function::New<guarded<Db>>(env, "dbPostprocess"));
}

}  // namespace xn
