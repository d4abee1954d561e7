// Standalone check of the CUDA C API on small and edge-case inputs, meant to run under
// compute-sanitizer (memcheck, racecheck): every entry point, odd sizes, empty inputs, and a CPU
// recomputation of the NMS result on a small set. Exit status 0 = all checks passed.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "xpkg_cuda.h"

static int failures = 0;
#define CHECK(cond, msg)                                        \
  do {                                                          \
    if (!(cond)) {                                              \
      std::printf("FAIL %s (line %d)\n", msg, __LINE__);        \
      failures++;                                               \
    }                                                           \
  } while (0)
#define CU(x) CHECK((x) == 0, #x)

template <class T>
T* upload(const std::vector<T>& v) {
  T* d = nullptr;
  cudaMalloc(&d, std::max<size_t>(1, v.size()) * sizeof(T));
  if (!v.empty()) cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}
template <class T>
std::vector<T> download(const T* d, size_t n) {
  std::vector<T> v(n);
  if (n) cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return v;
}

static float iouf(const float* a, const float* b) {
  const float l = std::max(a[0], b[0]), r = std::min(a[2], b[2]), t = std::max(a[1], b[1]), bt = std::min(a[3], b[3]);
  const float w = std::max(r - l, 0.0f), h = std::max(bt - t, 0.0f), in = w * h;
  return in / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - in);
}

static void preprocessCases() {
  const int sizes[][4] = {{1, 1, 3, 8}, {7, 5, 4, 6}, {333, 777, 3, 64}, {1920, 1080, 3, 640}, {1920, 1080, 4, 642}};
  for (auto& s : sizes) {
    const int w = s[0], h = s[1], c = s[2], W = s[3];
    const int stride = w * c + 3;  // odd stride on purpose
    std::vector<uint8_t> img(static_cast<size_t>(stride) * h);
    for (size_t i = 0; i < img.size(); i++) img[i] = static_cast<uint8_t>(i * 131 + 7);
    XpkgPreprocess p{};
    p.src_width = w, p.src_height = h, p.src_stride = stride, p.src_channels = c;
    p.chan_map[0] = 0, p.chan_map[1] = 1, p.chan_map[2] = 2;
    p.width = W, p.height = W;
    const double sc = std::min(static_cast<double>(W) / w, static_cast<double>(W) / h);
    p.roi_width = std::max(1, std::min(W, static_cast<int>(std::lround(w * sc))));
    p.roi_height = std::max(1, std::min(W, static_cast<int>(std::lround(h * sc))));
    p.roi_x = (W - p.roi_width) / 2, p.roi_y = (W - p.roi_height) / 2;
    for (int k = 0; k < 3; k++) p.mul[k] = 1 / 255.0f, p.add[k] = 0, p.pad[k] = -1;
    uint8_t* d_src = upload(img);
    std::vector<float> poison(static_cast<size_t>(3) * W * W, NAN);
    float* d_dst = upload(poison);
    CU(xpkg_cuda_preprocess(d_src, d_dst, &p, nullptr));
    CU(cudaDeviceSynchronize());
    auto out = download(d_dst, poison.size());
    bool written = true, inRange = true;
    for (float v : out) written &= !std::isnan(v), inRange &= (v == -1.0f) || (v >= 0 && v <= 1.0f);
    CHECK(written, "preprocess wrote every output");
    CHECK(inRange, "preprocess values in [0,1] or pad");
    cudaFree(d_src), cudaFree(d_dst);
  }
}

