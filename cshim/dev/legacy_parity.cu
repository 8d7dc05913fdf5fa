/*
 * legacy_parity.cu: runs the first GPU-verified variant of each kernel that was later tuned next
 * to the engine's current one, on the same random inputs, and compares the outputs. A standalone
 * program (main), not part of any library; see README.md here for how to build and run it.
 *
 *   decode attention   serial split-K merge (attention_decode_legacy.cuh) vs the parallel merge
 *   prefill attention  shared-memory-O tensor-core kernel vs the register-O one (D <= 128)
 *   RMSNorm            shared-memory row vs the row in registers (H % 4 == 0, H <= 8192)
 *   gated activation   one element per thread vs 8 per thread with 16-byte loads
 *
 * The "legacy" sides other than the decode merge are still in the engine as the fallbacks for the
 * shapes the tuned kernels do not take (D = 256, other H, unaligned or f32 activations), so they are
 * reached here by including the engine's kernel sources into this translation unit.
 *
 * Exit status: 0 all pass, 1 a comparison failed, 2 a CUDA or engine call failed, 77 no device.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "../engine/kernels/activation.cu"
#include "../engine/kernels/attention_decode.cu"
#include "../engine/kernels/attention_prefill.cu"
#include "../engine/kernels/norm.cu"
#include "attention_decode_legacy.cuh"

// The engine's api.cu (not linked here) reads TRTB_ENGINE_PDL; the harness launches without
// programmatic dependent launch, so each kernel runs alone.
bool trtbe_pdl_enabled(void) { return false; }

// ----------------------------------------------------------------------------------------------
// helpers

#define CK(call)                                                                                      \
  do {                                                                                                \
    cudaError_t e_ = (call);                                                                          \
    if (e_ != cudaSuccess) {                                                                          \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));          \
      exit(2);                                                                                        \
    }                                                                                                 \
  } while (0)

#define ST(call)                                                                                      \
  do {                                                                                                \
    int32_t s_ = (call);                                                                              \
    if (s_ != TRTB_OK) {                                                                              \
      char m_[1024];                                                                                  \
      trtb__last_error_copy(m_, sizeof m_);                                                           \
      fprintf(stderr, "%s:%d: %s: status %d: %s\n", __FILE__, __LINE__, #call, (int)s_, m_);          \
      exit(2);                                                                                        \
    }                                                                                                 \
  } while (0)

static int g_checks, g_failures;
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

/* Uniform in [-1, 1). */
static float frand(void) {
  g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
  return (float)(g_rng >> 40) * (1.0f / 16777216.0f) * 2.f - 1.f;
}
static int irand(int n) { return (int)((frand() * 0.5f + 0.5f) * n) % n; }

template <typename T> static T host_from_f(float v);
template <> float host_from_f<float>(float v) { return v; }
template <> __nv_bfloat16 host_from_f<__nv_bfloat16>(float v) { return __float2bfloat16(v); }

template <typename T> static T *upload(const std::vector<T> &h) {
  T *d = nullptr;
  CK(cudaMalloc(&d, h.size() * sizeof(T) + 16));
  CK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}
template <typename T> static T *random_dev(size_t n, float scale) {
  std::vector<T> h(n);
  for (auto &v : h) v = host_from_f<T>(frand() * scale);
  return upload(h);
}
template <typename T> static T *zeros_dev(size_t n) {
  T *d = nullptr;
  CK(cudaMalloc(&d, n * sizeof(T) + 16));
  CK(cudaMemset(d, 0, n * sizeof(T) + 16));
  return d;
}
template <typename T> static std::vector<T> download(const T *d, size_t n) {
  std::vector<T> h(n);
  CK(cudaDeviceSynchronize());
  CK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

/* Pass when max |legacy - current| <= tol * max(1, max |legacy|). */
static void compare_f32(const char *what, const float *legacy, const float *current, size_t n, double tol) {
  const std::vector<float> a = download(legacy, n), b = download(current, n);
  double diff = 0, ref = 0;
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(a[i]) != isnan(b[i])) bad++;
    if (isnan(a[i]) || isnan(b[i])) continue;
    diff = fmax(diff, fabs((double)a[i] - b[i]));
    ref = fmax(ref, fabs((double)a[i]));
  }
  const bool ok = bad == 0 && diff <= tol * fmax(1.0, ref);
  g_checks++;
  printf("%-4s %-58s max |diff| %.3g (max |legacy| %.3g, tol %.1g)%s\n", ok ? "ok" : "FAIL", what, diff, ref, tol,
         bad ? " NaN mismatch" : "");
  if (!ok) g_failures++;
}

