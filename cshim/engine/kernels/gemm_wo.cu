/*
 * gemm_wo.cu: weight-only quantized GEMM (W8A16 / W4A16) for decode-sized M, on tensor cores.
 *
 *   y[M, N] = (x[M, K] . q[N, K]^T) * scale[N]        q int8 or int4, x bf16/fp16, fp32 accumulation
 *
 * Weights are stored at build time in an "mma tile" layout (src/engine/wo-layout.ts and trtb_wo_pack
 * in libtrtb write it; the tests check all three agree): the matrix is padded to Np = N rounded up
 * to 16 rows and Kp = K rounded up to the k-tile (32 int8 values, 64 int4 values), and cut into
 * 16-row x k-tile tiles of 512 bytes, row tile major: tile (rt, kt) at byte (rt * Kp/KT + kt) * 512.
 * Inside a tile, lane l (g = l / 4, t = l % 4) owns bytes [16 l, 16 l + 16): exactly its A-operand
 * fragments of mma.m16n8k16 for every 16-wide k step s of the tile, so one coalesced 16-byte load per
 * lane feeds 2 (int8) or 4 (int4) MMAs with no shuffles. The MMA's k order inside a step is
 * permuted so that each lane's columns are contiguous: lane t covers columns
 * c(s, j) = kt*KT + t*4*STEPS + 4 s + j (STEPS = KT / 16, j = 0..3), hardware k 2t, 2t+1 = j 0, 1
 * and 2t+8, 2t+9 = j 2, 3. Then its activations for a whole tile are 8 (int8) / 16 (int4)
 * consecutive elements: one or two 16-byte loads per token row instead of 4 / 8 small ones.
 *   a0 = (g, c0 c1)  a1 = (g+8, c0 c1)  a2 = (g, c2 c3)  a3 = (g+8, c2 c3)
 *   int8: bytes 8s .. 8s+7 = a0.lo a0.hi a1.lo a1.hi a2.lo a2.hi a3.lo a3.hi, each q + 128
 *   int4: 32-bit word s; pair j (a_j) has its low element in bits [4j, 4j+4) and its high element
 *         in bits [16+4j, 20+4j), each q + 8
 * Offset-binary values turn into 16-bit floats with exponent tricks (no integer-to-float
 * instructions): OR the nibble into the mantissa of 128.0 (bf16) / 1024.0 (fp16) and subtract, or
 * for int8 into 2^23 as fp32 and keep the top half. q is exact in bf16/fp16, and the per-channel
 * scale is applied once to the fp32 sum, so the result is scale * sum(q * x) as upstream defines it.
 *
 * A block owns RT row tiles; its 8 warps split the k tiles; each warp keeps fp32 accumulators for
 * RT x MT mma tiles (MT n-tiles of 8 tokens) and the block reduces them through shared memory in a
 * fixed order (deterministic). Weights stream with an evict-first hint, double-buffered in
 * registers: the next U x RT tiles are in flight while the current ones are multiplied.
 * The exact path (f32 activations) passes x split into two 16-bit halves and runs both through the
 * MMAs.
 *
 * Beyond 64 rows (prefill) the weights are expanded to 16-bit in a scratch buffer
 * (trtbe_wo_dequant) and multiplied by cuBLASLt (gemm.cu).
 *
 * Group-wise scales (AWQ, GROUPED): one scale per (row, group of 2^gshift k tiles), stored in the
 * activation dtype as [row tile][group][8][2]: the scales of rows g and g + 8 of a tile side by
 * side, so lane g fetches both with one 4-byte load. Each k tile is multiplied into zeroed
 * accumulators and added to the running sums times the tile's scales (f32), so the result is
 * sum_g s[n,g] * sum_{k in g} q x, the f32 value the CPU runner computes up to summation order.
 * AWQ's prequant_scaling_factor is applied by whatever produces the GEMM's input (the runtime folds
 * it into the norm weights, the gated activation and a column scaling of the attention output).
 */
#include <algorithm>

#include "gemm_wo.cuh"

#define WO_WARPS 8
#define WO_THREADS (WO_WARPS * 32)
#define WO_UNROLL 4

