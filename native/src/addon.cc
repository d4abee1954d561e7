// Module entry: registers the kernels and reports what this build was made with.
#include <cstdlib>
#include <string>

#include "util.h"

#if !defined(_WIN32)
#include <dlfcn.h>
#endif

// The x86 features (Linux /proc/cpuinfo names) this build's code may use, from the compiler's
// target macros, as a marker native/index.ts reads from the file BEFORE loading it: code built for
// a newer CPU (XPKG_NATIVE_MARCH=native) can fault with SIGILL anywhere, even while loading.
#if defined(__SSSE3__)
#define XN_ISA_0 "ssse3,"
#else
#define XN_ISA_0 ""
#endif
#if defined(__SSE4_1__)
#define XN_ISA_1 "sse4_1,"
#else
#define XN_ISA_1 ""
#endif
#if defined(__SSE4_2__)
#define XN_ISA_2 "sse4_2,"
#else
#define XN_ISA_2 ""
#endif
#if defined(__POPCNT__)
#define XN_ISA_3 "popcnt,"
#else
#define XN_ISA_3 ""
#endif
#if defined(__AVX__)
#define XN_ISA_4 "avx,"
#else
#define XN_ISA_4 ""
#endif
#if defined(__AVX2__)
#define XN_ISA_5 "avx2,"
#else
#define XN_ISA_5 ""
#endif
#if defined(__FMA__)
#define XN_ISA_6 "fma,"
#else
#define XN_ISA_6 ""
#endif
#if defined(__F16C__)
#define XN_ISA_7 "f16c,"
#else
#define XN_ISA_7 ""
#endif
#if defined(__BMI__)
#define XN_ISA_8 "bmi1,"
#else
#define XN_ISA_8 ""
#endif
#if defined(__BMI2__)
#define XN_ISA_9 "bmi2,"
#else
#define XN_ISA_9 ""
#endif
#if defined(__LZCNT__)
#define XN_ISA_10 "abm,"
#else
#define XN_ISA_10 ""
#endif
#if defined(__MOVBE__)
#define XN_ISA_11 "movbe,"
#else
#define XN_ISA_11 ""
#endif
#if defined(__AES__)
#define XN_ISA_12 "aes,"
#else
#define XN_ISA_12 ""
#endif
#if defined(__PCLMUL__)
#define XN_ISA_13 "pclmulqdq,"
#else
#define XN_ISA_13 ""
#endif
#if defined(__SHA__)
#define XN_ISA_14 "sha_ni,"
#else
#define XN_ISA_14 ""
#endif
#if defined(__ADX__)
#define XN_ISA_15 "adx,"
#else
#define XN_ISA_15 ""
#endif
#if defined(__GFNI__)
#define XN_ISA_16 "gfni,"
#else
#define XN_ISA_16 ""
#endif
#if defined(__VAES__)
#define XN_ISA_17 "vaes,"
#else
#define XN_ISA_17 ""
#endif
#if defined(__VPCLMULQDQ__)
#define XN_ISA_18 "vpclmulqdq,"
#else
#define XN_ISA_18 ""
#endif
#if defined(__AVXVNNI__)
#define XN_ISA_19 "avx_vnni,"
#else
#define XN_ISA_19 ""
#endif
#if defined(__AVX512F__)
#define XN_ISA_20 "avx512f,"
#else
#define XN_ISA_20 ""
#endif
#if defined(__AVX512BW__)
#define XN_ISA_21 "avx512bw,"
#else
#define XN_ISA_21 ""
#endif
#if defined(__AVX512VL__)
#define XN_ISA_22 "avx512vl,"
#else
#define XN_ISA_22 ""
#endif
#if defined(__AVX512DQ__)
#define XN_ISA_23 "avx512dq,"
#else
#define XN_ISA_23 ""
#endif
#if defined(__AVX512CD__)
#define XN_ISA_24 "avx512cd,"
#else
#define XN_ISA_24 ""
#endif
#if defined(__AVX512IFMA__)
#define XN_ISA_25 "avx512ifma,"
#else
#define XN_ISA_25 ""
#endif
#if defined(__AVX512VBMI__)
#define XN_ISA_26 "avx512vbmi,"
#else
#define XN_ISA_26 ""
#endif
#if defined(__AVX512VBMI2__)
#define XN_ISA_27 "avx512_vbmi2,"
#else
#define XN_ISA_27 ""
#endif
#if defined(__AVX512VNNI__)
#define XN_ISA_28 "avx512_vnni,"
#else
#define XN_ISA_28 ""
#endif
#if defined(__AVX512BF16__)
#define XN_ISA_29 "avx512_bf16,"
#else
#define XN_ISA_29 ""
#endif
#if defined(__AVX512BITALG__)
#define XN_ISA_30 "avx512_bitalg,"
#else
#define XN_ISA_30 ""
#endif
#if defined(__AVX512VPOPCNTDQ__)
#define XN_ISA_31 "avx512_vpopcntdq,"
#else
#define XN_ISA_31 ""
#endif
#if defined(__AVX512FP16__)
#define XN_ISA_32 "avx512_fp16,"
#else
#define XN_ISA_32 ""
#endif
#if defined(_MSC_VER)
#define XN_USED
#else
#define XN_USED __attribute__((used))
#endif
extern "C" XN_USED const char xpkg_native_isa[] = "xpkg-native-isa:" XN_ISA_0 XN_ISA_1 XN_ISA_2 XN_ISA_3 XN_ISA_4 XN_ISA_5 XN_ISA_6 XN_ISA_7 XN_ISA_8 XN_ISA_9 XN_ISA_10 XN_ISA_11 XN_ISA_12 XN_ISA_13 XN_ISA_14 XN_ISA_15 XN_ISA_16 XN_ISA_17 XN_ISA_18 XN_ISA_19 XN_ISA_20 XN_ISA_21 XN_ISA_22 XN_ISA_23 XN_ISA_24 XN_ISA_25 XN_ISA_26 XN_ISA_27 XN_ISA_28 XN_ISA_29 XN_ISA_30 XN_ISA_31 XN_ISA_32 ";";