/* bf16 outputs: count elements that differ at all, and pass when none is more than 1 ulp off. */
static void compare_bf16(const char *what, const __nv_bfloat16 *legacy, const __nv_bfloat16 *current, size_t n) {
  const std::vector<__nv_bfloat16> a = download(legacy, n), b = download(current, n);
  size_t differ = 0, far = 0;
  for (size_t i = 0; i < n; i++) {
    uint16_t x, y;
    memcpy(&x, &a[i], 2);
    memcpy(&y, &b[i], 2);
    if (x == y) continue;
    differ++;
    if ((x ^ y) & 0x8000u || (x > y ? x - y : y - x) > 1) far++;
  }
  const bool ok = far == 0;
  g_checks++;
  printf("%-4s %-58s %zu of %zu elements differ, %zu by more than 1 ulp\n", ok ? "ok" : "FAIL", what, differ, n, far);
  if (!ok) g_failures++;
}

/* Block table of B sequences with mb blocks each, in reverse order (blocks are not contiguous). */
static int32_t *block_table(int B, int mb) {
  std::vector<int32_t> t((size_t)B * mb);
  for (size_t i = 0; i < t.size(); i++) t[i] = (int32_t)(t.size() - 1 - i);
  return upload(t);
}

// ----------------------------------------------------------------------------------------------
// decode attention: serial vs parallel split-K merge

template <int D, int GMAX>
static void decode_case(int B, int nKV, int G, int nsplit, int tpb, int window, float softcap) {
  const int nH = nKV * G;
  std::vector<int32_t> len(B);
  int maxlen = 1;
  for (int b = 0; b < B; b++) maxlen = std::max(maxlen, len[b] = 1 + irand(900));
  const int mb = (maxlen + tpb - 1) / tpb;
  AttnDecodeArgs a{};
  a.q = random_dev<float>((size_t)B * nH * D, 1.f);
  a.kv = random_dev<__nv_bfloat16>((size_t)B * mb * 2 * nKV * tpb * D, 1.f);
  a.kv_dtype = TRTB_DTYPE_BF16;
  a.block_table = block_table(B, mb);
  a.max_blocks = mb;
  a.ctx_len = upload(len);
  a.nH = nH;
  a.nKV = nKV;
  a.D = D;
  a.tpb = tpb;
  a.scale = 1.f / sqrtf((float)D);
  a.softcap = softcap;
  a.window = window;
  a.nsplit = nsplit;
  a.ws = zeros_dev<float>(DEC_MAX_COUNTERS + (size_t)B * nH * nsplit * (D + 2));
  a.out_dtype = TRTB_DTYPE_F32;
  a.B = B;
  float *out_legacy = zeros_dev<float>((size_t)B * nH * D), *out_current = zeros_dev<float>((size_t)B * nH * D);
  a.out = out_current;
  ST(trtbe_attn_decode(0, a));
  a.out = out_legacy;
  attn_decode_legacy_kernel<D, GMAX, __nv_bfloat16><<<dim3(nKV, B, nsplit), DEC_THREADS>>>(a);
  CK(cudaGetLastError());
  char what[128];
  snprintf(what, sizeof what, "decode D=%d G=%d B=%d nsplit=%d window=%d softcap=%g", D, G, B, nsplit, window, softcap);
  compare_f32(what, out_legacy, out_current, (size_t)B * nH * D, 1e-5);
}

