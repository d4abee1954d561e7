// A small Node binding over onnxruntime's C API, for what the stock onnxruntime-node binding cannot
// pass: CUDA provider options (cuDNN's convolution algorithm search). It dlopens the SAME
// libonnxruntime.so.1 onnxruntime-node loaded (one runtime, one OrtEnv in the process), creates
// sessions from bytes and runs them on libuv workers (Napi::AsyncWorker) with host tensors in and
// out. Surface and options: runner/backends/ort-capi.ts (the one place it is loaded). Built only by
// `xpkg gpu install`, against the C API header of the matching onnxruntime release (pinned there).
#include <dlfcn.h>
#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <thread>
#include <cstring>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "onnxruntime_c_api.h"

namespace {

const OrtApiBase* base = nullptr;
const OrtApi* api = nullptr;
OrtEnv* env = nullptr;
OrtMemoryInfo* cpuInfo = nullptr;

// Throws the status's message (and frees it); the workers turn it into a rejected promise.
void check(OrtStatus* s) {
  if (!s) return;
  std::string m = api->GetErrorMessage(s);
  api->ReleaseStatus(s);
  throw std::runtime_error(m);
}

size_t elementSize(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return 4;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return 1;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return 2;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return 8;
    default: return 0;  // element types xpkg tensors do not carry
  }
}

// The CUDA runtime's copy and sync entry points, from the libcudart the CUDA provider loaded: a
// graph session (below) copies its inputs and outputs into and out of fixed device buffers itself.
struct Cudart {
  int (*memcpy)(void*, const void*, size_t, int) = nullptr;  // cudaMemcpy; kinds 1 H2D, 2 D2H
  int (*streamSync)(void*) = nullptr;                        // cudaStreamSynchronize
  int (*setDevice)(int) = nullptr;                           // cudaSetDevice
  int (*setDeviceFlags)(unsigned) = nullptr;                 // cudaSetDeviceFlags (optional)
  const char* (*errorString)(int) = nullptr;                 // cudaGetErrorString
  std::string error;                                         // why it is not usable
};
const Cudart& cudart() {
  static Cudart c;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = nullptr;
    for (const char* n : {"libcudart.so.13", "libcudart.so.12", "libcudart.so"})
      if ((lib = dlopen(n, RTLD_NOW | RTLD_LOCAL))) break;
    if (!lib) {
      c.error = std::string("libcudart not found: ") + dlerror();
      return;
    }
    c.memcpy = reinterpret_cast<int (*)(void*, const void*, size_t, int)>(dlsym(lib, "cudaMemcpy"));
    c.streamSync = reinterpret_cast<int (*)(void*)>(dlsym(lib, "cudaStreamSynchronize"));
    c.setDevice = reinterpret_cast<int (*)(int)>(dlsym(lib, "cudaSetDevice"));
    c.errorString = reinterpret_cast<const char* (*)(int)>(dlsym(lib, "cudaGetErrorString"));
    c.setDeviceFlags = reinterpret_cast<int (*)(unsigned)>(dlsym(lib, "cudaSetDeviceFlags"));
    if (!c.memcpy || !c.streamSync || !c.setDevice || !c.errorString) c.error = "libcudart lacks cudaMemcpy, cudaStreamSynchronize or cudaSetDevice";
  });
  return c;
}
void cudaCheck(int rc, const char* what) {
  if (rc != 0) throw std::runtime_error(std::string(what) + ": " + cudart().errorString(rc));
}

// init(path to libonnxruntime): loads the library (already loaded by onnxruntime-node: the same
// handle), takes the API of the header's version and the process's OrtEnv. Returns the version string.
Napi::Value InitApi(const Napi::CallbackInfo& info) {
  Napi::Env e = info.Env();
  const std::string path = info[0].As<Napi::String>();
  if (!api) {
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) throw Napi::Error::New(e, std::string("dlopen failed: ") + dlerror());
    using GetBase = const OrtApiBase* (*)();
    auto get = reinterpret_cast<GetBase>(dlsym(lib, "OrtGetApiBase"));
    if (!get) throw Napi::Error::New(e, "no OrtGetApiBase in " + path);
    base = get();
    const OrtApi* a = base->GetApi(ORT_API_VERSION);
    if (!a)
      throw Napi::Error::New(e, std::string("onnxruntime ") + base->GetVersionString() + " does not offer C API version " +
                                    std::to_string(ORT_API_VERSION));
    api = a;
    try {
      // onnxruntime keeps one OrtEnv per process: this is onnxruntime-node's, counted once more
      check(api->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "xpkg", &env));
      check(api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &cpuInfo));
    } catch (const std::exception& x) {
      api = nullptr;
      throw Napi::Error::New(e, x.what());
    }
  }
  return Napi::String::New(e, base->GetVersionString());
}

