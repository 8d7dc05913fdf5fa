/**
 * The engine plan: everything the runtime needs besides the weights, stored as JSON inside each
 * `rank{N}.engine` (see engine-file.ts). It is backend-neutral where it can be (the model
 * description and limits) and backend-specific where it must be (`gemm`: which kernel or cuBLASLt
 * algorithm serves each GEMM shape and token-count bucket, and the device it was tuned on).
 *
 * The model description is derived from the checkpoint config and the family's semantics
 * (`Family.semantics`), the same reading the CPU reference runner applies, so both runtimes
 * interpret every family the same way.
 */
import { configQuant, headSize, numKvHeads, type PretrainedConfig } from "../config.ts";
import { TrtbError } from "../errors.ts";
import { Mapping } from "../mapping.ts";
import { kvHeadsPerRank, padVocab } from "../models/common/split.ts";
import type { Family } from "../models/common/family.ts";
import type { ModelSemantics } from "../models/common/semantics.ts";

export const ENGINE_FORMAT = "trtb-engine";
/** 1: 16-bit weights only; 2: adds weight-only (W8A16/W4A16) tensors (`model.weight_only`). */
export const ENGINE_FORMAT_VERSION = 2;

/** One rank's model, as the runtime sees it (local sizes). */
export interface EngineModelDesc {
  architecture: string;
  dtype: "float16" | "bfloat16";
  /** Vocabulary size (unpadded, global). */
  vocab_size: number;
  /** Rows of this rank's lm_head (padded vocabulary / tp). */
  lm_head_rows: number;
  /** Rows of this rank's embedding table and the first token id they hold. */
  embedding_rows: number;
  embedding_vocab_start: number;
  /** Embedding sharded along the hidden dim (parallel embedding, dim 1): not runnable on one GPU. */
  embedding_hidden_split: boolean;
  hidden_size: number;
  /** Global indices of the layers this rank holds. */
  layers: number[];
  num_heads: number;
  num_kv_heads: number;
  head_size: number;
  qkv_rows: number;
  /** Local intermediate size (per expert for MoE). */
  intermediate_size: number;
  act: "silu" | "gelu_tanh";
  norm_eps: number;
  embed_scale: number;
  attn_scale: number;
  attn_softcap: number | null;
  final_softcap: number | null;
  /** Sliding window per local layer (null: full attention). */
  windows: (number | null)[];
  sandwich_norms: boolean;
  qk_norm: boolean;
  rotary_dim: number;
  bias: { qkv: boolean; dense: boolean; mlp: boolean };
  moe: { num_experts: number; top_k: number; local_experts: number[] } | null;
  first_pp_rank: boolean;
  last_pp_rank: boolean;
  /**
   * W8A16 / W4A16: the decoder linears the checkpoint's quant config quantizes are stored as
   * `<name>` (I8, the tiled layout of wo-pack.ts) plus `<name>.scale` (F32 [out]); absent in
   * version-1 plans.
   */
  weight_only?: { algo: "W8A16" | "W4A16"; bits: 8 | 4 } | null;
}

export interface EngineLimits {
  max_batch_size: number;
  max_input_len: number;
  max_seq_len: number;
  max_num_tokens: number;
  max_beam_width: number;
  tokens_per_block: number;
}

/** A GEMM tactic in the plan: our GEMV kernel, a saved cuBLASLt algorithm (hex), or the heuristic. */
export interface PlanTactic {
  kind: "heuristic" | "cublaslt" | "gemv" | "wo";
  variant: number;
  algo?: string;
}

/** One GEMM site (a weight shape): the tactic index per token-count bucket (sorted by m). */
export interface PlanGemmSite {
  n: number;
  k: number;
  ab: "F16" | "BF16";
  y: "F32" | "F16" | "BF16";
  /** 8 / 4: a weight-only site (absent: 16-bit weights) */
  wbits?: 8 | 4;
  /** [bucket m, tactic index, measured µs (0 when not timed)] */
  buckets: [number, number, number][];
}

export interface PlanGemm {
  tactics: PlanTactic[];
  sites: Record<string, PlanGemmSite>;
}

export interface PlanDevice {
  name: string;
  sm: string;
  cublaslt_version: number;
}

export interface PlanTensor {
  name: string;
  dtype: "F32" | "F16" | "BF16" | "I8";
  shape: number[];
  /** Byte offset within the weight blob (256-byte aligned). */
  offset: number;
  bytes: number;
}

