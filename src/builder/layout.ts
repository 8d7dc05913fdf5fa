/**
 * Weight layout of an engine: the rank's checkpoint tensors rearranged for the CUDA kernels, as
 * lazy tensors (nothing is read until the engine file is written).
 *
 *   name                          from (TRT-LLM checkpoint)                         layout
 *   embedding                     transformer.vocab_embedding.weight                [rows, H] model dtype
 *   layers.{i}.input_norm         transformer.layers.{i}.input_layernorm.weight     [H] f32
 *   layers.{i}.qkv                attention.qkv.weight (fused as stored)            [qkv_rows, H]
 *   layers.{i}.qkv_bias           attention.qkv.bias                                [qkv_rows] f32
 *   layers.{i}.q_norm / k_norm    attention.q_layernorm / k_layernorm (Qwen3)       [D] f32
 *   layers.{i}.dense(_bias)       attention.dense.weight / .bias                    [H, nH·D], [H] f32
 *   layers.{i}.post_norm          post_layernorm.weight                             [H] f32
 *   layers.{i}.pre_ff_norm        pre_feedforward_layernorm (Gemma-2)               [H] f32
 *   layers.{i}.post_ff_norm       post_feedforward_layernorm (Gemma-2)              [H] f32
 *   layers.{i}.gate_up(_bias)     [mlp.gate; mlp.fc] (= [up; gate]), or Phi-3's     [2I, H] one GEMM
 *                                 fused mlp.fc as stored
 *   layers.{i}.down(_bias)        mlp.proj.weight / .bias                           [H, I]
 *   layers.{i}.router             mlp.router.weight (MoE)                           [E, H] f32
 *   layers.{i}.experts.gate_up    mlp.fc.weight (MoE, [w3; w1] = [up; gate])        [E, 2I, H]
 *   layers.{i}.experts.down       mlp.proj.weight (MoE)                             [E, H, I]
 *   ln_f                          transformer.ln_f.weight                           [H] f32
 *   lm_head                       lm_head.weight                                    [rows, H]
 *   rope.inv_freq                 computed (default, linear, llama3)                [rot/2] f32
 *
 * Matrices stay [out, in]: the GEMMs use the "TN" layout, so no transpose is needed. The [up; gate]
 * order lets one GEMM produce both halves, which the gated-activation kernel reads row by row.
 *
 * Weight-only engines (quant_algo W8A16 / W4A16; the checkpoint keeps fp weights): every decoder
 * linear the checkpoint's quant config quantizes (qkv, dense, gate_up, down, MoE experts) is
 * quantized here per output channel, exactly as the CPU runner replays it, and stored as
 * `<name>` I8 in the tiled layout of wo-pack.ts plus `<name>.scale` F32 [rows]. A fused tensor
 * ([gate; fc]) must be quantized or excluded as a whole.
 *
 * AWQ engines (quant_algo W4A16_AWQ; modelopt's layout, spec §3.3): the checkpoint's int4 values
 * are kept as they are (no requantization), repacked into the same tiled layout as `<name>`, with
 * `<name>.gscale` (model dtype [ceil(rows/16), in/group, 8, 2]: weights_scaling_factor in the
 * kernel's order). The prequant_scaling_factor (which the modules of a fused GEMM must share)
 * multiplies the GEMM's input, so it goes where that input is made: folded into the norm weight
 * before qkv (`input_norm`) and gate_up (`post_norm`, or Gemma-2's `pre_ff_norm`) as the f32
 * product, and stored as `<name>.pre` (F32 [in]) for dense (the runtime scales the attention
 * output) and down (the gated activation multiplies by it). Linears the checkpoint left
 * unquantized stay 16-bit.
 *
 * W4A8_AWQ engines run as FP8 engines (`model.fp8`): each linear's int4 values are expanded to the
 * e4m3 weights e4m3(q · f16(s / weights_scaling_factor_2)) (F8_E4M3 [out, in], what the CPU runner
 * replays), the weight scale is weights_scaling_factor_2, and the prequant scale goes where AWQ's does.
 *
 * Per-token engines (`model.rowwise`: FP8_PER_CHANNEL_PER_TOKEN, W8A8_SQ_*_PER_TOKEN_PLUGIN): each
 * quantized linear keeps the checkpoint's F8_E4M3 / I8 bytes, with `<name>.row_scale` F32 [out]
 * (per_channel_scale, a per-tensor value repeated per row) and SmoothQuant's smoother as
 * `<name>.sq_div` F32 [in] for dense / down (the norms before qkv and gate_up hold the smoothing
 * already, as stored).
 */
