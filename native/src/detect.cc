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
  auto job = std::make_unique<NmsJob>();
  Opts o(info, job->io);
  xk::NmsParams& p = job->p;
  p.n = o.i32("n", 0, INT32_MAX);
  job->batch = o.i32("batch", 0, INT32_MAX, 1);
  job->threads = o.threads();
  p.iouThreshold = o.num("iouThreshold");
  p.scoreThreshold = o.has("scoreThreshold") ? o.numOrInf("scoreThreshold") : -INFINITY;
  p.preTopK = o.i32("preTopK", -1, INT32_MAX, -1);
  p.maxOutput = o.i32("maxOutput", -1, INT32_MAX, -1);
  const int64_t total = xk::mulSize(job->batch, p.n);
  size_t nb = 0, ns = 0, nc = 0;
  p.boxes = o.in<float>("boxes", napi_float32_array, &nb);
  p.scores = o.in<float>("scores", napi_float32_array, &ns);
  p.classes = o.in<int32_t>("classes", napi_int32_array, &nc, true);
  const uint64_t t = static_cast<uint64_t>(total);
  if (nb / 4 < t || ns < t || (p.classes && nc < t)) throw xk::KernelError("nms arrays shorter than batch * n");
  return dispatch(info, std::move(job));
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
  auto job = std::make_unique<DecodeJob>();
  Opts o(info, job->io);
  xk::DecodeParams& p = job->p;
  size_t nd = 0, ng = 0;
  p.batch = o.i32("batch", 0, INT32_MAX);
  p.anchors = o.i32("anchors", 0, INT32_MAX);
  p.attrs = o.i32("attrs", 1, INT32_MAX);
  const int64_t size = xk::mulSize(xk::mulSize(p.batch, p.anchors), p.attrs);
  p.data = o.in<float>("data", napi_float32_array, &nd);
  p.attrsFirst = o.flag("attrsFirst");
  p.objectness = o.flag("objectness");
  p.xyxy = o.flag("xyxy");
  p.sigmoid = o.flag("sigmoid");
  p.grid = o.in<float>("grid", napi_float32_array, &ng, true);
  p.scoreThreshold = o.numOrInf("scoreThreshold");
  p.padX = o.num("padX", 0), p.padY = o.num("padY", 0);
  p.scaleX = o.num("scaleX", 1), p.scaleY = o.num("scaleY", 1);
  p.clipWidth = o.num("clipWidth", 0), p.clipHeight = o.num("clipHeight", 0);
  p.agnostic = o.flag("agnostic");
  p.iouThreshold = o.num("iouThreshold");
  p.preTopK = o.i32("preTopK", -1, INT32_MAX, -1);
  p.maxOutput = o.i32("maxOutput", -1, INT32_MAX, -1);
  p.threads = o.threads();
  if (nd < static_cast<uint64_t>(size)) throw xk::KernelError("detector output shorter than batch * anchors * attrs");
  if (p.grid && ng / 5 < static_cast<size_t>(p.anchors)) throw xk::KernelError("grid must hold 5 numbers per anchor");
  return dispatch(info, std::move(job));
}

}  // namespace

void registerDetect(Napi::Env env, Napi::Object exports) {
  exports.Set("nms", Napi::Function::New<guarded<Nms>>(env, "nms"));
  exports.Set("decodeDetections", Napi::Function::New<guarded<Decode>>(env, "decodeDetections"));
}

}  // namespace xn
