/**
 * Where a GPU runner's time goes: one decode step or one prefill chunk split into its ops, each
 * timed on the GPU with events (after a warm-up run), totalled per op kind (and per GEMM site for
 * decode). Used by bench/engine.ts through GpuModelRunner.profileDecode / profilePrefill.
 */
import { TrtbError } from "../../errors.ts";
import { decodeProgram, emitHead, prefillProgram } from "./emit.ts";
import { GREEDY } from "./sampling.ts";
import { chunks, type SeqPiece, writeDecode, writePrefill } from "./schedule.ts";
import type { RunnerState } from "./state.ts";

export type OpTimes = Record<string, { count: number; ms: number }>;

/** Decode step 1 of `batch` (checked: room for 2 new tokens), op by op. */
export function profileDecode(s: RunnerState, batch: number[][]): { total: number; byOp: OpTimes; gemm: Record<string, number> } {
  const B = batch.length;
  const tables = batch.map((r) => s.alloc.allocate(r.length + 2));
  try {
    const params = batch.map(() => GREEDY);
    for (const pieces of chunks(s, batch.map((r) => r.length))) {
      const { lay, T, nTiles } = writePrefill(s, pieces, batch, tables, params);
      s.ctx.exec(prefillProgram(s, lay, T, nTiles));
    }
    const seqs = batch.map((r) => [...r, r[r.length - 1]!]);
    // inputs of step 1, as a generation's decode step writes them
    const lay = writeDecode(s, batch.map((r) => r.length), seqs, tables, params, 1);
    const ops = decodeProgram(s, B, lay).split();
    for (const op of ops) s.ctx.exec(op); // warm-up
    const byOp: OpTimes = {};
    const gemm: Record<string, number> = {};
    let total = 0;
    const sites = ["qkv", "dense", "gate_up", "down", "lm_head"];
    let gi = 0;
    for (const op of ops) {
      const name = op.ops[0]!;
      let best = Infinity;
      for (let r = 0; r < 3; r++) {
        s.ctx.timerStart();
        s.ctx.exec(op);
        best = Math.min(best, s.ctx.timerStop());
      }
      const e = (byOp[name] ??= { count: 0, ms: 0 });
      e.count++;
      e.ms += best;
      total += best;
      if (name === "GEMM" || name === "GEMM_WO") {
        // emitted per layer in the order qkv, dense, gate_up, down; lm_head last (16-bit or weight-only)
        const site = gi >= s.desc.layers.length * 4 ? "lm_head" : sites[gi % 4]!;
        gemm[site] = (gemm[site] ?? 0) + best;
        gi++;
      }
    }
    return { total, byOp, gemm };
  } finally {
    for (const t of tables) s.alloc.release(t);
  }
}

/** A prefill of `prompt` (checked) in one chunk, op by op. */
export function profilePrefill(s: RunnerState, prompt: number[]): { total: number; byOp: OpTimes } {
  if (prompt.length > s.maxNumTokens) throw new TrtbError("RUN_BAD_INPUT", `profilePrefill takes at most ${s.maxNumTokens} tokens`);
  const tables = [s.alloc.allocate(prompt.length)];
  try {
    const pieces: SeqPiece[] = [{ seq: 0, pos0: 0, n: prompt.length, last: true }];
    const { lay, T, nTiles } = writePrefill(s, pieces, [prompt], tables, [GREEDY]);
    const p = prefillProgram(s, lay, T, nTiles);
    emitHead(s, p, 1, s.din.at(lay.lastIdx), s.din.at(lay.params));
    const ops = p.split();
    for (const op of ops) s.ctx.exec(op); // warm-up
    const byOp: OpTimes = {};
    let total = 0;
    for (const op of ops) {
      s.ctx.timerStart();
      s.ctx.exec(op);
      const ms = s.ctx.timerStop();
      const e = (byOp[op.ops[0]!] ??= { count: 0, ms: 0 });
      e.count++;
      e.ms += ms;
      total += ms;
    }
    return { total, byOp };
  } finally {
    for (const t of tables) s.alloc.release(t);
  }
}