struct CreateOptions {
  std::string provider;  // "cpu" or "cuda"
  std::vector<std::pair<std::string, std::string>> providerOptions;
  int intraOpThreads = 0, interOpThreads = 1, graphOptimization = 99, logSeverity = 3;
  bool sequential = true, memArena = true, memPattern = true;
  std::vector<std::pair<std::string, std::string>> config;
  std::string profilePrefix;
  // CUDA graph: the session runs on fixed device buffers and replays one captured graph (its input
  // shapes never change: per-shape sessions). freeDims fix symbolic input dimensions, so shape
  // computations fold away and no node is left on the CPU (which would keep onnxruntime from capturing).
  bool cudaGraph = false;
  int deviceId = 0;
  std::vector<std::pair<std::string, std::string>> freeDims;
  // How a host thread waits for the device (cudaDeviceScheduleSpin 1, Yield 2, BlockingSync 4);
  // -1 leaves CUDA's default (spin while fewer contexts than cores). Process-wide, set once.
  int cudaSchedule = -1;
};

// cudaSetDeviceFlags for the device a CUDA session is made on, once per process (the flags belong to
// the device's primary context, which every session of the process shares).
void applyCudaSchedule(const CreateOptions& c) {
  static std::once_flag once;
  if (c.provider != "cuda" || c.cudaSchedule < 0) return;
  std::call_once(once, [&c] {
    const Cudart& r = cudart();
    if (!r.error.empty()) throw std::runtime_error(r.error);
    if (!r.setDeviceFlags) throw std::runtime_error("libcudart lacks cudaSetDeviceFlags");
    cudaCheck(r.setDevice(c.deviceId), "cudaSetDevice");
    cudaCheck(r.setDeviceFlags(static_cast<unsigned>(c.cudaSchedule)), "cudaSetDeviceFlags");
  });
}

std::vector<std::pair<std::string, std::string>> pairs(const Napi::Object& o, const char* key) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!o.Has(key) || o.Get(key).IsUndefined()) return out;
  Napi::Array a = o.Get(key).As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Array kv = a.Get(i).As<Napi::Array>();
    out.emplace_back(kv.Get(0u).As<Napi::String>(), kv.Get(1u).As<Napi::String>());
  }
  return out;
}

OrtSessionOptions* sessionOptions(const CreateOptions& c) {
  OrtSessionOptions* so = nullptr;
  check(api->CreateSessionOptions(&so));
  try {
    check(api->SetIntraOpNumThreads(so, c.intraOpThreads));
    check(api->SetInterOpNumThreads(so, c.interOpThreads));
    check(api->SetSessionExecutionMode(so, c.sequential ? ORT_SEQUENTIAL : ORT_PARALLEL));
    check(api->SetSessionGraphOptimizationLevel(so, static_cast<GraphOptimizationLevel>(c.graphOptimization)));
    check(c.memArena ? api->EnableCpuMemArena(so) : api->DisableCpuMemArena(so));
    check(c.memPattern ? api->EnableMemPattern(so) : api->DisableMemPattern(so));
    check(api->SetSessionLogSeverityLevel(so, c.logSeverity));
    for (const auto& [k, v] : c.config) check(api->AddSessionConfigEntry(so, k.c_str(), v.c_str()));
    if (!c.profilePrefix.empty()) check(api->EnableProfiling(so, c.profilePrefix.c_str()));
    for (const auto& [k, v] : c.freeDims) check(api->AddFreeDimensionOverrideByName(so, k.c_str(), std::stoll(v)));
    if (c.provider == "cuda") {
      OrtCUDAProviderOptionsV2* cuda = nullptr;
      check(api->CreateCUDAProviderOptions(&cuda));
      std::vector<const char*> keys, values;
      for (const auto& [k, v] : c.providerOptions) keys.push_back(k.c_str()), values.push_back(v.c_str());
      OrtStatus* s = api->UpdateCUDAProviderOptions(cuda, keys.data(), values.data(), keys.size());
      if (!s) s = api->SessionOptionsAppendExecutionProvider_CUDA_V2(so, cuda);
      api->ReleaseCUDAProviderOptions(cuda);
      check(s);
    } else if (c.provider != "cpu") {
      throw std::runtime_error("provider " + c.provider + " is not offered by this binding");
    }
  } catch (...) {
    api->ReleaseSessionOptions(so);
    throw;
  }
  return so;
}

