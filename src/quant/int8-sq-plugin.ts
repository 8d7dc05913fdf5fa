/**
 * SmoothQuant, the TRT-LLM legacy converter's plugin variants (`--smoothquant α` with `--per_channel`
 * and/or `--per_token`; spec §3.6), in the layout of `get_tllm_linear_sq_weight` / `generate_int8`
 * (tensorrt_llm/models/llama/convert.py, 0.14-era: chiendb97/TensorRT-LLM @ 6d995d4f, the spec's
 * [0.14dev] snapshot):
 *
 *   quant_algo                               weights         activations
 *   W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN     per out channel per token (dynamic)
 *   W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN      per tensor      per token (dynamic)
 *   W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN    per out channel per tensor (static)
 *   W8A8_SQ_PER_TENSOR_PLUGIN                per tensor      per tensor (static)
 *
 * Smoothing s (SmoothQuant eq. 4 over the group sharing an input: qkv; dense; fc+gate; proj) as
 * upstream's smooth_llama_model: for qkv and fc/gate it is folded into the preceding RMSNorm
 * (`input_layernorm.weight` / `post_layernorm.weight` = g/s, model dtype); dense and proj keep it
 * as an explicit `smoother` the engine divides its input by. Weights are W·s (= W/pre).
 *
 * Per layer, per-token variants (W' = W/pre, f32; amax over what the scale covers):
 *   attention.qkv.weight             I8   [qkv_local, H]     clamp(RNE(W'·(127/amax)), ±127)
 *   attention.qkv.per_channel_scale  F32  [1, qkv_local]     1/(127/amax): per row, or (per tensor) the
 *                                                           amax of the FULL q, k or v part, repeated
 *   input_layernorm.weight           dt   [H]                g · pre (= g/s)
 *   input_layernorm.scale_to_int     F32  [1]                1.0
 *   attention.dense.weight           I8   [H, H_local]       amax per FULL row, or of the full weight
 *   attention.dense.per_channel_scale F32 [1, H] or [1, 1]   (per channel: not split, rows are whole)
 *   attention.dense.smoother         F32  [1, H_local]       1/pre (the rank's input slice)
 *   mlp.fc / mlp.gate                as qkv, scale [1, I_local] or [1, 1]; post_layernorm.* as input_layernorm.*
 *   mlp.proj                         as dense, smoother [1, I_local]
 * No `act_scale` and no `*.quantization_scaling_factor` in the per-token variants (upstream writes
 * them only for static activations; the model declares them only with has_act_static_scaling).
 *
 * Deviations from upstream's numbers (both rounding-level): upstream multiplies the weights by s in
 * the model dtype and computes amax/127 in the model dtype; here W/pre and the scales are f32, and
 * s is 1/pre with pre = 1/s rounded to the model dtype by the plan (src/calib/plan.ts, shared with
 * int8_sq), so norm, smoother and weight use exactly the same factor.
 *
 * Static variants (no PER_TOKEN), with sx = f32(127/max|x·pre|) (scale_x_orig_quant, the smoothed
 * input), sy = f32(127/max|y|) (scale_y_orig_quant, y the linear's output: CalibStats.outAmax) and
 * sw = f32(127/amax) per row as above (scale_w_orig_quant):
 *   X.per_channel_scale              F32  as above          f32(sy / f32(sx·sw))  (scale_y_accum_quant)
 *   X.act_scale                      F32  [1, 1]            f32(max|y|/127)       (scale_y_quant_orig), every linear
 *   input_layernorm.scale_to_int     F32  [1]               sx of qkv;  post_layernorm.scale_to_int: sx of fc (= gate's)
 *   attention.quantization_scaling_factor, mlp.quantization_scaling_factor  F32 [1]   sx of dense / proj
 * (y's scale cancels in the engine: y = acc·act_scale·per_channel_scale = acc/(sx·sw).)
 *
 * Runner: the folded norms are used as stored; dense/proj inputs are divided by `smoother`; every
 * quantized linear's input is fake-quantized (src/runtime/quant-sim.ts) per token (scale max|x_t|/127)
 * or with the static scale (clamp(RNE(x·sx), ±127/−128)/sx) and multiplies the effective weight
 * int8 · per_channel_scale (static: int8 · per_channel_scale · act_scale · sx).
 */
