/**
 * Qwen2 / Qwen2.5 / Qwen3 → `QWenForCausalLM` (docs/families.md §1).
 *
 * Spec notes (what we chose where upstream is loose):
 * - `architecture` is HF's (`Qwen2ForCausalLM`, `Qwen3ForCausalLM`); `qwen_type` = HF `model_type`.
 * - Qwen2 always has q/k/v biases (HF hard-codes them; the config has no flag) → `attn_bias: true`.
 *   No model in the family has an o_proj bias, so `attention.dense.bias` never exists.
 * - Qwen3's per-head q/k RMSNorm: `attention.q_layernorm.weight` / `attention.k_layernorm.weight`
 *   ([head_size], replicated, no +1), as upstream 1.x names them. It is enabled by
 *   `qwen_type: "qwen3"` (upstream does not write `qk_layernorm`), and applied before RoPE with
 *   `norm_epsilon` (HF's rms_norm_eps).
 * - `rotary_base` falls back to 100000 when the HF config has no theta.
 */
import type { PretrainedConfig } from "../../config.ts";
import { TrtbError } from "../../errors.ts";
import { type HFConfig, hfRope } from "../../format/hf-config.ts";
import type { Mapping } from "../../mapping.ts";
import { baseConfigFromHF, checkRope, checkSplits, type FromSourceOptions, hfHeadSize, mappingOf } from "../common/config-common.ts";
import type { FamilyTable, NameRow } from "../common/convert.ts";
import { type DecoderLayout, LLAMA_LAYOUT } from "../common/decoder.ts";
import { DecoderModel, fromCheckpoint, fromHuggingFace, withLmHeadSource } from "../common/decoder-model.ts";
import type { Family } from "../common/family.ts";
import { LLAMA_TABLE } from "../llama/weights.ts";

const isQwen3 = (c: PretrainedConfig) => c.qwen_type === "qwen3";

/** Llama's rows minus the o_proj bias, plus Qwen3's q/k norms. */
export const QWEN_TABLE: FamilyTable = {
  ...LLAMA_TABLE,
  layer: [
    ...LLAMA_TABLE.layer.filter((r) => !r.trt.endsWith("attention.dense.bias")),
    { trt: "transformer.layers.{i}.attention.q_layernorm.weight", src: "model.layers.{L}.self_attn.q_norm.weight", split: "replicate", when: isQwen3, note: "qwen3" },
    { trt: "transformer.layers.{i}.attention.k_layernorm.weight", src: "model.layers.{L}.self_attn.k_norm.weight", split: "replicate", when: isQwen3, note: "qwen3" },
  ] satisfies NameRow[],
};

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

export const qwenFamily: Family = {
  name: "qwen",
  hfArchitectures: ["Qwen2ForCausalLM", "Qwen3ForCausalLM"],
  trtArchitectures: ["Qwen2ForCausalLM", "Qwen3ForCausalLM", "QWenForCausalLM"],
  configFromHF: qwenConfigFromHF,
  table: (cfg, src) => withLmHeadSource(QWEN_TABLE, cfg, src, "model.embed_tokens.weight"),
  layout: (cfg): DecoderLayout => ({ ...LLAMA_LAYOUT, qkvBias: cfg.attn_bias === true, qkNorm: isQwen3(cfg) }),
};

export class QWenForCausalLM extends DecoderModel {
  constructor(config: PretrainedConfig, mapping: Mapping) {
    super(qwenFamily, config, mapping);
  }
  static fromHuggingFace(dir: string, opts: FromSourceOptions = {}): Promise<QWenForCausalLM> {
    return fromHuggingFace(qwenFamily, dir, opts, (c, m) => new QWenForCausalLM(c, m));
  }
  static fromCheckpoint(dir: string, rank = 0): Promise<QWenForCausalLM> {
    return fromCheckpoint(dir, rank, (c, m) => new QWenForCausalLM(c, m));
  }
}