// ----------------------------------------------------------------------------------------------
// prefill attention: shared-memory-O vs register-O tensor-core kernels

template <int D>
static void prefill_case(int nseq, int nKV, int G, int tpb, int window, float softcap) {
  const int nH = nKV * G;
  std::vector<int32_t> cu_q(nseq + 1, 0), pos0(nseq), tiles;
  int maxlen = 1;
  for (int s = 0; s < nseq; s++) {
    const int nq = 1 + irand(300);
    pos0[s] = irand(200);  // context already in the cache
    cu_q[s + 1] = cu_q[s] + nq;
    maxlen = std::max(maxlen, pos0[s] + nq);
    for (int q0 = 0; q0 < nq; q0 += TC_BQ) {
      tiles.push_back(s);
      tiles.push_back(q0);
    }
  }
  const int mb = (maxlen + tpb - 1) / tpb, nq_total = cu_q[nseq];
  AttnPrefillArgs a{};
  a.q = random_dev<float>((size_t)nq_total * nH * D, 1.f);
  a.kv = random_dev<__nv_bfloat16>((size_t)nseq * mb * 2 * nKV * tpb * D, 1.f);
  a.kv_dtype = TRTB_DTYPE_BF16;
  a.block_table = block_table(nseq, mb);
  a.max_blocks = mb;
  a.tiles = upload(tiles);
  a.n_tiles = (int32_t)(tiles.size() / 2);
  a.cu_q = upload(cu_q);
  a.pos0 = upload(pos0);
  a.nH = nH;
  a.nKV = nKV;
  a.D = D;
  a.tpb = tpb;
  a.scale = 1.f / sqrtf((float)D);
  a.softcap = softcap;
  a.window = window;
  a.out_dtype = TRTB_DTYPE_F32;
  float *out_legacy = zeros_dev<float>((size_t)nq_total * nH * D), *out_current = zeros_dev<float>((size_t)nq_total * nH * D);
  a.out = out_current;
  ST(trtbe_attn_prefill(0, a));  // D <= 128 with 16-bit KV: attn_prefill_tc2_kernel
  a.out = out_legacy;
  ST((trtbe_launch(attn_prefill_tc_kernel<D, __nv_bfloat16, float>, dim3((unsigned)a.n_tiles, (unsigned)nH), dim3(TC_THREADS),
                   TcCfg<D>::bytes, (cudaStream_t)0, a) == cudaSuccess ? TRTB_OK : TRTB_ERR_CUDA));
  char what[128];
  snprintf(what, sizeof what, "prefill D=%d G=%d seqs=%d tokens=%d window=%d softcap=%g", D, G, nseq, nq_total, window, softcap);
  // P is rounded to bf16 against different reference maxima (the register-O kernel rescales lazily).
  compare_f32(what, out_legacy, out_current, (size_t)nq_total * nH * D, 2e-2);
}

// ----------------------------------------------------------------------------------------------
// residual add + RMSNorm: shared-memory row vs registers

