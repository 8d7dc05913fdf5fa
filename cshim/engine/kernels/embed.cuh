/* embed.cuh: launcher of TRTB_OP_EMBED (embed.cu). */
#pragma once

#include "../internal.cuh"

struct EmbedArgs {
  const int32_t *ids;
  const void *table;
  int32_t dtype;
  int64_t rows, vocab_start;
  int32_t H;
  float scale;
  float *out;
  int64_t T;
};

/* out[t] = table[ids[t] - vocab_start] * scale as f32 (0 for ids outside this rank's rows). */
int32_t trtbe_embed(cudaStream_t s, const EmbedArgs &a);