struct Input {
  std::string name;
  ONNXTensorElementDataType type;
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

// Host tensor (a CPU OrtValue) of this type and shape, from onnxruntime's default CPU allocator.
OrtValue* hostTensor(const std::vector<int64_t>& dims, ONNXTensorElementDataType type, void** data) {
  OrtAllocator* a = nullptr;
  check(api->GetAllocatorWithDefaultOptions(&a));
  OrtValue* v = nullptr;
  check(api->CreateTensorAsOrtValue(a, dims.data(), dims.size(), type, &v));
  if (OrtStatus* s = api->GetTensorMutableData(v, data)) api->ReleaseValue(v), check(s);
  return v;
}

// A session's CUDA graph: fixed device buffers for its inputs and outputs, bound once, into which
// each run copies its host inputs (and out of which its outputs); onnxruntime captures the graph on
// the first run over them and replays it afterwards (one launch instead of one per node). The first
// call runs the model normally (capture skipped) for the output shapes, then binds and captures. A
// capture that fails leaves the session running normally, with the reason kept (graphState()).
// onnxruntime captures in CUDA's global capture mode: while one session captures, a CUDA call from
// any other thread (another session's run, a copy) fails and breaks the capture. Captures take this
// lock alone; every other run and copy shares it.
std::shared_mutex capturing;

struct Graph {
  struct Buf {
    std::string name;
    ONNXTensorElementDataType type;
    std::vector<int64_t> dims;
    size_t bytes = 0;
    OrtValue* value = nullptr;
    void* ptr = nullptr;
  };
  std::mutex m;  // error and captured, read by graphState() on the JS thread (runs already take turns on owner_)
  int device = 0;
  OrtRunOptions* skip = nullptr;  // gpu_graph_id -1: a normal run, no capture or replay
  OrtMemoryInfo* info = nullptr;
  OrtAllocator* alloc = nullptr;
  OrtIoBinding* binding = nullptr;
  std::vector<Buf> ins, outs;
  bool captured = false;
  std::string error;