static void norm_case(int H, int T, bool delta, bool delta_norm) {
  const size_t n = (size_t)H * T;
  float *res0 = random_dev<float>(n, 4.f);
  float *res_legacy = zeros_dev<float>(n), *res_current = zeros_dev<float>(n);
  CK(cudaMemcpy(res_legacy, res0, n * 4, cudaMemcpyDeviceToDevice));
  CK(cudaMemcpy(res_current, res0, n * 4, cudaMemcpyDeviceToDevice));
  float *out_legacy = zeros_dev<float>(n), *out_current = zeros_dev<float>(n);
  AddNormArgs a{};
  a.delta = delta ? random_dev<float>(n, 2.f) : nullptr;
  a.delta_ld = H;
  a.delta_bias = delta ? random_dev<float>(H, 0.5f) : nullptr;
  a.delta_norm = delta_norm ? random_dev<float>(H, 1.f) : nullptr;
  a.norm_w = random_dev<float>(H, 1.f);
  a.eps = 1e-5f;
  a.out_dtype = TRTB_DTYPE_F32;
  a.H = H;
  a.T = T;
  AddNormArgs b = a;
  b.res = res_current;
  b.out = out_current;
  ST(trtbe_add_norm(0, b));  // H % 4 == 0 and H <= 8192: add_norm_reg_kernel
  a.res = res_legacy;
  a.out = out_legacy;
  ST((trtbe_launch(add_norm_kernel<float>, dim3((unsigned)T), dim3(H >= 2048 ? 512 : 256), (size_t)H * sizeof(float),
                   (cudaStream_t)0, a) == cudaSuccess ? TRTB_OK : TRTB_ERR_CUDA));
  char what[128];
  snprintf(what, sizeof what, "add_norm H=%d T=%d delta=%d delta_norm=%d: out", H, T, (int)delta, (int)delta_norm);
  compare_f32(what, out_legacy, out_current, n, 1e-5);
  snprintf(what, sizeof what, "add_norm H=%d T=%d delta=%d delta_norm=%d: residual", H, T, (int)delta, (int)delta_norm);
  compare_f32(what, res_legacy, res_current, n, 1e-6);
}

// ----------------------------------------------------------------------------------------------
// gated activation: scalar vs 8-wide

static void gated_case(int64_t I, int64_t T, int act, bool bias) {
  GatedActArgs a{};
  a.in = random_dev<__nv_bfloat16>((size_t)(2 * I * T), 4.f);
  a.in_dtype = TRTB_DTYPE_BF16;
  a.bias = bias ? random_dev<float>((size_t)(2 * I), 0.5f) : nullptr;
  a.out_dtype = TRTB_DTYPE_BF16;
  a.I = I;
  a.T = T;
  a.act = act;
  __nv_bfloat16 *out_legacy = zeros_dev<__nv_bfloat16>((size_t)(I * T)), *out_current = zeros_dev<__nv_bfloat16>((size_t)(I * T));
  a.out = out_current;
  ST(trtbe_gated_act(0, a));  // I % 8 == 0, 16-bit in == out, aligned: gated_act_vec8_kernel
  a.out = out_legacy;
  ST((trtbe_launch(gated_act_kernel<__nv_bfloat16, __nv_bfloat16>, dim3(trtbe_grid_for(I * T, 256)), dim3(256), 0,
                   (cudaStream_t)0, a) == cudaSuccess ? TRTB_OK : TRTB_ERR_CUDA));
  char what[128];
  snprintf(what, sizeof what, "gated_act I=%lld T=%lld act=%d bias=%d", (long long)I, (long long)T, act, (int)bias);
  compare_bf16(what, out_legacy, out_current, (size_t)(I * T));
}

int main(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    printf("legacy_parity: no CUDA device; skipped\n");
    return 77;
  }
  ST(trtbe_norm_init());
  ST(trtbe_attn_prefill_init());

  decode_case<128, 4>(3, 8, 4, 8, 16, 0, 0.f);
  decode_case<128, 2>(2, 4, 2, 16, 32, 100, 30.f);
  decode_case<64, 1>(4, 4, 1, 16, 16, 0, 0.f);
  decode_case<256, 8>(2, 2, 8, 4, 64, 0, 0.f);
  decode_case<128, 16>(1, 1, 16, 32, 16, 0, 0.f);

  prefill_case<64>(3, 4, 2, 16, 0, 0.f);
  prefill_case<128>(3, 8, 4, 32, 0, 0.f);
  prefill_case<128>(2, 4, 2, 16, 96, 50.f);

  norm_case(4096, 5, true, false);
  norm_case(4096, 3, false, false);
  norm_case(2048, 4, true, true);
  norm_case(8192, 2, true, false);
  norm_case(1000, 3, true, false);

  gated_case(14336, 3, 0, false);
  gated_case(1024, 5, 1, true);

  printf("%d passed, %d failed\n", g_checks - g_failures, g_failures);
  return g_failures ? 1 : 0;
}
