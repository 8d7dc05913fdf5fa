/*
 * cuda_common.cuh: CUDA error handling shared by the translation units of both CUDA libraries
 * (libtrtb_cuda and libtrtb_engine).
 *
 * Unlike llm.c's cudaCheck or ggml's CUDA_CHECK, which exit the process, a failed CUDA call here
 * becomes a status code plus last-error text, and the function returns. The library lives inside
 * someone else's process (Bun), so it must never exit, abort or print.
 */
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include "internal.h"

/* Map a CUDA runtime error to a TRTB_ERR_* status, record "<what> failed: <name> (<string>)
 * [file:line]" as the last error, clear the runtime's non-sticky error state, and return the
 * status. */
TRTB_HIDDEN int32_t trtb__cuda_fail(cudaError_t err, const char *what, const char *file, int line);

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
