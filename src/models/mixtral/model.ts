/**
 * Mixtral → the Llama code path with a mixture-of-experts MLP (docs/families.md §4, spec §2.4).
 *
 * Spec notes:
 * - `mlp.router.weight` = `block_sparse_moe.gate.weight`, stored **float32** [E, H], replicated.
 * - `mlp.fc.weight` [E_local, 2·I/moe_tp, H] stacks, per expert, [w3_r; w1_r] = [up; gate]
 *   (swiglu activates the second half); `mlp.proj.weight` [E_local, H, I/moe_tp] stacks w2.
 * - Expert parallelism stores the contiguous block `Mapping.epExperts(E)`; `mapping` gains
 *   `moe_tp_size` / `moe_ep_size`.
 * - `hidden_act: "swiglu"`, `moe.normalization_mode: 1` (RENORMALIZE: softmax, top-k, renormalise).
 */
import type { PretrainedConfig } from "../../config.ts";
import { TrtbError } from "../../errors.ts";
import type { HFConfig } from "../../format/hf-config.ts";
import type { Mapping } from "../../mapping.ts";
import { checkSplits, type FromSourceOptions, mappingOf } from "../common/config-common.ts";
import type { FamilyTable } from "../common/convert.ts";
import { type DecoderLayout, LLAMA_LAYOUT } from "../common/decoder.ts";
import { DecoderModel, fromCheckpoint, fromHuggingFace, withLmHeadSource } from "../common/decoder-model.ts";
import type { Family } from "../common/family.ts";
import { llamaConfigFromHF } from "../llama/config.ts";
import { LLAMA_TABLE } from "../llama/weights.ts";

export const MIXTRAL_TABLE: FamilyTable = {
  ...LLAMA_TABLE,
  layer: [
    ...LLAMA_TABLE.layer.filter((r) => !r.trt.includes(".mlp.")),
    { trt: "transformer.layers.{i}.mlp.router.weight", src: "model.layers.{L}.block_sparse_moe.gate.weight", split: "replicate", dtype: "F32" },
    {
      trt: "transformer.layers.{i}.mlp.fc.weight",
      src: ["model.layers.{L}.block_sparse_moe.experts.{E}.w3.weight", "model.layers.{L}.block_sparse_moe.experts.{E}.w1.weight"],
      split: "moe_fc",
    },
    { trt: "transformer.layers.{i}.mlp.proj.weight", src: "model.layers.{L}.block_sparse_moe.experts.{E}.w2.weight", split: "moe_proj" },
  ],
};

export function mixtralConfigFromHF(hf: HFConfig, opts: FromSourceOptions = {}): PretrainedConfig {
  const arch = hf.architectures[0]!;
  const E = hf.num_local_experts;
  const k = hf.num_experts_per_tok;
  if (typeof E !== "number" || typeof k !== "number" || E < 1 || k < 1 || k > E)
    throw new TrtbError("CFG_INVALID", `${arch}: num_local_experts and num_experts_per_tok must be positive with top-k ≤ experts`);
  const mapping = mappingOf(opts);
  const cfg = llamaConfigFromHF({ ...hf, architectures: ["MixtralForCausalLM"] }, { ...opts, mapping });
  Object.assign(cfg, {
    hidden_act: "swiglu",
    moe: { num_experts: E, top_k: k, normalization_mode: 1 },
    mapping: mapping.toJSON(true),
  });
  if (E % mapping.moeEpSize !== 0)
    throw new TrtbError("CONV_TP", `${arch}: ${E} experts do not split over moe_ep_size ${mapping.moeEpSize}`);
  checkSplits(cfg, mapping);
  return cfg;
}

export const mixtralFamily: Family = {
  name: "mixtral",
  hfArchitectures: ["MixtralForCausalLM"],
  trtArchitectures: ["MixtralForCausalLM"],
  configFromHF: mixtralConfigFromHF,
  table: (cfg, src) => withLmHeadSource(MIXTRAL_TABLE, cfg, src, "model.embed_tokens.weight"),
  layout: (cfg): DecoderLayout => {
    const moe = cfg.moe as { num_experts: number; top_k: number };
    return { ...LLAMA_LAYOUT, qkvBias: cfg.attn_bias === true, denseBias: cfg.attn_bias === true, moe: { numExperts: moe.num_experts, topK: moe.top_k } };
  },
};

export class MixtralForCausalLM extends DecoderModel {
  constructor(config: PretrainedConfig, mapping: Mapping) {
    super(mixtralFamily, config, mapping);
  }
  static fromHuggingFace(dir: string, opts: FromSourceOptions = {}): Promise<MixtralForCausalLM> {
    return fromHuggingFace(mixtralFamily, dir, opts, (c, m) => new MixtralForCausalLM(c, m));
  }
  static fromCheckpoint(dir: string, rank = 0): Promise<MixtralForCausalLM> {
    return fromCheckpoint(dir, rank, (c, m) => new MixtralForCausalLM(c, m));
  }
}
