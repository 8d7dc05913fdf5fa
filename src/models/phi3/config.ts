/**
 * Phi-3 (mini/medium) config (`Phi3ForCausalLM`, docs/families.md §3) from a Hugging Face config.
 *
 * - `hidden_act: "swiglu"`, no biases. `rotary_embedding_dim` = head_size · partial_rotary_factor.
 * - long_rope (max_position_embeddings ≥ 128000, the 128k variants) is refused for now.
 */
import type { PretrainedConfig } from "../../format/checkpoint-config.ts";
import { TrtbError } from "../../errors.ts";
import { type HFConfig, hfPartialRotaryFactor, hfRope } from "../../format/hf-config.ts";
import { baseConfigFromHF, checkSplits, type FromSourceOptions, hfHeadSize, mappingOf } from "../common/config-common.ts";

export function phi3ConfigFromHF(hf: HFConfig, opts: FromSourceOptions = {}): PretrainedConfig {
  const arch = hf.architectures[0]!;
  const act = hf.hidden_act ?? "silu";
  if (act !== "silu") throw new TrtbError("CFG_UNSUPPORTED", `${arch}: hidden_act ${JSON.stringify(act)} is not supported (expected "silu")`);
  if ((hf.max_position_embeddings ?? 0) >= 128000)
    throw new TrtbError("CFG_UNSUPPORTED", `${arch}: long_rope models (max_position_embeddings ≥ 128000) are not supported yet`);
  const rope = hfRope(hf);
  if (rope.scaling) throw new TrtbError("CFG_UNSUPPORTED", `${arch}: rope scaling ${JSON.stringify(rope.scaling)} is not supported for Phi-3`);
  const mapping = mappingOf(opts);
  const d = hfHeadSize(hf);
  const pct = hfPartialRotaryFactor(hf);
  const cfg = baseConfigFromHF(hf, { opts, mapping, act: "swiglu", headSize: d, rotaryDim: Math.floor(d * pct), epsDefault: 1e-5 });
  Object.assign(cfg, {
    rotary_base: rope.theta,
    rotary_scaling: null,
    rotary_pct: pct,
    tie_word_embeddings: hf.tie_word_embeddings === true,
  });
  checkSplits(cfg, mapping);
  return cfg;
}