import { configQuant, type PretrainedConfig } from "../format/checkpoint-config.ts";
import type { DType } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import type { PretrainedModel } from "../models/common/model.ts";
import { schemeForAlgo } from "../quant/apply.ts";
import { cpuQuantBackend } from "../quant/backend.ts";
import { scalarOf } from "../quant/fp8.ts";
import { linearOfWeight } from "../quant/modules.ts";
import { longRopeOf, ropeInvFreq } from "../models/common/rope.ts";
import { tensorFromBytes } from "../tensor.ts";
import { cast, concat, type LazyTensor, lazy, mapF32, renamed } from "../tensor/lazy.ts";
import type { EngineModelDesc } from "../engine/plan.ts";
import type { EngineTensor } from "../engine/engine-file.ts";
import type { WoBits } from "../engine/wo-layout.ts";
import { AwqLinear, AwqScaleTensor, W4a8E4m3Tensor, WoLinear, WoPackedTensor, WoScaleTensor } from "./wo-pack.ts";
import { w4a8E4m3Weights } from "../quant/w4a8-awq.ts";
import { isSqPluginAlgo, sqPluginPerToken } from "../quant/int8-sq-plugin.ts";

export function engineTensors(model: PretrainedModel, desc: EngineModelDesc): EngineTensor[] {
  const w = model.weights;
  const cfg = model.config;
  const out: EngineTensor[] = [];
  const get = (name: string): LazyTensor => {
    const t = w.get(name);
    if (!t) throw new TrtbError("CKPT_MISSING_TENSOR", `rank ${model.mapping.rank}: checkpoint has no tensor ${name}`, { tensor: name });
    return t;
  };
  const opt = (name: string) => w.get(name);
  const modelDt = (t: LazyTensor): "F16" | "BF16" => {
    if (t.dtype !== "F16" && t.dtype !== "BF16")
      throw new TrtbError("BUILD_UNSUPPORTED",
        `${t.name} is ${t.dtype}; the CUDA backend takes F16/BF16 weights (weight-only W8A16/W4A16 checkpoints keep them: trtllm quantize --qformat int8_wo / int4_wo; pre-quantized and other quantized layouts are not supported)`,
        { tensor: t.name });
    return t.dtype;
  };
  const add = (name: string, t: LazyTensor, dtype?: "F32") => {
    const dt = dtype ?? modelDt(t);
    out.push({ name, dtype: dt, shape: [...t.shape], source: renamed(cast(t, dt), name) });
  };
  const f32 = (name: string, t: LazyTensor) => add(name, t, "F32");
  const awqGroup = desc.weight_only?.group_size ?? 0;
  const wo = desc.weight_only && !awqGroup ? weightOnlyContext(model, desc.weight_only.bits) : null;
  const awqQuantizes = awqGroup ? quantizedByConfig(model) : null;
  const qcfg = configQuant(cfg);
  const w4a8 = qcfg.quant_algo === "W4A8_AWQ";
  /** AWQ-smoothed formats: the prequant scale is applied where a GEMM's input is made (see the file comment). */
  const smoothed = awqGroup > 0 || w4a8;
  const md = cfg.dtype === "float16" ? "F16" : "BF16";
  /** `<name>.pre` for dense / down (qkv and gate_up get it folded into their norm). */
  const preVector = (name: string, modules: string[]) => {
    if (/\.(qkv|gate_up)$/.test(name)) return;
    const pre = sharedVector(model, modules.map((m) => `${m}.prequant_scaling_factor`), name);
    out.push({ name: `${name}.pre`, dtype: "F32", shape: [pre.numel], source: renamed(cast(pre, "F32"), `${name}.pre`) });
  };
  const sqStatic = isSqPluginAlgo(qcfg.quant_algo) && !sqPluginPerToken(qcfg.quant_algo);
  /** A decoder linear: packed + scales when the quant config quantizes its modules, else as is. */
  const linear = (name: string, t: LazyTensor, modules: string[]) => {
    if (desc.rowwise && scaledModules(model, name, modules, "per_channel_scale")) {
      // per-token activations (FP8 rowwise, SmoothQuant per-token plugins): the checkpoint's bytes,
      // one f32 weight scale per output row, SmoothQuant's smoother for dense / down
      const dt = desc.rowwise.algo === "FP8" ? "F8_E4M3" : "I8";
      if (t.dtype !== dt) throw new TrtbError("BUILD_UNSUPPORTED", `${modules[0]}.weight is ${t.dtype}; ${configQuant(cfg).quant_algo} engines take ${dt} weights`, { tensor: t.name });
      out.push({ name, dtype: dt, shape: [...t.shape], source: renamed(t, name) });
      const { scale, div } = rowwiseScales(model, modules);
      out.push({ name: `${name}.row_scale`, dtype: "F32", shape: [scale.length], source: f32Lazy(`${name}.row_scale`, scale) });
      if (div) out.push({ name: `${name}.sq_div`, dtype: "F32", shape: [div.length], source: f32Lazy(`${name}.sq_div`, div) });
      return;
    }
    if (desc.sq && sqStatic && scaledModules(model, name, modules, "per_channel_scale")) {
      // legacy SmoothQuant, static activations (W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN / _PER_TENSOR_PLUGIN):
      // the same int8 GEMM with a = 1, x · (sx / smoother) quantized, per row per_channel_scale · act_scale
      if (t.dtype !== "I8") throw new TrtbError("BUILD_UNSUPPORTED", `${modules[0]}.weight is ${t.dtype}; SmoothQuant engines take I8 weights`, { tensor: t.name });
      out.push({ name, dtype: "I8", shape: [...t.shape], source: renamed(t, name) });
      const { scale, pre } = sqPluginStatic(model, name, modules);
      out.push(
        { name: `${name}.sq_scale`, dtype: "F32", shape: [scale.length], source: f32Lazy(`${name}.sq_scale`, scale) },
        { name: `${name}.sq_pre`, dtype: "F32", shape: [pre.length], source: f32Lazy(`${name}.sq_pre`, pre) },
      );
      return;
    }
    if (desc.sq && scaledModules(model, name, modules)) {
      if (t.dtype !== "I8") throw new TrtbError("BUILD_UNSUPPORTED", `${modules[0]}.weight is ${t.dtype}; SmoothQuant engines take I8 weights (trtllm quantize --qformat int8_sq)`, { tensor: t.name });
      out.push({ name, dtype: "I8", shape: [...t.shape], source: renamed(t, name) });
      const ws = modules.map((m) => get(`${m}.weights_scaling_factor`));
      const sc = ws.length === 1 ? ws[0]! : concat(ws, 0, `${name}.sq_scale`);
      out.push({ name: `${name}.sq_scale`, dtype: "F32", shape: [...sc.shape], source: renamed(cast(sc, "F32"), `${name}.sq_scale`) });
      const pre = opt(`${modules[0]}.prequant_scaling_factor`);
      if (pre) out.push({ name: `${name}.sq_pre`, dtype: "F32", shape: [...pre.shape], source: renamed(cast(pre, "F32"), `${name}.sq_pre`) });
      return;
    }
    if (desc.fp8 && w4a8 && scaledModules(model, name, modules)) {
      // W4A8_AWQ: the int4 weights expanded to the e4m3 values the CPU runner replays; an FP8 GEMM
      const parts = modules.map((m) => {
        const wq = get(`${m}.weight`);
        const wsf2 = scalarOf(get(`${m}.weights_scaling_factor_2`));
        return { rows: wq.shape[0]! * 2, make: () => w4a8E4m3Weights(wq, get(`${m}.weights_scaling_factor`), wsf2, qcfg.group_size) };
      });
      const rows = parts.reduce((a, p) => a + p.rows, 0);
      out.push({ name, dtype: "F8_E4M3", shape: [rows, t.shape[1]!], source: new W4a8E4m3Tensor(name, parts.map((p) => p.make), rows, t.shape[1]!) });
      preVector(name, modules);
      return;
    }
    if (desc.fp8 && scaledModules(model, name, modules)) {
      if (t.dtype !== "F8_E4M3")
        throw new TrtbError("BUILD_UNSUPPORTED", `${modules[0]}.weight is ${t.dtype}; FP8 engines take F8_E4M3 weights (trtllm quantize --qformat fp8)`, { tensor: t.name });
      out.push({ name, dtype: "F8_E4M3", shape: [...t.shape], source: renamed(t, name) });
      return;
    }
    if (awqGroup && scaledModules(model, name, modules)) {
      const sc = modules.map((m) => get(`${m}.weights_scaling_factor`));
      const al = new AwqLinear(t, sc.length === 1 ? sc[0]! : concat(sc, 0, `${name}.gscale`), awqGroup);
      out.push(
        { name, dtype: "I8", shape: [], source: new WoPackedTensor(name, al) },
        { name: `${name}.gscale`, dtype: md, shape: [], source: new AwqScaleTensor(`${name}.gscale`, al, md) },
      );
      for (const e of out.slice(-2)) e.shape = [...e.source.shape];
      preVector(name, modules);
      return;
    }
    if (awqQuantizes?.(t, modules))
      throw new TrtbError("CKPT_MISSING_TENSOR",
        `${modules[0]}.weights_scaling_factor: the checkpoint's quant config (W4A16_AWQ) quantizes ${modules.join(" / ")}, but the checkpoint holds ${t.dtype} weights and no scales (write it with trtllm quantize --qformat int4_awq / int4_awq_rtn)`,
        { tensor: `${modules[0]}.weights_scaling_factor` });
    const wl = wo?.linear(name, t, modules, modelDt(t));
    if (!wl) return add(name, t);
    out.push({ name, dtype: "I8", shape: [], source: new WoPackedTensor(name, wl) }, { name: `${name}.scale`, dtype: "F32", shape: [], source: new WoScaleTensor(`${name}.scale`, wl) });
    for (const e of out.slice(-2)) e.shape = [...e.source.shape];
  };

  /** AWQ: a norm weight times the prequant scale of the GEMM it feeds (f32 product), else as is. */
  const norm = (name: string, t: LazyTensor, gemm: string, modules: string[]) => {
    if (!(smoothed && scaledModules(model, gemm, modules))) return f32(name, t);
    const pre = sharedVector(model, modules.map((m) => `${m}.prequant_scaling_factor`), gemm);
    if (pre.numel !== t.numel) throw new TrtbError("CKPT_SHAPE_MISMATCH", `${pre.name} has ${pre.numel} elements, ${t.name} ${t.numel}`, { tensor: pre.name });
    const p = new Float32Array(pre.numel);
    out.push({
      name, dtype: "F32", shape: [...t.shape],
      source: mapF32(cast(t, "F32"), (x) => {
        pre.writeRange(new Uint8Array(p.buffer), "F32", 0, p.length);
        return x.map((v, j) => Math.fround(v * p[j]!));
      }, "F32", name),
    });
  };

  if (desc.first_pp_rank) add("embedding", get("transformer.vocab_embedding.weight"));
  desc.layers.forEach((_, i) => {
    const P = `transformer.layers.${i}.`;
    const L = `layers.${i}.`;
    const gated = model.weights.has(`${P}mlp.gate.weight`);
    const mlpIn = desc.moe ? null : gated ? [`${P}mlp.gate`, `${P}mlp.fc`] : [`${P}mlp.fc`];
    norm(`${L}input_norm`, get(`${P}input_layernorm.weight`), `${L}qkv`, [`${P}attention.qkv`]);
    linear(`${L}qkv`, get(`${P}attention.qkv.weight`), [`${P}attention.qkv`]);
    const qb = opt(`${P}attention.qkv.bias`);
    if (qb) f32(`${L}qkv_bias`, qb);
    if (desc.qk_norm) {
      f32(`${L}q_norm`, get(`${P}attention.q_layernorm.weight`));
      f32(`${L}k_norm`, get(`${P}attention.k_layernorm.weight`));
    }
    linear(`${L}dense`, get(`${P}attention.dense.weight`), [`${P}attention.dense`]);
    const db = opt(`${P}attention.dense.bias`);
    if (db) f32(`${L}dense_bias`, db);
    // the norm that makes gate_up's input: post_norm, or Gemma-2's pre_ff_norm (post_norm then normalises the attention output)
    if (desc.sandwich_norms) {
      f32(`${L}post_norm`, get(`${P}post_layernorm.weight`));
      norm(`${L}pre_ff_norm`, get(`${P}pre_feedforward_layernorm.weight`), `${L}gate_up`, mlpIn ?? []);
      f32(`${L}post_ff_norm`, get(`${P}post_feedforward_layernorm.weight`));
    } else norm(`${L}post_norm`, get(`${P}post_layernorm.weight`), `${L}gate_up`, mlpIn ?? []);
    if (desc.moe) {
      f32(`${L}router`, get(`${P}mlp.router.weight`));
      linear(`${L}experts.gate_up`, get(`${P}mlp.fc.weight`), [`${P}mlp.fc`]);
      linear(`${L}experts.down`, get(`${P}mlp.proj.weight`), [`${P}mlp.proj`]);
      return;
    }
    const fc = get(`${P}mlp.fc.weight`);
    const gate = opt(`${P}mlp.gate.weight`);
    if (gate) {
      // GatedMLP: fc = activated (HF gate_proj), gate = linear (HF up_proj) → [up; gate]
      linear(`${L}gate_up`, concat([gate, fc], 0, `${L}gate_up`), [`${P}mlp.gate`, `${P}mlp.fc`]);
      const fb = opt(`${P}mlp.fc.bias`);
      const gb = opt(`${P}mlp.gate.bias`);
      if (fb && gb) f32(`${L}gate_up_bias`, concat([gb, fb], 0, `${L}gate_up_bias`));
    } else {
      linear(`${L}gate_up`, fc, [`${P}mlp.fc`]); // Phi-3: already [up; gate]
      const fb = opt(`${P}mlp.fc.bias`);
      if (fb) f32(`${L}gate_up_bias`, fb);
    }
    linear(`${L}down`, get(`${P}mlp.proj.weight`), [`${P}mlp.proj`]);
    const pb = opt(`${P}mlp.proj.bias`);
    if (pb) f32(`${L}down_bias`, pb);
  });
  if (desc.last_pp_rank) {
    f32("ln_f", get("transformer.ln_f.weight"));
    add("lm_head", get("lm_head.weight"));
  }
  const inv = ropeFrequencies(cfg, desc);
  const shape = desc.long_rope ? [2, inv.length / 2] : [inv.length];
  out.push({
    name: "rope.inv_freq",
    dtype: "F32",
    shape,
    source: lazy(tensorFromBytes("rope.inv_freq", "F32" as DType, shape, new Uint8Array(inv.buffer, inv.byteOffset, inv.byteLength))),
  });
  return out;
}