template <typename A> struct MmaOp;
template <> struct MmaOp<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};
template <> struct MmaOp<__half> {
  static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

/* Two offset-binary int8 values (bytes j, j+1 of w) to a packed 16-bit pair. */
template <typename A> __device__ __forceinline__ uint32_t i8pair(uint32_t w, int j);
template <> __device__ __forceinline__ uint32_t i8pair<__nv_bfloat16>(uint32_t w, int j) {
  // 0x4B000000 | u is 2^23 + u as f32; minus 2^23 + 128 gives q exactly; its top 16 bits are bf16(q)
  const float f0 = __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7540 + j)) - 8388736.f;
  const float f1 = __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7540 + j + 1)) - 8388736.f;
  return __byte_perm(__float_as_uint(f0), __float_as_uint(f1), 0x7632);
}
template <> __device__ __forceinline__ uint32_t i8pair<__half>(uint32_t w, int j) {
  // [byte, 0x64] is fp16 1024 + u; minus 1152 gives q
  const uint32_t v = __byte_perm(w, 0x64646464u, j == 0 ? 0x4140 : 0x4342);
  __half2 h = *reinterpret_cast<const __half2 *>(&v);
  h = __hsub2(h, __half2half2(__ushort_as_half((unsigned short)0x6480)));
  return *reinterpret_cast<uint32_t *>(&h);
}

/* The offset-binary int4 pair j of w (bits 4j and 16+4j) to a packed 16-bit pair. */
template <typename A> __device__ __forceinline__ uint32_t i4pair(uint32_t w, int j);
template <> __device__ __forceinline__ uint32_t i4pair<__nv_bfloat16>(uint32_t w, int j) {
  const uint32_t v = ((w >> (4 * j)) & 0x000F000Fu) | 0x43004300u;  // 128 + u
  __nv_bfloat162 h = *reinterpret_cast<const __nv_bfloat162 *>(&v);
  h = __hsub2(h, __bfloat162bfloat162(__ushort_as_bfloat16((unsigned short)0x4308)));  // - 136
  return *reinterpret_cast<uint32_t *>(&h);
}
template <> __device__ __forceinline__ uint32_t i4pair<__half>(uint32_t w, int j) {
  const uint32_t v = ((w >> (4 * j)) & 0x000F000Fu) | 0x64006400u;  // 1024 + u
  __half2 h = *reinterpret_cast<const __half2 *>(&v);
  h = __hsub2(h, __half2half2(__ushort_as_half((unsigned short)0x6408)));  // - 1032
  return *reinterpret_cast<uint32_t *>(&h);
}

/* A fragments of k step s of a lane's 16 tile bytes. */
template <typename A, int BITS>
__device__ __forceinline__ void afrag(const uint4 &wv, int s, uint32_t a[4]) {
  const uint32_t *wd = reinterpret_cast<const uint32_t *>(&wv);
  if (BITS == 8) {
    const uint32_t w0 = wd[2 * s], w1 = wd[2 * s + 1];
    a[0] = i8pair<A>(w0, 0);
    a[1] = i8pair<A>(w0, 2);
    a[2] = i8pair<A>(w1, 0);
    a[3] = i8pair<A>(w1, 2);
  } else {
    const uint32_t w0 = wd[s];
#pragma unroll
    for (int j = 0; j < 4; j++) a[j] = i4pair<A>(w0, j);
  }
}

/* 8 activations at element k of row p (16-byte aligned), zeros past K (K % 8 == 0). */
template <typename A> __device__ __forceinline__ uint4 ldx8(const A *p, int k, int K) {
  return k < K ? __ldg(reinterpret_cast<const uint4 *>(p + k)) : make_uint4(0u, 0u, 0u, 0u);
}

