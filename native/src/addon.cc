// Module entry: registers the kernels and reports what this build was made with.
#include <string>

#include "util.h"

#if !defined(_WIN32)
#include <dlfcn.h>
#endif

namespace xn {

void registerImage(Napi::Env env, Napi::Object exports);
void registerDetect(Napi::Env env, Napi::Object exports);
void registerClassify(Napi::Env env, Napi::Object exports);

namespace {

// Bumped whenever an entry point's options change, so index.ts refuses a stale build.
constexpr int kAbi = 1;

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("abi", kAbi);
  o.Set("simd", xk::simdLevel());
#if defined(__F16C__)
  o.Set("f16c", true);
#else
  o.Set("f16c", false);
#endif
  o.Set("threads", xk::hardwareThreads());
#if defined(__clang__)
  o.Set("compiler", std::string("clang ") + __clang_version__);
#elif defined(__GNUC__)
  o.Set("compiler", std::string("gcc ") + __VERSION__);
#elif defined(_MSC_VER)
  o.Set("compiler", std::string("msvc ") + std::to_string(_MSC_VER));
#else
  o.Set("compiler", "unknown");
#endif
#if defined(__SANITIZE_ADDRESS__)
  o.Set("sanitized", true);
#else
  o.Set("sanitized", false);
#endif
  o.Set("napi", NAPI_VERSION);
  return o;
}

// floatToHalf(src: Float32Array, dst: Uint16Array): the kernels' float -> half conversion over an
// array, so tests can check it against native/portable/f16.ts bit for bit. Sync only.
Napi::Value FloatToHalf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array)
    throw Napi::TypeError::New(env, "floatToHalf(src: Float32Array, dst: Uint16Array)");
  Napi::Float32Array src = info[0].As<Napi::Float32Array>();
  Napi::Uint16Array dst = info[1].As<Napi::Uint16Array>();
  if (dst.ElementLength() < src.ElementLength()) throw Napi::RangeError::New(env, "floatToHalf: dst is shorter than src");
  for (size_t i = 0; i < src.ElementLength(); i++) dst[i] = xk::floatToHalf(src[i]);
  return env.Undefined();
}

// Loads the separately built CUDA library (kernels/cuda, built when nvcc exists) and asks it for
// devices. The addon itself never links CUDA, so a host without the toolkit still loads it.
Napi::Value CudaProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("loaded", false);
  o.Set("devices", 0);
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "cudaProbe(path: string)");
#if defined(_WIN32)
  o.Set("error", "not supported on Windows");
#else
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    o.Set("error", e ? e : "dlopen failed");
    return o;
  }
  using CountFn = int (*)();
  auto fn = reinterpret_cast<CountFn>(dlsym(h, "xpkg_cuda_device_count"));
  if (!fn) {
    o.Set("error", "xpkg_cuda_device_count not found");
    return o;
  }
  const int n = fn();
  o.Set("loaded", true);
  o.Set("devices", n > 0 ? n : 0);
  if (n < 0) o.Set("error", "CUDA runtime error " + std::to_string(-n));
  // The handle stays open: the library is cheap and a later GPU path will use it.
#endif
  return o;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  exports.Set("cudaProbe", Napi::Function::New(env, CudaProbe, "cudaProbe"));
  exports.Set("floatToHalf", Napi::Function::New(env, FloatToHalf, "floatToHalf"));
  registerImage(env, exports);
  registerDetect(env, exports);
  registerClassify(env, exports);
  return exports;
}

}  // namespace xn

static Napi::Object InitXpkg(Napi::Env env, Napi::Object exports) { return xn::Init(env, exports); }

NODE_API_MODULE(xpkg_native, InitXpkg)