/** inv_freq [rot / 2], or LongRoPE's short and long tables [2, rot / 2]. */
function ropeFrequencies(cfg: PretrainedConfig, desc: EngineModelDesc): Float32Array {
  const lr = longRopeOf(cfg, desc.rotary_dim);
  if (lr) {
    const both = new Float32Array(2 * lr.shortInvFreq.length);
    both.set(lr.shortInvFreq);
    both.set(lr.longInvFreq, lr.shortInvFreq.length);
    return both;
  }
  try {
    return ropeInvFreq(desc.rotary_dim, (cfg.rotary_base as number | undefined) ?? 10000, cfg.rotary_scaling as Record<string, unknown> | null);
  } catch (e) {
    throw new TrtbError("BUILD_UNSUPPORTED", (e as Error).message, { cause: e });
  }
}

/** The engine linears and the checkpoint modules they come from ([up; gate] order for gate_up). */
function decoderLinears(model: PretrainedModel, desc: EngineModelDesc): { name: string; modules: string[] }[] {
  const out: { name: string; modules: string[] }[] = [];
  desc.layers.forEach((_, i) => {
    const P = `transformer.layers.${i}.`;
    const L = `layers.${i}.`;
    out.push({ name: `${L}qkv`, modules: [`${P}attention.qkv`] }, { name: `${L}dense`, modules: [`${P}attention.dense`] });
    const gated = model.weights.has(`${P}mlp.gate.weight`);
    out.push({ name: `${L}gate_up`, modules: gated ? [`${P}mlp.gate`, `${P}mlp.fc`] : [`${P}mlp.fc`] }, { name: `${L}down`, modules: [`${P}mlp.proj`] });
  });
  return out;
}

