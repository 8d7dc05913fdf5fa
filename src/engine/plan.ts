/**
 * The engine plan: everything the runtime needs besides the weights, stored as JSON inside each
 * `rank{N}.engine` (see engine-file.ts). It is backend-neutral where it can be (the model
 * description and limits) and backend-specific where it must be (`gemm`: which kernel or cuBLASLt
 * algorithm serves each GEMM shape and token-count bucket, and the device it was tuned on).
 * The builder writes it (src/builder/describe.ts, tactics.ts); the GPU runtime reads it.
 */
export const ENGINE_FORMAT = "trtb-engine";
/**
 * 1: 16-bit weights only; 2: adds weight-only (W8A16/W4A16) tensors (`model.weight_only`);
 * 3: adds LongRoPE (`model.long_rope`; `rope.inv_freq` then holds the short and the long table),
 *    FP8 (`model.fp8`, F8_E4M3 tensors) and the quantized KV cache (`model.kv_cache`).
 * 4: adds W4A16_AWQ (`model.weight_only.group_size`, `<name>.gscale` / `<name>.pre` tensors).
 * 5: adds per-token activation quantization (`model.rowwise`: FP8_PER_CHANNEL_PER_TOKEN and the
 *    SmoothQuant per-token plugin variants; `<name>.row_scale` / `<name>.sq_div` tensors).
 */
export const ENGINE_FORMAT_VERSION = 5;

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
   * version-1 plans. W4A16_AWQ (`group_size` 64 / 128; version 4): `<name>` (the checkpoint's int4
   * values, tiled) with `<name>.gscale` (group scales, model dtype [ceil(out/16), in/group, 16]) and
   * `<name>.pre` (F32 [in], prequant_scaling_factor: multiplies the linear's input).
   */
  weight_only?: { algo: "W8A16" | "W4A16" | "W4A16_AWQ"; bits: 8 | 4; group_size?: number } | null;
  /**
   * LongRoPE (Phi-3 128k, Phi-3.5, Phi-4-mini): `rope.inv_freq` is [2, rotary_dim / 2] (short, long
   * factors); a token uses the long row when its sequence's forward reaches past
   * `original_max_positions` (prefill: the prompt's length; decode: position + 1), and cos/sin are
   * multiplied by `mscale`. Absent before version 3.
   */
  long_rope?: { original_max_positions: number; mscale: number } | null;
  /**
   * FP8 per tensor (quant_algo FP8): each listed engine linear (`layers.{i}.qkv` …) is stored as
   * F8_E4M3 [out, in] (the checkpoint's bytes) and multiplied on FP8 tensor cores: its input is
   * quantized as e4m3(x / a) and the product scaled by a · w. `w` has one weight scale, or two for
   * `gate_up` (its [up; gate] halves keep their checkpoint scales: two GEMMs). Absent before version 3.
   * W4A8_AWQ engines use it too (version 4): the int4 weights expanded at build to the e4m3 values
   * e4m3(q · f16(s / weights_scaling_factor_2)), `w` = weights_scaling_factor_2, the prequant scale
   * applied where the input is made (norm weights; `<name>.pre` for dense / down).
   */
  fp8?: { linears: Record<string, { a: number; w: number[] }> } | null;
  /**
   * SmoothQuant W8A8 (quant_algo W8A8_SQ_PER_CHANNEL): each listed engine linear is stored as I8
   * [out, in] (the checkpoint's bytes) with `<name>.sq_scale` F32 [out] (weights_scaling_factor)
   * and, when the checkpoint smooths, `<name>.sq_pre` F32 [in] (prequant_scaling_factor); its input
   * is quantized as clamp(RNE(x · pre / a)) and the int32 product scaled by a · sq_scale[n].
   */
  sq?: { linears: Record<string, { a: number }> } | null;
  /**
   * Per-token (dynamic) activation quantization (version 5): FP8_PER_CHANNEL_PER_TOKEN (`algo` FP8)
   * and the legacy SmoothQuant per-token plugin variants (`algo` INT8). Each listed engine linear
   * is stored as F8_E4M3 / I8 [out, in] (the checkpoint's bytes) with `<name>.row_scale` F32 [out]
   * (per_channel_scale; the per-tensor variant repeats its one value) and, for SmoothQuant's dense /
   * down, `<name>.sq_div` F32 [in] (the smoother, which divides the input). The input is quantized
   * per token (TRTB_OP_ACT_ROWQ: FP8 clamps to `clamp` and scales max|x| to 448, INT8 scales it to
   * 127) and the product is scaled by the token's scale · row_scale[n].
   */
  rowwise?: { algo: "FP8" | "INT8"; clamp: [number, number] | null; linears: string[] } | null;
  /**
   * dtype of the logits the lm_head GEMM writes and soft-cap / sampling read on the device
   * (`--logits_dtype`); absent (plans written before it was recorded): float32. The runtime's
   * host API widens float16 logits to Float32Array.
   */
  logits_dtype?: "float32" | "float16";
  /**
   * Quantized KV cache (checkpoint kv_cache_quant_algo INT8 / FP8): the paged cache holds 1-byte
   * elements, k and v quantized after RoPE with the layer's `scales[local layer]` (the checkpoint's
   * `transformer.layers.N.attention.kv_cache_scaling_factor`, f32), INT8 clamp(RNE(x/s), ±127/−128),
   * FP8 e4m3(clamp(x/s, ±448)), read back as q·s. The runtime passes the scale to the QKV_ROPE and
   * attention ops (`kv_scale`). Absent or null (version ≤ 2 plans): a 16-bit cache.
   */
  kv_cache?: { algo: "INT8" | "FP8"; scales: number[] } | null;
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
  /** F8_E4M3: an FP8 site (`<name>.fp8`) */
  ab: "F16" | "BF16" | "F8_E4M3";
  y: "F32" | "F16" | "BF16";
  /** 8 / 4: a weight-only site (absent: 16-bit weights) */
  wbits?: 8 | 4;
  /** AWQ: group size of the site's group-wise scales (absent: per channel) */
  wgroup?: number;
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
  dtype: "F32" | "F16" | "BF16" | "I8" | "F8_E4M3";
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

/** The tactic index for `m` tokens at a site: the smallest bucket ≥ m, else the largest. */
export function tacticFor(site: PlanGemmSite, m: number): number {
  for (const [bm, t] of site.buckets) if (bm >= m) return t;
  return site.buckets.length ? site.buckets[site.buckets.length - 1]![1] : -1;
}

/** The logits dtype of a plan's model (plans without the field: float32). */
export const logitsDtypeOf = (d: EngineModelDesc): "float32" | "float16" => d.logits_dtype ?? "float32";

/** The plan site of a weight-only GEMM (its 16-bit twin keeps the plain name). */
export const woSite = (name: string) => `${name}.wo`;

/** The plan site of an FP8 GEMM. */
export const fp8Site = (name: string) => `${name}.fp8`;
