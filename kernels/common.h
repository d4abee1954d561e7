// Shared helpers for the xpkg fused kernels: deterministic parallel loops, half floats, build facts.
//
// Every kernel is a plain C++17 function over raw pointers so the Node binding, the ASan build and
// any standalone test can call it alike. Kernels throw xk::KernelError on bad input they can detect;
// the TypeScript layer validates first, so a throw here means a binding bug or a caller that
// bypassed TypeScript.
#pragma once

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace xk {

struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Overflow-checked size arithmetic over non-negative int64 (element counts and byte offsets).
inline int64_t mulSize(int64_t a, int64_t b) {
  if (a < 0 || b < 0 || (a != 0 && b > INT64_MAX / a)) throw KernelError("size out of range");
  return a * b;
}
inline int64_t addSize(int64_t a, int64_t b) {
  if (a < 0 || b < 0 || a > INT64_MAX - b) throw KernelError("size out of range");
  return a + b;
}

inline int hardwareThreads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

namespace detail {

// One parallelFor call: its chunks, handed out by an atomic counter to the caller and to pool
// threads alike. Shared (shared_ptr) so a pool thread may still touch it after the caller returned.
struct ForJob {
  void (*call)(void* ctx, int64_t begin, int64_t end) = nullptr;
  void* ctx = nullptr;  // the caller's fn: only called for claimed chunks, all done before it returns
  int64_t n = 0, chunks = 0;
  std::atomic<int64_t> next{0};  // next chunk to claim
  std::atomic<int64_t> left{0};  // chunks not finished
  std::mutex m;
  std::condition_variable cv;
  std::exception_ptr error;  // of the lowest-numbered chunk that threw, as the thread-per-chunk loop kept
  int64_t errorChunk = INT64_MAX;

  // Runs chunks until none is left to claim. Chunk bounds are the thread-per-chunk loop's.
  void work() {
    for (;;) {
      const int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) return;
      try {
        call(ctx, n * c / chunks, n * (c + 1) / chunks);
      } catch (...) {
        std::lock_guard<std::mutex> l(m);
        if (c < errorChunk) {
          errorChunk = c;
          error = std::current_exception();
        }
      }
      if (left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> l(m);
        cv.notify_all();
      }
    }
  }
  bool exhausted() const { return next.load(std::memory_order_relaxed) >= chunks; }
  // Waits for the chunks other threads claimed (they are running, so this never waits on itself).
  void wait() {
    std::unique_lock<std::mutex> l(m);
    cv.wait(l, [&] { return left.load(std::memory_order_acquire) == 0; });
    // Moved out, so a pool thread dropping the job last never touches the exception being handled.
    std::exception_ptr e = std::move(error);
    error = nullptr;
    l.unlock();
    if (e) std::rethrow_exception(e);
  }
};

// Worker threads shared by every parallelFor in the process, created on first need and grown up to
// the most helpers one call asked for (at most hardware threads - 1, and 63). Never destroyed: the
// threads are detached and simply vanish with the process, so exit joins nothing. A caller runs its
// own job's chunks too, and waits only for chunks a running thread claimed, so jobs from several
// threads at once (libuv workers, nested calls) complete even when every pool thread is busy.
class ThreadPool {
 public:
  static ThreadPool& get() {
    static ThreadPool* pool = new ThreadPool();  // leaked on purpose: no destructor at exit
    return *pool;
  }
  void run(const std::shared_ptr<ForJob>& job, int helpers) {
    int workers;
    {
      std::lock_guard<std::mutex> l(m_);
      const int want = std::min(helpers, cap_);
      while (workers_ < want) {
        try {
          std::thread([this] { loop(); }).detach();
          workers_++;
        } catch (...) {
          cap_ = workers_;  // no more threads to be had: run with those there are
          break;
        }
      }
      workers = workers_;
      if (workers > 0) queue_.push_back(job);
    }
    if (helpers >= workers)
      cv_.notify_all();
    else
      for (int i = 0; i < helpers; i++) cv_.notify_one();
    job->work();
    {
      std::lock_guard<std::mutex> l(m_);
      for (auto it = queue_.begin(); it != queue_.end(); ++it)
        if (*it == job) {
          queue_.erase(it);
          break;
        }
    }
    job->wait();
  }

 private:
  ThreadPool() : cap_(std::max(1, std::min(63, hardwareThreads() - 1))) {}
  void loop() {
    std::unique_lock<std::mutex> l(m_);
    for (;;) {
      cv_.wait(l, [&] { return !queue_.empty(); });
      std::shared_ptr<ForJob> job = queue_.front();
      if (job->exhausted()) {
        queue_.pop_front();
        continue;
      }
      l.unlock();
      job->work();
      job.reset();
      l.lock();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<ForJob>> queue_;
  int workers_ = 0;
  int cap_;
};

}  // namespace detail

// Runs fn(begin, end) over [0, n) in at most `threads` contiguous chunks. Chunk bounds depend only on
// n, threads and minPerChunk, never on scheduling, and every kernel writes disjoint outputs per
// index, so results are identical for any thread count. The chunks go to the calling thread and the
// process's persistent pool (detail::ThreadPool: no thread is created or joined per call); an
// exception in any chunk is rethrown here after all chunks finish (the lowest-numbered chunk's).
template <class F>
void parallelFor(int64_t n, int threads, int64_t minPerChunk, F&& fn) {
  if (n <= 0) return;
  if (minPerChunk < 1) minPerChunk = 1;
  int64_t chunks = threads < 1 ? 1 : threads;
  if (chunks > n / minPerChunk) chunks = n / minPerChunk;
  if (chunks < 1) chunks = 1;
  if (chunks == 1) {
    fn(int64_t(0), n);
    return;
  }
  using Fn = std::remove_reference_t<F>;
  auto job = std::make_shared<detail::ForJob>();
  job->call = [](void* ctx, int64_t a, int64_t b) { (*static_cast<Fn*>(ctx))(a, b); };
  job->ctx = const_cast<void*>(static_cast<const void*>(std::addressof(fn)));
  job->n = n;
  job->chunks = chunks;
  job->left.store(chunks, std::memory_order_relaxed);
  detail::ThreadPool::get().run(job, static_cast<int>(chunks - 1));
}

// float -> IEEE half bits, bit for bit native/portable/f16.ts (the one definition): round to
// nearest even (F16C's rule), and every NaN the canonical quiet NaN 0x7e00 (F16C would keep the
// sign and the top payload bits, which differ between platforms).
inline uint16_t floatToHalf(float f) {
  if (f != f) return 0x7e00u;
#if defined(__F16C__)
  return static_cast<uint16_t>(_cvtss_sh(f, 0));
#else
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t exp = (x >> 23) & 0xffu;
  uint32_t man = x & 0x7fffffu;
  if (exp == 0xffu) return static_cast<uint16_t>(sign | 0x7c00u);  // NaN returned above
  int32_t e = static_cast<int32_t>(exp) - 127 + 15;
  if (e >= 0x1f) return static_cast<uint16_t>(sign | 0x7c00u);
  if (e <= 0) {
    if (e < -10) return static_cast<uint16_t>(sign);
    man |= 0x800000u;
    uint32_t shift = static_cast<uint32_t>(14 - e);
    uint32_t half = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1u);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) half++;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = sign | (static_cast<uint32_t>(e) << 10) | (man >> 13);
  uint32_t rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) half++;  // may carry into the exponent: correct
  return static_cast<uint16_t>(half);
#endif
}

