/**
 * Qwen2 / Qwen2.5 / Qwen3 config (`QWenForCausalLM`, docs/families.md §1) from a Hugging Face config.
 *
 * - `architecture` is HF's (`Qwen2ForCausalLM`, `Qwen3ForCausalLM`); `qwen_type` = HF `model_type`.
 * - Qwen2 always has q/k/v biases (HF hard-codes them; the config has no flag) → `attn_bias: true`.
 * - Qwen3's per-head q/k RMSNorm is enabled by `qwen_type: "qwen3"` (upstream does not write
 *   `qk_layernorm`).
 * - `rotary_base` falls back to 100000 when the HF config has no theta.
 */
import type { PretrainedConfig } from "../../format/checkpoint-config.ts";
import { TrtbError } from "../../errors.ts";
import { type HFConfig, hfRope } from "../../format/hf-config.ts";
import { baseConfigFromHF, checkRope, checkSplits, type FromSourceOptions, hfHeadSize, mappingOf } from "../common/config-common.ts";

export const isQwen3 = (c: PretrainedConfig) => c.qwen_type === "qwen3";

export function qwenConfigFromHF(hf: HFConfig, opts: FromSourceOptions = {}): PretrainedConfig {
  const arch = hf.architectures[0]!;
  const qwenType = hf.model_type ?? (arch === "Qwen3ForCausalLM" ? "qwen3" : "qwen2");
  if (qwenType !== "qwen2" && qwenType !== "qwen3")
    throw new TrtbError("CFG_UNSUPPORTED", `${arch}: model_type ${JSON.stringify(qwenType)} is not supported (qwen2, qwen3)`);
  if (qwenType === "qwen3" && hf.attention_bias === true)
    throw new TrtbError("CFG_UNSUPPORTED", `${arch}: attention_bias=true is not supported for Qwen3 (upstream has no o_proj bias)`);
  const act = hf.hidden_act ?? "silu";
  if (act !== "silu") throw new TrtbError("CFG_UNSUPPORTED", `${arch}: hidden_act ${JSON.stringify(act)} is not supported (expected "silu")`);
  const rope = hfRope(hf, 100000);
  checkRope(rope.scaling, arch);
  const mapping = mappingOf(opts);
  const d = hfHeadSize(hf);
  const cfg = baseConfigFromHF(hf, { opts, mapping, act: "silu", headSize: d });
  Object.assign(cfg, {
    qwen_type: qwenType,
    rotary_base: rope.theta,
    rotary_scaling: rope.scaling,
    attn_bias: qwenType === "qwen2",
    mlp_bias: false,
    seq_length: typeof hf.seq_length === "number" ? hf.seq_length : 8192,
    use_logn_attn: false,
    moe: { num_experts: 0, top_k: 0, normalization_mode: 0 },
    moe_intermediate_size: 0,
    moe_shared_expert_intermediate_size: 0,
    num_labels: 1,
    disable_weight_only_quant_plugin: false,
    tie_word_embeddings: hf.tie_word_embeddings === true,
  });
  checkSplits(cfg, mapping);
  return cfg;
}
