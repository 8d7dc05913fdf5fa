/**
 * How the GPU runner lays a batch out for one forward: checking the batch, splitting prompts into
 * prefill chunks of at most maxNumTokens tokens, the byte layouts of the prefill and decode inputs
 * in the pinned input block, and writing them there (token ids, positions, KV cache slots and
 * block table rows, prefill attention tiles, sampling rows). The program that reads them is
 * emitted by emit.ts; the blocks themselves come from kv-cache.ts.
 */
import { TrtbError } from "../../errors.ts";
import { SAMPLE_PARAMS_BYTES } from "../../ffi/engine.ts";
import { slotOf } from "./kv-cache.ts";
import { type SampleRow, writeSampleRow } from "./sampling.ts";
import type { RunnerState } from "./state.ts";

import { type DecodeLayout, decodeLayout, prefillLayout } from "./buffers.ts";

export { align, type DecodeLayout, decodeLayout, F32, I32, maxTiles, PREFILL_TILE, type PrefillLayout, prefillLayout } from "./buffers.ts";

export interface SeqPiece {
  /** index of the sequence in the caller's batch */
  seq: number;
  /** first position of this piece and its token count */
  pos0: number;
  n: number;
  /** the piece ends the prompt: its last token's logits are wanted */
  last: boolean;
}

/** `n` i32 of the pinned input block at byte `off`. */
export function hi32(s: RunnerState, off: number, n: number): Int32Array {
  return new Int32Array(s.hin.u8.buffer, s.hin.u8.byteOffset + off, n);
}

// ---- batches ------------------------------------------------------------------------------------

/** Check a batch against the runner's limits and the vocabulary (`extra`: tokens to be generated). */
export function checkBatch(s: RunnerState, batch: number[][], extra = 0): void {
  if (batch.length === 0) throw new TrtbError("RUN_BAD_INPUT", "empty batch");
  if (batch.length > s.maxBatchSize) throw new TrtbError("RUN_BAD_INPUT", `batch of ${batch.length} sequences exceeds the runner's max batch size ${s.maxBatchSize}`);
  const V = s.desc.vocab_size;
  batch.forEach((row, b) => {
    if (row.length === 0) throw new TrtbError("RUN_BAD_INPUT", `sequence ${b} is empty`);
    if (row.length + extra > s.maxSeqLen)
      throw new TrtbError("RUN_BAD_INPUT", `sequence ${b}: ${row.length} tokens${extra ? ` + ${extra} new` : ""} exceed the engine's max_seq_len ${s.maxSeqLen}`);
    row.forEach((id, i) => {
      if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new TrtbError("RUN_BAD_INPUT", `sequence ${b}: token id ${id} at position ${i} is outside the vocabulary [0, ${V})`);
    });
  });
}

/** Split prompts into prefill chunks of at most maxNumTokens tokens (long prompts span chunks). */
export function chunks(s: RunnerState, lens: number[]): SeqPiece[][] {
  const out: SeqPiece[][] = [];
  let cur: SeqPiece[] = [];
  let used = 0;
  const cap = s.maxNumTokens;
  lens.forEach((len, seq) => {
    let p = 0;
    while (p < len) {
      if (used === cap || cur.length === s.maxBatchSize) {
        out.push(cur);
        cur = [];
        used = 0;
      }
      const n = Math.min(len - p, cap - used);
      cur.push({ seq, pos0: p, n, last: p + n === len });
      used += n;
      p += n;
    }
  });
  if (cur.length) out.push(cur);
  return out;
}

// ---- writing the inputs -------------------------------------------------------------------------