  explicit Graph(int d) : device(d) {
    check(api->CreateRunOptions(&skip));
    check(api->AddRunConfigEntry(skip, "gpu_graph_id", "-1"));
    owner_ = std::thread([this] { loop(); });
  }
  ~Graph() {
    {
      std::lock_guard<std::mutex> lk(qm_);
      stop_ = true;
    }
    qcv_.notify_all();
    owner_.join();
    release();
    if (skip) api->ReleaseRunOptions(skip);
  }
  // onnxruntime's CUDA provider keeps a captured graph per thread (its per-thread context): a run
  // on another thread would capture again, then alongside other runs, which CUDA refuses. So every
  // run of a graph session happens on the session's own thread; the caller waits for it.
  void onOwner(const std::function<void()>& f) {
    std::packaged_task<void()> task(f);
    std::future<void> done = task.get_future();
    {
      std::lock_guard<std::mutex> lk(qm_);
      q_.push_back(std::move(task));
    }
    qcv_.notify_one();
    done.get();  // rethrows what f threw
  }
  void release() {
    if (binding) api->ReleaseIoBinding(binding), binding = nullptr;
    for (auto* v : {&ins, &outs})
      for (Buf& b : *v)
        if (b.value) api->ReleaseValue(b.value);
    ins.clear(), outs.clear();
    if (alloc) api->ReleaseAllocator(alloc), alloc = nullptr;
    if (info) api->ReleaseMemoryInfo(info), info = nullptr;
    captured = false;
  }
  Buf deviceBuf(const std::string& name, ONNXTensorElementDataType type, const std::vector<int64_t>& dims) {
    size_t n = 1;
    for (int64_t d : dims) n *= static_cast<size_t>(d);
    Buf b{name, type, dims, n * elementSize(type)};
    check(api->CreateTensorAsOrtValue(alloc, dims.data(), dims.size(), type, &b.value));
    check(api->GetTensorMutableData(b.value, &b.ptr));
    return b;
  }
  // Binds buffers shaped like this run's inputs and the outputs `outs` it produced, then captures.
  void bindAndCapture(OrtSession* s, const std::vector<Input>& in, const std::vector<std::string>& outNames, const std::vector<OrtValue*>& outs0) {
    const Cudart& c = cudart();
    if (!c.error.empty()) throw std::runtime_error(c.error);
    check(api->CreateMemoryInfo("Cuda", OrtArenaAllocator, device, OrtMemTypeDefault, &info));
    check(api->CreateAllocator(s, info, &alloc));
    check(api->CreateIoBinding(s, &binding));
    for (const Input& x : in) {
      ins.push_back(deviceBuf(x.name, x.type, x.dims));
      check(api->BindInput(binding, x.name.c_str(), ins.back().value));
    }
    for (size_t i = 0; i < outs0.size(); i++) {
      OrtTensorTypeAndShapeInfo* t = nullptr;
      check(api->GetTensorTypeAndShape(outs0[i], &t));
      ONNXTensorElementDataType et;
      size_t rank = 0;
      OrtStatus* st = api->GetTensorElementType(t, &et);
      if (!st) st = api->GetDimensionsCount(t, &rank);
      std::vector<int64_t> dims(rank);
      if (!st) st = api->GetDimensions(t, dims.data(), rank);
      api->ReleaseTensorTypeAndShapeInfo(t);
      check(st);
      outs.push_back(deviceBuf(outNames[i], et, dims));
      check(api->BindOutput(binding, outNames[i].c_str(), outs.back().value));
    }
    copyIn(in);
    check(api->RunWithBinding(s, nullptr, binding));  // onnxruntime runs until it has captured
    captured = true;
  }

 private:
  std::thread owner_;
  std::mutex qm_;
  std::condition_variable qcv_;
  std::deque<std::packaged_task<void()>> q_;
  bool stop_ = false;
  void loop() {
    for (;;) {
      std::packaged_task<void()> task;
      {
        std::unique_lock<std::mutex> lk(qm_);
        qcv_.wait(lk, [this] { return stop_ || !q_.empty(); });
        if (q_.empty()) return;
        task = std::move(q_.front());
        q_.pop_front();
      }
      task();
    }
  }

