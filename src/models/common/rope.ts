/**
 * Rotary embedding frequencies, as Hugging Face computes them (fp32): default, linear and llama3
 * scaling, and LongRoPE (`position_embedding_type: long_rope`, Phi-3 128k / Phi-3.5 / Phi-4-mini).
 * Shared by the CPU runner and the engine builder (which stores the tables in the engine).
 *
 * LongRoPE (transformers `_compute_longrope_parameters` + `dynamic_rope_update`):
 *   inv_freq_f = 1 / (f_i · base^(2i/rot)) for the short and the long factor lists f;
 *   a forward whose sequence reaches beyond original_max_position_embeddings (its length after the
 *   forward > original) uses the long table for all of its positions, else the short one;
 *   cos and sin are multiplied by the attention factor m = sqrt(1 + ln(s) / ln(original)),
 *   s = max_position_embeddings / original (m = 1 when s ≤ 1).
 */
import { TrtbError } from "../../errors.ts";
import { ropeType } from "../../format/hf-config.ts";

const f = Math.fround;

/** The LongRoPE attention factor (see the top of the file). */
export function longRopeMscale(maxPos: number, originalMax: number): number {
  const s = maxPos / originalMax;
  return s <= 1 ? 1 : Math.sqrt(1 + Math.log(s) / Math.log(originalMax));
}

export interface LongRope {
  /** inv_freq of the short and the long factors, [rot / 2] each. */
  shortInvFreq: Float32Array;
  longInvFreq: Float32Array;
  originalMax: number;
  /** The attention factor multiplying cos and sin. */
  mscale: number;
}

/** LongRoPE's tables from a `long_rope` checkpoint config, or null for any other position embedding. */
export function longRopeOf(cfg: Record<string, unknown>, rotaryDim: number): LongRope | null {
  if (cfg.position_embedding_type !== "long_rope") return null;
  const half = rotaryDim / 2;
  const list = (k: string): number[] => {
    const v = cfg[k];
    if (!Array.isArray(v) || v.length !== half || !v.every((x) => typeof x === "number" && x > 0))
      throw new TrtbError("CFG_INVALID", `long_rope config: ${k} must be a list of ${half} positive numbers (rotary_embedding_dim / 2)`);
    return v as number[];
  };
  const orig = cfg.original_max_position_embeddings;
  if (!(typeof orig === "number" && orig > 0)) throw new TrtbError("CFG_INVALID", "long_rope config: original_max_position_embeddings must be a positive number");
  const base = typeof cfg.rotary_base === "number" ? cfg.rotary_base : 10000;
  const table = (factors: number[]): Float32Array => {
    const inv = new Float32Array(half);
    for (let i = 0; i < half; i++) inv[i] = f(1 / f(f(factors[i]!) * f(base ** f((2 * i) / rotaryDim))));
    return inv;
  };
  const maxPos = typeof cfg.max_position_embeddings === "number" ? cfg.max_position_embeddings : orig;
  return {
    shortInvFreq: table(list("longrope_scaling_short_factors")),
    longInvFreq: table(list("longrope_scaling_long_factors")),
    originalMax: orig,
    mscale: f(longRopeMscale(maxPos, orig)),
  };
}

export function ropeInvFreq(rotaryDim: number, base: number, scaling: Record<string, unknown> | null | undefined): Float32Array {
  const half = rotaryDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f(1 / f(base ** f((2 * i) / rotaryDim)));
  const type = ropeType(scaling);
  const num = (k: string, dflt?: number): number => {
    const v = scaling?.[k];
    if (typeof v === "number") return v;
    if (dflt !== undefined) return dflt;
    throw new TrtbError("CFG_INVALID", `rotary_scaling of type ${type} needs a numeric "${k}"`);
  };
  if (type === "default") return inv;
  if (type === "linear") {
    const factor = num("factor");
    for (let i = 0; i < half; i++) inv[i] = f(inv[i]! / factor);
    return inv;
  }
  if (type === "llama3") {
    const factor = num("factor");
    const low = num("low_freq_factor");
    const high = num("high_freq_factor");
    const oldCtx = num("original_max_position_embeddings");
    const lowWavelen = oldCtx / low;
    const highWavelen = oldCtx / high;
    for (let i = 0; i < half; i++) {
      const x = inv[i]!;
      const wavelen = (2 * Math.PI) / x;
      let y = wavelen > lowWavelen ? x / factor : x;
      const smooth = (oldCtx / wavelen - low) / (high - low);
      const medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
      if (medium) y = (1 - smooth) * (y / factor) + smooth * y;
      inv[i] = f(y);
    }
    return inv;
  }
  throw new TrtbError("CFG_UNSUPPORTED", `rope scaling type ${JSON.stringify(type)} is not supported by the runtime (default, linear, llama3)`);
}
