/*
 * Kernel time by kernel name, from CUPTI's activity records, for a process that runs CUDA work
 * through libraries (onnxruntime's CUDA provider) — the GPU machine has no Nsight Systems. Loaded
 * with LD_PRELOAD; recording is armed and disarmed from outside by files (CUPTI_ARM.on, .off), so
 * only the timed runs count, not pre-warming. On exit, or at disarm, writes the table to CUPTI_OUT.
 *   dev.sh cupti builds it on the device (KV: the kernel record version of that CUPTI).
 */
#include <cupti.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUF_BYTES (16u << 20)
typedef struct {
  char* name;
  unsigned long long ns, count;
} Ent;
static Ent ents[8192];
static int nents;
static unsigned long long first = ~0ull, last;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void CUPTIAPI req(uint8_t** buffer, size_t* size, size_t* max) {
  *buffer = (uint8_t*)aligned_alloc(8, BUF_BYTES);
  *size = BUF_BYTES;
  *max = 0;
}
static void add(const char* name, unsigned long long a, unsigned long long b) {
  pthread_mutex_lock(&mu);
  if (a < first) first = a;
  if (b > last) last = b;
  int i = 0;
  for (; i < nents; i++)
    if (strcmp(ents[i].name, name) == 0) break;
  if (i == nents && nents < 8192) ents[nents++].name = strdup(name);
  if (i < nents) {
    ents[i].ns += b - a;
    ents[i].count++;
  }
  pthread_mutex_unlock(&mu);
}
static void CUPTIAPI done(CUcontext c, uint32_t s, uint8_t* buffer, size_t size, size_t valid) {
  CUpti_Activity* r = NULL;
  while (cuptiActivityGetNextRecord(buffer, valid, &r) == CUPTI_SUCCESS) {
    if (r->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || r->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
      KV* k = (KV*)r;
      add(k->name ? k->name : "?", k->start, k->end);
    }
  }
  free(buffer);
}
static int cmp(const void* a, const void* b) {
  unsigned long long x = ((const Ent*)a)->ns, y = ((const Ent*)b)->ns;
  return x < y ? 1 : x > y ? -1 : 0;
}
static void report(void) {
  cuptiActivityFlushAll(1);
  const char* path = getenv("CUPTI_OUT");
  FILE* f = path ? fopen(path, "w") : stderr;
  if (!f) return;
  pthread_mutex_lock(&mu);
  qsort(ents, nents, sizeof(Ent), cmp);
  unsigned long long total = 0, n = 0;
  for (int i = 0; i < nents; i++) total += ents[i].ns, n += ents[i].count;
  fprintf(f, "kernels %llu, kernel time %.3f ms, span %.3f ms\n", n, total / 1e6, last > first ? (last - first) / 1e6 : 0);
  for (int i = 0; i < nents && i < 60; i++)
    fprintf(f, "%9.3f ms %5.1f%% %7llu  %.160s\n", ents[i].ns / 1e6, 100.0 * ents[i].ns / (total ? total : 1), ents[i].count,
            ents[i].name);
  pthread_mutex_unlock(&mu);
  if (f != stderr) fclose(f);
}
static void* watch(void* arg) {
  const char* base = getenv("CUPTI_ARM");
  char on[512], off[512];
  snprintf(on, sizeof on, "%s.on", base);
  snprintf(off, sizeof off, "%s.off", base);
  while (access(on, F_OK) != 0) usleep(500);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  while (access(off, F_OK) != 0) usleep(500);
  cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  report();
  return NULL;
}
__attribute__((constructor)) static void init(void) {
  if (!getenv("CUPTI_ARM")) return;
  cuptiActivityRegisterCallbacks(req, done);
  pthread_t t;
  pthread_create(&t, NULL, watch, NULL);
  pthread_detach(t);
}
