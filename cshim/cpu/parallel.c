/* parallel.c: see parallel.h. */
#define _GNU_SOURCE
#include "parallel.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

/* Upper bound on threads per call; memory bandwidth is saturated long before this. */
#define TRTB__MAX_THREADS 64

static atomic_int g_num_threads; /* 0 = auto */
static pthread_once_t g_cpu_once = PTHREAD_ONCE_INIT;
static int32_t g_cpus = 1;

static void detect_cpus(void) {
  int32_t n = 0;
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
#endif
  if (n <= 0) {
    long s = sysconf(_SC_NPROCESSORS_ONLN);
    n = s > 0 ? (int32_t)s : 1;
  }
  g_cpus = n;
}

int32_t trtb__num_threads(void) {
  int32_t n = atomic_load_explicit(&g_num_threads, memory_order_relaxed);
  if (n <= 0) {
    pthread_once(&g_cpu_once, detect_cpus);
    n = g_cpus;
  }
  return n > TRTB__MAX_THREADS ? TRTB__MAX_THREADS : n;
}

TRTB_API int32_t trtb_set_num_threads(int32_t n) {
  return atomic_exchange(&g_num_threads, n < 0 ? 0 : n);
}

typedef struct {
  trtb__range_fn fn;
  void *ctx;
  uint64_t begin, end;
} chunk;

static void *run_chunk(void *p) {
  chunk *c = (chunk *)p;
  c->fn(c->ctx, c->begin, c->end);
  return NULL;
}

void trtb__parallel_for(uint64_t n, uint64_t grain, uint64_t align, trtb__range_fn fn, void *ctx) {
  if (n == 0) return;
  if (grain == 0) grain = 1;
  uint64_t threads = (uint64_t)trtb__num_threads();
  if (threads > n / grain) threads = n / grain;
  if (threads <= 1) {
    fn(ctx, 0, n);
    return;
  }
  uint64_t per = (n + threads - 1) / threads;
  per = (per + align - 1) / align * align;
  chunk chunks[TRTB__MAX_THREADS];
  pthread_t tids[TRTB__MAX_THREADS];
  int started[TRTB__MAX_THREADS];
  uint64_t count = 0;
  for (uint64_t b = 0; b < n && count < TRTB__MAX_THREADS; b += per, count++) {
    chunks[count] = (chunk){fn, ctx, b, b + per < n ? b + per : n};
  }
  /* Start chunks 1.., run chunk 0 here, then run any chunk whose thread did not start. */
  for (uint64_t i = 1; i < count; i++) started[i] = pthread_create(&tids[i], NULL, run_chunk, &chunks[i]) == 0;
  run_chunk(&chunks[0]);
  for (uint64_t i = 1; i < count; i++) {
    if (started[i]) pthread_join(tids[i], NULL);
    else run_chunk(&chunks[i]);
  }
}
