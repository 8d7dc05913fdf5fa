/**
 * Where quantization meets the rest of the toolkit: the scheme registry, the checkpoint config, the
 * parameter list of a rank (`decoderParams` → `quantizeParamSpecs`), the conversion of a rank
 * (`convertRank` → `quantizeRankWeights`) and the runner's view of a quantized rank file
 * (`dequantizedSource`).
 */
import { configQuant, type PretrainedConfig, type QuantAlgo, type QuantConfig, quantConfigToJSON } from "../format/checkpoint-config.ts";
import { modelDTypeToST } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import type { Mapping } from "../mapping.ts";
import type { ParamSpec, TensorSource, TensorView } from "../tensor.ts";
import { type LazyTensor, lazy } from "../tensor/lazy.ts";
import { cpuQuantBackend, type QuantBackend } from "./backend.ts";
import { fp8Rowwise } from "./fp8-rowwise.ts";
import { int4Awq } from "./int4-awq.ts";
import { int4WeightOnly } from "./int4-wo.ts";
import { int8WeightOnly } from "./int8-wo.ts";
import type { FloatDType } from "./kernel.ts";
import { type LinearInfo, linearOfWeight } from "./modules.ts";
import { type QFormatName, QFORMATS, type QuantScheme } from "./scheme.ts";

export const SCHEMES: readonly QuantScheme[] = [int8WeightOnly, int4WeightOnly, int4Awq, fp8Rowwise];

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
  const s = SCHEMES.find((x) => x.qformat === name);
  if (!s) throw new TrtbError("QUANT_UNSUPPORTED", `qformat ${JSON.stringify(name)} is not supported; choose one of ${QFORMATS.join(", ")}`);
  return s;
}

export type { QFormatName };

/** Complete `user` for `cfg` with its scheme and store it as cfg.quantization. Returns the config. */
export function applyQuantConfig(cfg: PretrainedConfig, user: Partial<QuantConfig>): QuantConfig {
  const scheme = schemeForAlgo(user.quant_algo);
  if (!scheme) return configQuant(cfg);
  if (user.kv_cache_quant_algo) throw new TrtbError("QUANT_UNSUPPORTED", "KV-cache quantization needs calibration and is not supported");
  const q = scheme.configure(user, cfg);
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

/** The linear a weight belongs to when the config's scheme quantizes it. */
function quantizedLinear(a: Active, cfg: PretrainedConfig, name: string, shape: readonly number[]): LinearInfo | null {
  const l = linearOfWeight(name, shape, a.globalLayer);
  return l && a.scheme.quantizes(l, cfg, a.q) ? l : null;
}

/** A rank's declared parameters with the quantized linears replaced by the scheme's tensors. */
export function quantizeParamSpecs(specs: ParamSpec[], cfg: PretrainedConfig, m: Mapping): ParamSpec[] {
  const a = active(cfg, m);
  if (!a) return specs;
  return specs.flatMap((s) => {
    const l = quantizedLinear(a, cfg, s.name, s.shape);
    return l ? a.scheme.params(l, a.dtype, a.q) : [s];
  });
}

/** A rank's converted (fp) weights with the quantized linears replaced, order kept. */
export function quantizeRankWeights(weights: Map<string, LazyTensor>, cfg: PretrainedConfig, m: Mapping, backend?: QuantBackend): Map<string, LazyTensor> {
  const a = active(cfg, m);
  if (!a) return weights;
  const be = backend ?? cpuQuantBackend();
  const out = new Map<string, LazyTensor>();
  for (const [name, w] of weights) {
    const l = quantizedLinear(a, cfg, name, w.shape);
    if (!l) {
      out.set(name, w);
      continue;
    }
    if (w.dtype !== a.dtype)
      throw new TrtbError("QUANT_DTYPE", `${name}: expected the model dtype ${a.dtype} before quantization, got ${w.dtype}`, { tensor: name });
    for (const t of a.scheme.quantize(l, w, a.q, a.dtype, be)) out.set(t.name, t);
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
  for (const l of linears.values()) for (const suf of AUX_SUFFIXES) if (src.has(l.module + suf)) hidden.add(l.module + suf);
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
