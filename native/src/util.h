// Binding plumbing shared by every kernel entry point.
//
// Each exported function takes ONE options object (built and validated by native/index.ts) and a
// boolean `async`. Everything is re-checked here on the JS thread, since the raw API bypasses
// TypeScript: every number must be finite (or a permitted infinity), integral where it is a size or
// index, and in range, and sizes are computed with overflow-checked int64 arithmetic.
//
// Memory (async): a libuv worker must never read or write memory JavaScript can free while it
// runs. A reference to a typed array does not pin its memory: its ArrayBuffer can be detached
// (transfer, structuredClone) and the backing store then freed with its new owner, and N-API has
// no way to pin it. So an async call copies its inputs into memory the job owns, and its outputs
// go to job-owned scratch copied into the caller's arrays on the JS thread at completion, after
// checking they are still attached and large enough. Sync calls read and write in place (no JS
// runs meanwhile). Outputs of known size are typed arrays the caller allocated; data-dependent
// outputs are built in result() on the JS thread. Those copies and scratch live in blocks from a
// process-wide pool (Block), so a call does not pay fresh pages (faults, mmap/munmap) for them, and
// an image copies only the bytes of its rows (a window of a larger image: not the whole stride).
#pragma once

#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "common.h"

namespace xn {

// The largest integer a double holds exactly: the bound of every int64 size or offset option.
constexpr double kMaxSafe = 9007199254740991.0;

// An error thrown on the JS thread with a stable code that native/dispatch.ts keeps (instead of
// E_NATIVE_KERNEL): a detached or shrunk buffer is the caller's argument error.
inline Napi::Error codedError(Napi::Env env, const std::string& message, const char* code) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

inline bool detached(const Napi::TypedArray& ta) { return ta.ArrayBuffer().IsDetached(); }

// Reusable memory for async copies and scratch: power-of-two size classes (64 B up), grow-only free
// lists, at most kRetain bytes kept (a block beyond that is freed), thread-safe. Leaked on purpose
// (never destroyed): a Block released during exit must not find it gone.
class BlockPool {
 public:
  static BlockPool& get() {
    static BlockPool* pool = new BlockPool();
    return *pool;
  }
  static int sizeClass(size_t bytes) {
    int c = 6;
    while (c < 62 && (size_t{1} << c) < bytes) c++;
    return c;
  }
  uint8_t* take(int c) {
    {
      std::lock_guard<std::mutex> l(m_);
      std::vector<uint8_t*>& f = free_[c];
      if (!f.empty()) {
        uint8_t* p = f.back();
        f.pop_back();
        retained_ -= size_t{1} << c;
        return p;
      }
    }
    void* p = std::malloc(size_t{1} << c);
    if (!p) throw std::bad_alloc();
    return static_cast<uint8_t*>(p);
  }
  void give(uint8_t* p, int c) {
    {
      std::lock_guard<std::mutex> l(m_);
      if (retained_ + (size_t{1} << c) <= kRetain) {
        try {
          free_[c].push_back(p);
          retained_ += size_t{1} << c;
          return;
        } catch (...) {
        }
      }
    }
    std::free(p);
  }

 private:
  static constexpr size_t kRetain = size_t{64} << 20;
  std::mutex m_;
  std::vector<uint8_t*> free_[63];
  size_t retained_ = 0;
};

// At least `bytes` bytes (uninitialised) from BlockPool, given back when destroyed.
class Block {
 public:
  explicit Block(size_t bytes) : class_(BlockPool::sizeClass(bytes)), data_(BlockPool::get().take(class_)) {}
  Block(Block&& b) noexcept : class_(b.class_), data_(b.data_) { b.data_ = nullptr; }
  Block& operator=(Block&&) = delete;
  Block(const Block&) = delete;
  ~Block() {
    if (data_) BlockPool::get().give(data_, class_);
  }
  uint8_t* get() const { return data_; }

