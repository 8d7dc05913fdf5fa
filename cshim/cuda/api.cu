/*
 * api.cu: the public trtb_cuda_* entry points of libtrtb_cuda: devices, streams, memory,
 * copies, and argument checks in front of the kernel launchers in cshim/cuda/.
 *
 * Every CUDA runtime call is checked and turned into a status (see cuda_common.cuh). Every entry point
 * that touches a device calls cudaSetDevice first, because the caller may drive several GPUs from
 * one thread.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_common.cuh"
#include "cast.cuh"
#include "internal.h"
#include "quant.cuh"
#include "transpose.cuh"
#include "trtb.h"

// src/ffi/symbols.ts (DEVICE_PROPS) reads this layout by offset.
static_assert(sizeof(trtb_cuda_device_props) == 280, "trtb_cuda_device_props layout changed: update DEVICE_PROPS");
static_assert(offsetof(trtb_cuda_device_props, total_memory) == 16 && offsetof(trtb_cuda_device_props, name) == 24,
              "trtb_cuda_device_props layout changed: update DEVICE_PROPS");

struct trtb_cuda_stream {
  cudaStream_t stream;
  int32_t device;
};

// ----------------------------------------------------------------------------------------------
// helpers (the error mapping and the device checks are common/cuda_common.cu's)

static int32_t check_stream(const char *fn, const trtb_cuda_stream *s) {
  if (s == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: stream is NULL", fn);
  TRTB_CUDA_TRY(cudaSetDevice(s->device));
  return TRTB_OK;
}

static int32_t check_aligned(const char *fn, const char *name, const void *p, uint32_t align) {
  if ((uintptr_t)p % align != 0)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: %s (%p) is not aligned to its element size %u", fn, name, p, align);
  return TRTB_OK;
}

// ----------------------------------------------------------------------------------------------
// public entry points

extern "C" {

TRTB_API uint32_t trtb_cuda_abi_version(void) { return TRTB_ABI_VERSION; }
TRTB_API const char *trtb_cuda_status_str(int32_t status) { return trtb__status_str(status); }
TRTB_API int32_t trtb_cuda_last_error(char *buf, uint64_t buf_len) { return trtb__last_error_copy(buf, buf_len); }

TRTB_API uint32_t trtb_cuda_features(void) {
  uint32_t f = 0;
  // TRTB_HAVE_CUBLASLT is not defined by the build: libtrtb_cuda has no cuBLASLt code (the GEMMs
  // are libtrtb_engine's), so the bit stays clear.
#if defined(TRTB_HAVE_CUBLASLT)
  f |= TRTB_CUDA_FEATURE_CUBLASLT;
#endif
#if defined(TRTB_HAVE_TENSORRT)
  f |= TRTB_CUDA_FEATURE_TENSORRT;
#endif
  return f;
}

TRTB_API int32_t trtb_cuda_runtime_version(void) { return CUDART_VERSION; }

TRTB_API int32_t trtb_cuda_driver_version(void) {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return v;
}

TRTB_API int32_t trtb_cuda_device_count(int32_t *out) { return trtb__cuda_device_count("trtb_cuda_device_count", out); }

TRTB_API int32_t trtb_cuda_device_props_get(int32_t device, trtb_cuda_device_props *props) {
  const char *fn = "trtb_cuda_device_props_get";
  if (props == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: props is NULL", fn);
  if (props->struct_size < sizeof(trtb_cuda_device_props))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: struct_size %u is smaller than this library's %u", fn,
                      props->struct_size, (unsigned)sizeof(trtb_cuda_device_props));
  int32_t st = trtb__cuda_use_device(fn, device);
  if (st != TRTB_OK) return st;
  cudaDeviceProp p;
  TRTB_CUDA_TRY(cudaGetDeviceProperties(&p, device));
  props->major = p.major;
  props->minor = p.minor;
  props->multiprocessors = p.multiProcessorCount;
  props->total_memory = (uint64_t)p.totalGlobalMem;
  trtb__cuda_copy_name(props->name, sizeof props->name, p.name, sizeof p.name);
  return TRTB_OK;
}

TRTB_API int32_t trtb_cuda_device_sync(int32_t device) {
  int32_t st = trtb__cuda_use_device("trtb_cuda_device_sync", device);
  if (st != TRTB_OK) return st;
  TRTB_CUDA_TRY(cudaDeviceSynchronize());
  return TRTB_OK;
}

TRTB_API int32_t trtb_cuda_stream_create(int32_t device, trtb_cuda_stream **out) {
  const char *fn = "trtb_cuda_stream_create";
  if (out == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  int32_t st = trtb__cuda_use_device(fn, device);
  if (st != TRTB_OK) return st;
  trtb_cuda_stream *s = (trtb_cuda_stream *)malloc(sizeof *s);
  if (s == NULL) return trtb__fail(TRTB_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  s->device = device;
  cudaError_t err = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking);
  if (err != cudaSuccess) {
    free(s);
    return trtb__cuda_fail(err, "cudaStreamCreateWithFlags", __FILE__, __LINE__);
  }
  *out = s;
  return TRTB_OK;
}

TRTB_API int32_t trtb_cuda_stream_destroy(trtb_cuda_stream *s) {
  if (s == NULL) return TRTB_OK;
  int32_t st = TRTB_OK;
  cudaError_t err = cudaSetDevice(s->device);
  if (err == cudaSuccess) err = cudaStreamSynchronize(s->stream);
  if (err != cudaSuccess) st = trtb__cuda_fail(err, "trtb_cuda_stream_destroy: waiting for the stream", __FILE__, __LINE__);
  err = cudaStreamDestroy(s->stream);
  if (err != cudaSuccess && st == TRTB_OK) st = trtb__cuda_fail(err, "cudaStreamDestroy", __FILE__, __LINE__);
  free(s);
  return st;
}

TRTB_API int32_t trtb_cuda_stream_sync(trtb_cuda_stream *s) {
  int32_t st = check_stream("trtb_cuda_stream_sync", s);
  if (st != TRTB_OK) return st;
  TRTB_CUDA_TRY(cudaStreamSynchronize(s->stream));
  return TRTB_OK;
}

TRTB_API int32_t trtb_cuda_stream_device(const trtb_cuda_stream *s, int32_t *out) {
  if (s == NULL || out == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "trtb_cuda_stream_device: NULL argument");
  *out = s->device;
  return TRTB_OK;
}

TRTB_API int32_t trtb_cuda_malloc(int32_t device, uint64_t bytes, void **out) {
  const char *fn = "trtb_cuda_malloc";
  if (out == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  int32_t st = trtb__cuda_use_device(fn, device);
  if (st != TRTB_OK) return st;
  if (bytes == 0) return TRTB_OK;
  void *p = NULL;
  cudaError_t err = cudaMalloc(&p, (size_t)bytes);
  if (err != cudaSuccess) {
    st = trtb__cuda_fail(err, "cudaMalloc", __FILE__, __LINE__);
    if (st == TRTB_ERR_CUDA_OUT_OF_MEMORY) {
      size_t free_b = 0, total_b = 0;
      if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) (void)cudaGetLastError();
      trtb__fail(st, "%s: cannot allocate %llu bytes on device %d (%llu of %llu bytes free)", fn,
                 (unsigned long long)bytes, (int)device, (unsigned long long)free_b, (unsigned long long)total_b);
    }
    return st;
  }
  *out = p;
  return TRTB_OK;
}

TRTB_API int32_t trtb_cuda_free(void *ptr) {
  if (ptr == NULL) return TRTB_OK;
  TRTB_CUDA_TRY(cudaFree(ptr));
  return TRTB_OK;
}

static int32_t memcpy_async(const char *fn, trtb_cuda_stream *s, void *dst, const void *src, uint64_t bytes,
                            cudaMemcpyKind kind) {
  int32_t st = check_stream(fn, s);
  if (st != TRTB_OK) return st;
  if (bytes == 0) return TRTB_OK;
  if (dst == NULL || src == NULL)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: %s is NULL but bytes is %llu", fn, dst == NULL ? "dst" : "src",
                      (unsigned long long)bytes);
  TRTB_CUDA_TRY(cudaMemcpyAsync(dst, src, (size_t)bytes, kind, s->stream));
  return TRTB_OK;
}

TRTB_API int32_t trtb_cuda_memcpy_h2d(trtb_cuda_stream *s, void *dst, const void *src, uint64_t bytes) {
  return memcpy_async("trtb_cuda_memcpy_h2d", s, dst, src, bytes, cudaMemcpyHostToDevice);
}

TRTB_API int32_t trtb_cuda_memcpy_d2h(trtb_cuda_stream *s, void *dst, const void *src, uint64_t bytes) {
  return memcpy_async("trtb_cuda_memcpy_d2h", s, dst, src, bytes, cudaMemcpyDeviceToHost);
}

TRTB_API int32_t trtb_cuda_memcpy_d2d(trtb_cuda_stream *s, void *dst, const void *src, uint64_t bytes) {
  return memcpy_async("trtb_cuda_memcpy_d2d", s, dst, src, bytes, cudaMemcpyDeviceToDevice);
}

TRTB_API int32_t trtb_cuda_memset(trtb_cuda_stream *s, void *dst, uint32_t value, uint64_t bytes) {
  const char *fn = "trtb_cuda_memset";
  int32_t st = check_stream(fn, s);
  if (st != TRTB_OK) return st;
  if (bytes == 0) return TRTB_OK;
  if (dst == NULL)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: dst is NULL but bytes is %llu", fn, (unsigned long long)bytes);
  TRTB_CUDA_TRY(cudaMemsetAsync(dst, (int)(value & 0xffu), (size_t)bytes, s->stream));
  return TRTB_OK;
}

TRTB_API int32_t trtb_cuda_cast(trtb_cuda_stream *s, const void *src, uint64_t src_bytes, int32_t src_dtype,
                                void *dst, uint64_t dst_bytes, int32_t dst_dtype) {
  const char *fn = "trtb_cuda_cast";
  if (s == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: stream is NULL", fn);
  uint64_t n;
  trtb__cast_kind kind;
  int32_t st = trtb__check_cast(fn, src, src_bytes, src_dtype, dst, dst_bytes, dst_dtype, &n, &kind);
  if (st != TRTB_OK) return st;
  if (kind == TRTB__CAST_NOOP) return TRTB_OK;
  if (kind == TRTB__CAST_COPY) return trtb_cuda_memcpy_d2d(s, dst, src, src_bytes);
  if ((st = check_aligned(fn, "src", src, trtb__dtype_size(src_dtype))) != TRTB_OK) return st;
  if ((st = check_aligned(fn, "dst", dst, trtb__dtype_size(dst_dtype))) != TRTB_OK) return st;
  if ((st = check_stream(fn, s)) != TRTB_OK) return st;
  return trtb__cuda_cast_launch(s->stream, kind, src, dst, n);
}

TRTB_API int32_t trtb_cuda_transpose2d(trtb_cuda_stream *s, const void *src, uint64_t src_bytes, void *dst,
                                       uint64_t dst_bytes, uint64_t rows, uint64_t cols, uint32_t elem_size) {
  const char *fn = "trtb_cuda_transpose2d";
  if (s == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: stream is NULL", fn);
  uint64_t total;
  int32_t st = trtb__check_transpose(fn, src, src_bytes, dst, dst_bytes, rows, cols, elem_size, &total);
  if (st != TRTB_OK) return st;
  if (total == 0) return TRTB_OK;
  if (rows == 1 || cols == 1) return trtb_cuda_memcpy_d2d(s, dst, src, total);
  if ((st = check_aligned(fn, "src", src, elem_size)) != TRTB_OK) return st;
  if ((st = check_aligned(fn, "dst", dst, elem_size)) != TRTB_OK) return st;
  if ((st = check_stream(fn, s)) != TRTB_OK) return st;
  return trtb__cuda_transpose_launch(s->stream, src, dst, rows, cols, elem_size);
}

// ----------------------------------------------------------------------------------------------
// quantization (ABI 2): argument checks shared with the CPU library (quant.h), kernels in
// cshim/cuda/quant.cu

TRTB_API int32_t trtb_cuda_quantize(trtb_cuda_stream *s, const trtb_quant_params *p, const void *src,
                                    uint64_t src_bytes, void *dst, uint64_t dst_bytes, void *scales,
                                    uint64_t scales_bytes) {
  const char *fn = "trtb_cuda_quantize";
  if (s == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: stream is NULL", fn);
  trtb__quant_shape sh;
  int32_t st = trtb__check_quant(fn, p, 0, src, src_bytes, dst, dst_bytes, 0, scales, scales_bytes, &sh);
  if (st != TRTB_OK) return st;
  if ((st = check_aligned(fn, "src", src, sh.src_size)) != TRTB_OK) return st;
  if ((st = check_aligned(fn, "scales", scales, sh.scale_size)) != TRTB_OK) return st;
  if ((st = check_stream(fn, s)) != TRTB_OK) return st;
  return trtb__cuda_quantize_launch(s->stream, p, &sh, src, dst, scales);
}

TRTB_API int32_t trtb_cuda_dequantize(trtb_cuda_stream *s, const trtb_quant_params *p, const void *q,
                                      uint64_t q_bytes, const void *scales, uint64_t scales_bytes, void *dst,
                                      uint64_t dst_bytes, int32_t dst_dtype) {
  const char *fn = "trtb_cuda_dequantize";
  if (s == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: stream is NULL", fn);
  trtb__quant_shape sh;
  int32_t st = trtb__check_quant(fn, p, 1, q, q_bytes, dst, dst_bytes, dst_dtype, scales, scales_bytes, &sh);
  if (st != TRTB_OK) return st;
  if ((st = check_aligned(fn, "dst", dst, sh.src_size)) != TRTB_OK) return st;
  if ((st = check_aligned(fn, "scales", scales, sh.scale_size)) != TRTB_OK) return st;
  if ((st = check_stream(fn, s)) != TRTB_OK) return st;
  return trtb__cuda_dequantize_launch(s->stream, p, &sh, q, scales, dst, dst_dtype);
}


}  // extern "C"