static void nmsCases() {
  XpkgNmsWorkspace* ws = xpkg_cuda_nms_create(20000);
  CHECK(ws != nullptr, "workspace");
  const int ns[] = {0, 1, 63, 64, 65, 1000, 17000};
  for (int mode = 0; mode < 3; mode++)
  for (int n : ns) {
    CU(xpkg_cuda_nms_configure(ws, mode, 0));
    std::vector<float> boxes(static_cast<size_t>(n) * 4), scores(n);
    srand(n + 1);
    for (int i = 0; i < n; i++) {
      const float x = rand() % 600, y = rand() % 600, w = 5 + rand() % 60, h = 5 + rand() % 60;
      boxes[4 * i] = x, boxes[4 * i + 1] = y, boxes[4 * i + 2] = x + w, boxes[4 * i + 3] = y + h;
      scores[i] = (i % 97 == 5) ? NAN : static_cast<float>(rand()) / RAND_MAX;
    }
    float* db = upload(boxes);
    float* ds = upload(scores);
    int32_t* dk = upload(std::vector<int32_t>(std::max(1, n), -1));
    int32_t* dc = upload(std::vector<int32_t>(1, -1));
    CU(xpkg_cuda_nms(ws, db, ds, nullptr, n, 0.5f, 0.1f, n, dk, dc, nullptr));
    CU(cudaDeviceSynchronize());
    const int count = download(dc, 1)[0];
    auto keep = download(dk, std::max(0, count));
    // CPU greedy reference (scores distinct with overwhelming probability).
    std::vector<int> order;
    for (int i = 0; i < n; i++)
      if (scores[i] == scores[i] && scores[i] >= 0.1f) order.push_back(i);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return scores[a] > scores[b]; });
    std::vector<int> ref;
    for (int i : order) {
      bool drop = false;
      for (int k : ref)
        if (iouf(&boxes[4 * k], &boxes[4 * i]) > 0.5f) { drop = true; break; }
      if (!drop) ref.push_back(i);
    }
    CHECK(count == static_cast<int>(ref.size()), "nms count matches CPU");
    CHECK(std::equal(ref.begin(), ref.end(), keep.begin()) || count != static_cast<int>(ref.size()), "nms indices match CPU");
    int conv = 0, iters = 0;
    xpkg_cuda_nms_last_state(ws, &conv, &iters);
    std::printf("nms mode=%d n=%d kept=%d ref=%zu converged=%d iterations=%d\n", mode, n, count, ref.size(), conv, iters);
    cudaFree(db), cudaFree(ds), cudaFree(dk), cudaFree(dc);
  }
  CU(xpkg_cuda_nms_configure(ws, 0, 0));
  // Detector decode on a tiny head: 2 anchors, 2 classes, anchor 1 below threshold.
  const std::vector<float> head = {10, 50, 10, 50, 4, 4, 4, 4, 0.9f, 0.1f, 0.05f, 0.2f};  // [6 attrs, 2 anchors]
  float* dh = upload(head);
  float* dd = upload(std::vector<float>(12, NAN));
  int32_t* dc = upload(std::vector<int32_t>(1, -1));
  XpkgDetect p{};
  p.anchors = 2, p.attrs = 6, p.max_output = 2, p.score_threshold = 0.25f, p.iou_threshold = 0.5f, p.scale_x = 1, p.scale_y = 1;
  CU(xpkg_cuda_detect(ws, dh, &p, dd, dc, nullptr));
  CU(cudaDeviceSynchronize());
  const int count = download(dc, 1)[0];
  auto dets = download(dd, 6);
  CHECK(count == 1 && dets[0] == 8 && dets[2] == 12 && std::fabs(dets[4] - 0.9f) < 1e-6f && dets[5] == 0, "decode tiny head");
  cudaFree(dh), cudaFree(dd), cudaFree(dc);
  xpkg_cuda_nms_destroy(ws);
}

static void classifyCases() {
  const int B = 2, C = 5, P = 7;
  std::vector<float> x(static_cast<size_t>(B) * C * P);
  for (size_t i = 0; i < x.size(); i++) x[i] = static_cast<float>((i * 37) % 11);
  float* dx = upload(x);
  uint8_t* dl = upload(std::vector<uint8_t>(B * P, 255));
  float* ds = upload(std::vector<float>(B * P, NAN));
  CU(xpkg_cuda_argmax(dx, B, C, P, 1, dl, ds, nullptr));
  CU(cudaDeviceSynchronize());
  auto labels = download(dl, B * P);
  bool ok = true;
  for (int b = 0; b < B; b++)
    for (int p = 0; p < P; p++) {
      int arg = 0;
      for (int c = 1; c < C; c++)
        if (x[(b * C + c) * P + p] > x[(b * C + arg) * P + p]) arg = c;
      ok &= labels[b * P + p] == arg;
    }
  CHECK(ok, "argmax matches CPU");
  cudaFree(dx), cudaFree(dl), cudaFree(ds);
  // CTC: steps 300 (crosses a 256-thread chunk), blank 0, lengths cut one sequence.
  const int Bc = 3, T = 300, K = 6;
  std::vector<float> q(static_cast<size_t>(Bc) * T * K, 0.0f);
  for (int b = 0; b < Bc; b++)
    for (int t = 0; t < T; t++) q[(static_cast<size_t>(b) * T + t) * K + ((t / 3 + b) % K)] = 1.0f;
  float* dq = upload(q);
  int32_t* dlen = upload(std::vector<int32_t>{T, 100, 0});
  void* work = nullptr;
  cudaMalloc(&work, static_cast<size_t>(Bc) * T * 8);
  int32_t* ids = upload(std::vector<int32_t>(Bc * T, -1));
  float* conf = upload(std::vector<float>(Bc * T, NAN));
  int32_t* counts = upload(std::vector<int32_t>(Bc, -1));
  CU(xpkg_cuda_ctc(dq, Bc, T, K, dlen, 0, 1, 1, work, ids, conf, counts, nullptr));
  CU(cudaDeviceSynchronize());
  auto cnt = download(counts, Bc);
  auto hid = download(ids, Bc * T);
  const int lens[3] = {T, 100, 0};
  for (int b = 0; b < Bc; b++) {
    std::vector<int> ref;
    int prev = -1;
    for (int t = 0; t < lens[b]; t++) {
      const int c = (t / 3 + b) % K;
      if (c != 0 && c != prev) ref.push_back(c);
      prev = c;
    }
    CHECK(cnt[b] == static_cast<int>(ref.size()), "ctc count");
    CHECK(std::equal(ref.begin(), ref.end(), hid.begin() + b * T), "ctc ids");
  }
  cudaFree(dq), cudaFree(dlen), cudaFree(work), cudaFree(ids), cudaFree(conf), cudaFree(counts);
}

int main() {
  std::printf("devices: %d\n", xpkg_cuda_device_count());
  preprocessCases();
  nmsCases();
  classifyCases();
  std::printf(failures ? "SANITY FAILED: %d\n" : "SANITY OK\n", failures);
  return failures ? 1 : 0;
}