/**
 * Is engine linear `name` (fused from `modules`) quantized with scales in the checkpoint (FP8,
 * SmoothQuant)? All of its modules carry `weights_scaling_factor` or none does (a fused GEMM
 * cannot mix).
 */
function scaledModules(model: PretrainedModel, name: string, modules: string[], scaleSuffix = "weights_scaling_factor"): boolean {
  const yes = modules.map((m) => model.weights.has(`${m}.${scaleSuffix}`));
  if (yes.every((y) => !y)) return false;
  if (!yes.every((y) => y))
    throw new TrtbError("BUILD_UNSUPPORTED", `${modules.join(" and ")} are fused into one engine GEMM (${name}); exclude both from quantization or neither (exclude_modules)`);
  return true;
}

/**
 * The FP8 scales of every FP8 engine linear (plan `model.fp8.linears`): the activation scale
 * (shared by a fused GEMM's modules: they read the same input, so they must agree) and the weight
 * scale of each module.
 */
export function fp8Linears(model: PretrainedModel, desc: EngineModelDesc): Record<string, { a: number; w: number[] }> {
  const read = (name: string): number => {
    const t = model.weights.get(name);
    if (!t) throw new TrtbError("CKPT_MISSING_TENSOR", `rank ${model.mapping.rank}: checkpoint has no tensor ${name}`, { tensor: name });
    const v = scalarOf(t);
    if (!(v > 0 && Number.isFinite(v))) throw new TrtbError("BUILD_UNSUPPORTED", `${name} is ${v}; FP8 scales must be positive and finite`, { tensor: name });
    return v;
  };
  const out: Record<string, { a: number; w: number[] }> = {};
  for (const { name, modules } of decoderLinears(model, desc)) {
    if (!scaledModules(model, name, modules)) continue;
    const as = modules.map((m) => read(`${m}.activation_scaling_factor`));
    if (as.some((a) => a !== as[0]))
      throw new TrtbError("BUILD_UNSUPPORTED", `${modules.join(" and ")} read the same input but have different activation_scaling_factor (${as.join(", ")}); one FP8 GEMM needs one`);
    // W4A8_AWQ: weights_scaling_factor is per group (folded into the e4m3 weights); the GEMM's weight scale is weights_scaling_factor_2
    const ws = configQuant(model.config).quant_algo === "W4A8_AWQ" ? "weights_scaling_factor_2" : "weights_scaling_factor";
    out[name] = { a: as[0]!, w: modules.map((m) => read(`${m}.${ws}`)) };
  }
  return out;
}