 private:
  int class_;
  uint8_t* data_;
};

// The buffers of one call: async copies of inputs, and output scratch with where it goes.
struct Io {
  bool async = false;
  std::vector<Block> copies;
  struct Out {
    const char* key;
    Napi::Reference<Napi::TypedArray> target;
    size_t begin, count, elem;  // elements [begin, begin + count) of target, elem bytes each
    Block scratch;
  };
  std::vector<Out> outs;
  // JS thread, after the job ran: copies scratch into the caller's arrays, or returns the key of
  // one that was detached or shrunk meanwhile (then nothing is written).
  const char* finish() {
    for (Out& o : outs) {
      Napi::TypedArray ta = o.target.Value();
      if (detached(ta) || ta.ElementLength() < o.begin + o.count) return o.key;
    }
    for (Out& o : outs) {
      Napi::TypedArray ta = o.target.Value();
      if (o.count) std::memcpy(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset() + o.begin * o.elem, o.scratch.get(), o.count * o.elem);
    }
    return nullptr;
  }
};

// The async input copy, on the JS thread: a large one (an image: megabytes) in parallel on the
// kernels' thread pool (a core copies ~10 GB/s; several copy faster), a small one as one memcpy.
// rows of rowBytes, srcStride apart in src, packed in dst.
inline void copyIn(uint8_t* dst, const uint8_t* src, int64_t rows, int64_t rowBytes, int64_t srcStride) {
  const int64_t total = rows * rowBytes;
  if (srcStride == rowBytes) {
    // contiguous: 256 KiB pieces
    constexpr int64_t kPiece = int64_t{1} << 18;
    const int threads = total >= (int64_t{2} << 20) ? std::min(4, xk::hardwareThreads()) : 1;
    xk::parallelFor((total + kPiece - 1) / kPiece, threads, 2, [&](int64_t a, int64_t b) {
      const int64_t end = std::min(total, b * kPiece);
      std::memcpy(dst + a * kPiece, src + a * kPiece, static_cast<size_t>(end - a * kPiece));
    });
    return;
  }
  const int threads = total >= (int64_t{2} << 20) ? std::min(4, xk::hardwareThreads()) : 1;
  xk::parallelFor(rows, threads, std::max<int64_t>(1, (int64_t{1} << 19) / rowBytes), [&](int64_t a, int64_t b) {
    for (int64_t y = a; y < b; y++) std::memcpy(dst + y * rowBytes, src + y * srcStride, static_cast<size_t>(rowBytes));
  });
}

class Opts {
 public:
  Opts(const Napi::CallbackInfo& info, Io& io) : env_(info.Env()), io_(io) {
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env_, "xpkg native: options must be an object");
    obj_ = info[0].As<Napi::Object>();
    io.async = info.Length() > 1 && info[1].ToBoolean().Value();
  }
  bool has(const char* key) const {
    Napi::Value v = obj_.Get(key);
    return !v.IsUndefined() && !v.IsNull();
  }
  // A real number: never NaN; infinite only where allowInf.
  double real(const char* key, bool allowInf) const {
    Napi::Value v = obj_.Get(key);
    if (!v.IsNumber()) fail(key, "a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (std::isnan(d) || (!allowInf && std::isinf(d))) fail(key, allowInf ? "a number (not NaN)" : "a finite number");
    return d;
  }
  double num(const char* key) const { return real(key, false); }
  double num(const char* key, double dflt) const { return has(key) ? num(key) : dflt; }
  double numOrInf(const char* key) const { return real(key, true); }
  // An integer in [lo, hi] (both within the exact range of a double).
  int64_t integer(const char* key, double lo, double hi) const {
    const double d = num(key);
    if (d != std::trunc(d) || d < lo || d > hi)
      fail(key, ("an integer in [" + std::to_string(static_cast<int64_t>(lo)) + ", " + std::to_string(static_cast<int64_t>(hi)) + "]").c_str());
    return static_cast<int64_t>(d);
  }
  int i32(const char* key, int lo, int hi) const { return static_cast<int>(integer(key, lo, hi)); }
  int i32(const char* key, int lo, int hi, int dflt) const { return has(key) ? i32(key, lo, hi) : dflt; }
  int threads() const { return i32("threads", 1, 256, 1); }
  bool flag(const char* key, bool dflt = false) const {
    Napi::Value v = obj_.Get(key);
    if (v.IsUndefined() || v.IsNull()) return dflt;
    if (!v.IsBoolean()) fail(key, "a boolean");
    return v.As<Napi::Boolean>().Value();
  }
  // An input typed array: its elements, in place (sync) or as a job-owned copy (async).
  template <class T>
  const T* in(const char* key, napi_typedarray_type type, size_t* length, bool optional = false) const {
    Napi::Value v = obj_.Get(key);
    if (optional && (v.IsUndefined() || v.IsNull())) {
      *length = 0;
      return nullptr;
    }
    Napi::TypedArray ta = typedArray(key, v, type);
    *length = ta.ElementLength();
    const T* p = reinterpret_cast<const T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
    if (!io_.async || *length == 0) return p;
    io_.copies.emplace_back(*length * sizeof(T));
    copyIn(io_.copies.back().get(), reinterpret_cast<const uint8_t*>(p), 1, static_cast<int64_t>(*length * sizeof(T)), static_cast<int64_t>(*length * sizeof(T)));
    return reinterpret_cast<const T*>(io_.copies.back().get());
  }
  // An input typed array in place, even for an async call (the caller copies what it needs: rows).
  template <class T>
  const T* view(const char* key, napi_typedarray_type type, size_t* length) const {
    Napi::TypedArray ta = typedArray(key, obj_.Get(key), type);
    *length = ta.ElementLength();
    return reinterpret_cast<const T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
  }
  // Image rows at p (height rows of rowBytes every *stride bytes, checked by the caller): as they
  // are (sync), or (async) a job-owned copy of just those bytes with the rows packed (*stride becomes
  // rowBytes; the kernels address rows only through the stride), so a window of a larger image
  // copies the window, not every byte between its first and last pixel.
  const uint8_t* rows(const uint8_t* p, int height, int64_t rowBytes, int64_t* stride) const {
    if (!io_.async) return p;
    io_.copies.emplace_back(static_cast<size_t>(xk::mulSize(height, rowBytes)));
    uint8_t* q = io_.copies.back().get();
    copyIn(q, p, height, rowBytes, *stride);
    *stride = rowBytes;
    return q;
  }
  // Element count of an output typed array (checked: type, attached).
  size_t outLength(const char* key, napi_typedarray_type type) const { return typedArray(key, obj_.Get(key), type).ElementLength(); }
  // Elements [begin, begin + count) of an output typed array, written by the kernel: in place
  // (sync) or job-owned scratch copied there at completion (async).
  template <class T>
  T* out(const char* key, napi_typedarray_type type, int64_t begin, int64_t count) const {
    Napi::TypedArray ta = typedArray(key, obj_.Get(key), type);
    if (begin < 0 || count < 0 || static_cast<uint64_t>(xk::addSize(begin, count)) > ta.ElementLength())
      throw xk::KernelError(std::string("output '") + key + "' is too small");
    if (!io_.async) return reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset()) + begin;
    io_.outs.push_back({key, Napi::Persistent(ta), static_cast<size_t>(begin), static_cast<size_t>(count), sizeof(T),
                        Block(static_cast<size_t>(count) * sizeof(T) + 1)});
    return reinterpret_cast<T*>(io_.outs.back().scratch.get());
  }
  bool isType(const char* key, napi_typedarray_type type) const {
    Napi::Value v = obj_.Get(key);
    return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == type;
  }

