/**
 * Table-driven conversion of a Hugging Face-named source into one rank of a TRT-LLM checkpoint.
 *
 * A family describes its tensors as `NameRow`s (gguf-py tensor_mapping style): the TRT-LLM name
 * (`{i}` = local layer index), the source name(s) (`{L}` = global layer index), how the tensor is
 * split over TP, and an optional element-wise transform. The driver walks the rows for this rank's
 * pipeline stage and returns lazy tensors; nothing is read until they are written.
 */
import { headSize, numKvHeads, type PretrainedConfig } from "../../format/checkpoint-config.ts";
import { type DType, modelDTypeToST } from "../../dtype.ts";
import { TrtbError } from "../../errors.ts";
import type { Mapping } from "../../mapping.ts";
import type { QuantBackend } from "../../quant/backend.ts";
import { quantizeRankWeights } from "../../quant/apply.ts";
import type { CalibPlan } from "../../quant/calib-plan.ts";
import type { TensorSource } from "../../tensor.ts";
import { cast, chunk, concat, type LazyTensor, lazy, mapF32, renamed, reshape, slice } from "../../tensor/lazy.ts";
import { columnSplit, embeddingForRank, fuseQkvForRank, lmHeadForRank, rowSplit } from "./split.ts";

export type SplitRule =
  | "replicate" // full copy on every rank (norms, row-layer biases)
  | "column" // dim 0 chunk (ColumnLinear weight/bias)
  | "row" // last-dim chunk (RowLinear weight)
  | "qkv" // src = [q, k, v]: per-rank [q_r; k_r; v_r] with KV-head duplication
  | "fused_halves" // src = [a, b] (or one tensor of [a; b]): per-rank [a_r; b_r] (Phi-3 gate_up, MoE fc)
  | "embedding" // vocab_embedding: replicated, or sharded with use_parallel_embedding
  | "lm_head" // padded to a multiple of tp, then column split
  | "moe_fc" // src = [up, gate] per expert ({E}): [E_local, 2·I/moe_tp, H] stacking [up_r; gate_r]
  | "moe_proj"; // src = down per expert ({E}): [E_local, H, I/moe_tp]

export type ElementwiseTransform = "plus_one";

export interface NameRow {
  /** TRT-LLM name; `{i}` is the local layer index. */
  trt: string;
  /** Source name(s); `{L}` is the global layer index. A single source for `fused_halves` is split in two. */
  src: string | readonly string[];
  split: SplitRule;
  /** Element-wise transform computed in f32 before casting (Gemma norms: w + 1). */
  transform?: ElementwiseTransform;
  /** Output dtype when not the model dtype (MoE router: F32). */
  dtype?: DType;
  /** Rows the family only emits under a condition (biases, q/k norms). */
  when?: (cfg: PretrainedConfig) => boolean;
  /** fused_halves from one source stored as [b; a] (Phi-3 gate_up = [gate; up]) → write [a; b]. */
  swapHalves?: boolean;
  /** Which variants need this row (documentation, gguf-py style). */
  note?: string;
}

export interface ConvertContext {
  cfg: PretrainedConfig;
  mapping: Mapping;
  src: TensorSource;
  /** Where the source lives, for error messages. */
  srcLabel: string;
  /** Where quantized configs run their kernel (default: the CPU library, or the TS fallback). */
  quantBackend?: QuantBackend;
  /** Calibration statistics for calibrated formats (src/calib/). */
  calibration?: CalibPlan;
}

function fill(template: string, L: number, i: number, E = 0): string {
  return template.replaceAll("{L}", String(L)).replaceAll("{i}", String(i)).replaceAll("{E}", String(E));
}

/** Source dtypes the converter casts from (what trtb_cast converts among). */
const FLOAT_SOURCE_DTYPES: readonly DType[] = ["F32", "F16", "BF16"];

/** The file a source tensor lives in, when the source can say (HF shards), else the source's label. */
function fileOfSource(ctx: ConvertContext, name: string): string {
  const f = (ctx.src as { fileOf?: (n: string) => { path: string } }).fileOf;
  try {
    return f ? f.call(ctx.src, name).path : ctx.srcLabel;
  } catch {
    return ctx.srcLabel;
  }
}

export function getSource(ctx: ConvertContext, name: string, needFor: string): LazyTensor {
  if (!ctx.src.has(name))
    throw new TrtbError("CONV_MISSING_SOURCE", `${ctx.srcLabel}: tensor ${name} not found (needed for ${needFor})`, { tensor: name });
  const t = ctx.src.get(name);
  if (!FLOAT_SOURCE_DTYPES.includes(t.dtype)) {
    const file = fileOfSource(ctx, name);
    throw new TrtbError("CONV_DTYPE", `${file}: tensor ${name} is ${t.dtype}; a weight must be F32, F16 or BF16 (needed for ${needFor})`, { file, tensor: name });
  }
  return lazy(t);
}

/**
 * Source tensors of decoder layers the config does not have (`model.layers.3.*` with
 * num_hidden_layers 3) mean config and weights disagree: refused (CFG_INVALID, naming the first),
 * never dropped silently.
 */
export function checkLayerCount(ctx: ConvertContext): void {
  const L = ctx.cfg.num_hidden_layers;
  let extra: string | undefined;
  let count = 0;
  for (const n of ctx.src.names()) {
    const m = /(?:^|\.)layers\.(\d+)\./.exec(n);
    if (m && Number(m[1]) >= L) {
      extra ??= n;
      count++;
    }
  }
  if (extra)
    throw new TrtbError("CFG_INVALID", `${ctx.srcLabel}: ${count} tensor(s) of layers beyond num_hidden_layers ${L} (first: ${extra}); the config and the weights disagree`, { file: ctx.srcLabel, tensor: extra });
}