template <typename A, typename OutT, int BITS, int MT, int RT, bool PREX, bool GROUPED>
__global__ void __launch_bounds__(WO_THREADS) wo_gemm_kernel(const uint4 *__restrict__ w, const float *__restrict__ scale,
                                                             const A *__restrict__ gs, int gshift,
                                                             const A *__restrict__ x, const A *__restrict__ xlo,
                                                             OutT *__restrict__ y, int M, int N, int K, int Kp, int64_t ldx,
                                                             int64_t ldy) {
  constexpr int KT = BITS == 8 ? 32 : 64;
  constexpr int STEPS = KT / 16;
  static_assert(!GROUPED || BITS == 4, "group-wise scales are for int4");
  __shared__ float red[WO_WARPS][RT * MT * 4 * 32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int ktiles = Kp / KT;
  const int rtiles = (N + 15) / 16;
  const int rt0 = blockIdx.x * RT;
  const uint4 *wp[RT];
#pragma unroll
  for (int r = 0; r < RT; r++) wp[r] = w + (int64_t)min(rt0 + r, rtiles - 1) * ktiles * 32 + lane;
  const int ngroups = ktiles >> gshift;
  const uint32_t *gp[RT];  // this lane's scale pair (rows g, g + 8) of row tile r, group 0
#pragma unroll
  for (int r = 0; r < RT; r++)
    gp[r] = GROUPED ? reinterpret_cast<const uint32_t *>(gs) + ((int64_t)min(rt0 + r, rtiles - 1) * ngroups * 8 + g) : nullptr;
  const int per = (ktiles + WO_WARPS - 1) / WO_WARPS;
  const int kt0 = warp * per, kt1 = min(kt0 + per, ktiles);
  // token rows of this lane's B fragments (rows past M repeat the last one; never written)
  const A *xr[MT];
  const A *xl[MT];
#pragma unroll
  for (int nt = 0; nt < MT; nt++) {
    const int tok = min(nt * 8 + g, M - 1);
    xr[nt] = x + (int64_t)tok * ldx;
    xl[nt] = xlo ? xlo + (int64_t)tok * ldx : nullptr;
  }
  float acc[RT][MT][4];
#pragma unroll
  for (int r = 0; r < RT; r++)
#pragma unroll
    for (int nt = 0; nt < MT; nt++)
#pragma unroll
      for (int c = 0; c < 4; c++) acc[r][nt][c] = 0.f;

  constexpr int U = RT >= 4 ? 1 : 4 / RT;  // tiles per row tile per stage: U x RT = 4 loads in flight, twice
  // PREX (one token tile only): the stage's activations are fetched with its weights, so their (L2)
  // latency overlaps the previous stage's math too; otherwise they are loaded where used. Which is
  // faster depends on the shape (registers vs latency): the build times both.
  static_assert(!PREX || MT == 1, "activation prefetch is for one token tile");
  constexpr int XU = PREX ? U : 1;
  constexpr int GU = GROUPED ? U : 1;
  struct Stage {
    uint4 w[U][RT];
    uint4 x[XU][STEPS / 2], xl[XU][STEPS / 2];
    uint32_t s[GU][RT];  // GROUPED: the tile's scales of rows g, g + 8 (two A values)
  };
  auto loadx = [&](uint4 (&xv)[STEPS / 2], uint4 (&xw)[STEPS / 2], int nt, int tile) {
    const int k = tile * KT + t * 4 * STEPS;  // this lane's first column of the tile
#pragma unroll
    for (int h = 0; h < STEPS / 2; h++) {
      xv[h] = ldx8(xr[nt], k + 8 * h, K);
      if (xlo) xw[h] = ldx8(xl[nt], k + 8 * h, K);
    }
  };
  auto load_w = [&](Stage &st, int base) {
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
      for (int r = 0; r < RT; r++)
        if (base + u < kt1) st.w[u][r] = __ldcs(wp[r] + (int64_t)(base + u) * 32);
    if (GROUPED) {
#pragma unroll
      for (int u = 0; u < GU; u++)
#pragma unroll
        for (int r = 0; r < RT; r++)
          if (base + u < kt1) st.s[u][r] = __ldg(gp[r] + (int64_t)((base + u) >> gshift) * 8);
    }
  };
  auto load_x = [&](Stage &st, int base) {
    if (PREX) {
#pragma unroll
      for (int u = 0; u < XU; u++)
        if (base + u < kt1) loadx(st.x[u], st.xl[u], 0, base + u);
    }
  };
  auto compute = [&](Stage &st, int base) {
#pragma unroll
    for (int u = 0; u < U; u++) {
      if (base + u >= kt1) break;
      uint4 xv[MT][STEPS / 2], xw[MT][STEPS / 2];
      if (PREX) {
#pragma unroll
        for (int h = 0; h < STEPS / 2; h++) {
          xv[0][h] = st.x[PREX ? u : 0][h];
          xw[0][h] = st.xl[PREX ? u : 0][h];
        }
      } else {
#pragma unroll
        for (int nt = 0; nt < MT; nt++) loadx(xv[nt], xw[nt], nt, base + u);
      }
      float tacc[GROUPED ? RT : 1][GROUPED ? MT : 1][4];
      if (GROUPED) {
#pragma unroll
        for (int r = 0; r < (GROUPED ? RT : 1); r++)
#pragma unroll
          for (int nt = 0; nt < (GROUPED ? MT : 1); nt++)
#pragma unroll
            for (int c = 0; c < 4; c++) tacc[r][nt][c] = 0.f;
      }
#pragma unroll
      for (int s = 0; s < STEPS; s++) {
#pragma unroll
        for (int r = 0; r < RT; r++) {
          uint32_t a[4];
          afrag<A, BITS>(st.w[u][r], s, a);
#pragma unroll
          for (int nt = 0; nt < MT; nt++) {
            float *c = GROUPED ? tacc[GROUPED ? r : 0][GROUPED ? nt : 0] : acc[r][nt];
            const uint32_t *bx = reinterpret_cast<const uint32_t *>(&xv[nt][s / 2]) + 2 * (s & 1);
            MmaOp<A>::run(c, a, bx[0], bx[1]);
            if (xlo) {
              const uint32_t *bl = reinterpret_cast<const uint32_t *>(&xw[nt][s / 2]) + 2 * (s & 1);
              MmaOp<A>::run(c, a, bl[0], bl[1]);
            }
          }
        }
      }
      if (GROUPED) {
#pragma unroll
        for (int r = 0; r < RT; r++) {
          const uint32_t sv = st.s[GROUPED ? u : 0][r];
          const A *sp = reinterpret_cast<const A *>(&sv);
          const float s0 = to_f<A>(sp[0]), s1 = to_f<A>(sp[1]);
#pragma unroll
          for (int nt = 0; nt < MT; nt++) {
            const float *c = tacc[GROUPED ? r : 0][GROUPED ? nt : 0];
            acc[r][nt][0] = fmaf(c[0], s0, acc[r][nt][0]);
            acc[r][nt][1] = fmaf(c[1], s0, acc[r][nt][1]);
            acc[r][nt][2] = fmaf(c[2], s1, acc[r][nt][2]);
            acc[r][nt][3] = fmaf(c[3], s1, acc[r][nt][3]);
          }
        }
      }
    }
  };

  Stage sa, sb;
  load_w(sa, kt0);  // weights do not depend on the previous kernel: fetch them before waiting for it
  pdl_wait();
  load_x(sa, kt0);
  for (int kt = kt0; kt < kt1; kt += 2 * U) {
    load_w(sb, kt + U);
    load_x(sb, kt + U);
    compute(sa, kt);
    load_w(sa, kt + 2 * U);
    load_x(sa, kt + 2 * U);
    compute(sb, kt + U);
  }
  pdl_trigger();  // the weights are read
#pragma unroll
  for (int r = 0; r < RT; r++)
#pragma unroll
    for (int nt = 0; nt < MT; nt++)
#pragma unroll
      for (int c = 0; c < 4; c++) red[warp][((r * MT + nt) * 4 + c) * 32 + lane] = acc[r][nt][c];
  __syncthreads();
  for (int e = threadIdx.x; e < RT * MT * 4 * 32; e += WO_THREADS) {
    float sum = 0.f;
#pragma unroll
    for (int wi = 0; wi < WO_WARPS; wi++) sum += red[wi][e];
    const int l = e & 31, c = (e >> 5) & 3, idx = e >> 7;
    const int r = idx / MT, nt = idx % MT;
    const int row = (rt0 + r) * 16 + (l >> 2) + (c >= 2 ? 8 : 0);
    const int tok = nt * 8 + 2 * (l & 3) + (c & 1);
    if (row < N && tok < M) y[(int64_t)tok * ldy + row] = from_f<OutT>(GROUPED ? sum : sum * scale[row]);
  }
}

/* Expand the tiled weights to a row-major 16-bit [N, K] matrix: q * scale (scaled) or q; with
 * group-wise scales (gs) q * gs[row, group] (f32 product, rounded once). Each lane writes its two
 * rows' 4*STEPS consecutive columns with 16-byte stores (K % 8 == 0). */
template <typename A, int BITS>
__global__ void wo_dequant_kernel(const uint4 *__restrict__ w, const float *__restrict__ scale, const A *__restrict__ gs, int gshift,
                                  A *__restrict__ out, int N, int K, int Kp, int scaled) {
  constexpr int KT = BITS == 8 ? 32 : 64;
  constexpr int STEPS = KT / 16;
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int ktiles = Kp / KT;
  const int64_t chunks = (int64_t)((N + 15) / 16) * ktiles * 32;
  for (int64_t ci = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; ci < chunks; ci += (int64_t)gridDim.x * blockDim.x) {
    const int lane = (int)(ci & 31);
    const int64_t tile = ci >> 5;
    const int rt = (int)(tile / ktiles), kt = (int)(tile % ktiles);
    const int g = lane >> 2, t = lane & 3;
    const uint4 wv = __ldcs(w + ci);
    const int r0 = rt * 16 + g, r1 = r0 + 8;
    const int k0 = kt * KT + t * 4 * STEPS;
    if (k0 >= K) continue;
    float s0 = 1.f, s1 = 1.f;
    if (gs) {
      const int64_t gi = (((int64_t)rt * (ktiles >> gshift) + (kt >> gshift)) * 8 + g) * 2;
      s0 = to_f<A>(gs[gi]);
      s1 = to_f<A>(gs[gi + 1]);
    } else if (scaled) {
      if (r0 < N) s0 = scale[r0];
      if (r1 < N) s1 = scale[r1];
    }
    A v0[4 * STEPS], v1[4 * STEPS];  // rows r0, r1: columns k0 .. k0 + 4 STEPS
#pragma unroll
    for (int s = 0; s < STEPS; s++) {
      uint32_t a[4];
      afrag<A, BITS>(wv, s, a);
      const A *h0 = reinterpret_cast<const A *>(&a[0]), *h1 = reinterpret_cast<const A *>(&a[1]);
      const A *h2 = reinterpret_cast<const A *>(&a[2]), *h3 = reinterpret_cast<const A *>(&a[3]);
      v0[4 * s + 0] = from_f<A>(to_f<A>(h0[0]) * s0);
      v0[4 * s + 1] = from_f<A>(to_f<A>(h0[1]) * s0);
      v0[4 * s + 2] = from_f<A>(to_f<A>(h2[0]) * s0);
      v0[4 * s + 3] = from_f<A>(to_f<A>(h2[1]) * s0);
      v1[4 * s + 0] = from_f<A>(to_f<A>(h1[0]) * s1);
      v1[4 * s + 1] = from_f<A>(to_f<A>(h1[1]) * s1);
      v1[4 * s + 2] = from_f<A>(to_f<A>(h3[0]) * s1);
      v1[4 * s + 3] = from_f<A>(to_f<A>(h3[1]) * s1);
    }
#pragma unroll
    for (int h = 0; h < STEPS / 2; h++) {
      if (k0 + 8 * h >= K) break;
      if (r0 < N) *reinterpret_cast<uint4 *>(out + (int64_t)r0 * K + k0 + 8 * h) = *reinterpret_cast<const uint4 *>(&v0[8 * h]);
      if (r1 < N) *reinterpret_cast<uint4 *>(out + (int64_t)r1 * K + k0 + 8 * h) = *reinterpret_cast<const uint4 *>(&v1[8 * h]);
    }
  }
}

__global__ void scale_cols_kernel(float *__restrict__ y, const float *__restrict__ scale, int M, int N, int64_t ldy) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int64_t n = (int64_t)M * N;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t m = i / N;
    const int c = (int)(i % N);
    y[m * ldy + c] *= scale[c];
  }
}