/**
 * The SmoothQuant linears (plan `model.sq.linears`): the activation scale, which a fused GEMM's
 * modules must share, as they must share the smoothing factor (modelopt smooths fused qkv and
 * fc / gate together).
 */
export function sqLinears(model: PretrainedModel, desc: EngineModelDesc): Record<string, { a: number }> {
  const out: Record<string, { a: number }> = {};
  const qa = configQuant(model.config).quant_algo;
  if (isSqPluginAlgo(qa)) {
    // static plugin variants: the activation scale is in each linear's sq_pre (sx / smoother), a = 1
    for (const { name, modules } of decoderLinears(model, desc)) if (scaledModules(model, name, modules, "per_channel_scale")) out[name] = { a: 1 };
    return out;
  }
  const vec = (name: string): Float32Array | null => {
    const t = model.weights.get(name);
    if (!t) return null;
    const v = new Float32Array(t.shape.reduce((a, b) => a * b, 1));
    t.writeRange(new Uint8Array(v.buffer), "F32", 0, v.length);
    return v;
  };
  for (const { name, modules } of decoderLinears(model, desc)) {
    if (!scaledModules(model, name, modules)) continue;
    const as = modules.map((m) => vec(`${m}.activation_scaling_factor`));
    if (as.some((a) => !a || !(a[0]! > 0 && Number.isFinite(a[0]!))))
      throw new TrtbError("BUILD_UNSUPPORTED", `${modules.join(" / ")}: activation_scaling_factor missing or not a positive finite number`);
    if (as.some((a) => a![0] !== as[0]![0]))
      throw new TrtbError("BUILD_UNSUPPORTED", `${modules.join(" and ")} read the same input but have different activation_scaling_factor; one int8 GEMM needs one`);
    const pres = modules.map((m) => vec(`${m}.prequant_scaling_factor`));
    if (pres.some((p) => (p === null) !== (pres[0] === null) || (p && pres[0] && p.some((v, i) => v !== pres[0]![i]))))
      throw new TrtbError("BUILD_UNSUPPORTED", `${modules.join(" and ")} are fused into one engine GEMM (${name}) but have different prequant_scaling_factor`);
    out[name] = { a: as[0]![0]! };
  }
  return out;
}