export interface EnginePlan {
  format: typeof ENGINE_FORMAT;
  format_version: number;
  backend: string;
  rank: number;
  mapping: { world_size: number; tp_size: number; pp_size: number; moe_tp_size: number; moe_ep_size: number };
  model: EngineModelDesc;
  limits: EngineLimits;
  gemm: PlanGemm;
  device: PlanDevice | null;
  tensors: PlanTensor[];
  build: { seconds: number; timing_cache_hits: number; timing_cache_misses: number };
}

/**
 * Derive one rank's model description; throws `BUILD_UNSUPPORTED` for what the runtime cannot run.
 * `has(name)` says whether the rank's weights hold a tensor (biases are read off the weights).
 */
export function describeModel(cfg: PretrainedConfig, rank: number, family: Pick<Family, "semantics">, has: (name: string) => boolean = () => false): EngineModelDesc {
  if (cfg.dtype !== "float16" && cfg.dtype !== "bfloat16")
    throw new TrtbError("BUILD_UNSUPPORTED", `dtype ${cfg.dtype} is not supported by the CUDA backend (float16, bfloat16); convert with --dtype bfloat16 or float16`);
  let st: ModelSemantics;
  try {
    st = family.semantics(cfg);
  } catch (e) {
    throw new TrtbError("BUILD_UNSUPPORTED", (e as Error).message, { cause: e });
  }
  const m = Mapping.fromJSON(cfg.mapping, rank);
  const tp = m.tpSize;
  const H = cfg.hidden_size;
  const V = cfg.vocab_size;
  const nH = cfg.num_attention_heads;
  const nKV = numKvHeads(cfg);
  const d = headSize(cfg);
  const I = cfg.intermediate_size ?? 4 * H;
  const layers = m.ppLayers(cfg.num_hidden_layers);
  const moeCfg = cfg.moe as { num_experts?: number; top_k?: number } | undefined;
  const moe = moeCfg?.num_experts ? { num_experts: moeCfg.num_experts, top_k: moeCfg.top_k ?? 2, local_experts: m.epExperts(moeCfg.num_experts) } : null;
  const qa = configQuant(cfg).quant_algo;
  const weightOnly = qa === "W8A16" || qa === "W4A16" ? { algo: qa, bits: qa === "W8A16" ? 8 : 4 } as const : null;
  const parallelEmb = cfg.use_parallel_embedding && tp > 1;
  const embDim0 = parallelEmb && cfg.embedding_sharding_dim === 0;
  const embRows = embDim0 ? Math.ceil(V / tp) : V;
  return {
    architecture: cfg.architecture,
    dtype: cfg.dtype,
    vocab_size: V,
    lm_head_rows: padVocab(V, tp) / tp,
    embedding_rows: embRows,
    embedding_vocab_start: embDim0 ? m.tpRank * embRows : 0,
    embedding_hidden_split: parallelEmb && cfg.embedding_sharding_dim === 1,
    hidden_size: H,
    layers,
    num_heads: nH / tp,
    num_kv_heads: kvHeadsPerRank(nKV, tp),
    head_size: d,
    qkv_rows: (nH / tp + 2 * kvHeadsPerRank(nKV, tp)) * d,
    intermediate_size: moe ? I / m.moeTpSize : I / tp,
    act: st.act,
    norm_eps: cfg.norm_epsilon,
    embed_scale: st.embedScale,
    attn_scale: st.attnScale,
    attn_softcap: st.attnSoftcap,
    final_softcap: st.finalSoftcap,
    windows: layers.map((l) => st.window(l)),
    sandwich_norms: st.sandwich,
    qk_norm: st.qkNorm,
    rotary_dim: st.rotaryDim,
    bias: {
      qkv: has("transformer.layers.0.attention.qkv.bias"),
      dense: has("transformer.layers.0.attention.dense.bias"),
      mlp: has("transformer.layers.0.mlp.proj.bias") || has("transformer.layers.0.mlp.fc.bias"),
    },
    moe,
    first_pp_rank: m.isFirstPpRank(),
    last_pp_rank: m.isLastPpRank(),
    weight_only: weightOnly,
  };
}

/** Token-count buckets tuned for each GEMM: powers of two up to (and including one ≥) maxTokens. */
export function tokenBuckets(maxTokens: number): number[] {
  const out: number[] = [];
  for (let m = 1; ; m *= 2) {
    out.push(m);
    if (m >= maxTokens || m >= 16384) break;
  }
  return out;
}

/** The tactic index for `m` tokens at a site: the smallest bucket ≥ m, else the largest. */
export function tacticFor(site: PlanGemmSite, m: number): number {
  for (const [bm, t] of site.buckets) if (bm >= m) return t;
  return site.buckets.length ? site.buckets[site.buckets.length - 1]![1] : -1;
}