// The SIMD level the dispatched kernels (NMS) run at, chosen once from the CPU: 2 AVX-512F, 1 AVX2,
// 0 neither (or not x86). XPKG_NATIVE_SIMD=baseline|avx2 caps it, standing in for an older CPU.
inline int simdSupport() {
  static const int level = [] {
    int l = 0;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) l = __builtin_cpu_supports("avx512f") ? 2 : 1;
#endif
    const char* cap = std::getenv("XPKG_NATIVE_SIMD");
    if (cap && std::strcmp(cap, "baseline") == 0) l = 0;
    if (cap && std::strcmp(cap, "avx2") == 0 && l > 1) l = 1;
    return l;
  }();
  return level;
}
inline const char* simdName(int level) { return level == 2 ? "avx512" : level == 1 ? "avx2" : "baseline"; }

// SIMD level this translation unit was compiled for (from the compiler's target macros).
inline const char* simdLevel() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__)
  return "avx2";
#elif defined(__AVX__)
  return "avx";
#elif defined(__SSE4_2__)
  return "sse4.2";
#elif defined(__SSE2__)
  return "sse2";
#elif defined(__ARM_NEON)
  return "neon";
#else
  return "none";
#endif
}

// Pixel source shared by the image kernels: u8 interleaved rows with an arbitrary byte stride.
struct ImageView {
  const uint8_t* data = nullptr;
  int width = 0;
  int height = 0;
  int64_t stride = 0;  // bytes per row, >= width * channels
  int channels = 0;    // 1, 3 or 4
};

inline void checkImage(const ImageView& im) {
  if (!im.data && im.width > 0 && im.height > 0) throw KernelError("image data is null");
  if (im.width < 1 || im.height < 1) throw KernelError("image must be at least 1x1");
  if (im.channels != 1 && im.channels != 3 && im.channels != 4) throw KernelError("image channels must be 1, 3 or 4");
  if (im.stride < static_cast<int64_t>(im.width) * im.channels) throw KernelError("image stride is smaller than a row");
}

// Output tensor description shared by the image kernels: out = v * mul[k] + add[k] per output channel.
struct TensorOut {
  void* data = nullptr;  // float*, uint16_t* (half bits) or uint8_t*
  int64_t offset = 0;    // elements
  bool nhwc = false;
  bool f16 = false;
  bool u8 = false;       // pixels for a model that normalises itself: rounded half to even, clamped 0..255
  int channels = 3;      // 1 or 3
  int chanMap[3] = {0, 1, 2};  // output channel k reads source channel chanMap[k]
  float mul[3] = {1, 1, 1};
  float add[3] = {0, 0, 0};
  float pad[3] = {0, 0, 0};  // padding, already in output units
};

// Float to u8 as a Uint8ClampedArray stores it (NaN -> 0), so both backends write the same bytes.
inline uint8_t floatToU8(float v) {
  return v > 0 ? (v < 255 ? static_cast<uint8_t>(std::nearbyint(v)) : 255) : 0;
}

inline void storeValue(const TensorOut& t, int64_t index, float v) {
  if (t.u8)
    static_cast<uint8_t*>(t.data)[index] = floatToU8(v);
  else if (t.f16)
    static_cast<uint16_t*>(t.data)[index] = floatToHalf(v);
  else
    static_cast<float*>(t.data)[index] = v;
}

}  // namespace xk