 public:
  void copyIn(const std::vector<Input>& in) {
    const Cudart& c = cudart();
    cudaCheck(c.setDevice(device), "cudaSetDevice");
    if (in.size() != ins.size()) throw std::runtime_error("a graph session takes the inputs it was captured with");
    for (const Input& x : in) {
      Buf* b = nullptr;
      for (Buf& k : ins)
        if (k.name == x.name) b = &k;
      if (!b || b->type != x.type || b->dims != x.dims)
        throw std::runtime_error("input " + x.name + ": a graph session runs at the shape it was captured at");
      cudaCheck(c.memcpy(b->ptr, x.data.data(), b->bytes, 1), "cudaMemcpy to the device");
    }
    // a copy from pageable memory may return before its DMA ends: the legacy stream waits for it
    cudaCheck(c.streamSync(nullptr), "cudaStreamSynchronize");
  }
  // Copies the inputs in, replays, and copies every output out into new host tensors.
  void replay(OrtSession* s, const std::vector<Input>& in, const std::vector<std::string>& outNames, std::vector<OrtValue*>& result) {
    copyIn(in);
    check(api->RunWithBinding(s, nullptr, binding));  // ends with a sync of onnxruntime's stream
    const Cudart& c = cudart();
    result.assign(outNames.size(), nullptr);
    for (size_t i = 0; i < outNames.size(); i++) {
      const Buf* b = nullptr;
      for (const Buf& k : outs)
        if (k.name == outNames[i]) b = &k;
      if (!b) throw std::runtime_error("output " + outNames[i] + " is not bound in this graph session");
      void* host = nullptr;
      result[i] = hostTensor(b->dims, b->type, &host);
      if (b->bytes) cudaCheck(c.memcpy(host, b->ptr, b->bytes, 2), "cudaMemcpy to the host");
    }
  }
};

class Session : public Napi::ObjectWrap<Session> {
 public:
  static Napi::FunctionReference ctor;
  static Napi::Function Define(Napi::Env e) {
    return DefineClass(e, "Session",
                       {InstanceMethod("run", &Session::Run), InstanceMethod("release", &Session::Release),
                        InstanceMethod("endProfiling", &Session::EndProfiling),
                        InstanceMethod("graphState", &Session::GraphState)});
  }
  explicit Session(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Session>(info) {
    // the graph first: if it throws, the session is still the creator's to release
    if (info.Length() > 1 && info[1].ToBoolean()) {
      try {
        graph_ = std::make_unique<Graph>(info.Length() > 2 ? info[2].As<Napi::Number>().Int32Value() : 0);
      } catch (const std::exception& x) {
        throw Napi::Error::New(info.Env(), x.what());
      }
    }
    session_ = info[0].As<Napi::External<OrtSession>>().Data();
  }
  ~Session() override { releaseNow(); }

  OrtSession* session_ = nullptr;
  std::unique_ptr<Graph> graph_;
  std::atomic<int> running_{0};
  bool releaseWanted_ = false;

  // The graph's buffers and binding go before the session they belong to.
  void releaseNow() {
    std::shared_lock<std::shared_mutex> shared(capturing);  // it frees device memory
    graph_.reset();
    if (session_) api->ReleaseSession(session_), session_ = nullptr;
  }
  void done() {
    if (--running_ == 0 && releaseWanted_) releaseNow();
  }

 private:
  Napi::Value Run(const Napi::CallbackInfo& info);
  // Released now, or after the runs in flight finish.
  Napi::Value Release(const Napi::CallbackInfo& info) {
    if (running_ > 0) releaseWanted_ = true;
    else releaseNow();
    return info.Env().Undefined();
  }
  // "off" (no graph asked), "pending" (not run yet), "captured", or "failed: <why>" (runs go on without it).
  Napi::Value GraphState(const Napi::CallbackInfo& info) {
    if (!graph_) return Napi::String::New(info.Env(), "off");
    std::lock_guard<std::mutex> lk(graph_->m);
    if (!graph_->error.empty()) return Napi::String::New(info.Env(), "failed: " + graph_->error);
    return Napi::String::New(info.Env(), graph_->captured ? "captured" : "pending");
  }
  Napi::Value EndProfiling(const Napi::CallbackInfo& info) {
    if (!session_) throw Napi::Error::New(info.Env(), "session released");
    OrtAllocator* alloc = nullptr;
    char* file = nullptr;
    try {
      check(api->GetAllocatorWithDefaultOptions(&alloc));
      check(api->SessionEndProfiling(session_, alloc, &file));
    } catch (const std::exception& x) {
      throw Napi::Error::New(info.Env(), x.what());
    }
    Napi::String s = Napi::String::New(info.Env(), file ? file : "");
    if (file) alloc->Free(alloc, file);
    return s;
  }
};
Napi::FunctionReference Session::ctor;

Napi::Array names(Napi::Env e, OrtSession* s, bool inputs) {
  OrtAllocator* alloc = nullptr;
  check(api->GetAllocatorWithDefaultOptions(&alloc));
  size_t n = 0;
  check(inputs ? api->SessionGetInputCount(s, &n) : api->SessionGetOutputCount(s, &n));
  Napi::Array out = Napi::Array::New(e, n);
  for (size_t i = 0; i < n; i++) {
    char* name = nullptr;
    check(inputs ? api->SessionGetInputName(s, i, alloc, &name) : api->SessionGetOutputName(s, i, alloc, &name));
    Napi::Object m = Napi::Object::New(e);
    m.Set("name", name);
    alloc->Free(alloc, name);
    OrtTypeInfo* ti = nullptr;
    check(inputs ? api->SessionGetInputTypeInfo(s, i, &ti) : api->SessionGetOutputTypeInfo(s, i, &ti));
    const OrtTensorTypeAndShapeInfo* t = nullptr;
    if (OrtStatus* cs = api->CastTypeInfoToTensorInfo(ti, &t)) api->ReleaseStatus(cs), t = nullptr;  // null: not a tensor
    if (t) {
      ONNXTensorElementDataType et;
      size_t rank = 0;
      check(api->GetTensorElementType(t, &et));
      check(api->GetDimensionsCount(t, &rank));
      std::vector<int64_t> dims(rank);
      std::vector<const char*> sym(rank, nullptr);
      check(api->GetDimensions(t, dims.data(), rank));
      check(api->GetSymbolicDimensions(t, sym.data(), rank));
      Napi::Array shape = Napi::Array::New(e, rank);
      for (size_t k = 0; k < rank; k++) {
        if (dims[k] >= 0) shape.Set(k, Napi::Number::New(e, static_cast<double>(dims[k])));
        else if (sym[k] && *sym[k]) shape.Set(k, Napi::String::New(e, sym[k]));
        else shape.Set(k, Napi::Number::New(e, -1));
      }
      m.Set("type", Napi::Number::New(e, et));
      m.Set("shape", shape);
    }
    api->ReleaseTypeInfo(ti);
    out.Set(i, m);
  }
  return out;
}

// create(bytes: Uint8Array, options) → Promise<Session>; the bytes are copied (JS may detach them meanwhile).
class CreateWorker : public Napi::AsyncWorker {
 public:
  CreateWorker(Napi::Env e, std::vector<uint8_t> bytes, CreateOptions o)
      : Napi::AsyncWorker(e, "xpkg-ort-create"), deferred_(Napi::Promise::Deferred::New(e)), bytes_(std::move(bytes)), o_(std::move(o)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      applyCudaSchedule(o_);
      OrtSessionOptions* so = sessionOptions(o_);
      std::shared_lock<std::shared_mutex> shared(capturing);  // it allocates on the device
      OrtStatus* s = api->CreateSessionFromArray(env, bytes_.data(), bytes_.size(), so, &session_);
      api->ReleaseSessionOptions(so);
      check(s);
    } catch (const std::exception& x) {
      SetError(x.what());
    }
  }
  void OnOK() override {
    Napi::Env e = Env();
    try {
      Napi::Object obj = Session::ctor.New({Napi::External<OrtSession>::New(e, session_), Napi::Boolean::New(e, o_.cudaGraph),
                                            Napi::Number::New(e, o_.deviceId)});
      OrtSession* s = session_;
      session_ = nullptr;  // the object owns it now
      obj.Set("inputs", names(e, s, true));
      obj.Set("outputs", names(e, s, false));
      deferred_.Resolve(obj);
    } catch (const std::exception& x) {
      if (session_) api->ReleaseSession(session_);
      deferred_.Reject(Napi::Error::New(e, x.what()).Value());
    }
  }
  void OnError(const Napi::Error& err) override { deferred_.Reject(err.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<uint8_t> bytes_;
  CreateOptions o_;
  OrtSession* session_ = nullptr;
};

Napi::Value Create(const Napi::CallbackInfo& info) {
  Napi::Env e = info.Env();
  if (!api) throw Napi::Error::New(e, "init() first");
  Napi::Uint8Array b = info[0].As<Napi::Uint8Array>();
  Napi::Object o = info[1].As<Napi::Object>();
  CreateOptions c;
  c.provider = o.Get("provider").As<Napi::String>();
  c.providerOptions = pairs(o, "providerOptions");
  c.config = pairs(o, "config");
  c.intraOpThreads = o.Get("intraOpThreads").As<Napi::Number>().Int32Value();
  c.interOpThreads = o.Get("interOpThreads").As<Napi::Number>().Int32Value();
  c.graphOptimization = o.Get("graphOptimization").As<Napi::Number>().Int32Value();
  c.logSeverity = o.Get("logSeverity").As<Napi::Number>().Int32Value();
  c.sequential = o.Get("sequential").ToBoolean();
  c.memArena = o.Get("memArena").ToBoolean();
  c.memPattern = o.Get("memPattern").ToBoolean();
  if (o.Has("profilePrefix") && o.Get("profilePrefix").IsString()) c.profilePrefix = o.Get("profilePrefix").As<Napi::String>();
  c.cudaGraph = o.Has("cudaGraph") && o.Get("cudaGraph").ToBoolean();
  if (o.Has("deviceId") && o.Get("deviceId").IsNumber()) c.deviceId = o.Get("deviceId").As<Napi::Number>().Int32Value();
  c.freeDims = pairs(o, "freeDims");
  if (o.Has("cudaSchedule") && o.Get("cudaSchedule").IsNumber()) c.cudaSchedule = o.Get("cudaSchedule").As<Napi::Number>().Int32Value();
  if (c.cudaGraph) {
    if (c.provider != "cuda") throw Napi::Error::New(e, "cudaGraph needs the cuda provider");
    c.providerOptions.emplace_back("enable_cuda_graph", "1");
  }
  std::vector<uint8_t> bytes(b.Data(), b.Data() + b.ByteLength());
  auto* w = new CreateWorker(e, std::move(bytes), std::move(c));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// session.run(inputs: {name, type, dims, data}[], outputNames) → Promise<{name, type, dims, data}[]>:
// inputs copied in, onnxruntime runs on a worker, outputs (host memory) copied into new arrays.
class RunWorker : public Napi::AsyncWorker {
 public:
  RunWorker(Napi::Env e, Session* s, std::vector<Input> in, std::vector<std::string> out)
      : Napi::AsyncWorker(e, "xpkg-ort-run"), deferred_(Napi::Promise::Deferred::New(e)), s_(s), in_(std::move(in)), outNames_(std::move(out)) {
    s_->Ref();
    s_->running_++;
  }
  ~RunWorker() override {
    for (OrtValue* v : outs_) if (v) api->ReleaseValue(v);
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      Graph* g = s_->graph_.get();
      if (!g) {
        std::shared_lock<std::shared_mutex> shared(capturing);
        return plainRun(nullptr);
      }
      g->onOwner([this, g] {
        std::lock_guard<std::mutex> lk(g->m);
        {
          std::shared_lock<std::shared_mutex> shared(capturing);
          if (!g->error.empty()) return plainRun(g->skip);
          if (g->captured) return g->replay(s_->session_, in_, outNames_, outs_);
        }
        // the first run alone too: onnxruntime may start capturing on a session's first run
        std::unique_lock<std::shared_mutex> alone(capturing);
        plainRun(g->skip);  // this call's result, and the output shapes to bind
        try {
          g->bindAndCapture(s_->session_, in_, outNames_, outs_);
        } catch (const std::exception& x) {
          g->error = x.what();
          g->release();
        }
      });
    } catch (const std::exception& x) {
      SetError(x.what());
    }
  }
  // A run on host tensors (onnxruntime copies them to the device and the outputs back).
  void plainRun(const OrtRunOptions* ro) {
    std::vector<OrtValue*> ins(in_.size(), nullptr);
    try {
      std::vector<const char*> inNames, outNames;
      for (size_t i = 0; i < in_.size(); i++) {
        Input& x = in_[i];
        check(api->CreateTensorWithDataAsOrtValue(cpuInfo, x.data.data(), x.data.size(), x.dims.data(), x.dims.size(), x.type, &ins[i]));
        inNames.push_back(x.name.c_str());
      }
      for (const auto& n : outNames_) outNames.push_back(n.c_str());
      outs_.assign(outNames.size(), nullptr);
      check(api->Run(s_->session_, ro, inNames.data(), ins.data(), ins.size(), outNames.data(), outNames.size(), outs_.data()));
    } catch (...) {
      for (OrtValue* v : ins) if (v) api->ReleaseValue(v);
      throw;
    }
    for (OrtValue* v : ins) if (v) api->ReleaseValue(v);
  }
  void OnOK() override {
    Napi::Env e = Env();
    try {
      Napi::Array result = Napi::Array::New(e, outs_.size());
      for (size_t i = 0; i < outs_.size(); i++) {
        OrtTensorTypeAndShapeInfo* t = nullptr;
        check(api->GetTensorTypeAndShape(outs_[i], &t));
        ONNXTensorElementDataType et;
        size_t rank = 0, count = 0;
        OrtStatus* s = api->GetTensorElementType(t, &et);
        if (!s) s = api->GetDimensionsCount(t, &rank);
        std::vector<int64_t> dims(rank);
        if (!s) s = api->GetDimensions(t, dims.data(), rank);
        if (!s) s = api->GetTensorShapeElementCount(t, &count);
        api->ReleaseTensorTypeAndShapeInfo(t);
        check(s);
        const size_t es = elementSize(et);
        if (!es) throw std::runtime_error("output " + outNames_[i] + " has element type " + std::to_string(et) + ", which xpkg tensors do not carry");
        void* data = nullptr;
        check(api->GetTensorMutableData(outs_[i], &data));
        Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(e, count * es);
        if (count) std::memcpy(buf.Data(), data, count * es);
        Napi::Object o = Napi::Object::New(e);
        Napi::Array d = Napi::Array::New(e, rank);
        for (size_t k = 0; k < rank; k++) d.Set(k, Napi::Number::New(e, static_cast<double>(dims[k])));
        o.Set("name", outNames_[i]);
        o.Set("type", Napi::Number::New(e, et));
        o.Set("dims", d);
        o.Set("data", buf);
        result.Set(i, o);
      }
      deferred_.Resolve(result);
    } catch (const std::exception& x) {
      deferred_.Reject(Napi::Error::New(e, x.what()).Value());
    }
    finish();
  }
  void OnError(const Napi::Error& err) override {
    deferred_.Reject(err.Value());
    finish();
  }

 private:
  void finish() {
    s_->done();
    s_->Unref();
  }
  Napi::Promise::Deferred deferred_;
  Session* s_;
  std::vector<Input> in_;
  std::vector<std::string> outNames_;
  std::vector<OrtValue*> outs_;
};

Napi::Value Session::Run(const Napi::CallbackInfo& info) {
  Napi::Env e = info.Env();
  if (!session_ || releaseWanted_) throw Napi::Error::New(e, "session released");
  Napi::Array a = info[0].As<Napi::Array>();
  Napi::Array o = info[1].As<Napi::Array>();
  std::vector<Input> in;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Object t = a.Get(i).As<Napi::Object>();
    Input x;
    x.name = t.Get("name").As<Napi::String>();
    x.type = static_cast<ONNXTensorElementDataType>(t.Get("type").As<Napi::Number>().Int32Value());
    Napi::Array d = t.Get("dims").As<Napi::Array>();
    size_t count = 1;
    for (uint32_t k = 0; k < d.Length(); k++) {
      const int64_t v = d.Get(k).As<Napi::Number>().Int64Value();
      if (v < 0) throw Napi::Error::New(e, "negative dimension");
      x.dims.push_back(v);
      count *= static_cast<size_t>(v);
    }
    Napi::TypedArray data = t.Get("data").As<Napi::TypedArray>();
    const size_t es = elementSize(x.type);
    if (!es || data.ByteLength() != count * es) throw Napi::Error::New(e, "input " + x.name + ": data does not match its type and dims");
    const uint8_t* p = static_cast<const uint8_t*>(data.ArrayBuffer().Data()) + data.ByteOffset();
    x.data.assign(p, p + data.ByteLength());
    in.push_back(std::move(x));
  }
  std::vector<std::string> outs;
  for (uint32_t i = 0; i < o.Length(); i++) outs.push_back(o.Get(i).As<Napi::String>());
  auto* w = new RunWorker(e, this, std::move(in), std::move(outs));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Object ModuleInit(Napi::Env e, Napi::Object exports) {
  Napi::Function c = Session::Define(e);
  Session::ctor = Napi::Persistent(c);
  exports.Set("init", Napi::Function::New(e, InitApi, "init"));
  exports.Set("create", Napi::Function::New(e, Create, "create"));
  exports.Set("apiVersion", Napi::Number::New(e, ORT_API_VERSION));
  return exports;
}

}  // namespace

NODE_API_MODULE(xpkg_ort, ModuleInit)
