/*
 * quant.cu: symmetric weight quantization (int8, int4 packed along rows, fp8 e4m3) and its inverse
 * on the GPU. The per-element and per-group rules are the scalar functions of common/quant.h, the same
 * ones the CPU loops call, so results are bit-identical to trtb_quantize.
 *
 * One warp per task = one group of one row (or of the two rows that share the INT4 bytes). Lanes
 * take VEC consecutive elements each (a 16-byte load for bf16 at VEC = 8), the group's amax is an
 * integer max over |x| bit patterns reduced with __reduce_max_sync, lane 0 stores the scale, then
 * every lane quantizes and stores its VEC output bytes. A group that fits in one pass of the warp
 * (32 * VEC elements, e.g. AWQ's 128 at VEC = 4) stays in registers; a longer group (per-channel
 * scales over a 4096..14336-wide row) is read a second time, from L1/L2.
 *
 * Groups of 1024 and more (per-channel scales) run one block per group instead, staging the group in
 * shared memory so the source is read from HBM once.
 *
 * Napkin maths: int4 AWQ on bf16 moves 2 + 0.5 bytes per weight (+ 1/64 for scales); at ~3 TB/s of
 * H100 HBM a 14336 x 4096 matrix (117 MB of bf16) is ~50 us. Memory-bound on paper: the division
 * and the rounding are a few instructions per element against 2.5 bytes of traffic. Measured: ~36%
 * (AWQ) and ~41% (fp8) of the device copy rate (see TRTB_QUANT_GPU_UNROLL below); the short-group
 * kernel is latency-bound (one 256-byte load per row and warp before a reduction and the scale
 * arithmetic). Next steps if it matters: several groups per warp with 16-byte loads and segmented
 * reductions, __launch_bounds__ to trade registers for occupancy, or bulk copies into shared memory.
 * End to end the GPU path is bound by the host: upload from the mapped file and the file writes.
 */
#include "cuda_common.cuh"
#include "numeric.h"
#include "quant.cuh"