/** Write the prefill inputs of `pieces` into the pinned block; returns the layout and counts. */
export function writePrefill(s: RunnerState, pieces: SeqPiece[], tokens: readonly (readonly number[])[], tables: readonly (readonly number[])[], params: SampleRow[] | null) {
  const T = pieces.reduce((a, p) => a + p.n, 0);
  const tiles: [number, number][] = [];
  pieces.forEach((sp, i) => {
    for (let q0 = 0; q0 < sp.n; q0 += s.bq) tiles.push([i, q0]);
  });
  const lay = prefillLayout(s, T, pieces.length, tiles.length);
  const ids = hi32(s, lay.ids, T), pos = hi32(s, lay.pos, T), slot = hi32(s, lay.slot, T);
  const cuQ = hi32(s, lay.cuQ, pieces.length + 1), pos0 = hi32(s, lay.pos0, pieces.length);
  const lastIdx = hi32(s, lay.lastIdx, pieces.length), tl = hi32(s, lay.tiles, 2 * tiles.length);
  const table = hi32(s, lay.table, pieces.length * s.maxBlocksPerSeq);
  const ropeSel = hi32(s, lay.ropeSel, T);
  // LongRoPE: a prompt longer than original_max_positions uses the long table for all its tokens
  const lrMax = s.desc.long_rope?.original_max_positions ?? Infinity;
  let t = 0;
  let nLast = 0;
  pieces.forEach((sp, i) => {
    const sel = tokens[sp.seq]!.length > lrMax ? 1 : 0;
    cuQ[i] = t;
    pos0[i] = sp.pos0;
    const tb = tables[sp.seq]!;
    table.fill(0, i * s.maxBlocksPerSeq, (i + 1) * s.maxBlocksPerSeq);
    table.set(tb, i * s.maxBlocksPerSeq);
    for (let j = 0; j < sp.n; j++) {
      const p = sp.pos0 + j;
      ids[t] = tokens[sp.seq]![p]!;
      pos[t] = p;
      slot[t] = slotOf(tb, p, s.tokensPerBlock);
      ropeSel[t] = sel;
      t++;
    }
    if (sp.last) lastIdx[nLast++] = t - 1;
  });
  cuQ[pieces.length] = t;
  tiles.forEach(([i, q0], j) => {
    tl[2 * j] = i;
    tl[2 * j + 1] = q0;
  });
  if (params) {
    let r = 0;
    pieces.forEach((sp) => {
      if (sp.last) writeSampleRow(s.hin.dv, lay.params + r * SAMPLE_PARAMS_BYTES, params[sp.seq]!, 0);
      if (sp.last) r++;
    });
  }
  return { lay, T, nTiles: tiles.length, nLast };
}

/** One row of a decode step: feed `token` at position `pos` of the sequence whose KV blocks are `table`. */
export interface DecodeRowInput {
  token: number;
  pos: number;
  table: readonly number[];
  params: SampleRow;
  /** index of the token this row draws (its sampler's step: 0 was the prefill's token) */
  step: number;
}

/**
 * Write the inputs of one decode step over `rows` (any mix of sequences, each at its own position)
 * into the pinned block. The layout depends only on the row count, so a graph captured for B rows
 * replays for any B rows. Returns the layout.
 */
export function writeDecodeRows(s: RunnerState, rows: readonly DecodeRowInput[]): DecodeLayout {
  const B = rows.length;
  const lay = decodeLayout(s, B);
  const ids = hi32(s, lay.ids, B), pos = hi32(s, lay.pos, B), slot = hi32(s, lay.slot, B), ctxLen = hi32(s, lay.ctxLen, B);
  const table = hi32(s, lay.table, B * s.maxBlocksPerSeq);
  const ropeSel = hi32(s, lay.ropeSel, B);
  const lrMax = s.desc.long_rope?.original_max_positions ?? Infinity;
  for (let b = 0; b < B; b++) {
    const r = rows[b]!;
    ids[b] = r.token;
    pos[b] = r.pos;
    ropeSel[b] = r.pos + 1 > lrMax ? 1 : 0;
    ctxLen[b] = r.pos + 1;
    slot[b] = slotOf(r.table, r.pos, s.tokensPerBlock);
    table.fill(0, b * s.maxBlocksPerSeq, (b + 1) * s.maxBlocksPerSeq);
    table.set(r.table, b * s.maxBlocksPerSeq);
    writeSampleRow(s.hin.dv, lay.params + b * SAMPLE_PARAMS_BYTES, r.params, r.step);
  }
  return lay;
}

/**
 * Write the inputs of decode step `step` (≥ 1) for the B = seqs.length live sequences into the
 * pinned block: row b feeds the token at position promptLens[b] + step - 1 (its last one for a
 * finished row, which recomputes harmlessly), against its block table row. Returns the layout.
 */
export function writeDecode(s: RunnerState, promptLens: number[], seqs: number[][], tables: number[][], params: SampleRow[], step: number): DecodeLayout {
  return writeDecodeRows(s, seqs.map((row, b) => {
    const p = promptLens[b]! + step - 1;
    return { token: row[Math.min(p, row.length - 1)]!, pos: p, table: tables[b]!, params: params[b]!, step };
  }));
}
