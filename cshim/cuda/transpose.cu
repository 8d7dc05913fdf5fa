/*
 * transpose.cu: 2-D transpose through a shared-memory tile, so that both the reads of src rows and
 * the writes of dst rows are coalesced. The tile is 32 x 33 (one padding column against shared
 * memory bank conflicts); a block of 32 x 8 threads moves it in 4 passes.
 *
 * Napkin maths: a transpose reads and writes every byte once; a tiled kernel reaches well over half
 * of HBM bandwidth, so a 1 GiB matrix takes about a millisecond.
 */
#include "cuda_common.cuh"
#include "transpose.cuh"

#define TILE 32
#define ROWS_PER_PASS 8

// ----------------------------------------------------------------------------------------------
// CUDA kernels

template <typename T>
__global__ void transpose_kernel(const T *__restrict__ src, T *__restrict__ dst, uint64_t rows, uint64_t cols) {
  __shared__ T tile[TILE][TILE + 1];
  const uint64_t row_tiles = (rows + TILE - 1) / TILE, col_tiles = (cols + TILE - 1) / TILE;
  // grid-stride over tiles: gridDim.y is capped at 65535, so tall matrices loop
  for (uint64_t ty = blockIdx.y; ty < row_tiles; ty += gridDim.y) {
    for (uint64_t tx = blockIdx.x; tx < col_tiles; tx += gridDim.x) {
      const uint64_t c = tx * TILE + threadIdx.x;
      for (unsigned j = threadIdx.y; j < TILE; j += ROWS_PER_PASS) {
        const uint64_t r = ty * TILE + j;
        if (r < rows && c < cols) tile[j][threadIdx.x] = src[r * cols + c];
      }
      __syncthreads();
      const uint64_t r = ty * TILE + threadIdx.x;  // dst column index = src row
      for (unsigned j = threadIdx.y; j < TILE; j += ROWS_PER_PASS) {
        const uint64_t cc = tx * TILE + j;  // dst row index = src column
        if (cc < cols && r < rows) dst[cc * rows + r] = tile[threadIdx.x][j];
      }
      __syncthreads();
    }
  }
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

template <typename T>
static int32_t launch(cudaStream_t stream, const void *src, void *dst, uint64_t rows, uint64_t cols) {
  const uint64_t row_tiles = (rows + TILE - 1) / TILE, col_tiles = (cols + TILE - 1) / TILE;
  dim3 block(TILE, ROWS_PER_PASS);
  dim3 grid((unsigned)(col_tiles < TRTB_MAX_GRID_BLOCKS ? col_tiles : TRTB_MAX_GRID_BLOCKS),
            (unsigned)(row_tiles < TRTB_MAX_GRID_BLOCKS ? row_tiles : TRTB_MAX_GRID_BLOCKS));
  transpose_kernel<T><<<grid, block, 0, stream>>>((const T *)src, (T *)dst, rows, cols);
  TRTB_CUDA_CHECK_LAUNCH("transpose_kernel");
  return TRTB_OK;
}

int32_t trtb__cuda_transpose_launch(cudaStream_t stream, const void *src, void *dst, uint64_t rows, uint64_t cols,
                                    uint32_t elem_size) {
  switch (elem_size) {
    case 1: return launch<uint8_t>(stream, src, dst, rows, cols);
    case 2: return launch<uint16_t>(stream, src, dst, rows, cols);
    case 4: return launch<uint32_t>(stream, src, dst, rows, cols);
    case 8: return launch<uint64_t>(stream, src, dst, rows, cols);
    default: return trtb__fail(TRTB_ERR_INTERNAL, "trtb__cuda_transpose_launch: unexpected elem_size %u", elem_size);
  }
}
