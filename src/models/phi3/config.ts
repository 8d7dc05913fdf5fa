/**
 * Phi-3 (mini/medium) config (`Phi3ForCausalLM`, docs/families.md §3) from a Hugging Face config.
 *
 * - `hidden_act: "swiglu"`, no biases. `rotary_embedding_dim` = head_size · partial_rotary_factor.
 * - LongRoPE (`rope_scaling` / `rope_parameters` of type `longrope` or its old name `su`: Phi-3-mini-128k,
 *   Phi-3-medium-128k, Phi-3.5-mini, Phi-4-mini) → `position_embedding_type: "long_rope"` with
 *   upstream's keys `original_max_position_embeddings`, `longrope_scaling_short_factors` and
 *   `longrope_scaling_long_factors` (lists of rotary_dim / 2). Upstream decides on long_rope from
 *   `max_position_embeddings ≥ 128000` alone; every real LongRoPE Phi-3 has both, and deciding on
 *   the scaling type also keeps a short-context LongRoPE checkpoint right. The attention factor is
 *   derived (src/models/common/rope.ts), so an explicit `attention_factor` other than that is refused.
 */
import type { PretrainedConfig } from "../../format/checkpoint-config.ts";
import { TrtbError } from "../../errors.ts";
import { type HFConfig, hfPartialRotaryFactor, hfRope, ropeType } from "../../format/hf-config.ts";
import { longRopeMscale } from "../common/rope.ts";
import { baseConfigFromHF, checkSplits, type FromSourceOptions, hfHeadSize, mappingOf } from "../common/config-common.ts";

export function phi3ConfigFromHF(hf: HFConfig, opts: FromSourceOptions = {}): PretrainedConfig {
  const arch = hf.architectures[0]!;
  const act = hf.hidden_act ?? "silu";
  if (act !== "silu") throw new TrtbError("CFG_UNSUPPORTED", `${arch}: hidden_act ${JSON.stringify(act)} is not supported (expected "silu")`);
  const rope = hfRope(hf);
  const type = ropeType(rope.scaling);
  const mapping = mappingOf(opts);
  const d = hfHeadSize(hf);
  const pct = hfPartialRotaryFactor(hf);
  const rotaryDim = Math.floor(d * pct);
  let longRope: Record<string, unknown> = {};
  if (type === "longrope" || type === "su") longRope = longRopeKeys(hf, rope.scaling!, rotaryDim);
  else if (rope.scaling) throw new TrtbError("CFG_UNSUPPORTED", `${arch}: rope scaling ${JSON.stringify(rope.scaling)} is not supported for Phi-3 (longrope / su only)`);
  else if ((hf.max_position_embeddings ?? 0) >= 128000)
    throw new TrtbError("CFG_INVALID", `${arch}: max_position_embeddings ${hf.max_position_embeddings} (a 128k model) but no longrope rope_scaling with short_factor / long_factor`);
  const cfg = baseConfigFromHF(hf, { opts, mapping, act: "swiglu", headSize: d, rotaryDim, epsDefault: 1e-5 });
  Object.assign(cfg, {
    rotary_base: rope.theta,
    rotary_scaling: null,
    rotary_pct: pct,
    tie_word_embeddings: hf.tie_word_embeddings === true,
    ...longRope,
  });
  checkSplits(cfg, mapping);
  return cfg;
}

/** Upstream's long_rope keys from a longrope / su scaling dict (checked: factor lists of rotary_dim / 2 positive numbers). */
function longRopeKeys(hf: HFConfig, scaling: Record<string, unknown>, rotaryDim: number): Record<string, unknown> {
  const arch = hf.architectures[0]!;
  const list = (k: string): number[] => {
    const v = scaling[k];
    if (!Array.isArray(v) || v.length !== rotaryDim / 2 || !v.every((x) => typeof x === "number" && x > 0 && Number.isFinite(x)))
      throw new TrtbError("CFG_INVALID", `${arch}: rope_scaling.${k} must be a list of ${rotaryDim / 2} positive numbers (rotary_dim / 2), got ${Array.isArray(v) ? `${v.length} entries` : JSON.stringify(v)}`);
    return v as number[];
  };
  const short = list("short_factor");
  const long = list("long_factor");
  const raw = (hf as Record<string, unknown>).original_max_position_embeddings ?? scaling.original_max_position_embeddings;
  if (!(typeof raw === "number" && Number.isInteger(raw) && raw > 0))
    throw new TrtbError("CFG_INVALID", `${arch}: longrope needs a positive integer original_max_position_embeddings, got ${JSON.stringify(raw)}`);
  const maxPos = hf.max_position_embeddings ?? raw;
  for (const k of ["short_mscale", "long_mscale"])
    if (scaling[k] !== undefined) throw new TrtbError("CFG_UNSUPPORTED", `${arch}: rope_scaling.${k} (Phi-3-small / PhiMoE) is not supported`);
  if (scaling.attention_factor !== undefined && scaling.attention_factor !== null) {
    const derived = longRopeMscale(maxPos, raw);
    if (typeof scaling.attention_factor !== "number" || Math.abs(scaling.attention_factor - derived) > 1e-6)
      throw new TrtbError("CFG_UNSUPPORTED", `${arch}: rope_scaling.attention_factor ${JSON.stringify(scaling.attention_factor)} differs from the derived sqrt(1 + ln(${maxPos}/${raw}) / ln(${raw})) = ${derived}; the TRT-LLM checkpoint has no key for it`);
  }
  return {
    position_embedding_type: "long_rope",
    original_max_position_embeddings: raw,
    longrope_scaling_short_factors: short,
    longrope_scaling_long_factors: long,
  };
}
