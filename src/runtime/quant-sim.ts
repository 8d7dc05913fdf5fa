/**
 * Simulated activation and KV-cache quantization for the CPU runner (CpuRunnerHooks), from the
 * scale tensors a quantized checkpoint holds, so accuracy can be measured without a GPU:
 *
 *   linear input x (per module with `activation_scaling_factor` a):
 *     x' = x · prequant_scaling_factor (when the runner still sees it: A8 formats; A16 AWQ folds it
 *          into the weight instead), then
 *     FP8 / W4A8_AWQ:        x_q = e4m3(clamp(x'/a, ±448)) · a
 *     W8A8_SQ_PER_CHANNEL:   x_q = clamp(RNE(x'/a), −128, 127) · a
 *   legacy SmoothQuant plugin variants (W8A8_SQ_*_PLUGIN; src/quant/int8-sq-plugin.ts),
 *   for every linear the checkpoint quantizes (qkv: `input_layernorm.scale_to_int` present; fc / gate:
 *   `post_layernorm.scale_to_int`; dense / proj: `smoother` present): x' = x / smoother (dense, proj;
 *   qkv / fc / gate read the norm with the smoothing folded in), then per token t
 *     x_q = RNE(x'·(127/m_t)) · (m_t/127),  m_t = max_i |x'_t,i|  (a zero row stays zero)
 *   or, static (no PER_TOKEN), with sx = scale_to_int / quantization_scaling_factor:
 *     x_q = clamp(RNE(x'·sx), −128, 127) / sx
 *   FP8_PER_CHANNEL_PER_TOKEN (every linear with `per_channel_scale`: the MLP's), per token t, as
 *   TensorRT-LLM's dynamic per-token kernels: v = clamp(x, clamp_val) (when the config has one),
 *     s_t = max(f32(m_t / 448), f32(1 / (448·512))),  m_t = max_i |v_t,i|,  x_q = e4m3(f32(v / s_t)) · s_t
 *   K and V (per layer with `attention.kv_cache_scaling_factor` s, kv_cache_quant_algo):
 *     INT8: clamp(RNE(v/s), −128, 127) · s          FP8: e4m3(clamp(v/s, ±448)) · s
 *     applied after RoPE, before K/V are stored *and* attended to: every query reads the quantized
 *     cache, as in generation (TensorRT-LLM's context phase may attend to the unquantized K/V of its
 *     own chunk; this simulation is the generation-phase bound).
 */
import { configQuant, type PretrainedConfig } from "../format/checkpoint-config.ts";
import { e4m3ToF32Bits, f32BitsToE4m3, quantInt } from "../quant/kernel.ts";
import { FP8_MIN_SCALE, fp8Rowwise } from "../quant/fp8-rowwise.ts";
import { linearOfWeight } from "../quant/modules.ts";
import { bitsToF32, f32Bits } from "../numeric.ts";
import type { CpuRunnerHooks } from "./cpu.ts";
import type { FullWeights } from "./merge.ts";
import { isSqPluginAlgo, sqPluginPerToken } from "../quant/int8-sq-plugin.ts";

type Q = (v: number, s: number) => number;
const fp8Q: Q = (v, s) => Math.fround(bitsToF32(e4m3ToF32Bits(f32BitsToE4m3(f32Bits(Math.fround(v / s))))) * s);
const int8Q: Q = (v, s) => Math.fround(quantInt(v, s, -128, 127, "half_even") * s);

const ACT_FORMAT: Partial<Record<string, Q>> = { FP8: fp8Q, W4A8_AWQ: fp8Q, W8A8_SQ_PER_CHANNEL: int8Q };

/** Modules of a legacy SmoothQuant plugin checkpoint whose inputs are quantized: the smoother of dense / proj and the static input scale (1 for per-token). */
function sqPluginModules(cfg: PretrainedConfig, w: FullWeights): Map<string, { smoother?: Float32Array; s2i: number }> {
  const out = new Map<string, { smoother?: Float32Array; s2i: number }>();
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `transformer.layers.${l}.`;
    const qkv = w.get(`${p}input_layernorm.scale_to_int`);
    if (qkv) out.set(`${p}attention.qkv`, { s2i: qkv.data[0]! });
    const mlp = w.get(`${p}post_layernorm.scale_to_int`);
    if (mlp) for (const m of ["mlp.fc", "mlp.gate"]) out.set(p + m, { s2i: mlp.data[0]! });
    for (const [m, qsf] of [["attention.dense", "attention"], ["mlp.proj", "mlp"]]) {
      const s = w.get(`${p}${m}.smoother`);
      if (s) out.set(p + m, { smoother: s.data, s2i: w.get(`${p}${qsf}.quantization_scaling_factor`)?.data[0] ?? 1 });
    }
  }
  return out;
}