// ----------------------------------------------------------------------------------------------
// launchers

int trtbe_wo_mt(int32_t m) { return m <= 8 ? 1 : m <= 16 ? 2 : m <= 32 ? 4 : m <= 64 ? 8 : 0; }

int trtbe_wo_max_rt(int32_t m) {
  switch (trtbe_wo_mt(m)) {
    case 1: case 2: return 4;
    case 4: return 2;
    case 8: return 1;
    default: return 0;
  }
}

/* One call's operands: per-channel scale, or group-wise gs / gshift. */
struct WoCall {
  cudaStream_t s;
  const void *w;
  const float *scale;
  const void *gs;
  int gshift;
  const void *x, *xlo;
  void *y;
  int M, N, K, Kp;
  int64_t ldx, ldy;
};

template <typename A, typename OutT, int BITS, int MT, int RT, bool PREX, bool GROUPED>
static cudaError_t launch_wo(const WoCall &c) {
  const unsigned blocks = (unsigned)(((c.N + 15) / 16 + RT - 1) / RT);
  return trtbe_launch(wo_gemm_kernel<A, OutT, BITS, MT, RT, PREX, GROUPED>, dim3(blocks), dim3(WO_THREADS), 0, c.s, (const uint4 *)c.w,
                      c.scale, (const A *)c.gs, c.gshift, (const A *)c.x, (const A *)c.xlo, (OutT *)c.y, c.M, c.N, c.K, c.Kp,
                      c.ldx, c.ldy);
}