/** The engine linears with per-token activations (plan `model.rowwise.linears`): those whose modules carry per_channel_scale. */
export function rowwiseLinears(model: PretrainedModel, desc: EngineModelDesc): string[] {
  return decoderLinears(model, desc).filter(({ name, modules }) => scaledModules(model, name, modules, "per_channel_scale")).map((l) => l.name);
}

/** A checkpoint tensor's values as f32 (CKPT_MISSING_TENSOR when absent). */
function f32Values(model: PretrainedModel, n: string): Float32Array {
  const t = model.weights.get(n);
  if (!t) throw new TrtbError("CKPT_MISSING_TENSOR", `rank ${model.mapping.rank}: checkpoint has no tensor ${n}`, { tensor: n });
  const v = new Float32Array(t.numel);
  t.writeRange(new Uint8Array(v.buffer), "F32", 0, v.length);
  return v;
}

/**
 * Per-token engines: each output row's weight scale (the modules' per_channel_scale, one value per
 * row or — SmoothQuant per tensor — one repeated; all positive and finite) and, when the checkpoint
 * has one (SmoothQuant dense / proj), the smoother the input is divided by.
 */
function rowwiseScales(model: PretrainedModel, modules: string[]): { scale: Float32Array; div: Float32Array | null } {
  const rows: number[] = [];
  for (const m of modules) {
    const n = `${m}.per_channel_scale`;
    const outF = model.weights.get(`${m}.weight`)!.shape[0]!;
    const pcs = f32Values(model, n);
    if (pcs.length !== 1 && pcs.length !== outF) throw new TrtbError("CKPT_SHAPE_MISMATCH", `${n} has ${pcs.length} values for ${outF} rows`, { tensor: n });
    const bad = pcs.findIndex((v) => !(v > 0 && Number.isFinite(v)));
    if (bad >= 0) throw new TrtbError("CKPT_BAD_VALUE", `${n}[${bad}] is ${pcs[bad]}; weight scales must be positive and finite`, { tensor: n });
    for (let r = 0; r < outF; r++) rows.push(pcs[pcs.length === 1 ? 0 : r]!);
  }
  const sm = `${modules[0]}.smoother`;
  if (!model.weights.has(sm)) return { scale: Float32Array.from(rows), div: null };
  const K = model.weights.get(`${modules[0]}.weight`)!.shape[1]!;
  const div = f32Values(model, sm);
  if (div.length !== K) throw new TrtbError("CKPT_SHAPE_MISMATCH", `${sm} has ${div.length} values for ${K} inputs`, { tensor: sm });
  return { scale: Float32Array.from(rows), div };
}

