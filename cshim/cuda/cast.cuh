/* cast.cuh: launcher of the f32 / f16 / bf16 conversion kernels (see trtb_cuda_cast). */
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include "internal.h"

/* Queue the conversion of n elements of kind (one of the TRTB__CAST_F* kinds) on stream. Device
 * pointers must be aligned to their element sizes (the caller checks). Returns a status. */
TRTB_HIDDEN int32_t trtb__cuda_cast_launch(cudaStream_t stream, trtb__cast_kind kind, const void *src, void *dst,
                                           uint64_t n);
