/* quant.cuh: launchers of the quantization kernels (see trtb_cuda_quantize in trtb.h). */
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include "internal.h"
#include "quant.h"

/* Queue the quantization described by p and its validated shape on stream. Device pointers; the
 * caller has checked the arguments (trtb__check_quant). Returns a status. */
TRTB_HIDDEN int32_t trtb__cuda_quantize_launch(cudaStream_t stream, const trtb_quant_params *p,
                                               const trtb__quant_shape *sh, const void *src, void *dst,
                                               void *scales);

/* Queue the dequantization of q with its scales into dst (dst_dtype). */
TRTB_HIDDEN int32_t trtb__cuda_dequantize_launch(cudaStream_t stream, const trtb_quant_params *p,
                                                 const trtb__quant_shape *sh, const void *q, const void *scales,
                                                 void *dst, int32_t dst_dtype);
