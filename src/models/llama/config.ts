/**
 * Llama-family config (`LLaMAConfig`, spec §1.2 and §1.5): from a Hugging Face config (Llama 1–3.2,
 * Mistral). Meta `params.json` is handled in meta.ts.
 */
import type { PretrainedConfig } from "../../config.ts";
import { TrtbError } from "../../errors.ts";
import { type HFConfig, hfRope, hfSourceDType, resolveDType } from "../../format/hf-config.ts";
import { baseConfig, checkRope, checkSplits, type FromSourceOptions, hfHeadSize, mappingOf } from "../config-common.ts";

export type { FromSourceOptions };

export function llamaConfigFromHF(hf: HFConfig, opts: FromSourceOptions = {}): PretrainedConfig {
  const arch = hf.architectures[0]!;
  const act = hf.hidden_act ?? "silu";
  if (act !== "silu") throw new TrtbError("CFG_UNSUPPORTED", `${arch}: hidden_act ${JSON.stringify(act)} is not supported for Llama models (expected "silu")`);
  const rope = hfRope(hf);
  checkRope(rope.scaling, arch);
  const mapping = mappingOf(opts);
  const heads = hf.num_attention_heads;
  const headSize = hfHeadSize(hf);
  const cfg = baseConfig({
    architecture: arch,
    dtype: resolveDType(opts.dtype ?? "auto", hfSourceDType(hf)),
    vocabSize: hf.vocab_size, hidden: hf.hidden_size, layers: hf.num_hidden_layers, heads,
    kvHeads: hf.num_key_value_heads ?? heads, headSize, act: "silu", intermediate: hf.intermediate_size,
    eps: hf.rms_norm_eps ?? 1e-6, posEmb: "rope_gpt_neox", maxPos: hf.max_position_embeddings ?? null,
    rotaryDim: headSize, opts, mapping,
  });
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