/** A small f32 vector as an engine tensor. */
const f32Lazy = (name: string, v: Float32Array): LazyTensor => lazy(tensorFromBytes(name, "F32" as DType, [v.length], new Uint8Array(v.buffer, v.byteOffset, v.byteLength)));

/**
 * The legacy converter's static SmoothQuant (spec §3.6, quant/int8-sq-plugin.ts) as our int8 GEMM:
 * the input is quantized clamp(RNE(x · sx / smoother)) — sx the static input scale (the norm's
 * scale_to_int before qkv and fc / gate, quantization_scaling_factor before dense and proj), smoother
 * only for dense and proj, whose input is not a norm's — and the int32 sums are scaled per row by
 * per_channel_scale · act_scale (= 1 / (sx · sw), as the runner's effective weight).
 */
function sqPluginStatic(model: PretrainedModel, name: string, modules: string[]): { scale: Float32Array; pre: Float32Array } {
  const vals = (n: string) => f32Values(model, n);
  const P = modules[0]!.replace(/(layers\.\d+\.).*$/, "$1");
  const sxName = /\.qkv$/.test(name) ? `${P}input_layernorm.scale_to_int` : /\.gate_up$/.test(name) ? `${P}post_layernorm.scale_to_int`
    : /\.dense$/.test(name) ? `${P}attention.quantization_scaling_factor` : `${P}mlp.quantization_scaling_factor`;
  const sx = vals(sxName)[0]!;
  if (!(sx > 0 && Number.isFinite(sx))) throw new TrtbError("BUILD_UNSUPPORTED", `${sxName} is ${sx}; a static int8 scale must be positive and finite`, { tensor: sxName });
  const rows: number[] = [];
  for (const m of modules) {
    const outF = model.weights.get(`${m}.weight`)!.shape[0]!;
    const pcs = vals(`${m}.per_channel_scale`);
    const as = vals(`${m}.act_scale`)[0]!;
    if (pcs.length !== 1 && pcs.length !== outF) throw new TrtbError("CKPT_SHAPE_MISMATCH", `${m}.per_channel_scale has ${pcs.length} values for ${outF} rows`, { tensor: `${m}.per_channel_scale` });
    for (let r = 0; r < outF; r++) rows.push(Math.fround(pcs[pcs.length === 1 ? 0 : r]! * as));
  }
  const K = model.weights.get(`${modules[0]}.weight`)!.shape[1]!;
  const sm = model.weights.has(`${modules[0]}.smoother`) ? vals(`${modules[0]}.smoother`) : null;
  if (sm && sm.length !== K) throw new TrtbError("CKPT_SHAPE_MISMATCH", `${modules[0]}.smoother has ${sm.length} values for ${K} inputs`, { tensor: `${modules[0]}.smoother` });
  const pre = Float32Array.from({ length: K }, (_, k) => (sm ? Math.fround(sx / sm[k]!) : sx));
  return { scale: Float32Array.from(rows), pre };
}