 private:
  Napi::TypedArray typedArray(const char* key, Napi::Value v, napi_typedarray_type type) const {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) fail(key, typeName(type));
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    if (detached(ta)) throw codedError(env_, std::string("xpkg native: option '") + key + "' is a detached buffer", "E_NATIVE_ARGUMENT");
    return ta;
  }
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
  Io& io_;
  Napi::Object obj_;
};

struct Job {
  Io io;
  virtual ~Job() = default;
  virtual void run() = 0;                                  // any thread; may throw
  virtual Napi::Value result(Napi::Env env) { return env.Undefined(); }  // JS thread
};

class Worker : public Napi::AsyncWorker {
 public:
  Worker(Napi::Env env, std::unique_ptr<Job> job)
      : Napi::AsyncWorker(env, "xpkg-native"), job_(std::move(job)), deferred_(Napi::Promise::Deferred::New(env)) {}
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
  void OnOK() override {
    if (const char* key = job_->io.finish()) {
      deferred_.Reject(codedError(Env(), std::string("xpkg native: output '") + key + "' was detached or shrunk while the kernel ran", "E_NATIVE_ARGUMENT").Value());
      return;
    }
    deferred_.Resolve(job_->result(Env()));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::unique_ptr<Job> job_;
  Napi::Promise::Deferred deferred_;
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
inline Napi::Value dispatch(const Napi::CallbackInfo& info, std::unique_ptr<Job> job) {
  Napi::Env env = info.Env();
  if (!job->io.async) {
    try {
      job->run();
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    return job->result(env);
  }
  Worker* w = new Worker(env, std::move(job));
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
// A row stays under 2 GiB so the kernels' int column offsets (x * channels) cannot overflow.
inline xk::ImageView readImage(const Opts& o) {
  xk::ImageView im;
  im.width = o.i32("width", 1, INT32_MAX);
  im.height = o.i32("height", 1, INT32_MAX);
  im.channels = o.i32("channels", 1, 4);
  im.stride = o.integer("stride", 0, kMaxSafe);
  if (static_cast<int64_t>(im.width) * im.channels > INT32_MAX) throw xk::KernelError("image rows must be under 2 GiB");
  size_t len = 0;
  im.data = o.view<uint8_t>("data", napi_uint8_array, &len);
  xk::checkImage(im);
  const int64_t row = static_cast<int64_t>(im.width) * im.channels;
  const int64_t need = xk::addSize(xk::mulSize(im.height - 1, im.stride), row);
  if (static_cast<uint64_t>(need) > len) throw xk::KernelError("image data is shorter than height * stride");
  if (!im.data) throw xk::KernelError("image data is null");
  im.data = o.rows(im.data, im.height, row, &im.stride);
  return im;
}

// Output tensor of `size` elements at outOffset: out (Float32Array, Uint16Array of half bits or Uint8Array),
// nhwc, outChannels, chanMap (Int32Array of 3), norm (Float64Array of 9: mul[3], add[3], pad[3]).
// The kernel sees the region at offset 0 (in place, or async scratch).
inline int readOutChannels(const Opts& o) {
  const int c = o.i32("outChannels", 1, 3);
  if (c != 1 && c != 3) throw xk::KernelError("output channels must be 1 or 3");
  return c;
}
inline xk::TensorOut readTensorOut(const Opts& o, int64_t size) {
  xk::TensorOut t;
  t.f16 = o.isType("out", napi_uint16_array);
  t.u8 = o.isType("out", napi_uint8_array);
  const int64_t offset = o.has("outOffset") ? o.integer("outOffset", 0, kMaxSafe) : 0;
  t.data = t.f16  ? static_cast<void*>(o.out<uint16_t>("out", napi_uint16_array, offset, size))
           : t.u8 ? static_cast<void*>(o.out<uint8_t>("out", napi_uint8_array, offset, size))
                  : static_cast<void*>(o.out<float>("out", napi_float32_array, offset, size));
  t.offset = 0;
  t.nhwc = o.flag("nhwc");
  t.channels = readOutChannels(o);
  size_t n = 0;
  const int32_t* map = o.in<int32_t>("chanMap", napi_int32_array, &n);
  if (n != 3) throw xk::KernelError("chanMap must hold 3 numbers");
  const double* norm = o.in<double>("norm", napi_float64_array, &n);
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