template <typename A, typename OutT, int BITS, bool GROUPED>
static bool by_shape(const WoCall &c, int rt, bool prefetch) {
#define WO_CASE(MT_, RT_) \
  if (mt == MT_ && rt == RT_) return launch_wo<A, OutT, BITS, MT_, RT_, false, GROUPED>(c), true;
#define WO_CASE_PRE(RT_) \
  if (mt == 1 && rt == RT_ && prefetch) return launch_wo<A, OutT, BITS, 1, RT_, true, GROUPED>(c), true;
  const int mt = trtbe_wo_mt(c.M);
  WO_CASE_PRE(1) WO_CASE_PRE(2) WO_CASE_PRE(4)
  WO_CASE(1, 1) WO_CASE(1, 2) WO_CASE(1, 4)
  WO_CASE(2, 1) WO_CASE(2, 2) WO_CASE(2, 4)
  WO_CASE(4, 1) WO_CASE(4, 2)
  WO_CASE(8, 1)
#undef WO_CASE
#undef WO_CASE_PRE
  return false;
}

template <typename A, typename OutT>
static bool by_bits(const WoCall &c, int bits, int rt, bool pre) {
  if (bits == 8) return by_shape<A, OutT, 8, false>(c, rt, pre);
  return c.gs ? by_shape<A, OutT, 4, true>(c, rt, pre) : by_shape<A, OutT, 4, false>(c, rt, pre);
}