/**
 * The one vector the modules of a fused GEMM share (AWQ's prequant_scaling_factor: modelopt smooths
 * q/k/v and fc/gate together), as a lazy tensor of the first; BUILD_UNSUPPORTED when missing or different.
 */
function sharedVector(model: PretrainedModel, names: string[], gemm: string): LazyTensor {
  const ts = names.map((n) => model.weights.get(n));
  if (ts.some((t) => !t || t.shape.length !== 1))
    throw new TrtbError("BUILD_UNSUPPORTED", `${names.find((_, i) => !ts[i] || ts[i]!.shape.length !== 1)} is missing or not a vector; AWQ engines need the prequant_scaling_factor of every quantized linear`);
  if (ts.length > 1) {
    const vals = ts.map((t) => {
      const v = new Float32Array(t!.numel);
      t!.writeRange(new Uint8Array(v.buffer), "F32", 0, v.length);
      return v;
    });
    if (vals.some((v) => v.length !== vals[0]!.length || v.some((x, i) => x !== vals[0]![i])))
      throw new TrtbError("BUILD_UNSUPPORTED", `${names.join(" and ")} are fused into one engine GEMM (${gemm}) but have different prequant_scaling_factor`);
  }
  return ts[0]!;
}

/** Does the checkpoint's quant config (its scheme and exclude_modules) quantize any of `modules`? */
function quantizedByConfig(model: PretrainedModel): (t: LazyTensor, modules: string[]) => boolean {
  const cfg = model.config;
  const q = configQuant(cfg);
  const scheme = schemeForAlgo(q.quant_algo)!;
  const layers = model.mapping.ppLayers(cfg.num_hidden_layers);
  return (t, modules) =>
    modules.some((m) => {
      const l = linearOfWeight(`${m}.weight`, t.shape, (i) => layers[i] ?? i);
      return l !== null && scheme.quantizes(l, cfg, q);
    });
}

/** What decides which linears a weight-only engine quantizes, and how (the checkpoint's scheme). */
function weightOnlyContext(model: PretrainedModel, bits: WoBits) {
  const cfg = model.config;
  const q = configQuant(cfg);
  const scheme = schemeForAlgo(q.quant_algo)!;
  const layers = model.mapping.ppLayers(cfg.num_hidden_layers);
  const backend = cpuQuantBackend();
  return {
    linear(name: string, t: LazyTensor, modules: string[], dt: "F16" | "BF16"): WoLinear | null {
      const infos = modules.map((m) => linearOfWeight(`${m}.weight`, t.shape, (i) => layers[i] ?? i));
      const yes = infos.map((l) => l !== null && scheme.quantizes(l, cfg, q));
      if (yes.every((y) => !y)) return null;
      if (!yes.every((y) => y))
        throw new TrtbError("BUILD_UNSUPPORTED", `${modules.join(" and ")} are fused into one engine GEMM (${name}); exclude both from quantization or neither (exclude_modules)`);
      const l = infos[0]!;
      const rows = t.shape.slice(0, -1).reduce((a, b) => a * b, 1);
      const cols = t.shape[t.shape.length - 1]!;
      if (cols % 8 !== 0) throw new TrtbError("BUILD_UNSUPPORTED", `${name}: weight-only GEMMs need an input size that is a multiple of 8, got ${cols}`);
      if (t.shape.length === 3 && t.shape[1]! % 16 !== 0)
        throw new TrtbError("BUILD_UNSUPPORTED", `${name}: weight-only MoE experts need a multiple of 16 rows per expert, got ${t.shape[1]}`);
      const p = scheme.kernelParams({ ...l, shape: [rows, cols] }, dt, q);
      return new WoLinear(t, p, bits, backend);
    },
  };
}
