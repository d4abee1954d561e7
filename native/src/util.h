// Binding plumbing shared by every kernel entry point.
//
// Each exported function takes ONE options object (built and validated by native/index.ts) and a
// boolean `async`. The options are read on the JS thread into a Job holding raw pointers into the
// caller's typed arrays; a persistent reference to the options object keeps those arrays alive
// while the job runs on a libuv worker (Napi::AsyncWorker). Outputs of known size are typed arrays
// the caller allocated; data-dependent outputs are built in result() on the JS thread.
#pragma once

#include <napi.h>

#include <memory>
#include <string>

#include "common.h"

namespace xn {

class Opts {
 public:
  Opts(Napi::Env env, Napi::Value v) : env_(env) {
    if (!v.IsObject()) throw Napi::TypeError::New(env, "xpkg native: options must be an object");
    obj_ = v.As<Napi::Object>();
  }
  Napi::Object object() const { return obj_; }
  bool has(const char* key) const {
    Napi::Value v = obj_.Get(key);
    return !v.IsUndefined() && !v.IsNull();
  }
  double num(const char* key) const {
    Napi::Value v = obj_.Get(key);
    if (!v.IsNumber()) fail(key, "a number");
    return v.As<Napi::Number>().DoubleValue();
  }
  double num(const char* key, double dflt) const { return has(key) ? num(key) : dflt; }
  int i32(const char* key) const { return static_cast<int>(num(key)); }
  int i32(const char* key, int dflt) const { return has(key) ? i32(key) : dflt; }
  bool flag(const char* key, bool dflt = false) const {
    Napi::Value v = obj_.Get(key);
    if (v.IsUndefined() || v.IsNull()) return dflt;
    if (!v.IsBoolean()) fail(key, "a boolean");
    return v.As<Napi::Boolean>().Value();
  }
  // Pointer and element count of a typed array property of the given type.
  template <class T>
  T* array(const char* key, napi_typedarray_type type, size_t* length = nullptr, bool optional = false) const {
    Napi::Value v = obj_.Get(key);
    if (optional && (v.IsUndefined() || v.IsNull())) {
      if (length) *length = 0;
      return nullptr;
    }
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) fail(key, typeName(type));
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    if (length) *length = ta.ElementLength();
    return reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
  }
  bool isType(const char* key, napi_typedarray_type type) const {
    Napi::Value v = obj_.Get(key);
    return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == type;
  }

 private:
  [[noreturn]] void fail(const char* key, const char* what) const {
    throw Napi::TypeError::New(env_, std::string("xpkg native: option '") + key + "' must be " + what);
  }
  static const char* typeName(napi_typedarray_type t) {
    switch (t) {
      case napi_uint8_array: return "a Uint8Array";
      case napi_uint16_array: return "a Uint16Array";
      case napi_int32_array: return "an Int32Array";
      case napi_float32_array: return "a Float32Array";
      case napi_float64_array: return "a Float64Array";
      default: return "a typed array";
    }
  }
  Napi::Env env_;
  Napi::Object obj_;
};

struct Job {
  virtual ~Job() = default;
  virtual void run() = 0;                                  // any thread; may throw
  virtual Napi::Value result(Napi::Env env) { return env.Undefined(); }  // JS thread
};

class Worker : public Napi::AsyncWorker {
 public:
  Worker(Napi::Env env, std::unique_ptr<Job> job, Napi::Object keep)
      : Napi::AsyncWorker(env, "xpkg-native"), job_(std::move(job)), deferred_(Napi::Promise::Deferred::New(env)) {
    keep_ = Napi::Persistent(keep);
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      job_->run();
    } catch (const std::exception& e) {
      SetError(e.what());
    } catch (...) {
      SetError("unknown native error");
    }
  }
  void OnOK() override { deferred_.Resolve(job_->result(Env())); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::unique_ptr<Job> job_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference keep_;
};

// Entry-point wrapper: node-addon-api converts only Napi::Error to a JS exception, so kernel errors
// thrown while reading options become Napi::Error here instead of terminating the process.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
}

// Runs the job now (sync) or on a worker (async, returns a Promise). Kernel errors become JS Errors
// whose message is the kernel's; index.ts turns them into NativeError with the caller's stack.
inline Napi::Value dispatch(const Napi::CallbackInfo& info, const Opts& opts, std::unique_ptr<Job> job) {
  Napi::Env env = info.Env();
  const bool async = info.Length() > 1 && info[1].ToBoolean().Value();
  if (!async) {
    try {
      job->run();
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    return job->result(env);
  }
  Worker* w = new Worker(env, std::move(job), opts.object());
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

template <class T, napi_typedarray_type Type, class ArrayT>
Napi::Value toTyped(Napi::Env env, const std::vector<T>& v) {
  ArrayT a = ArrayT::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(T));
  return a;
}
inline Napi::Value f32(Napi::Env env, const std::vector<float>& v) {
  return toTyped<float, napi_float32_array, Napi::Float32Array>(env, v);
}
inline Napi::Value i32(Napi::Env env, const std::vector<int32_t>& v) {
  return toTyped<int32_t, napi_int32_array, Napi::Int32Array>(env, v);
}

// Reads the image description every image kernel shares: data, width, height, stride, channels.
inline xk::ImageView readImage(const Opts& o) {
  xk::ImageView im;
  size_t len = 0;
  im.data = o.array<uint8_t>("data", napi_uint8_array, &len);
  im.width = o.i32("width");
  im.height = o.i32("height");
  im.channels = o.i32("channels");
  im.stride = static_cast<int64_t>(o.num("stride"));
  xk::checkImage(im);
  const int64_t need = (static_cast<int64_t>(im.height) - 1) * im.stride + static_cast<int64_t>(im.width) * im.channels;
  if (static_cast<int64_t>(len) < need) throw xk::KernelError("image data is shorter than height * stride");
  return im;
}

// Output tensor: out (Float32Array or Uint16Array of half bits), outOffset, nhwc, channels,
// chanMap (Int32Array of 3), norm (Float64Array of 9: mul[3], add[3], pad[3]).
inline xk::TensorOut readTensorOut(const Opts& o, size_t* length) {
  xk::TensorOut t;
  t.f16 = o.isType("out", napi_uint16_array);
  t.data = t.f16 ? static_cast<void*>(o.array<uint16_t>("out", napi_uint16_array, length))
                 : static_cast<void*>(o.array<float>("out", napi_float32_array, length));
  t.offset = static_cast<int64_t>(o.num("outOffset", 0));
  t.nhwc = o.flag("nhwc");
  t.channels = o.i32("outChannels");
  size_t n = 0;
  const int32_t* map = o.array<int32_t>("chanMap", napi_int32_array, &n);
  if (n != 3) throw xk::KernelError("chanMap must hold 3 numbers");
  const double* norm = o.array<double>("norm", napi_float64_array, &n);
  if (n != 9) throw xk::KernelError("norm must hold 9 numbers");
  for (int k = 0; k < 3; k++) {
    t.chanMap[k] = map[k];
    t.mul[k] = static_cast<float>(norm[k]);
    t.add[k] = static_cast<float>(norm[3 + k]);
    t.pad[k] = static_cast<float>(norm[6 + k]);
  }
  return t;
}

}  // namespace xn
