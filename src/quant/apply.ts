/**
 * Where quantization meets the rest of the toolkit: the scheme registry, the checkpoint config, the
 * parameter list of a rank (`decoderParams` → `quantizeParamSpecs`), the conversion of a rank
 * (`convertRank` → `quantizeRankWeights`) and the runner's view of a quantized rank file
 * (`dequantizedSource`).
 */
import { configQuant, type PretrainedConfig, type QuantAlgo, type QuantConfig, QuantConfigSchema, quantConfigToJSON } from "../format/checkpoint-config.ts";
import { modelDTypeToST } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import type { Mapping } from "../mapping.ts";
import type { ParamSpec, TensorSource, TensorView } from "../tensor.ts";
import { type LazyTensor, lazy } from "../tensor/lazy.ts";
import { cpuQuantBackend, type QuantBackend } from "./backend.ts";
import { type CalibPlan, kvScale } from "./calib-plan.ts";
import { f32Values } from "./computed.ts";
import { fp8PerTensor } from "./fp8.ts";
import { fp8Rowwise } from "./fp8-rowwise.ts";
import { int4Awq } from "./int4-awq.ts";
import { int8SmoothQuant } from "./int8-sq.ts";
import { SQ_PLUGIN_SCHEMES } from "./int8-sq-plugin.ts";
import { w4a8Awq } from "./w4a8-awq.ts";
import { int4WeightOnly } from "./int4-wo.ts";
import { int8WeightOnly } from "./int8-wo.ts";
import type { FloatDType } from "./kernel.ts";
import { type LinearInfo, linearOfWeight } from "./modules.ts";
import { QFORMAT_ALGO, type QFormatName, QFORMATS, type QuantScheme } from "./scheme.ts";

export const SCHEMES: readonly QuantScheme[] = [int8WeightOnly, int4WeightOnly, int4Awq, fp8Rowwise, fp8PerTensor, int8SmoothQuant, w4a8Awq, ...SQ_PLUGIN_SCHEMES];

/** The scheme writing `algo`, null for no quantization; throws for algorithms we do not produce. */
export function schemeForAlgo(algo: QuantAlgo | null | undefined): QuantScheme | null {
  if (!algo) return null;
  const s = SCHEMES.find((x) => x.algo === algo);
  if (!s)
    throw new TrtbError("QUANT_UNSUPPORTED",
      `quant_algo ${algo} is not supported (supported: ${SCHEMES.map((x) => x.algo).join(", ")}; the others need calibration data)`);
  return s;
}

export function schemeForQformat(name: string): QuantScheme {
  const algo = (QFORMAT_ALGO as Record<string, QuantAlgo | undefined>)[name];
  const s = algo ? SCHEMES.find((x) => x.algo === algo) : undefined;
  if (!s) throw new TrtbError("QUANT_UNSUPPORTED", `qformat ${JSON.stringify(name)} is not supported; choose one of ${QFORMATS.join(", ")}`);
  return s;
}

export type { QFormatName };

/** Complete `user` for `cfg` with its scheme and store it as cfg.quantization. Returns the config. */
export function applyQuantConfig(cfg: PretrainedConfig, user: Partial<QuantConfig>): QuantConfig {
  const scheme = schemeForAlgo(user.quant_algo);
  if (!scheme && !user.kv_cache_quant_algo) return configQuant(cfg);
  const q = scheme ? scheme.configure(user, cfg) : QuantConfigSchema.parse({ ...user, quant_algo: null });
  cfg.quantization = quantConfigToJSON(q);
  return q;
}

interface Active {
  scheme: QuantScheme;
  q: QuantConfig;
  dtype: FloatDType;
  globalLayer: (local: number) => number;
}

function active(cfg: PretrainedConfig, m: Mapping): Active | null {
  const q = configQuant(cfg);
  const scheme = schemeForAlgo(q.quant_algo);
  if (!scheme) return null;
  const layers = m.ppLayers(cfg.num_hidden_layers);
  return { scheme, q, dtype: modelDTypeToST(cfg.dtype), globalLayer: (i) => layers[i] ?? i };
}

/** `transformer.layers.{i}.attention.kv_cache_scaling_factor` (spec §3.10), F32 [1], one per layer with KV-cache quantization. */
const KV_SCALE = /^transformer\.layers\.(\d+)\.attention\.dense\.weight$/;
const kvScaleName = (local: number) => `transformer.layers.${local}.attention.kv_cache_scaling_factor`;

/** The linear a weight belongs to when the config's scheme quantizes it. */
function quantizedLinear(a: Active, cfg: PretrainedConfig, name: string, shape: readonly number[]): LinearInfo | null {
  const l = linearOfWeight(name, shape, a.globalLayer);
  return l && a.scheme.quantizes(l, cfg, a.q) ? l : null;
}