template <typename A>
static bool by_out(const WoCall &c, int bits, int y_dtype, int rt, bool pre) {
  return y_dtype == TRTB_DTYPE_F32 ? by_bits<A, float>(c, bits, rt, pre) : by_bits<A, A>(c, bits, rt, pre);
}

int32_t trtbe_wo_kp(int32_t k, int32_t bits) {
  const int kt = bits == 8 ? 32 : 64;
  return (k + kt - 1) / kt * kt;
}

int32_t trtbe_wo_gshift(int32_t group, int32_t bits) {
  if (group == 0) return 0;
  const int kt = bits == 8 ? 32 : 64;
  if (bits != 4 || group < kt || group % kt) return -1;
  const int tiles = group / kt;
  if (tiles & (tiles - 1)) return -1;
  int sh = 0;
  while ((1 << sh) < tiles) sh++;
  return sh;
}

/* Checks shared by the kernel and the expansion: group size, K a multiple of it, alignment. */
static int32_t check_groups(const char *fn, const void *gs, int32_t group, int32_t K, int32_t bits) {
  if (!gs && !group) return TRTB_OK;
  if (!gs || trtbe_wo_gshift(group, bits) < 0 || group == 0 || K % group)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: group-wise scales need int4, a group of 64 * 2^i columns dividing K and a gscale pointer (group %d, K %d, int%d)",
                      fn, group, K, bits);
  if ((uintptr_t)gs % 4) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: gscale must be 4-byte aligned", fn);
  return TRTB_OK;
}