import { type PretrainedConfig, type QuantAlgo, type QuantConfig, QuantConfigSchema, headSize, numKvHeads } from "../format/checkpoint-config.ts";
import type { DType } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import type { ParamSpec } from "../tensor.ts";
import { cast, type LazyTensor } from "../tensor/lazy.ts";
import { type CalibPlan, globalModule, planOf } from "./calib-plan.ts";
import { ComputedBytes, f32Values } from "./computed.ts";
import { refuseMoe } from "./fp8.ts";
import { type QuantKernelParams, quantInt } from "./kernel.ts";
import { excludeList, isExcluded, type LinearInfo } from "./modules.ts";
import { bytesOf, f32Tensor, inputSlice, matrixOf, type QuantScheme, valuesF32 } from "./scheme.ts";

const INT8_MAX = 127;

export const SQ_PLUGIN_ALGOS = [
  "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN", "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN", "W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN", "W8A8_SQ_PER_TENSOR_PLUGIN",
] as const satisfies readonly QuantAlgo[];
export type SqPluginAlgo = (typeof SQ_PLUGIN_ALGOS)[number];

/** convert_checkpoint.py's args_to_quant_config: --per_channel / --per_token → the plugin variant. */
export function sqPluginAlgo(perChannel: boolean, perToken: boolean): SqPluginAlgo {
  if (perChannel) return perToken ? "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN" : "W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN";
  return perToken ? "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN" : "W8A8_SQ_PER_TENSOR_PLUGIN";
}

export const isSqPluginAlgo = (a: string | null | undefined): a is SqPluginAlgo => (SQ_PLUGIN_ALGOS as readonly string[]).includes(a ?? "");
export const sqPluginPerToken = (a: string | null | undefined) => isSqPluginAlgo(a) && a.includes("PER_TOKEN");

/** 127/amax and its reciprocal, f32, as generate_int8 (a zero amax gives unit scales). */
function scalesOf(amax: number): { toInt: number; toFp: number } {
  if (!(amax > 0)) return { toInt: 1, toFp: 1 };
  const toInt = Math.fround(INT8_MAX / amax);
  return { toInt, toFp: Math.fround(1 / toInt) };
}

/** The folded norm of a layer and the linears that read it. */
const NORM = /^transformer\.layers\.(\d+)\.(input_layernorm|post_layernorm)\.weight$/;
const normReaders = (prefix: string, norm: string) => norm === "input_layernorm" ? [`${prefix}attention.qkv`] : [`${prefix}mlp.fc`, `${prefix}mlp.gate`];

/** Where a linear's static input scale (127/max|x|, after smoothing) is stored (upstream's `last_prefix`). */
function inputScaleName(module: string): string {
  const m = /^(transformer\.layers\.\d+\.)(attention\.qkv|attention\.dense|mlp\.fc|mlp\.gate|mlp\.proj)$/.exec(module);
  if (!m) throw new TrtbError("QUANT_UNSUPPORTED", `${module}: not a decoder linear of the SmoothQuant plugin layout`);
  const [, p, k] = m;
  return k === "attention.qkv" ? `${p}input_layernorm.scale_to_int` : k === "attention.dense" ? `${p}attention.quantization_scaling_factor`
    : k === "mlp.proj" ? `${p}mlp.quantization_scaling_factor` : `${p}post_layernorm.scale_to_int`;
}

/** max |y| of a linear's output (scale_y), or QUANT_NEEDS_CALIB. */
function outAmaxOf(plan: CalibPlan | undefined, module: string, algo: string): number {
  const y = plan?.outAmax?.get(module);
  if (y === undefined)
    throw new TrtbError("QUANT_NEEDS_CALIB", `${algo} (static activations) needs each linear's output range (scale_y): the calibration statistics have none for ${module} (collect them with calibrationStats / --calib_dataset)`);
  return y;
}