namespace {

struct QArgs {
  const unsigned char *src;
  unsigned char *dst;
  unsigned char *scales;
  uint64_t cols, group, gpr, tasks;
  int32_t format, src_dtype, scale_dtype, rounding;
  float divisor, min_scale, zero_scale, clamp_lo, clamp_hi, qmin, qmax;
  int clamp, by_stored;
};

// ----------------------------------------------------------------------------------------------
// loads and stores of NB bytes (NB a power of two, address aligned to it)

template <int NB>
__device__ __forceinline__ void load_bytes(const unsigned char *p, unsigned char *out) {
  if constexpr (NB == 32) {
    load_bytes<16>(p, out);
    load_bytes<16>(p + 16, out + 16);
  } else if constexpr (NB == 16) {
    const uint4 v = __ldg(reinterpret_cast<const uint4 *>(p));
    memcpy(out, &v, 16);
  } else if constexpr (NB == 8) {
    const uint2 v = __ldg(reinterpret_cast<const uint2 *>(p));
    memcpy(out, &v, 8);
  } else if constexpr (NB == 4) {
    const unsigned v = __ldg(reinterpret_cast<const unsigned *>(p));
    memcpy(out, &v, 4);
  } else if constexpr (NB == 2) {
    const unsigned short v = __ldg(reinterpret_cast<const unsigned short *>(p));
    memcpy(out, &v, 2);
  } else {
    out[0] = __ldg(p);
  }
}

template <int NB>
__device__ __forceinline__ void store_bytes(unsigned char *p, const unsigned char *in) {
  if constexpr (NB == 32) {
    store_bytes<16>(p, in);
    store_bytes<16>(p + 16, in + 16);
  } else if constexpr (NB == 16) {
    uint4 v;
    memcpy(&v, in, 16);
    *reinterpret_cast<uint4 *>(p) = v;
  } else if constexpr (NB == 8) {
    uint2 v;
    memcpy(&v, in, 8);
    *reinterpret_cast<uint2 *>(p) = v;
  } else if constexpr (NB == 4) {
    unsigned v;
    memcpy(&v, in, 4);
    *reinterpret_cast<unsigned *>(p) = v;
  } else if constexpr (NB == 2) {
    unsigned short v;
    memcpy(&v, in, 2);
    *reinterpret_cast<unsigned short *>(p) = v;
  } else {
    p[0] = in[0];
  }
}

/* NB bytes from shared memory (aligned vector loads). */
template <int NB>
__device__ __forceinline__ void shared_bytes(const unsigned char *p, unsigned char *out) {
  if constexpr (NB >= 16) {
#pragma unroll
    for (int k = 0; k < NB / 16; k++) {
      const uint4 v = reinterpret_cast<const uint4 *>(p)[k];
      memcpy(out + 16 * k, &v, 16);
    }
  } else if constexpr (NB == 8) {
    const uint2 v = *reinterpret_cast<const uint2 *>(p);
    memcpy(out, &v, 8);
  } else if constexpr (NB == 4) {
    const unsigned v = *reinterpret_cast<const unsigned *>(p);
    memcpy(out, &v, 4);
  } else if constexpr (NB == 2) {
    const unsigned short v = *reinterpret_cast<const unsigned short *>(p);
    memcpy(out, &v, 2);
  } else {
    out[0] = p[0];
  }
}

/* VEC source elements held as raw little-endian bytes, widened to f32 and clamped when asked. */
template <int VEC>
__device__ __forceinline__ void widen(const QArgs &a, const unsigned char *b, float (&x)[VEC]) {
  if (a.src_dtype == TRTB_DTYPE_F32) {
#pragma unroll
    for (int i = 0; i < VEC; i++) {
      uint32_t u;
      memcpy(&u, b + 4 * i, 4);
      x[i] = trtb__bits_f32(u);
    }
  } else {
    const bool f16 = a.src_dtype == TRTB_DTYPE_F16;
#pragma unroll
    for (int i = 0; i < VEC; i++) {
      uint16_t h;
      memcpy(&h, b + 2 * i, 2);
      x[i] = trtb__bits_f32(f16 ? trtb__f16_to_f32(h) : trtb__bf16_to_f32(h));
    }
  }
  if (a.clamp) {
#pragma unroll
    for (int i = 0; i < VEC; i++) x[i] = trtb__q_clamp_x(x[i], 1, a.clamp_lo, a.clamp_hi);
  }
}

/* Raw bytes of VEC source elements starting at element idx (one aligned vector load). */
template <int VEC>
__device__ __forceinline__ void load_raw(const QArgs &a, uint64_t idx, unsigned char (&b)[VEC * 4]) {
  if (a.src_dtype == TRTB_DTYPE_F32) load_bytes<VEC * 4>(a.src + idx * 4, b);
  else load_bytes<VEC * 2>(a.src + idx * 2, b);
}

/* VEC elements starting at element index idx, widened to f32 and clamped when asked. */
template <int VEC>
__device__ __forceinline__ void load_x(const QArgs &a, uint64_t idx, float (&x)[VEC]) {
  unsigned char b[VEC * 4];
  load_raw<VEC>(a, idx, b);
  widen<VEC>(a, b, x);
}

/* load_x from the group staged in shared memory (es-byte elements from byte 0). */
template <int VEC>
__device__ __forceinline__ void load_x_shared(const QArgs &a, const unsigned char *sm, uint64_t idx, float (&x)[VEC]) {
  unsigned char b[VEC * 4];
  if (a.src_dtype == TRTB_DTYPE_F32) shared_bytes<VEC * 4>(sm + idx * 4, b);
  else shared_bytes<VEC * 2>(sm + idx * 2, b);
  widen<VEC>(a, b, x);
}

template <int VEC>
__device__ __forceinline__ uint32_t amax_of(const float (&x)[VEC], uint32_t m) {
#pragma unroll
  for (int i = 0; i < VEC; i++) {
    const uint32_t k = trtb__q_abs_key(x[i]);
    m = k > m ? k : m;
  }
  return m;
}

/* Quantize VEC elements of one row (int8 / fp8) into bytes. */
template <int VEC>
__device__ __forceinline__ void quant_row(const QArgs &a, const float (&x)[VEC], float sq, unsigned char (&o)[VEC]) {
#pragma unroll
  for (int i = 0; i < VEC; i++) {
    if (a.format == TRTB_QFORMAT_FP8_E4M3)
      o[i] = trtb__q_fp8(x[i], sq);
    else
      o[i] = (unsigned char)(int8_t)trtb__q_int(x[i], sq, a.qmin, a.qmax, a.rounding);
  }
}

template <int VEC>
__device__ __forceinline__ void quant_pair(const QArgs &a, const float (&x0)[VEC], const float (&x1)[VEC], float s0,
                                           float s1, unsigned char (&o)[VEC]) {
#pragma unroll
  for (int i = 0; i < VEC; i++) {
    const int32_t lo = trtb__q_int(x0[i], s0, a.qmin, a.qmax, a.rounding);
    const int32_t hi = trtb__q_int(x1[i], s1, a.qmin, a.qmax, a.rounding);
    o[i] = (unsigned char)((lo & 0xf) | ((hi & 0xf) << 4));
  }
}

__device__ __forceinline__ float group_scale(const QArgs &a, uint32_t m, bool store, uint64_t scale_index) {
  uint32_t stored;
  const float sq = trtb__q_scale(m, a.divisor, a.min_scale, a.zero_scale, a.scale_dtype, a.by_stored, &stored);
  if (store) trtb__q_store_bits(a.scales, scale_index, a.scale_dtype, stored);
  return sq;
}

// ----------------------------------------------------------------------------------------------
// CUDA kernels

/* Tasks a warp (short groups) or a thread (the staging loop of long groups) keeps in flight: all
 * their loads are issued before the first is used. A compile-time knob; results do not depend on it.
 * Measured on an H100 (2026-11, bench/quantize.ts, one Llama-8B layer's fc + proj, bf16): U = 1
 * gives AWQ 1086 GB/s and fp8 1219 GB/s (36% / 41% of the 3.0 TB/s device copy); U = 4 gives 739
 * and 1126 GB/s: registers rise (36 -> 74 for the AWQ kernel, 40 -> 69 for the fp8 one) and the
 * lost occupancy costs more than the extra loads in flight gain. Both pass the GPU == CPU tests. */
#ifndef TRTB_QUANT_GPU_UNROLL
#define TRTB_QUANT_GPU_UNROLL 1
#endif
constexpr int U = TRTB_QUANT_GPU_UNROLL;

/* One warp per task (unit, group). PAIR: INT4_PACKED_ROWS (a unit is two rows). */
template <int VEC, bool PAIR>
__global__ void quantize_kernel(const QArgs a) {
  const unsigned lane = threadIdx.x & 31u;
  const uint64_t warps = (uint64_t)gridDim.x * (blockDim.x / 32u);
  const uint64_t warp_id = ((uint64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32u;
  const uint64_t G = a.group, cols = a.cols;
  const uint64_t c0 = (uint64_t)lane * VEC;
  if (G <= 32u * VEC) {
    // Short groups (AWQ's 64 / 128): U consecutive tasks per warp and iteration, every lane's
    // loads for all of them issued first; each group stays in registers.
    const bool active = c0 < G;
    for (uint64_t tb = warp_id * U; tb < a.tasks; tb += warps * U) {
      float x0[U][VEC], x1[U][VEC];
      uint64_t uu[U], gg[U];
#pragma unroll
      for (int k = 0; k < U; k++) {
        const uint64_t t = tb + (uint64_t)k;
        uu[k] = t / a.gpr;
        gg[k] = t - uu[k] * a.gpr;
        if (t < a.tasks && active) {
          const uint64_t base0 = (PAIR ? 2 * uu[k] : uu[k]) * cols + gg[k] * G + c0;
          load_x<VEC>(a, base0, x0[k]);
          if (PAIR) load_x<VEC>(a, base0 + cols, x1[k]);
        }
      }
#pragma unroll
      for (int k = 0; k < U; k++) {
        if (tb + (uint64_t)k < a.tasks) { // warp-uniform
          const uint64_t u = uu[k], g = gg[k], r0 = PAIR ? 2 * u : u;
          const uint32_t m0 = __reduce_max_sync(0xffffffffu, active ? amax_of<VEC>(x0[k], 0) : 0u);
          const float s0 = group_scale(a, m0, lane == 0, r0 * a.gpr + g);
          float s1 = 0.0f;
          if (PAIR) {
            const uint32_t m1 = __reduce_max_sync(0xffffffffu, active ? amax_of<VEC>(x1[k], 0) : 0u);
            s1 = group_scale(a, m1, lane == 0, (r0 + 1) * a.gpr + g);
          }
          if (active) {
            unsigned char o[VEC];
            if (PAIR) quant_pair<VEC>(a, x0[k], x1[k], s0, s1, o);
            else quant_row<VEC>(a, x0[k], s0, o);
            store_bytes<VEC>(a.dst + (PAIR ? u * cols : r0 * cols) + g * G + c0, o);
          }
        }
      }
    }
    return;
  }
  // Long groups that do not fit the block kernel's shared memory: one task at a time, read twice.
  for (uint64_t t = warp_id; t < a.tasks; t += warps) {
    const uint64_t u = t / a.gpr, g = t - u * a.gpr;
    const uint64_t r0 = PAIR ? 2 * u : u;
    const uint64_t base0 = r0 * cols + g * G; // element index of the group in row r0
    const uint64_t base1 = base0 + cols;      // and in row r0 + 1 (PAIR)
    const uint64_t out = (PAIR ? u * cols : r0 * cols) + g * G;
    float x0[VEC], x1[VEC];
    uint32_t m0 = 0, m1 = 0;
    for (uint64_t c = c0; c < G; c += 32u * VEC) {
      load_x<VEC>(a, base0 + c, x0);
      m0 = amax_of<VEC>(x0, m0);
      if (PAIR) {
        load_x<VEC>(a, base1 + c, x1);
        m1 = amax_of<VEC>(x1, m1);
      }
    }
    m0 = __reduce_max_sync(0xffffffffu, m0);
    const float s0 = group_scale(a, m0, lane == 0, r0 * a.gpr + g);
    float s1 = 0.0f;
    if (PAIR) {
      m1 = __reduce_max_sync(0xffffffffu, m1);
      s1 = group_scale(a, m1, lane == 0, (r0 + 1) * a.gpr + g);
    }
    unsigned char o[VEC];
    for (uint64_t c = c0; c < G; c += 32u * VEC) {
      load_x<VEC>(a, base0 + c, x0);
      if (PAIR) {
        load_x<VEC>(a, base1 + c, x1);
        quant_pair<VEC>(a, x0, x1, s0, s1, o);
      } else {
        quant_row<VEC>(a, x0, s0, o);
      }
      store_bytes<VEC>(a.dst + out + c, o);
    }
  }
}

/* Long groups (per-channel scales over wide rows): one block per task. The group's source bytes go
 * to shared memory on the way in (pass 1: amax), so pass 2 quantizes from shared memory and HBM is
 * read once. `smem` holds (PAIR ? 2 : 1) * group * source-element bytes. */
template <int VEC, bool PAIR>
__global__ void quantize_rows_kernel(const QArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ uint32_t warp_max[2][32];
  const unsigned tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5, nwarps = blockDim.x >> 5;
  const uint64_t G = a.group, cols = a.cols;
  const uint32_t es = a.src_dtype == TRTB_DTYPE_F32 ? 4u : 2u;
  const uint64_t row_bytes = G * es;
  for (uint64_t t = blockIdx.x; t < a.tasks; t += gridDim.x) {
    const uint64_t u = t / a.gpr, g = t - u * a.gpr;
    const uint64_t r0 = PAIR ? 2 * u : u;
    const uint64_t base0 = r0 * cols + g * G, base1 = base0 + cols;
    const uint64_t out = (PAIR ? u * cols : r0 * cols) + g * G;
    uint32_t m0 = 0, m1 = 0;
    const uint64_t stride = (uint64_t)blockDim.x * VEC;
    for (uint64_t cb = (uint64_t)tid * VEC; cb < G; cb += stride * U) {
      // U chunks' loads in flight before the first is used
      unsigned char raw0[U][VEC * 4], raw1[U][VEC * 4];
#pragma unroll
      for (int k = 0; k < U; k++) {
        const uint64_t c = cb + (uint64_t)k * stride;
        if (c < G) {
          load_raw<VEC>(a, base0 + c, raw0[k]);
          if (PAIR) load_raw<VEC>(a, base1 + c, raw1[k]);
        }
      }
#pragma unroll
      for (int k = 0; k < U; k++) {
        const uint64_t c = cb + (uint64_t)k * stride;
        if (c < G) {
          float x[VEC];
          if (es == 4) store_bytes<VEC * 4>(smem + c * 4, raw0[k]);
          else store_bytes<VEC * 2>(smem + c * 2, raw0[k]);
          widen<VEC>(a, raw0[k], x);
          m0 = amax_of<VEC>(x, m0);
          if (PAIR) {
            if (es == 4) store_bytes<VEC * 4>(smem + row_bytes + c * 4, raw1[k]);
            else store_bytes<VEC * 2>(smem + row_bytes + c * 2, raw1[k]);
            widen<VEC>(a, raw1[k], x);
            m1 = amax_of<VEC>(x, m1);
          }
        }
      }
    }
    m0 = __reduce_max_sync(0xffffffffu, m0);
    if (PAIR) m1 = __reduce_max_sync(0xffffffffu, m1);
    if (lane == 0) {
      warp_max[0][warp] = m0;
      warp_max[1][warp] = m1;
    }
    __syncthreads();
    m0 = 0;
    m1 = 0;
    for (unsigned w = 0; w < nwarps; w++) {
      m0 = warp_max[0][w] > m0 ? warp_max[0][w] : m0;
      m1 = warp_max[1][w] > m1 ? warp_max[1][w] : m1;
    }
    const float s0 = group_scale(a, m0, tid == 0, r0 * a.gpr + g);
    const float s1 = PAIR ? group_scale(a, m1, tid == 0, (r0 + 1) * a.gpr + g) : 0.0f;
    // pass 2 from the staged group
    for (uint64_t c = (uint64_t)tid * VEC; c < G; c += (uint64_t)blockDim.x * VEC) {
      float x0[VEC], x1[VEC];
      unsigned char o[VEC];
      load_x_shared<VEC>(a, smem, c, x0);
      if (PAIR) {
        load_x_shared<VEC>(a, smem, G + c, x1);
        quant_pair<VEC>(a, x0, x1, s0, s1, o);
      } else {
        quant_row<VEC>(a, x0, s0, o);
      }
      store_bytes<VEC>(a.dst + out + c, o);
    }
    __syncthreads(); // smem and warp_max are reused by the next task
  }
}

/* One element per thread, grid-stride. */
__global__ void dequantize_kernel(const unsigned char *__restrict__ q, const unsigned char *__restrict__ scales,
                                  unsigned char *__restrict__ dst, uint64_t n, uint64_t cols, uint64_t group,
                                  uint64_t gpr, int32_t format, int32_t scale_dtype, int32_t dst_dtype) {
  const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint64_t r = i / cols, c = i - r * cols;
    const float s = trtb__bits_f32(trtb__q_load_bits(scales, r * gpr + c / group, scale_dtype));
    float v;
    if (format == TRTB_QFORMAT_INT8) {
      v = (float)(int8_t)q[i];
    } else if (format == TRTB_QFORMAT_INT4_PACKED_ROWS) {
      const unsigned b = q[(r / 2) * cols + c];
      const int nib = (r & 1) ? (int)(b >> 4) : (int)(b & 0xfu);
      v = (float)(nib >= 8 ? nib - 16 : nib);
    } else {
      v = trtb__bits_f32(trtb__e4m3_to_f32(q[i]));
    }
    trtb__q_store_bits(dst, i, dst_dtype, trtb__q_dequant(v, s));
  }
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

/* Groups at least this long go to the block-per-group kernel (staged in shared memory). */
#define TRTB__QUANT_ROWS_MIN_GROUP 1024u

template <int VEC, bool PAIR>
int32_t launch_rows(cudaStream_t stream, const QArgs &a, size_t smem_bytes) {
  if (smem_bytes > 48u * 1024u)
    TRTB_CUDA_TRY(cudaFuncSetAttribute(quantize_rows_kernel<VEC, PAIR>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_bytes));
  const unsigned block = 256;
  const unsigned grid = (unsigned)(a.tasks < TRTB_MAX_GRID_BLOCKS ? a.tasks : TRTB_MAX_GRID_BLOCKS);
  quantize_rows_kernel<VEC, PAIR><<<grid, block, smem_bytes, stream>>>(a);
  TRTB_CUDA_CHECK_LAUNCH("quantize_rows_kernel");
  return TRTB_OK;
}

template <int VEC>
int32_t launch_quant(cudaStream_t stream, const QArgs &a, bool pair) {
  if (a.group >= TRTB__QUANT_ROWS_MIN_GROUP) {
    const size_t smem = (size_t)(pair ? 2 : 1) * (size_t)a.group * (a.src_dtype == TRTB_DTYPE_F32 ? 4u : 2u);
    int dev = 0, optin = 0;
    TRTB_CUDA_TRY(cudaGetDevice(&dev));
    TRTB_CUDA_TRY(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    // leave room for the static warp_max array; larger groups use the warp kernel (two reads)
    if (smem + 1024u <= (size_t)optin) return pair ? launch_rows<VEC, true>(stream, a, smem) : launch_rows<VEC, false>(stream, a, smem);
  }
  const unsigned block = 256, warps_per_block = block / 32;
  const uint64_t want = (a.tasks + warps_per_block - 1) / warps_per_block;
  const unsigned grid = (unsigned)(want < TRTB_MAX_GRID_BLOCKS ? want : TRTB_MAX_GRID_BLOCKS);
  if (pair) quantize_kernel<VEC, true><<<grid, block, 0, stream>>>(a);
  else quantize_kernel<VEC, false><<<grid, block, 0, stream>>>(a);
  TRTB_CUDA_CHECK_LAUNCH("quantize_kernel");
  return TRTB_OK;
}

}  // namespace

int32_t trtb__cuda_quantize_launch(cudaStream_t stream, const trtb_quant_params *p, const trtb__quant_shape *sh,
                                   const void *src, void *dst, void *scales) {
  if (sh->n == 0) return TRTB_OK;
  QArgs a;
  a.src = (const unsigned char *)src;
  a.dst = (unsigned char *)dst;
  a.scales = (unsigned char *)scales;
  a.cols = sh->cols;
  a.group = sh->group;
  a.gpr = sh->groups_per_row;
  const bool pair = p->format == TRTB_QFORMAT_INT4_PACKED_ROWS;
  a.tasks = (pair ? sh->rows / 2 : sh->rows) * sh->groups_per_row;
  a.format = p->format;
  a.src_dtype = p->src_dtype;
  a.scale_dtype = p->scale_dtype;
  a.rounding = p->rounding == TRTB_QROUND_HALF_AWAY ? TRTB_QROUND_HALF_AWAY : TRTB_QROUND_HALF_EVEN;
  a.divisor = p->divisor;
  a.min_scale = p->min_scale;
  a.zero_scale = p->zero_scale;
  a.clamp_lo = p->clamp_lo;
  a.clamp_hi = p->clamp_hi;
  a.qmin = (float)p->qmin;
  a.qmax = (float)p->qmax;
  a.clamp = (p->flags & TRTB_QUANT_CLAMP) != 0;
  a.by_stored = (p->flags & TRTB_QUANT_DIVIDE_BY_STORED) != 0;
  // Widest vector (at most 16 bytes of source per lane) that keeps every access aligned (element
  // offsets are multiples of VEC when cols and group are) and still gives all 32 lanes work.
  const uint32_t es = sh->src_size;
  uint64_t vec = 16u / es;
  while (vec > 1 && (sh->group % vec != 0 || sh->cols % vec != 0 || (uintptr_t)src % (vec * es) != 0 ||
                     (uintptr_t)dst % vec != 0 || sh->group < 32u * vec))
    vec /= 2;
  switch (vec) {
    case 8: return launch_quant<8>(stream, a, pair);
    case 4: return launch_quant<4>(stream, a, pair);
    case 2: return launch_quant<2>(stream, a, pair);
    default: return launch_quant<1>(stream, a, pair);
  }
}

int32_t trtb__cuda_dequantize_launch(cudaStream_t stream, const trtb_quant_params *p, const trtb__quant_shape *sh,
                                     const void *q, const void *scales, void *dst, int32_t dst_dtype) {
  if (sh->n == 0) return TRTB_OK;
  const unsigned block = 256;
  const uint64_t want = (sh->n + block - 1) / block;
  const unsigned grid = (unsigned)(want < TRTB_MAX_GRID_BLOCKS ? want : TRTB_MAX_GRID_BLOCKS);
  dequantize_kernel<<<grid, block, 0, stream>>>((const unsigned char *)q, (const unsigned char *)scales,
                                                (unsigned char *)dst, sh->n, sh->cols, sh->group,
                                                sh->groups_per_row, p->format, p->scale_dtype, dst_dtype);
  TRTB_CUDA_CHECK_LAUNCH("dequantize_kernel");
  return TRTB_OK;
}
