/**
 * Llama-family config (`LLaMAConfig`, spec §1.2 and §1.5): from a Hugging Face config (Llama 1–3.2,
 * Mistral). Meta `params.json` is handled in meta.ts.
 */
import type { PretrainedConfig } from "../../format/checkpoint-config.ts";
import { TrtbError } from "../../errors.ts";
import { type HFConfig, hfRope } from "../../format/hf-config.ts";
import { baseConfigFromHF, checkRope, checkSplits, type FromSourceOptions, hfHeadSize, mappingOf } from "../common/config-common.ts";

export type { FromSourceOptions };

export function llamaConfigFromHF(hf: HFConfig, opts: FromSourceOptions = {}): PretrainedConfig {
  const arch = hf.architectures[0]!;
  const act = hf.hidden_act ?? "silu";
  if (act !== "silu") throw new TrtbError("CFG_UNSUPPORTED", `${arch}: hidden_act ${JSON.stringify(act)} is not supported for Llama models (expected "silu")`);
  const rope = hfRope(hf);
  checkRope(rope.scaling, arch);
  const mapping = mappingOf(opts);
  const headSize = hfHeadSize(hf);
  const cfg = baseConfigFromHF(hf, { opts, mapping, act: "silu", headSize });
  Object.assign(cfg, {
    rotary_base: rope.theta,
    rotary_scaling: rope.scaling,
    attn_bias: hf.attention_bias === true,
    mlp_bias: hf.mlp_bias === true,
    residual_mlp: false,
    disable_weight_only_quant_plugin: false,
    moe: { num_experts: 0, top_k: 0, normalization_mode: null },
    tie_word_embeddings: hf.tie_word_embeddings === true,
  });
  if (typeof hf.sliding_window === "number" && hf.sliding_window > 0) cfg.sliding_window = hf.sliding_window;
  checkSplits(cfg, mapping);
  return cfg;
}