/** Dynamic per-token int8 fake quantization of x [S, inF] (after dividing by `smoother`). */
export function perTokenInt8(x: Float32Array, S: number, inF: number, smoother?: Float32Array): Float32Array {
  const y = new Float32Array(S * inF);
  for (let s = 0; s < S; s++) {
    const o = s * inF;
    let m = 0;
    for (let i = 0; i < inF; i++) {
      const v = smoother ? Math.fround(x[o + i]! / smoother[i]!) : x[o + i]!;
      y[o + i] = v;
      m = Math.max(m, Math.abs(v));
    }
    if (!(m > 0)) continue;
    const toInt = Math.fround(127 / m);
    const toFp = Math.fround(m / 127);
    for (let i = 0; i < inF; i++) y[o + i] = Math.fround(quantInt(Math.fround(y[o + i]! * toInt), 1, -128, 127, "half_even") * toFp);
  }
  return y;
}

/** Dynamic per-token FP8 fake quantization of x [S, inF] (FP8 rowwise), after clamping to `clamp` [lo, hi] when given. */
export function perTokenFp8(x: Float32Array, S: number, inF: number, clamp?: readonly [number, number] | null): Float32Array {
  const y = new Float32Array(S * inF);
  for (let s = 0; s < S; s++) {
    const o = s * inF;
    let m = 0;
    for (let i = 0; i < inF; i++) {
      const v = clamp ? Math.min(Math.max(x[o + i]!, clamp[0]), clamp[1]) : x[o + i]!;
      y[o + i] = v;
      m = Math.max(m, Math.abs(v));
    }
    const sc = Math.max(Math.fround(m / 448), FP8_MIN_SCALE);
    for (let i = 0; i < inF; i++) y[o + i] = fp8Q(y[o + i]!, sc);
  }
  return y;
}

/** The hooks for a merged checkpoint, or null when it quantizes neither activations nor the KV cache. */
export function quantSimHooks(cfg: PretrainedConfig, w: FullWeights): CpuRunnerHooks | null {
  const q = configQuant(cfg);
  const actQ = q.quant_algo ? ACT_FORMAT[q.quant_algo] : undefined;
  const kvQ = q.kv_cache_quant_algo === "INT8" ? int8Q : q.kv_cache_quant_algo === "FP8" ? fp8Q : undefined;
  const acts = new Map<string, { a: number; pre?: Float32Array }>();
  if (actQ)
    for (const [n, t] of w) {
      const m = /^(.*)\.activation_scaling_factor$/.exec(n);
      if (m) acts.set(m[1]!, { a: t.data[0]!, pre: w.get(`${m[1]}.prequant_scaling_factor`)?.data });
    }
  const kv: number[] = [];
  if (kvQ) for (let l = 0; l < cfg.num_hidden_layers; l++) kv[l] = w.get(`transformer.layers.${l}.attention.kv_cache_scaling_factor`)?.data[0] ?? NaN;
  const plugin = isSqPluginAlgo(q.quant_algo) ? sqPluginModules(cfg, w) : null;
  const perToken = sqPluginPerToken(q.quant_algo);
  // FP8 rowwise: the linears its scheme quantizes (the merged weights no longer show their scales)
  const rowwise = q.quant_algo === "FP8_PER_CHANNEL_PER_TOKEN" ? new Set<string>() : null;
  if (rowwise)
    for (const [n, t] of w) {
      const l = linearOfWeight(n, t.shape, (i) => i);
      if (l && fp8Rowwise.quantizes(l, cfg, q)) rowwise.add(l.module);
    }
  if (acts.size === 0 && !kvQ && !plugin && !rowwise?.size) return null;
  const hooks: CpuRunnerHooks = {};
  if (rowwise?.size) {
    const clamp = q.clamp_val ? ([q.clamp_val[0]!, q.clamp_val[1]!] as const) : null;
    hooks.linearInput = (module, x, S, inF) => (rowwise.has(module) ? perTokenFp8(x, S, inF, clamp) : undefined);
  }
  if (plugin)
    hooks.linearInput = (module, x, S, inF) => {
      const e = plugin.get(module);
      if (!e) return;
      if (perToken) return perTokenInt8(x, S, inF, e.smoother);
      const y = new Float32Array(S * inF);
      for (let k = 0; k < y.length; k++) {
        const v = e.smoother ? Math.fround(x[k]! / e.smoother[k % inF]!) : x[k]!;
        y[k] = Math.fround(quantInt(Math.fround(v * e.s2i), 1, -128, 127, "half_even") / e.s2i);
      }
      return y;
    };
  if (actQ && acts.size > 0)
    hooks.linearInput = (module, x, S, inF) => {
      const e = acts.get(module);
      if (!e) return;
      const y = new Float32Array(S * inF);
      for (let s = 0; s < S; s++)
        for (let i = 0; i < inF; i++) {
          const v = e.pre ? Math.fround(x[s * inF + i]! * e.pre[i]!) : x[s * inF + i]!;
          y[s * inF + i] = actQ(v, e.a);
        }
      return y;
    };
  if (kvQ)
    hooks.kv = (layer, k, v) => {
      const s = kv[layer]!;
      if (!(s > 0)) return;
      for (let i = 0; i < k.length; i++) k[i] = kvQ(k[i]!, s);
      for (let i = 0; i < v.length; i++) v[i] = kvQ(v[i]!, s);
    };
  return hooks;
}