function sqPluginScheme(algo: SqPluginAlgo): QuantScheme {
  const perChannel = algo.startsWith("W8A8_SQ_PER_CHANNEL");
  const perToken = algo.includes("PER_TOKEN");

  /** Which of the norm's readers are quantized (all or none; a split fc/gate is refused). */
  const foldsInto = (name: string, q: QuantConfig): { norm: string; readers: string[] } | null => {
    const m = NORM.exec(name);
    if (!m) return null;
    const prefix = `transformer.layers.${m[1]}.`;
    const readers = normReaders(prefix, m[2]!);
    const ex = readers.filter((r) => isExcluded(r, q.exclude_modules ?? []));
    if (ex.length === readers.length) return null;
    if (ex.length > 0)
      throw new TrtbError("QUANT_UNSUPPORTED", `${algo}: ${ex.join(", ")} excluded but ${readers.filter((r) => !ex.includes(r)).join(", ")} quantized: they share the smoothing folded into ${prefix}${m[2]}; exclude both or neither`);
    return { norm: `${prefix}${m[2]}`, readers };
  };

  return {
    algo,
    qformat: "int8_sq",
    summary: `legacy SmoothQuant plugin (${perChannel ? "per-channel" : "per-tensor"} int8 weights, ${perToken ? "per-token" : "static per-tensor"} int8 activations), calibrated`,
    runnerHides: [".per_channel_scale", ".act_scale"],

    configure(user: Partial<QuantConfig>, cfg: PretrainedConfig): QuantConfig {
      refuseMoe(cfg, "SmoothQuant");
      return QuantConfigSchema.parse({ ...user, quant_algo: algo, smoothquant_val: user.smoothquant_val ?? 0.5, exclude_modules: excludeList(user.exclude_modules) });
    },

    quantizes(l: LinearInfo, _cfg: PretrainedConfig, q: QuantConfig): boolean {
      return l.shape.length === 2 && !isExcluded(l.module, q.exclude_modules ?? []);
    },

    params(l: LinearInfo): ParamSpec[] {
      const [out, inF] = l.shape as [number, number];
      const specs: ParamSpec[] = [
        { name: `${l.module}.weight`, shape: [out, inF], dtype: "I8" },
        { name: `${l.module}.per_channel_scale`, shape: perChannel || l.kind === "qkv" ? [1, out] : [1, 1], dtype: "F32" },
      ];
      if (!perToken) specs.push({ name: `${l.module}.act_scale`, shape: [1, 1], dtype: "F32" });
      if (l.rowParallel) specs.push({ name: `${l.module}.smoother`, shape: [1, inF], dtype: "F32" });
      if (!perToken && l.rowParallel) specs.push({ name: inputScaleName(l.module), shape: [1], dtype: "F32" });
      return specs;
    },

    kernelParams(l: LinearInfo): QuantKernelParams {
      const { rows, cols } = matrixOf(l.shape);
      return { format: "int8", srcDtype: "F32", scaleDtype: "F32", rows, cols, groupSize: cols, divisor: INT8_MAX, minScale: 0, zeroScale: 1, clamp: null, qmin: -127, qmax: 127, rounding: "half_even", divideByStoredScale: false };
    },

    quantize(l, w, _q, _dtype, _be, ctx): LazyTensor[] {
      const g = globalModule(l.module, l.layer);
      const p = planOf(ctx.plan, g, algo);
      const [out, inF] = l.shape as [number, number];
      const pre = p.pre ? inputSlice(p.pre, l, ctx.mapping) : undefined;
      // static activations: sx = 127/max|x·pre| (scale_x_orig_quant), sy = 127/max|y|, yToFp = max|y|/127
      const st = perToken ? null : (() => {
        const y = outAmaxOf(ctx.plan, g, algo);
        return { sx: scalesOf(p.actAmax).toInt, sy: scalesOf(y).toInt, yToFp: y > 0 ? Math.fround(y / INT8_MAX) : 1 };
      })();
      // amax each stored row is scaled by
      const rowAmax = (ws: Float32Array): Float32Array => {
        const a = new Float32Array(out);
        if (l.kind === "qkv" && !perChannel) {
          // per tensor = one scale each for the full q, k and v (generate_int8 is_qkv)
          const cfg = ctx.cfg;
          if (!cfg) throw new TrtbError("QUANT_CONFIG", `${algo}: the qkv scales need the model config`);
          const d = headSize(cfg);
          const qW = cfg.num_attention_heads * d;
          const kvW = numKvHeads(cfg) * d;
          const seg = [0, 0, 0];
          for (let o = 0; o < p.wAmaxPerOut.length; o++) {
            const k = o < qW ? 0 : o < qW + kvW ? 1 : 2;
            seg[k] = Math.max(seg[k]!, p.wAmaxPerOut[o]!);
          }
          const tp = ctx.mapping.tpSize;
          const qL = qW / tp;
          const kvL = (out - qL) / 2;
          for (let o = 0; o < out; o++) a[o] = seg[o < qL ? 0 : o < qL + kvL ? 1 : 2]!;
        } else if (!perChannel) a.fill(p.wAmax);
        else if (l.rowParallel) a.set(p.wAmaxPerOut); // whole rows (the input is split, the output is not)
        else
          for (let o = 0; o < out; o++) {
            let m = 0;
            for (let i = 0; i < inF; i++) m = Math.max(m, Math.abs(ws[o * inF + i]!));
            a[o] = m;
          }
        return a;
      };
      let ws: Float32Array | null = null;
      let amax: Float32Array | null = null;
      const compute = () => {
        if (amax) return;
        ws = valuesF32(w);
        if (pre) for (let k = 0; k < ws.length; k++) ws[k] = Math.fround(ws[k]! / pre[k % inF]!);
        amax = rowAmax(ws);
      };
      const t: LazyTensor[] = [
        new ComputedBytes(`${l.module}.weight`, "I8", l.shape, () => {
          compute();
          const q = new Uint8Array(out * inF);
          for (let o = 0; o < out; o++) {
            const { toInt } = scalesOf(amax![o]!);
            for (let i = 0; i < inF; i++) q[o * inF + i] = quantInt(Math.fround(ws![o * inF + i]! * toInt), 1, -127, 127, "half_even") & 0xff;
          }
          ws = null;
          return q;
        }),
        f32Values(`${l.module}.per_channel_scale`, perChannel || l.kind === "qkv" ? [1, out] : [1, 1], () => {
          compute();
          // per token: the weight dequant scale; static: scale_y_accum_quant = sy / (sx · sw)
          const s = Float32Array.from(amax!, (a) => (perToken ? scalesOf(a).toFp : Math.fround(st!.sy / Math.fround(st!.sx * scalesOf(a).toInt))));
          return perChannel || l.kind === "qkv" ? s : s.subarray(0, 1).slice();
        }),
      ];
      if (st) t.push(f32Values(`${l.module}.act_scale`, [1, 1], () => Float32Array.of(st.yToFp)));
      if (l.rowParallel) t.push(f32Values(`${l.module}.smoother`, [1, inF], () => Float32Array.from({ length: inF }, (_, i) => (pre ? Math.fround(1 / pre[i]!) : 1))));
      if (st && l.rowParallel) t.push(f32Values(inputScaleName(l.module), [1], () => Float32Array.of(st.sx)));
      return t;
    },

    auxParams(spec: ParamSpec, q: QuantConfig): ParamSpec[] | undefined {
      const f = foldsInto(spec.name, q);
      if (!f) return undefined;
      return [spec, { name: `${f.norm}.scale_to_int`, shape: [1], dtype: "F32" }];
    },

    rewrite(name, w, q, dtype, ctx, globalLayer): LazyTensor[] | undefined {
      const f = foldsInto(name, q);
      if (!f) return undefined;
      const local = Number(NORM.exec(name)![1]);
      const p = planOf(ctx.plan, globalModule(f.readers[0]!, globalLayer(local)), algo);
      const pre = p.pre;
      const g = pre
        ? cast(f32Tensor(name, w.shape, () => {
          const v = valuesF32(w);
          for (let i = 0; i < v.length; i++) v[i] = Math.fround(v[i]! * pre[i]!);
          return v;
        }), dtype as DType)
        : w;
      return [g, f32Values(`${f.norm}.scale_to_int`, [1], () => Float32Array.of(perToken ? 1 : scalesOf(p.actAmax).toInt))];
    },

    effectiveWeight(l, get): LazyTensor {
      const w = get(`${l.module}.weight`);
      const s = get(`${l.module}.per_channel_scale`);
      const [out, inF] = w.shape as [number, number];
      const f32Of = (t: LazyTensor) => {
        const v = new Float32Array(t.numel);
        t.writeRange(new Uint8Array(v.buffer), "F32", 0, t.numel);
        return v;
      };
      return f32Tensor(w.name, w.shape, () => {
        const q = bytesOf(w);
        const sv = f32Of(s);
        if (!perToken) {
          // static: y = acc · act_scale · per_channel_scale with acc over x_q = x·s2i; the runner feeds x_q/s2i
          const as = f32Of(get(`${l.module}.act_scale`))[0]!;
          const s2i = f32Of(get(inputScaleName(l.module)))[0]!;
          for (let k = 0; k < sv.length; k++) sv[k] = Math.fround(Math.fround(as * sv[k]!) * s2i);
        }
        const v = new Float32Array(out * inF);
        for (let o = 0; o < out; o++) {
          const so = sv.length === 1 ? sv[0]! : sv[o]!;
          for (let i = 0; i < inF; i++) v[o * inF + i] = Math.fround(((q[o * inF + i]! << 24) >> 24) * so);
        }
        return v;
      });
    },
  };
}

export const SQ_PLUGIN_SCHEMES: readonly QuantScheme[] = SQ_PLUGIN_ALGOS.map(sqPluginScheme);
