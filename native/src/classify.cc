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
  Opts o(info.Env(), info[0]);
  auto job = std::make_unique<ArgmaxJob>();
  xk::ArgmaxParams& p = job->p;
  size_t nd = 0, nl = 0, ns = 0;
  p.data = o.array<float>("data", napi_float32_array, &nd);
  p.batch = o.i32("batch"), p.classes = o.i32("classes"), p.height = o.i32("height"), p.width = o.i32("width");
  p.nhwc = o.flag("nhwc");
  p.softmax = o.flag("softmax");
  const bool wide = p.classes > 256;
  p.labels = wide ? static_cast<void*>(o.array<uint16_t>("labels", napi_uint16_array, &nl))
                  : static_cast<void*>(o.array<uint8_t>("labels", napi_uint8_array, &nl));
  p.scores = o.array<float>("scores", napi_float32_array, &ns, true);
  p.threads = o.i32("threads", 1);
  if (p.batch < 0 || p.height < 0 || p.width < 0 || p.classes < 1) throw xk::KernelError("bad argmax dims");
  const size_t pixels = static_cast<size_t>(p.batch) * static_cast<size_t>(p.height) * static_cast<size_t>(p.width);
  if (nd < pixels * static_cast<size_t>(p.classes) || nl < pixels || (p.scores && ns < pixels))
    throw xk::KernelError("argmax buffers too small");
  return dispatch(info, o, std::move(job));
}

struct TopKJob : Job {
  xk::TopKParams p;
  void run() override { xk::softmaxTopK(p); }
};

Napi::Value TopK(const Napi::CallbackInfo& info) {
  Opts o(info.Env(), info[0]);
  auto job = std::make_unique<TopKJob>();
  xk::TopKParams& p = job->p;
  size_t nd = 0, ni = 0, nv = 0;
  p.data = o.array<float>("data", napi_float32_array, &nd);
  p.rows = o.i32("rows"), p.classes = o.i32("classes"), p.k = o.i32("k");
  p.softmax = o.flag("softmax", true);
  p.indices = o.array<int32_t>("indices", napi_int32_array, &ni);
  p.values = o.array<float>("values", napi_float32_array, &nv);
  p.threads = o.i32("threads", 1);
  if (p.rows < 0 || p.classes < 1 || p.k < 1) throw xk::KernelError("bad top-k dims");
  const size_t rk = static_cast<size_t>(p.rows) * static_cast<size_t>(p.k);
  if (nd < static_cast<size_t>(p.rows) * static_cast<size_t>(p.classes) || ni < rk || nv < rk)
    throw xk::KernelError("top-k buffers too small");
  return dispatch(info, o, std::move(job));
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
  Opts o(info.Env(), info[0]);
  auto job = std::make_unique<CtcJob>();
  xk::CtcParams& p = job->p;
  size_t nd = 0, nl = 0;
  p.data = o.array<float>("data", napi_float32_array, &nd);
  p.batch = o.i32("batch"), p.steps = o.i32("steps"), p.classes = o.i32("classes");
  p.lengths = o.array<int32_t>("lengths", napi_int32_array, &nl, true);
  p.blank = o.i32("blank", 0);
  p.mergeRepeats = o.flag("mergeRepeats", true);
  p.softmax = o.flag("softmax");
  p.threads = o.i32("threads", 1);
  if (p.batch < 0 || p.steps < 0 || p.classes < 1) throw xk::KernelError("bad ctc dims");
  if (nd < static_cast<size_t>(p.batch) * static_cast<size_t>(p.steps) * static_cast<size_t>(p.classes) ||
      (p.lengths && nl < static_cast<size_t>(p.batch)))
    throw xk::KernelError("ctc buffers too small");
  return dispatch(info, o, std::move(job));
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
  Opts o(info.Env(), info[0]);
  auto job = std::make_unique<DbJob>();
  xk::DbParams& p = job->p;
  size_t nd = 0;
  p.prob = o.array<float>("prob", napi_float32_array, &nd);
  p.width = o.i32("width"), p.height = o.i32("height");
  p.threshold = o.num("threshold"), p.boxThreshold = o.num("boxThreshold"), p.unclipRatio = o.num("unclipRatio");
  p.minSize = o.num("minSize"), p.maxCandidates = o.i32("maxCandidates"), p.dilate = o.flag("dilate");
  p.scaleX = o.num("scaleX", 1), p.scaleY = o.num("scaleY", 1);
  p.clipWidth = o.num("clipWidth", 0), p.clipHeight = o.num("clipHeight", 0);
  p.threads = o.i32("threads", 1);
  if (p.width < 0 || p.height < 0 || nd < static_cast<size_t>(p.width) * static_cast<size_t>(p.height))
    throw xk::KernelError("probability map shorter than width * height");
  return dispatch(info, o, std::move(job));
}

}  // namespace

void registerClassify(Napi::Env env, Napi::Object exports) {
  exports.Set("segmentArgmax", Napi::Function::New<guarded<Argmax>>(env, "segmentArgmax"));
  exports.Set("softmaxTopK", Napi::Function::New<guarded<TopK>>(env, "softmaxTopK"));
  exports.Set("ctcGreedy", Napi::Function::New<guarded<Ctc>>(env, "ctcGreedy"));
  exports.Set("dbPostprocess", Napi::Function::New<guarded<Db>>(env, "dbPostprocess"));
}

}  // namespace xn
