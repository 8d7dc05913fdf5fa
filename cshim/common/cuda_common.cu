/*
 * cuda_common.cu: what both CUDA libraries (libtrtb_cuda and libtrtb_engine) do the same way: the
 * mapping of CUDA runtime errors to TRTB_ERR_* statuses and the device queries. Compiled into each
 * of them (hidden symbols), like common.c; declared in cuda_common.cuh.
 */
#include <string.h>

#include "cuda_common.cuh"

// ----------------------------------------------------------------------------------------------
// error mapping

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

int32_t trtb__cuda_fail(cudaError_t err, const char *what, const char *file, int line) {
  int32_t status;
  const char *hint = "";
  switch (err) {
    case cudaErrorNoDevice:
      status = TRTB_ERR_CUDA_NO_DEVICE;
      hint = " (no CUDA device is visible; check nvidia-smi and CUDA_VISIBLE_DEVICES)";
      break;
    case cudaErrorInsufficientDriver:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
    case cudaErrorStubLibrary:
      status = TRTB_ERR_CUDA_UNAVAILABLE;
      hint = " (the NVIDIA driver, libcuda.so.1, is missing or older than the CUDA runtime built in)";
      break;
    case cudaErrorMemoryAllocation:
      status = TRTB_ERR_CUDA_OUT_OF_MEMORY;
      break;
    default:
      status = TRTB_ERR_CUDA;
      break;
  }
  // Clear the runtime's per-thread error so it is not reported again by the next launch check.
  // Sticky errors (a kernel fault) stay: the context is unusable and every later call reports it.
  (void)cudaGetLastError();
  return trtb__fail(status, "%s failed: %s (%s)%s [%s:%d]", what, cudaGetErrorName(err), cudaGetErrorString(err),
                    hint, base_name(file), line);
}

// ----------------------------------------------------------------------------------------------
// device queries

int32_t trtb__cuda_device_count(const char *fn, int32_t *out) {
  if (out == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: out is NULL", fn);
  *out = 0;
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err == cudaErrorNoDevice) {
    (void)cudaGetLastError();
    return TRTB_OK;
  }
  if (err != cudaSuccess) return trtb__cuda_fail(err, "cudaGetDeviceCount", __FILE__, __LINE__);
  *out = n;
  return TRTB_OK;
}

int32_t trtb__cuda_use_device(const char *fn, int32_t device) {
  int n = 0;
  TRTB_CUDA_TRY(cudaGetDeviceCount(&n));
  if (n == 0) return trtb__fail(TRTB_ERR_CUDA_NO_DEVICE, "%s: no CUDA device is visible", fn);
  if (device < 0 || device >= n)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: device %d does not exist (%d visible)", fn, (int)device, n);
  TRTB_CUDA_TRY(cudaSetDevice(device));
  return TRTB_OK;
}

void trtb__cuda_copy_name(char *dst, size_t cap, const char *name, size_t name_cap) {
  size_t len = strnlen(name, name_cap);
  if (len >= cap) len = cap - 1;
  memcpy(dst, name, len);
  dst[len] = '\0';
}
