/* fill.cuh: launcher of the random fill (fill.cu). */
#pragma once

#include "../internal.cuh"

/* Fill n 16-bit elements with random values in [-scale, scale) (benchmarks and tuning). */
int32_t trtbe_fill_random(cudaStream_t s, void *p, int64_t n, int32_t dtype, uint64_t seed, float scale);