/** Build one row's lazy tensor for this rank. */
export function convertRow(ctx: ConvertContext, row: NameRow, L: number, i: number): LazyTensor {
  const { cfg, mapping: m } = ctx;
  const name = fill(row.trt, L, i);
  const templates = typeof row.src === "string" ? [row.src] : row.src;
  const outType = row.dtype ?? modelDTypeToST(cfg.dtype);
  const prep = (t: LazyTensor) => (row.transform === "plus_one" ? mapF32(t, plusOne, outType) : cast(t, outType));
  if (row.split === "moe_fc" || row.split === "moe_proj") return convertMoeRow(ctx, row, templates, L, name, prep);
  const srcs = templates.map((s) => getSource(ctx, fill(s, L, i), name));
  const one = () => {
    if (srcs.length !== 1) throw new TrtbError("CONV_TABLE", `${name}: rule ${row.split} takes one source tensor`);
    return prep(srcs[0]!);
  };
  switch (row.split) {
    case "replicate":
      return renamed(one(), name);
    case "column":
      return columnSplit(one(), m, name);
    case "row":
      return rowSplit(one(), m, name);
    case "embedding":
      return embeddingForRank(one(), m, cfg.use_parallel_embedding, cfg.embedding_sharding_dim, name);
    case "lm_head":
      return lmHeadForRank(one(), m, name);
    case "qkv": {
      const parts = srcs.map(prep);
      let [q, k, v] = parts;
      if (parts.length === 1) [q, k, v] = splitFusedQkv(parts[0]!, cfg, name);
      if (!q || !k || !v) throw new TrtbError("CONV_TABLE", `${name}: qkv takes one fused or three source tensors`);
      return fuseQkvForRank(q, k, v, numKvHeads(cfg), headSize(cfg), m, name);
    }
    case "fused_halves": {
      let parts = srcs.map(prep);
      if (parts.length === 1) parts = [chunk(parts[0]!, 0, 2, 0), chunk(parts[0]!, 0, 2, 1)];
      if (row.swapHalves) parts.reverse();
      return concat(parts.map((p) => columnSplit(p, m)), 0, name);
    }
  }
  throw new TrtbError("CONV_TABLE", `${name}: unknown split rule ${row.split}`);
}

/** Mixture-of-experts rows: this rank's experts (EP), each split over moe_tp, stacked on a new dim 0. */
function convertMoeRow(ctx: ConvertContext, row: NameRow, templates: readonly string[], L: number, name: string, prep: (t: LazyTensor) => LazyTensor): LazyTensor {
  const { cfg, mapping: m } = ctx;
  const moe = cfg.moe as { num_experts?: number } | undefined;
  const E = moe?.num_experts ?? 0;
  if (E <= 0) throw new TrtbError("CONV_TABLE", `${name}: MoE row in a config without moe.num_experts`);
  const experts = m.epExperts(E).map((e) => {
    const src = templates.map((t) => prep(getSource(ctx, fill(t, L, 0, e), name)));
    let t: LazyTensor;
    if (row.split === "moe_fc") {
      t = concat(src.map((s) => chunk(s, 0, m.moeTpSize, m.moeTpRank)), 0, name);
    } else {
      t = chunk(src[0]!, 1, m.moeTpSize, m.moeTpRank);
    }
    return reshape(t, [1, ...t.shape], name);
  });
  return concat(experts, 0, name);
}

/** A fused [q; k; v] source (Phi-3 qkv_proj) → three tensors by head counts. */
export function splitFusedQkv(t: LazyTensor, cfg: PretrainedConfig, name: string): [LazyTensor, LazyTensor, LazyTensor] {
  const d = headSize(cfg);
  const qRows = cfg.num_attention_heads * d;
  const kvRows = numKvHeads(cfg) * d;
  if (t.shape[0] !== qRows + 2 * kvRows)
    throw new TrtbError("CONV_SHAPE", `${name}: fused qkv has ${t.shape[0]} rows, expected ${qRows + 2 * kvRows}`, { tensor: name });
  return [slice(t, 0, 0, qRows), slice(t, 0, qRows, kvRows), slice(t, 0, qRows + kvRows, kvRows)];
}

function plusOne(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let j = 0; j < x.length; j++) out[j] = x[j]! + 1;
  return out;
}

export interface FamilyTable {
  /** Rows emitted once on the first pipeline stage (embedding). */
  first: readonly NameRow[];
  /** Rows emitted for each local layer. */
  layer: readonly NameRow[];
  /** Rows emitted once on the last pipeline stage (final norm, lm_head). */
  last: readonly NameRow[];
}

/** Convert every row of `table` for `ctx.mapping`'s rank. */
export function convertRank(ctx: ConvertContext, table: FamilyTable): Map<string, LazyTensor> {
  const { cfg, mapping: m } = ctx;
  checkLayerCount(ctx);
  const out = new Map<string, LazyTensor>();
  const emit = (row: NameRow, L: number, i: number) => {
    if (row.when && !row.when(cfg)) return;
    const t = convertRow(ctx, row, L, i);
    out.set(t.name, t);
  };
  if (m.isFirstPpRank()) for (const r of table.first) emit(r, 0, 0);
  m.ppLayers(cfg.num_hidden_layers).forEach((L, i) => {
    for (const r of table.layer) emit(r, L, i);
  });
  if (m.isLastPpRank()) for (const r of table.last) emit(r, 0, 0);
  // Quantized configs: the scheme replaces its linears with lazily quantized tensors.
  return quantizeRankWeights(out, cfg, m, ctx.quantBackend, ctx.calibration);
}
