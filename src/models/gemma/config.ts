/**
 * Gemma / Gemma2 config (`GemmaForCausalLM`, docs/families.md §2) from a Hugging Face config.
 *
 * - `use_parallel_embedding` is forced to tp > 1 (dim 0), as upstream 1.x does.
 * - Gemma2's alternating local/global attention is not part of upstream's config; we also write the
 *   HF `sliding_window` and `layer_types` as extra top-level keys (readers ignore unknown keys) so our
 *   runtimes apply the window. Soft-caps and `query_pre_attn_scalar` are written as HF names them.
 */
import type { PretrainedConfig } from "../../format/checkpoint-config.ts";
import { TrtbError } from "../../errors.ts";
import { type HFConfig, hfRope } from "../../format/hf-config.ts";
import { baseConfigFromHF, checkSplits, type FromSourceOptions, hfHeadSize, mappingOf } from "../common/config-common.ts";

export const isGemma2 = (c: PretrainedConfig) => c.inter_layernorms === true;

export function gemmaConfigFromHF(hf: HFConfig, opts: FromSourceOptions = {}): PretrainedConfig {
  const arch = hf.architectures[0]!;
  const gemma2 = arch === "Gemma2ForCausalLM";
  const act = (hf.hidden_activation as string | undefined) ?? hf.hidden_act ?? "gelu_pytorch_tanh";
  if (act !== "gelu_pytorch_tanh" && act !== "gelu")
    throw new TrtbError("CFG_UNSUPPORTED", `${arch}: activation ${JSON.stringify(act)} is not supported (expected gelu_pytorch_tanh)`);
  const rope = hfRope(hf);
  if (rope.scaling) throw new TrtbError("CFG_UNSUPPORTED", `${arch}: rope scaling is not supported for Gemma`);
  const mapping = mappingOf(opts);
  const d = hfHeadSize(hf);
  // Upstream forces the embedding to be sharded when tp > 1.
  const o: FromSourceOptions = { ...opts, useParallelEmbedding: mapping.tpSize > 1, embeddingShardingDim: 0 };
  const cfg = baseConfigFromHF(hf, { opts: o, mapping, act: "gelu_pytorch_tanh", headSize: d });
  Object.assign(cfg, {
    rotary_base: rope.theta,
    rotary_scaling: null,
    attn_bias: false,
    mlp_bias: false,
    inter_layernorms: gemma2,
    share_embedding_table: true,
    tie_word_embeddings: true,
  });
  if (gemma2) {
    Object.assign(cfg, {
      query_pre_attn_scalar: hf.query_pre_attn_scalar ?? d,
      attn_logit_softcapping: hf.attn_logit_softcapping ?? null,
      final_logit_softcapping: hf.final_logit_softcapping ?? null,
    });
    if (typeof hf.sliding_window === "number") {
      cfg.sliding_window = hf.sliding_window;
      // transformers 5 lists layer kinds; 4.x made even layers sliding.
      cfg.layer_types = Array.isArray(hf.layer_types)
        ? hf.layer_types
        : Array.from({ length: hf.num_hidden_layers }, (_, l) => (l % 2 === 0 ? "sliding_attention" : "full_attention"));
    }
  }
  checkSplits(cfg, mapping);
  return cfg;
}
