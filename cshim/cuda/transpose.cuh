/* transpose.cuh: launcher of the 2-D transpose kernel (see trtb_cuda_transpose2d). */
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include "internal.h"

/* Queue dst (cols x rows) = transpose of src (rows x cols) on stream, elem_size 1/2/4/8, device
 * pointers aligned to elem_size, rows and cols > 0 (the caller checks). Returns a status. */
TRTB_HIDDEN int32_t trtb__cuda_transpose_launch(cudaStream_t stream, const void *src, void *dst, uint64_t rows,
                                                uint64_t cols, uint32_t elem_size);
