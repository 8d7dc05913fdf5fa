/**
 * Tensor-parallel split rules shared by the families (spec §2.3, §2.5, §2.6).
 *
 *   Column layers (qkv, fc, gate, lm_head): split dim 0 of [out, in]; biases split alike.
 *   Row layers (dense, proj): split dim 1; biases replicated (added once after the all-reduce).
 *   QKV: per rank [q_r; k_r; v_r]; with nKV < tp each KV head is repeated tp/nKV times first.
 */
import { TrtbError } from "../../errors.ts";
import type { Mapping } from "../../mapping.ts";
import { chunk, concat, gatherRows, type LazyTensor, padRows, reshape } from "../../tensor/lazy.ts";

/** KV heads per rank: ceil(nKV / tp) (the Attention layer uses the same ceil). */
export function kvHeadsPerRank(nKV: number, tp: number): number {
  return Math.ceil(nKV / tp);
}

/** Fail early on head counts that cannot be split over `tp` ranks. */
export function checkHeadSplit(nH: number, nKV: number, tp: number): void {
  if (nH % tp !== 0)
    throw new TrtbError("CONV_TP", `num_attention_heads (${nH}) is not divisible by tp_size (${tp})`);
  if (nKV >= tp ? nKV % tp !== 0 : tp % nKV !== 0)
    throw new TrtbError("CONV_TP", `num_key_value_heads (${nKV}) and tp_size (${tp}) do not divide one another`);
}

/** Repeat each of the `nKV` heads (rows of `d`) tp/nKV times when nKV < tp (upstream `dup_kv_weight`). */
export function dupKvHeads(t: LazyTensor, nKV: number, d: number, tp: number): LazyTensor {
  if (nKV >= tp) return t;
  const reps = tp / nKV;
  const rows: number[] = [];
  for (let h = 0; h < nKV; h++) for (let r = 0; r < reps; r++) for (let j = 0; j < d; j++) rows.push(h * d + j);
  if (t.shape.length > 1) return gatherRows(t, rows);
  // A 1-D bias: treat it as [rows, 1], gather, flatten back.
  return reshape(gatherRows(reshape(t, [t.shape[0]!, 1]), rows), [rows.length]);
}

/** Per-rank fused QKV rows: [q_r; k_r; v_r] (weights [rows, H] or biases [rows]). */
export function fuseQkvForRank(q: LazyTensor, k: LazyTensor, v: LazyTensor, nKV: number, d: number, m: Mapping, name: string): LazyTensor {
  const tp = m.tpSize;
  const r = m.tpRank;
  const kd = dupKvHeads(k, nKV, d, tp);
  const vd = dupKvHeads(v, nKV, d, tp);
  return concat([chunk(q, 0, tp, r), chunk(kd, 0, tp, r), chunk(vd, 0, tp, r)], 0, name);
}

export function columnSplit(t: LazyTensor, m: Mapping, name = t.name): LazyTensor {
  return chunk(t, 0, m.tpSize, m.tpRank, name);
}

export function rowSplit(t: LazyTensor, m: Mapping, name = t.name): LazyTensor {
  return chunk(t, t.shape.length - 1, m.tpSize, m.tpRank, name);
}

export function padVocab(vocab: number, tp: number): number {
  return Math.ceil(vocab / tp) * tp;
}

/** lm_head: zero rows up to a multiple of tp, then this rank's chunk of dim 0. */
export function lmHeadForRank(t: LazyTensor, m: Mapping, name = "lm_head.weight"): LazyTensor {
  const vpad = padVocab(t.shape[0]!, m.tpSize);
  return chunk(padRows(t, vpad), 0, m.tpSize, m.tpRank, name);
}

/** Embedding table for this rank: full, or sharded when use_parallel_embedding is on. */
export function embeddingForRank(t: LazyTensor, m: Mapping, parallel: boolean, shardingDim: number, name = "transformer.vocab_embedding.weight"): LazyTensor {
  if (!parallel || m.tpSize === 1) return chunk(t, 0, 1, 0, name);
  if (shardingDim === 0 && t.shape[0]! % m.tpSize !== 0)
    throw new TrtbError("CONV_TP", `use_parallel_embedding on dim 0 needs vocab_size (${t.shape[0]}) divisible by tp_size (${m.tpSize})`);
  return chunk(t, shardingDim, m.tpSize, m.tpRank, name);
}