int32_t trtbe_wo_gemm(cudaStream_t s, const void *w, const float *scale, const void *gs, int32_t group, const void *x,
                      const void *xlo, void *y, int32_t M, int32_t N, int32_t K, int32_t bits, int32_t a_dtype, int32_t y_dtype,
                      int64_t ldx, int64_t ldy, int32_t rt) {
  if (M <= 0 || N <= 0) return TRTB_OK;
  if (!(bits == 8 || bits == 4) || !TRTBE_DTYPE_OK16(a_dtype) || !(y_dtype == TRTB_DTYPE_F32 || y_dtype == a_dtype))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm_wo: bits %d, activations %d, output %d are not supported", bits, a_dtype, y_dtype);
  if (M > 64 || K <= 0 || K % 8 || ldx % 8 || ((uintptr_t)x % 16) || (xlo && ((uintptr_t)xlo % 16)) || ((uintptr_t)w % 16))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm_wo: unsupported call (M=%d K=%d ldx=%lld, alignment)", M, K, (long long)ldx);
  int32_t st = check_groups("gemm_wo", gs, group, K, bits);
  if (st != TRTB_OK) return st;
  if (!gs && !scale) return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm_wo: no scales");
  const bool prefetch = (rt & TRTBE_WO_PREFETCH) != 0 && M <= 8;
  rt &= ~TRTBE_WO_PREFETCH;
  const int maxrt = trtbe_wo_max_rt(M);
  if (rt < 1) rt = 1;
  while (rt > maxrt || (rt & (rt - 1))) rt--;
  const WoCall c{s, w, scale, gs, gs ? trtbe_wo_gshift(group, bits) : 0, x, xlo, y, M, N, K, trtbe_wo_kp(K, bits), ldx, ldy};
  const bool ok = a_dtype == TRTB_DTYPE_BF16 ? by_out<__nv_bfloat16>(c, bits, y_dtype, rt, prefetch)
                                             : by_out<__half>(c, bits, y_dtype, rt, prefetch);
  if (!ok) return trtb__fail(TRTB_ERR_INTERNAL, "gemm_wo: no instantiation for M=%d rt=%d", M, rt);
  TRTB_CUDA_CHECK_LAUNCH("wo_gemm_kernel");
  return TRTB_OK;
}

int32_t trtbe_wo_dequant(cudaStream_t s, const void *w, const float *scale, const void *gs, int32_t group, void *out,
                         int32_t N, int32_t K, int32_t bits, int32_t a_dtype, int32_t scaled) {
  if (N <= 0 || K <= 0) return TRTB_OK;
  if (!(bits == 8 || bits == 4) || !TRTBE_DTYPE_OK16(a_dtype) || K % 8 || ((uintptr_t)out % 16))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "wo_dequant: bits %d, dtype %d, K %d (a multiple of 8, 16-byte aligned output)", bits, a_dtype, K);
  int32_t st = check_groups("wo_dequant", gs, group, K, bits);
  if (st != TRTB_OK) return st;
  const int gshift = gs ? trtbe_wo_gshift(group, bits) : 0;
  const int Kp = trtbe_wo_kp(K, bits);
  const int64_t chunks = (int64_t)((N + 15) / 16) * (Kp / (bits == 8 ? 32 : 64)) * 32;
  const unsigned grid = (unsigned)std::min<int64_t>((chunks + 255) / 256, 132 * 32);
#define WO_DQ(A_, B_) \
  (void)trtbe_launch(wo_dequant_kernel<A_, B_>, dim3(grid), dim3(256), 0, s, (const uint4 *)w, scale, (const A_ *)gs, gshift, (A_ *)out, N, K, Kp, scaled)
  if (bits == 8 && a_dtype == TRTB_DTYPE_BF16) WO_DQ(__nv_bfloat16, 8);
  else if (bits == 8) WO_DQ(__half, 8);
  else if (a_dtype == TRTB_DTYPE_BF16) WO_DQ(__nv_bfloat16, 4);
  else WO_DQ(__half, 4);
#undef WO_DQ
  TRTB_CUDA_CHECK_LAUNCH("wo_dequant_kernel");
  return TRTB_OK;
}

int32_t trtbe_scale_cols(cudaStream_t s, float *y, const float *scale, int32_t M, int32_t N, int64_t ldy) {
  const int64_t n = (int64_t)M * N;
  if (n <= 0) return TRTB_OK;
  const unsigned grid = (unsigned)std::min<int64_t>((n + 255) / 256, 132 * 16);
  (void)trtbe_launch(scale_cols_kernel, dim3(grid), dim3(256), 0, s, y, scale, M, N, ldy);
  TRTB_CUDA_CHECK_LAUNCH("scale_cols_kernel");
  return TRTB_OK;
}
