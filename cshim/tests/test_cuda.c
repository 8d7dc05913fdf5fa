/*
 * test_cuda.c: native checks of libtrtb_cuda (ctest). Exits 77 (ctest: skipped) when there is no
 * usable driver or device. Compares the GPU kernels with the CPU library bit for bit.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trtb.h"

static int g_failures;
#define EXPECT(cond)                                                      \
  do {                                                                    \
    if (!(cond)) {                                                        \
      fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
      g_failures++;                                                       \
    }                                                                     \
  } while (0)
#define OK(call)                                                                  \
  do {                                                                            \
    int32_t st_ = (call);                                                         \
    if (st_ != TRTB_OK) {                                                         \
      char msg_[512];                                                             \
      trtb_cuda_last_error(msg_, sizeof msg_);                                    \
      fprintf(stderr, "%s:%d: %s -> %d: %s\n", __FILE__, __LINE__, #call, st_, msg_); \
      g_failures++;                                                               \
      goto done;                                                                  \
    }                                                                             \
  } while (0)

int main(void) {
  EXPECT(trtb_cuda_abi_version() == TRTB_ABI_VERSION);
  int32_t n = -1;
  int32_t st = trtb_cuda_device_count(&n);
  if (st != TRTB_OK || n == 0) {
    char msg[512] = "";
    trtb_cuda_last_error(msg, sizeof msg);
    printf("trtb_test_cuda: skipped (status %d, %d devices) %s\n", st, n, msg);
    /* the clean "no GPU" answers only */
    return (st == TRTB_OK || st == TRTB_ERR_CUDA_UNAVAILABLE || st == TRTB_ERR_CUDA_NO_DEVICE) ? 77 : 1;
  }
  EXPECT(trtb_cuda_stream_destroy(NULL) == TRTB_OK && trtb_cuda_free(NULL) == TRTB_OK);

  trtb_cuda_stream *s = NULL;
  void *d_src = NULL, *d_dst = NULL;
  const uint64_t count = 3u << 20;
  uint32_t *h = malloc(count * 4);
  uint16_t *cpu = malloc(count * 2), *gpu = malloc(count * 2);
  uint64_t rng = 88172645463325252ull;
  for (uint64_t i = 0; i < count; i++) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    h[i] = (uint32_t)rng;
  }
  OK(trtb_cuda_stream_create(0, &s));
  OK(trtb_cuda_malloc(0, count * 4, &d_src));
  OK(trtb_cuda_malloc(0, count * 2, &d_dst));
  OK(trtb_cuda_memcpy_h2d(s, d_src, h, count * 4));
  int32_t kinds[2] = {TRTB_DTYPE_F16, TRTB_DTYPE_BF16};
  for (int k = 0; k < 2; k++) {
    OK(trtb_cuda_cast(s, d_src, count * 4, TRTB_DTYPE_F32, d_dst, count * 2, kinds[k]));
    OK(trtb_cuda_memcpy_d2h(s, gpu, d_dst, count * 2));
    OK(trtb_cuda_stream_sync(s));
    OK(trtb_cast(h, count * 4, TRTB_DTYPE_F32, cpu, count * 2, kinds[k]));
    EXPECT(memcmp(cpu, gpu, count * 2) == 0);
  }
  /* error path: misaligned device pointer */
  EXPECT(trtb_cuda_cast(s, (char *)d_src + 2, 8, TRTB_DTYPE_F32, d_dst, 4, TRTB_DTYPE_F16) == TRTB_ERR_INVALID_ARG);
  EXPECT(trtb_cuda_cast(NULL, d_src, 8, TRTB_DTYPE_F32, d_dst, 4, TRTB_DTYPE_F16) == TRTB_ERR_INVALID_ARG);
done:
  trtb_cuda_free(d_src);
  trtb_cuda_free(d_dst);
  trtb_cuda_stream_destroy(s);
  free(h), free(cpu), free(gpu);
  if (g_failures) return 1;
  printf("trtb_test_cuda: ok\n");
  return 0;
}
