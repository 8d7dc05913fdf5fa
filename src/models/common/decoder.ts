/**
 * The parameter list of a TRT-LLM decoder-only model for one rank (spec §2.1–2.7), shared by the
 * families. Families differ only by the `DecoderLayout` switches; names and shapes follow
 * upstream's module tree (`transformer.vocab_embedding`, `transformer.layers.{i}.…`,
 * `transformer.ln_f`, `lm_head`).
 */
import { headSize, numKvHeads, type PretrainedConfig } from "../../format/checkpoint-config.ts";
import { type DType, modelDTypeToST } from "../../dtype.ts";
import type { Mapping } from "../../mapping.ts";
import { quantizeParamSpecs } from "../../quant/apply.ts";
import type { ParamSpec } from "../../tensor.ts";
import { kvHeadsPerRank, padVocab } from "./split.ts";

export interface DecoderLayout {
  qkvBias: boolean;
  denseBias: boolean;
  mlpBias: boolean;
  /** GatedMLP (fc + gate + proj) or a fused fc of [up; gate] rows (Phi-3, MoE experts). */
  mlp: "gated" | "fused";
  /** Per-head q/k RMSNorm (Qwen3): `attention.q_layernorm`, `attention.k_layernorm` [head_size]. */
  qkNorm: boolean;
  /** Gemma2 sandwich norms: `pre_feedforward_layernorm`, `post_feedforward_layernorm`. */
  sandwichNorms: boolean;
  /** Mixture of experts: router fp32 [E, H], fc [E_local, 2I/moe_tp, H], proj [E_local, H, I/moe_tp]. */
  moe: { numExperts: number; topK: number } | null;
}

export const LLAMA_LAYOUT: DecoderLayout = {
  qkvBias: false, denseBias: false, mlpBias: false, mlp: "gated", qkNorm: false, sandwichNorms: false, moe: null,
};

export function decoderParams(cfg: PretrainedConfig, m: Mapping, layout: DecoderLayout): ParamSpec[] {
  const dt: DType = modelDTypeToST(cfg.dtype);
  const H = cfg.hidden_size;
  const V = cfg.vocab_size;
  const I = cfg.intermediate_size ?? 4 * H;
  const nH = cfg.num_attention_heads;
  const nKV = numKvHeads(cfg);
  const d = headSize(cfg);
  const tp = m.tpSize;
  const out: ParamSpec[] = [];
  const p = (name: string, shape: number[], dtype: DType = dt) => out.push({ name, shape, dtype });

  if (m.isFirstPpRank()) {
    let shape = [V, H];
    if (cfg.use_parallel_embedding && tp > 1) shape = cfg.embedding_sharding_dim === 0 ? [Math.ceil(V / tp), H] : [V, H / tp];
    p("transformer.vocab_embedding.weight", shape);
  }
  const qkvRows = (nH / tp + 2 * kvHeadsPerRank(nKV, tp)) * d;
  m.ppLayers(cfg.num_hidden_layers).forEach((_, i) => {
    const L = `transformer.layers.${i}`;
    p(`${L}.input_layernorm.weight`, [H]);
    p(`${L}.attention.qkv.weight`, [qkvRows, H]);
    if (layout.qkvBias) p(`${L}.attention.qkv.bias`, [qkvRows]);
    if (layout.qkNorm) {
      p(`${L}.attention.q_layernorm.weight`, [d]);
      p(`${L}.attention.k_layernorm.weight`, [d]);
    }
    p(`${L}.attention.dense.weight`, [H, (nH * d) / tp]);
    if (layout.denseBias) p(`${L}.attention.dense.bias`, [H]);
    p(`${L}.post_layernorm.weight`, [H]);
    if (layout.sandwichNorms) {
      p(`${L}.pre_feedforward_layernorm.weight`, [H]);
      p(`${L}.post_feedforward_layernorm.weight`, [H]);
    }
    if (layout.moe) {
      const eLocal = layout.moe.numExperts / m.moeEpSize;
      const iLocal = I / m.moeTpSize;
      p(`${L}.mlp.router.weight`, [layout.moe.numExperts, H], "F32");
      p(`${L}.mlp.fc.weight`, [eLocal, 2 * iLocal, H]);
      p(`${L}.mlp.proj.weight`, [eLocal, H, iLocal]);
    } else if (layout.mlp === "gated") {
      p(`${L}.mlp.fc.weight`, [I / tp, H]);
      if (layout.mlpBias) p(`${L}.mlp.fc.bias`, [I / tp]);
      p(`${L}.mlp.gate.weight`, [I / tp, H]);
      if (layout.mlpBias) p(`${L}.mlp.gate.bias`, [I / tp]);
      p(`${L}.mlp.proj.weight`, [H, I / tp]);
      if (layout.mlpBias) p(`${L}.mlp.proj.bias`, [H]);
    } else {
      p(`${L}.mlp.fc.weight`, [(2 * I) / tp, H]);
      if (layout.mlpBias) p(`${L}.mlp.fc.bias`, [(2 * I) / tp]);
      p(`${L}.mlp.proj.weight`, [H, I / tp]);
      if (layout.mlpBias) p(`${L}.mlp.proj.bias`, [H]);
    }
  });
  if (m.isLastPpRank()) {
    p("transformer.ln_f.weight", [H]);
    p("lm_head.weight", [padVocab(V, tp) / tp, H]);
  }
  // Quantized checkpoints (config.quantization.quant_algo): the scheme's tensors replace its linears.
  return quantizeParamSpecs(out, cfg, m);
}