/** A rank's declared parameters with the quantized linears replaced by the scheme's tensors. */
export function quantizeParamSpecs(specs: ParamSpec[], cfg: PretrainedConfig, m: Mapping): ParamSpec[] {
  const a = active(cfg, m);
  const kv = configQuant(cfg).kv_cache_quant_algo;
  if (!a && !kv) return specs;
  return specs.flatMap((s) => {
    const l = a ? quantizedLinear(a, cfg, s.name, s.shape) : null;
    const out = l ? a!.scheme.params(l, a!.dtype, a!.q) : (a?.scheme.auxParams?.(s, a.q) ?? [s]);
    const k = kv ? KV_SCALE.exec(s.name) : null;
    if (k) out.unshift({ name: kvScaleName(Number(k[1])), shape: [1], dtype: "F32" });
    return out;
  });
}

/** A rank's converted (fp) weights with the quantized linears replaced, order kept. */
export function quantizeRankWeights(weights: Map<string, LazyTensor>, cfg: PretrainedConfig, m: Mapping, backend?: QuantBackend, plan?: CalibPlan): Map<string, LazyTensor> {
  const a = active(cfg, m);
  const kv = configQuant(cfg).kv_cache_quant_algo;
  if (!a && !kv) return weights;
  if (kv && !plan) throw new TrtbError("QUANT_NEEDS_CALIB", `kv_cache_quant_algo ${kv} needs calibration statistics (the k/v projection ranges): quantize with a calibration dataset (--calib_dataset)`);
  const be = backend ?? cpuQuantBackend();
  const layers = m.ppLayers(cfg.num_hidden_layers);
  const out = new Map<string, LazyTensor>();
  for (const [name, w] of weights) {
    const k = kv ? KV_SCALE.exec(name) : null;
    if (k) {
      const local = Number(k[1]);
      const st = plan!.kv[layers[local] ?? local];
      if (!st) throw new TrtbError("QUANT_NEEDS_CALIB", `the calibration has no k/v statistics for layer ${layers[local]}`);
      const v = kvScale(st, plan!.kvRule, kv!);
      out.set(kvScaleName(local), f32Values(kvScaleName(local), [1], () => Float32Array.of(v)));
    }
    const l = a ? quantizedLinear(a, cfg, name, w.shape) : null;
    if (!l) {
      const r = a?.scheme.rewrite?.(name, w, a.q, a.dtype, { mapping: m, plan, cfg }, a.globalLayer);
      if (r) for (const t of r) out.set(t.name, t);
      else out.set(name, w);
      continue;
    }
    if (w.dtype !== a!.dtype)
      throw new TrtbError("QUANT_DTYPE", `${name}: expected the model dtype ${a!.dtype} before quantization, got ${w.dtype}`, { tensor: name });
    for (const t of a!.scheme.quantize(l, w, a!.q, a!.dtype, be, { mapping: m, plan, cfg })) out.set(t.name, t);
  }
  return out;
}

const AUX_SUFFIXES = [".weights_scaling_factor", ".prequant_scaling_factor", ".per_channel_scale"];

/**
 * The runner's view of one rank file: the same names minus the scale tensors of quantized
 * linears, with each quantized linear's `.weight` replaced by the F32 weight the engine computes
 * with (dequantized, or for W8A16/W4A16 put through the build-time quantization). Unquantized
 * checkpoints pass through untouched.
 */
export function dequantizedSource(src: TensorSource, cfg: PretrainedConfig, m: Mapping, backend?: QuantBackend): TensorSource {
  const a = active(cfg, m);
  if (!a) return src;
  const be = backend ?? cpuQuantBackend();
  const linears = new Map<string, LinearInfo>();
  for (const n of src.names()) {
    const l = quantizedLinear(a, cfg, n, src.get(n).shape);
    if (l) linears.set(n, l);
  }
  const hidden = new Set<string>();
  for (const l of linears.values()) for (const suf of a.scheme.runnerHides ?? AUX_SUFFIXES) if (src.has(l.module + suf)) hidden.add(l.module + suf);
  const names = src.names().filter((n) => !hidden.has(n));
  const cache = new Map<string, LazyTensor>();
  const raw = (n: string) => lazy(src.get(n));
  return {
    names: () => [...names],
    has: (n) => names.includes(n),
    get(n: string): TensorView {
      const l = linears.get(n);
      if (!l) return src.get(n);
      let t = cache.get(n);
      if (!t) {
        t = a.scheme.effectiveWeight(l, raw, a.q, a.dtype, be);
        cache.set(n, t);
      }
      return t;
    },
    close: () => src.close(),
  };
}
