// Entry points of NMS and detector decoding.
#include "detect.h"
#include "util.h"

namespace xn {

namespace {

struct NmsJob : Job {
  xk::NmsParams p;
  int batch = 1, threads = 1;
  std::vector<int32_t> keep, counts;
  void run() override {
    std::vector<std::vector<int32_t>> per(static_cast<size_t>(batch));
    xk::parallelFor(batch, threads, 1, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; i++) {
        xk::NmsParams q = p;
        q.boxes = p.boxes + i * p.n * 4;
        q.scores = p.scores + i * p.n;
        q.classes = p.classes ? p.classes + i * p.n : nullptr;
        std::vector<int32_t>& k = per[static_cast<size_t>(i)];
        k.resize(static_cast<size_t>(p.n));
        k.resize(static_cast<size_t>(xk::nms(q, k.data())));
      }
    });
    counts.resize(static_cast<size_t>(batch));
    for (int i = 0; i < batch; i++) {
      counts[i] = static_cast<int32_t>(per[i].size());
      keep.insert(keep.end(), per[i].begin(), per[i].end());
    }
  }
  Napi::Value result(Napi::Env env) override {
    Napi::Object r = Napi::Object::New(env);
    r.Set("keep", i32(env, keep));
    r.Set("counts", i32(env, counts));
    return r;
  }
};

Napi::Value Nms(const Napi::CallbackInfo& info) {
  Opts o(info.Env(), info[0]);
  auto job = std::make_unique<NmsJob>();
  xk::NmsParams& p = job->p;
  size_t nb = 0, ns = 0, nc = 0;
  p.boxes = o.array<float>("boxes", napi_float32_array, &nb);
  p.scores = o.array<float>("scores", napi_float32_array, &ns);
  p.classes = o.array<int32_t>("classes", napi_int32_array, &nc, true);
  p.n = o.i32("n");
  job->batch = o.i32("batch", 1);
  job->threads = o.i32("threads", 1);
  p.iouThreshold = o.num("iouThreshold");
  p.scoreThreshold = o.num("scoreThreshold", -INFINITY);
  p.preTopK = o.i32("preTopK", -1);
  p.maxOutput = o.i32("maxOutput", -1);
  const size_t total = static_cast<size_t>(job->batch) * static_cast<size_t>(p.n);
  if (p.n < 0 || job->batch < 0 || nb < total * 4 || ns < total || (p.classes && nc < total))
    throw xk::KernelError("nms arrays shorter than batch * n");
  return dispatch(info, o, std::move(job));
}

struct DecodeJob : Job {
  xk::DecodeParams p;
  xk::Detections d;
  void run() override { d = xk::decodeDetections(p); }
  Napi::Value result(Napi::Env env) override {
    Napi::Object r = Napi::Object::New(env);
    r.Set("boxes", f32(env, d.boxes));
    r.Set("scores", f32(env, d.scores));
    r.Set("classes", i32(env, d.classes));
    r.Set("anchors", i32(env, d.anchors));
    r.Set("counts", i32(env, d.counts));
    return r;
  }
};

Napi::Value Decode(const Napi::CallbackInfo& info) {
  Opts o(info.Env(), info[0]);
  auto job = std::make_unique<DecodeJob>();
  xk::DecodeParams& p = job->p;
  size_t nd = 0, ng = 0;
  p.data = o.array<float>("data", napi_float32_array, &nd);
  p.batch = o.i32("batch");
  p.anchors = o.i32("anchors");
  p.attrs = o.i32("attrs");
  p.attrsFirst = o.flag("attrsFirst");
  p.objectness = o.flag("objectness");
  p.xyxy = o.flag("xyxy");
  p.sigmoid = o.flag("sigmoid");
  p.grid = o.array<float>("grid", napi_float32_array, &ng, true);
  p.scoreThreshold = o.num("scoreThreshold");
  p.padX = o.num("padX", 0), p.padY = o.num("padY", 0);
  p.scaleX = o.num("scaleX", 1), p.scaleY = o.num("scaleY", 1);
  p.clipWidth = o.num("clipWidth", 0), p.clipHeight = o.num("clipHeight", 0);
  p.agnostic = o.flag("agnostic");
  p.iouThreshold = o.num("iouThreshold");
  p.preTopK = o.i32("preTopK", -1);
  p.maxOutput = o.i32("maxOutput", -1);
  p.threads = o.i32("threads", 1);
  if (p.batch < 0 || p.anchors < 0 || p.attrs < 1 ||
      nd < static_cast<size_t>(p.batch) * static_cast<size_t>(p.anchors) * static_cast<size_t>(p.attrs))
    throw xk::KernelError("detector output shorter than batch * anchors * attrs");
  if (p.grid && ng < static_cast<size_t>(p.anchors) * 5) throw xk::KernelError("grid must hold 5 numbers per anchor");
  return dispatch(info, o, std::move(job));
}

}  // namespace

void registerDetect(Napi::Env env, Napi::Object exports) {
  exports.Set("nms", Napi::Function::New<guarded<Nms>>(env, "nms"));
  exports.Set("decodeDetections", Napi::Function::New<guarded<Decode>>(env, "decodeDetections"));
}

}  // namespace xn
