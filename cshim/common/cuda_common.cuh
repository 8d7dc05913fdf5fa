/*
 * cuda_common.cuh: CUDA error handling and device queries shared by the translation units of both
 * CUDA libraries (libtrtb_cuda and libtrtb_engine); the functions are in cuda_common.cu.
 *
 * Unlike llm.c's cudaCheck or ggml's CUDA_CHECK, which exit the process, a failed CUDA call here
 * becomes a status code plus last-error text, and the function returns. The library lives inside
 * someone else's process (Bun), so it must never exit, abort or print.
 */
#pragma once

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Map a CUDA runtime error to a TRTB_ERR_* status, record "<what> failed: <name> (<string>)
 * [file:line]" as the last error, clear the runtime's non-sticky error state, and return the
 * status. */
TRTB_HIDDEN int32_t trtb__cuda_fail(cudaError_t err, const char *what, const char *file, int line);

/* Implementation of trtb_cuda_device_count / trtb_engine_device_count (`fn` names the caller in
 * messages): *out = visible devices, 0 (and TRTB_OK) when there are none. */
TRTB_HIDDEN int32_t trtb__cuda_device_count(const char *fn, int32_t *out);

/* Make `device` current, after checking that it exists (TRTB_ERR_CUDA_NO_DEVICE when no device is
 * visible, TRTB_ERR_INVALID_ARG when it is out of range). */
TRTB_HIDDEN int32_t trtb__cuda_use_device(const char *fn, int32_t device);

/* Copy a device name (cudaDeviceProp::name, name_cap bytes, maybe unterminated) into dst (cap
 * bytes), truncated and NUL-terminated. */
TRTB_HIDDEN void trtb__cuda_copy_name(char *dst, size_t cap, const char *name, size_t name_cap);

/* Evaluate a CUDA runtime call; on failure return its mapped status from the enclosing function. */
#define TRTB_CUDA_TRY(call)                                                                     \
  do {                                                                                          \
    cudaError_t trtb_err_ = (call);                                                             \
    if (trtb_err_ != cudaSuccess) return trtb__cuda_fail(trtb_err_, #call, __FILE__, __LINE__); \
  } while (0)

/* After a kernel launch: report a launch failure (bad configuration, no kernel image for this
 * GPU, ...). Errors that happen while the kernel runs surface at the next synchronizing call. */
#define TRTB_CUDA_CHECK_LAUNCH(name)                                                              \
  do {                                                                                            \
    cudaError_t trtb_err_ = cudaGetLastError();                                                   \
    if (trtb_err_ != cudaSuccess) return trtb__cuda_fail(trtb_err_, "launch of " name, __FILE__, __LINE__); \
  } while (0)

/* Grid-stride kernels cap their grid here: enough blocks to fill any current GPU many times over. */
#define TRTB_MAX_GRID_BLOCKS 65535u