namespace xn {

void registerImage(Napi::Env env, Napi::Object exports);
void registerDetect(Napi::Env env, Napi::Object exports);
void registerClassify(Napi::Env env, Napi::Object exports);

namespace {

// Bumped whenever an entry point's options change, so index.ts refuses a stale build.
constexpr int kAbi = 2;

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("abi", kAbi);
  // simd: what the dispatched kernels run at here (the CPU's, capped by XPKG_NATIVE_SIMD); buildSimd:
  // what the whole build was compiled for; isa: the features it requires.
  const int level = xk::simdSupport();
  o.Set("simd", level > 0 ? xk::simdName(level) : xk::simdLevel());
  o.Set("buildSimd", xk::simdLevel());
  o.Set("isa", std::string(xpkg_native_isa));
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

// Ends the process at once with the given status: no static destructors, atexit handlers or thread
// joins (onnxruntime's, libuv's, V8's: ~80-100 ms after a CLI run). The caller has flushed its output.
Napi::Value ExitNow(const Napi::CallbackInfo& info) {
  std::_Exit(info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1);
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  exports.Set("cudaProbe", Napi::Function::New(env, CudaProbe, "cudaProbe"));
  exports.Set("floatToHalf", Napi::Function::New(env, FloatToHalf, "floatToHalf"));
  exports.Set("exitNow", Napi::Function::New(env, ExitNow, "exitNow"));
  registerImage(env, exports);
  registerDetect(env, exports);
  registerClassify(env, exports);
  return exports;
}

}  // namespace xn

static Napi::Object InitXpkg(Napi::Env env, Napi::Object exports) { return xn::Init(env, exports); }

NODE_API_MODULE(xpkg_native, InitXpkg)
