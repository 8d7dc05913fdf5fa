/**
 * The GPU runtime of an engine (ModelRunner-style): upload the weight blob once, keep a paged KV
 * cache, and run forward passes as op programs on one stream.
 *
 *   forwardLogits(ids)            logits [S, V] per sequence (testing, `trtllm run --output_logits`)
 *   generate(batch, opts)         packed prefill of all prompts, then one decode step per token for
 *                                 the whole batch, replayed from a CUDA graph per batch size
 *
 * Step level, for in-flight batching (src/serve/): sequences live across calls and come and go
 * between steps.
 *   allocateKv(tokens) / releaseKv(table)   a sequence's KV blocks (its block table row)
 *   prefillStep(pieces)           one packed prefill pass over chunks of several sequences (each
 *                                 piece continues its sequence at pos0); samples the first token of
 *                                 pieces that end a prompt; logits of the last / all rows on request
 *   decodeRows(rows)              one decode step over any set of sequences, each at its own
 *                                 position, replayed from the CUDA graph of that row count
 *   launchDecodeRows(rows)        the same, returning at once with a wait function, so the host
 *                                 streams the previous tokens while the GPU runs the step
 *
 * Per layer (f32 residual stream; GEMMs read the model dtype and accumulate in f32):
 *   h = norm_in(res)                                           [fused into the previous add]
 *   qkv = h · Wqkv (+bias) → q/k norm, RoPE, k/v into the cache   (QKV_ROPE)
 *   ctx = attention(q, cache)                                   (prefill tiles or split-K decode)
 *   res += [post_norm](ctx · Wdense + bias); h = norm(res)       (ADD_NORM)
 *   y = act(h · Wgate_up) · Wdown  | MoE: route, per expert the same, weighted scatter-add
 *   res += [post_ff_norm](y + bias); h = next norm_in or ln_f (res)
 *   logits = h[last rows] · Wlm_head (f32; f16 with --logits_dtype float16), [soft-cap], sample
 *
 * numerics "exact" keeps every activation and the KV cache in f32 (see RunnerOptions.numerics).
 *
 * MoE layers need the routing on the host (tokens are grouped per expert for the GEMMs), so a
 * Mixtral forward runs in segments and its decode steps are not captured in a graph.
 *
 * By job: state.ts (what the runner holds on the device), weights.ts (the weight blob and its
 * tensors), emit.ts (the op programs of a forward), schedule.ts (batches, chunks and input
 * layouts), sampling.ts (sampling rows), profile.ts (per-op timing); this file is the public API.
 */
import { TrtbError } from "../../errors.ts";
import { type DevRef, type Dt, type EngineContext, type EngineDeviceInfo, type Graph, type KvDt, Program } from "../../ffi/engine.ts";
import { f16BitsToF32 } from "../../numeric.ts";
import { Engine } from "../../engine/engine.ts";
import type { EngineModelDesc, EnginePlan } from "../../engine/plan.ts";
import { decodeProgram, emitHead, prefillProgram } from "./emit.ts";
import { type OpTimes, profileDecode, profilePrefill } from "./profile.ts";
import { GREEDY, type SampleRow, type SamplingOptions, samplingRow } from "./sampling.ts";
import { checkBatch, chunks, type DecodeLayout, I32, type SeqPiece, writeDecode, writeDecodeRows, writePrefill } from "./schedule.ts";
import { type RunnerOptions, RunnerState } from "./state.ts";

export type { SamplingOptions } from "./sampling.ts";

export type { RunnerOptions };

export interface GenerateOptions {
  maxNewTokens: number;
  /** "greedy" (default) or sampling parameters. */
  sampling?: "greedy" | SamplingOptions;
  /** Stop a row after it produces this token (the token is kept). */
  endId?: number;
  /** Pad finished rows to a common length with this id (default: rows keep their own lengths). */
  padId?: number;
  /** Called after every step with the new token of each row (null for rows already finished). */
  onToken?: (step: number, tokens: (number | null)[]) => void;
}

export interface GenerateResult {
  /** Prompt followed by the generated tokens, per row. */
  outputIds: number[][];
  /** Generated tokens only, per row. */
  newTokens: number[][];
  /** Milliseconds (host clock, synchronized): prefill (incl. first token) and all decode steps. */
  prefillMs: number;
  decodeMs: number;
  decodeSteps: number;
}

/** A piece of a prefill pass (`prefillStep`): positions pos0 … pos0+n-1 of one sequence. */
export interface PrefillPiece {
  /** The sequence's token ids; [pos0, pos0 + n) are read. Positions before pos0 are in the KV cache already. */
  tokens: readonly number[];
  pos0: number;
  n: number;
  /** The sequence's KV blocks (`allocateKv`), with room for at least pos0 + n positions. */
  table: readonly number[];
  /** The piece ends the prompt: draw the sequence's first new token with these parameters. Absent: no token. */
  sample?: "greedy" | SamplingOptions;
  /** Return logits (f32, the soft-capped values the sampler sees): of the piece's last row [V], or of all its rows [n × V]. */
  logits?: "last" | "all";
}

/** A row of a decode step (`decodeRows`): feed `token` at position `pos`, draw the next token. */
export interface DecodeRow {
  /** The sequence's newest token (not yet in the KV cache). */
  token: number;
  /** Its position (the sequence's length before it). */
  pos: number;
  /** The sequence's KV blocks, with room for pos + 1 positions. */
  table: readonly number[];
  /** Default greedy. */
  sample?: "greedy" | SamplingOptions;
  /** Index of the token drawn among the sequence's new tokens (1 for the one after the prefill's): the sampler's random stream, as `generate` draws it. */
  step: number;
  /** Return this row's logits [V]. */
  logits?: boolean;
}

/** What a step returns, per piece or row in order: the token drawn (null: none) and the logits asked for (null: none). */
export interface StepOutput {
  tokens: (number | null)[];
  logits: (Float32Array | null)[];
}

/** f32 value of every f16 bit pattern (built on first use): widening f16 logits on the host. */
let F16_TO_F32: Float32Array | null = null;

/**
 * `n` logits at `at` on the device as f32: f32 logits as they are, f16 logits (`--logits_dtype
 * float16`) widened exactly. `n` counts elements, rows included.
 */
function downloadLogits(s: RunnerState, at: DevRef, n: number): Float32Array {
  const bytes = s.ctx.download(at, n * s.les);
  if (s.ldt === "F32") return new Float32Array(bytes.buffer, bytes.byteOffset, n);
  if (!F16_TO_F32) {
    F16_TO_F32 = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TO_F32[h] = f16BitsToF32(h);
  }
  const lut = F16_TO_F32;
  const h = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lut[h[i]!]!;
  return out;
}

export class GpuModelRunner implements Disposable {
  readonly desc: EngineModelDesc;
  readonly plan: EnginePlan;
  readonly maxBatchSize: number;
  readonly maxNumTokens: number;
  readonly maxSeqLen: number;
  readonly tokensPerBlock: number;
  readonly maxBlocksPerSeq: number;
  readonly kvTokens: number;
  readonly dt: Dt;
  /** KV cache element type (I8 / F8_E4M3 for a quantized cache: plan model.kv_cache) */
  readonly kvDtype: KvDt;
  readonly numerics: "fast" | "exact";
  /** dtype of the logits on the device: F16 for a `--logits_dtype float16` engine (fast numerics), else F32; the API returns f32 either way */
  readonly logitsDtype: Dt;
  readonly #s: RunnerState;
  /** captured decode steps, by batch size */
  readonly #graphs = new Map<number, Graph>();
  readonly #useGraphs: boolean;
  /** the wait of a decode step launched by launchDecodeRows and not yet waited for */
  #inflight: (() => StepOutput) | null = null;
  #destroyed = false;

  private constructor(engine: Engine, opts: RunnerOptions) {
    const s = (this.#s = new RunnerState(engine, opts));
    this.desc = s.desc;
    this.plan = s.plan;
    this.maxBatchSize = s.maxBatchSize;
    this.maxNumTokens = s.maxNumTokens;
    this.maxSeqLen = s.maxSeqLen;
    this.tokensPerBlock = s.tokensPerBlock;
    this.maxBlocksPerSeq = s.maxBlocksPerSeq;
    this.kvTokens = s.kvTokens;
    this.dt = s.dt;
    this.kvDtype = s.kvdt;
    this.numerics = s.numerics;
    this.logitsDtype = s.ldt;
    this.#useGraphs = (opts.cudaGraphs ?? true) && !s.desc.moe;
  }

  /** Load `rank{rank}.engine` of an engine directory onto the GPU. */
  static async fromDir(dir: string, opts: RunnerOptions & { rank?: number } = {}): Promise<GpuModelRunner> {
    const engine = await Engine.fromDir(dir, opts.rank ?? 0);
    return new GpuModelRunner(engine, opts);
  }

  /** Run an engine held in memory (built, not necessarily saved). */
  static fromEngine(engine: Engine, opts: RunnerOptions = {}): GpuModelRunner {
    return new GpuModelRunner(engine, opts);
  }

  get vocabSize(): number {
    return this.desc.vocab_size;
  }

  /** The context, for benchmarks (timers, reference rates). */
  get context(): EngineContext {
    return this.#s.ctx;
  }

  #check(batch: number[][], extra = 0): void {
    this.#guard();
    checkBatch(this.#s, batch, extra);
  }

  #guard(): void {
    if (this.#destroyed) throw new TrtbError("NATIVE_DESTROYED", "the runner is destroyed");
    this.#inflight?.(); // a launched decode step completes before anything else runs
  }

  /** Logits f32 [S × V] for each sequence (all positions), computed with a packed prefill (f16 logits engines: widened). */
  forwardLogits(ids: number[] | number[][]): Float32Array[] {
    const batch = (Array.isArray(ids[0]) ? ids : [ids]) as number[][];
    this.#check(batch);
    const s = this.#s;
    const V = this.desc.vocab_size;
    const Vr = this.desc.lm_head_rows;
    const tables = batch.map((r) => s.alloc.allocate(r.length));
    try {
      const out = batch.map((r) => new Float32Array(r.length * V));
      for (const pieces of chunks(s, batch.map((r) => r.length))) {
        const { lay, T, nTiles } = writePrefill(s, pieces, batch, tables, null);
        let p = prefillProgram(s, lay, T, nTiles);
        s.ctx.exec(p);
        // all rows through lm_head in groups of maxBatchSize rows
        const rowOf: [number, number][] = [];
        for (const sp of pieces) for (let j = 0; j < sp.n; j++) rowOf.push([sp.seq, sp.pos0 + j]);
        for (let r0 = 0; r0 < T; r0 += this.maxBatchSize) {
          const n = Math.min(this.maxBatchSize, T - r0);
          p = new Program();
          emitHead(s, p, n, s.b.iota!.add(r0 * I32), null);
          s.ctx.exec(p);
          const buf = downloadLogits(s, s.b.logits!, n * Vr);
          for (let i = 0; i < n; i++) {
            const [seq, pos] = rowOf[r0 + i]!;
            out[seq]!.set(buf.subarray(i * Vr, i * Vr + V), pos * V);
          }
        }
      }
      return out;
    } finally {
      for (const t of tables) s.alloc.release(t);
    }
  }

  /** Generate up to `maxNewTokens` tokens after each prompt (greedy unless `sampling` says otherwise). */
  generate(batch: number[][], opts: GenerateOptions): GenerateResult {
    const maxNew = opts.maxNewTokens;
    if (!(Number.isInteger(maxNew) && maxNew >= 0)) throw new TrtbError("RUN_BAD_INPUT", `maxNewTokens must be a non-negative integer, got ${maxNew}`);
    this.#check(batch, maxNew);
    const s = this.#s;
    const B = batch.length;
    const params = batch.map((_, i) => samplingRow(opts.sampling, i));
    const seqs = batch.map((r) => [...r]);
    const newTokens: number[][] = batch.map(() => []);
    const done = batch.map(() => false);
    if (maxNew === 0) return { outputIds: seqs, newTokens, prefillMs: 0, decodeMs: 0, decodeSteps: 0 };
    const tables = batch.map((r) => s.alloc.allocate(r.length + maxNew));
    try {
      const t0 = performance.now();
      // prefill: the first new token of every row
      const first: number[] = new Array(B).fill(0);
      for (const pieces of chunks(s, batch.map((r) => r.length))) {
        const { lay, T, nTiles, nLast } = writePrefill(s, pieces, batch, tables, params);
        const p = prefillProgram(s, lay, T, nTiles);
        if (nLast > 0) {
          const din = s.din;
          emitHead(s, p, nLast, din.at(lay.lastIdx), din.at(lay.params));
        }
        s.ctx.exec(p);
        s.ctx.sync();
        const outs = new Int32Array(s.hout.u8.buffer, s.hout.u8.byteOffset, Math.max(nLast, 1));
        let r = 0;
        for (const sp of pieces) if (sp.last) first[sp.seq] = outs[r++]!;
      }
      const record = (step: number, toks: number[]) => {
        const shown: (number | null)[] = toks.map((tok, b) => {
          if (done[b]) return null;
          seqs[b]!.push(tok);
          newTokens[b]!.push(tok);
          if ((opts.endId !== undefined && tok === opts.endId) || newTokens[b]!.length >= maxNew) done[b] = true;
          return tok;
        });
        opts.onToken?.(step, shown);
      };
      record(0, first);
      const t1 = performance.now();
      let steps = 0;
      for (let st = 1; st < maxNew && done.some((x) => !x); st++) {
        const toks = this.#decodeStep(batch.map((r) => r.length), seqs, tables, params, st);
        record(st, toks);
        steps++;
      }
      const t2 = performance.now();
      if (opts.padId !== undefined) {
        const w = Math.max(...seqs.map((r) => r.length));
        for (const r of seqs) while (r.length < w) r.push(opts.padId);
      }
      return { outputIds: seqs, newTokens, prefillMs: t1 - t0, decodeMs: t2 - t1, decodeSteps: steps };
    } finally {
      for (const t of tables) s.alloc.release(t);
    }
  }

  /**
   * One decode step over a set of live sequences: row b holds seqs[b] (prompt of promptLens[b]
   * tokens, then what it generated), owns the KV blocks tables[b] and samples with params[b];
   * finished rows recompute harmlessly. Inputs are written by schedule.ts; the step's program is
   * run eagerly once per batch size, then replayed from a captured CUDA graph. Returns the new
   * token of every row.
   */
  #decodeStep(promptLens: number[], seqs: number[][], tables: number[][], params: SampleRow[], step: number): number[] {
    return this.#runDecode(seqs.length, writeDecode(this.#s, promptLens, seqs, tables, params, step));
  }

  /** Run the decode step of B rows whose inputs are written (`lay`): eager the first time per B, then its graph. */
  #runDecode(B: number, lay: DecodeLayout): number[] {
    this.#launchDecode(B, lay);
    this.#s.ctx.sync();
    return this.#sampled(B);
  }

  /** Launch the decode step of B rows (graph replay returns at once; the first run per B is eager, then captured). */
  #launchDecode(B: number, lay: DecodeLayout): void {
    const s = this.#s;
    const g = this.#graphs.get(B);
    if (g) {
      s.ctx.launch(g);
    } else {
      const p = decodeProgram(s, B, lay);
      s.ctx.exec(p);
      // First run eager (loads kernels, validates), then capture for the next steps.
      if (this.#useGraphs) {
        s.ctx.sync();
        this.#graphs.set(B, s.ctx.capture(decodeProgram(s, B, lay)));
      }
    }
  }

  /** The B tokens the last step sampled (in the pinned output block; after a sync). */
  #sampled(B: number): number[] {
    const s = this.#s;
    return Array.from(new Int32Array(s.hout.u8.buffer, s.hout.u8.byteOffset, B));
  }

  // ---- step level (in-flight batching) ---------------------------------------------------------

  /** KV cache blocks in all, and free now. */
  get kvBlocks(): number {
    return this.#s.alloc.numBlocks;
  }

  get freeKvBlocks(): number {
    return this.#s.alloc.freeBlocks;
  }

  /** Blocks a sequence of `tokens` positions needs. */
  kvBlocksFor(tokens: number): number {
    return this.#s.alloc.blocksFor(tokens);
  }

  /** KV blocks for a sequence of up to `tokens` positions (≤ max_seq_len); `RUN_KV_CACHE_FULL` (taking nothing) when too few are free. */
  allocateKv(tokens: number): number[] {
    this.#guard();
    if (!(Number.isInteger(tokens) && tokens >= 1 && tokens <= this.maxSeqLen))
      throw new TrtbError("RUN_BAD_INPUT", `allocateKv: ${tokens} positions; a sequence holds 1 … max_seq_len ${this.maxSeqLen}`);
    return this.#s.alloc.allocate(tokens);
  }

  /** Give a sequence's blocks back (once). */
  releaseKv(table: readonly number[]): void {
    this.#s.alloc.release(table);
  }

  /** Positions [from, to) of a sequence fit the engine and its blocks, and their ids (`idAt`) the vocabulary. */
  #checkRow(what: string, idAt: (pos: number) => number | undefined, from: number, to: number, table: readonly number[]): void {
    const V = this.desc.vocab_size;
    if (to > this.maxSeqLen) throw new TrtbError("RUN_BAD_INPUT", `${what}: position ${to - 1} is past the engine's max_seq_len ${this.maxSeqLen}`);
    if (to > table.length * this.tokensPerBlock) throw new TrtbError("RUN_BAD_INPUT", `${what}: position ${to - 1} is past its ${table.length} KV blocks of ${this.tokensPerBlock} tokens`);
    for (let i = from; i < to; i++) {
      const id = idAt(i);
      if (!(Number.isInteger(id) && id! >= 0 && id! < V)) throw new TrtbError("RUN_BAD_INPUT", `${what}: token id ${id} at position ${i} is outside the vocabulary [0, ${V})`);
    }
  }

  /**
   * One prefill pass over `pieces` (≤ maxBatchSize pieces, ≤ maxNumTokens tokens in all): writes
   * their K/V into each sequence's blocks, draws the first token of pieces with `sample`, returns
   * the logits asked for. A long prompt is prefilled over several calls (pos0 = what is cached).
   */
  prefillStep(pieces: readonly PrefillPiece[]): StepOutput {
    this.#guard();
    const s = this.#s;
    if (pieces.length === 0 || pieces.length > this.maxBatchSize) throw new TrtbError("RUN_BAD_INPUT", `prefillStep: ${pieces.length} pieces; 1 … ${this.maxBatchSize} per pass`);
    const total = pieces.reduce((a, p) => a + p.n, 0);
    if (total > this.maxNumTokens) throw new TrtbError("RUN_BAD_INPUT", `prefillStep: ${total} tokens exceed the runner's max_num_tokens ${this.maxNumTokens}`);
    const sp: SeqPiece[] = pieces.map((p, i) => {
      if (!(Number.isInteger(p.pos0) && p.pos0 >= 0 && Number.isInteger(p.n) && p.n >= 1)) throw new TrtbError("RUN_BAD_INPUT", `prefillStep: piece ${i} has pos0 ${p.pos0}, n ${p.n}`);
      this.#checkRow(`prefillStep piece ${i}`, (j) => p.tokens[j], p.pos0, p.pos0 + p.n, p.table);
      return { seq: i, pos0: p.pos0, n: p.n, last: p.sample !== undefined };
    });
    const params = pieces.map((p, i) => (p.sample === undefined ? GREEDY : samplingRow(p.sample, i)));
    const { lay, T, nTiles, nLast } = writePrefill(s, sp, pieces.map((p) => p.tokens), pieces.map((p) => p.table), params);
    const p = prefillProgram(s, lay, T, nTiles);
    if (nLast > 0) emitHead(s, p, nLast, s.din.at(lay.lastIdx), s.din.at(lay.params));
    s.ctx.exec(p);
    s.ctx.sync();
    const tokens: (number | null)[] = pieces.map(() => null);
    const outs = new Int32Array(s.hout.u8.buffer, s.hout.u8.byteOffset, Math.max(nLast, 1));
    let r = 0;
    pieces.forEach((pc, i) => {
      if (pc.sample !== undefined) tokens[i] = outs[r++]!;
    });
    // logits: the rows asked for through the head again (h of every row is still there)
    const V = this.desc.vocab_size;
    const Vr = this.desc.lm_head_rows;
    let row0 = 0;
    const logits = pieces.map((pc) => {
      const start = row0;
      row0 += pc.n;
      if (!pc.logits) return null;
      const first = pc.logits === "all" ? start : start + pc.n - 1;
      const n = start + pc.n - first;
      const out = new Float32Array(n * V);
      for (let r0 = 0; r0 < n; r0 += this.maxBatchSize) {
        const m = Math.min(this.maxBatchSize, n - r0);
        const q = new Program();
        emitHead(s, q, m, s.b.iota!.add((first + r0) * I32), null);
        s.ctx.exec(q);
        const buf = downloadLogits(s, s.b.logits!, m * Vr);
        for (let j = 0; j < m; j++) out.set(buf.subarray(j * Vr, j * Vr + V), (r0 + j) * V);
      }
      return out;
    });
    return { tokens, logits };
  }

  /**
   * One decode step over `rows` (1 … maxBatchSize sequences, each at its own position): writes
   * each row's K/V, draws its next token, returns the logits asked for. The program of B rows runs
   * eagerly the first time, then replays from the CUDA graph captured for B rows.
   */
  decodeRows(rows: readonly DecodeRow[]): StepOutput {
    return this.launchDecodeRows(rows)();
  }

  /**
   * `decodeRows` without waiting: the step is launched on the GPU and this returns a function that
   * waits for it and gives its output (idempotent). The host can meanwhile do other work (stream
   * the previous tokens); any other call on the runner waits for the step first.
   */
  launchDecodeRows(rows: readonly DecodeRow[]): () => StepOutput {
    this.#guard();
    const s = this.#s;
    const B = rows.length;
    if (B === 0 || B > this.maxBatchSize) throw new TrtbError("RUN_BAD_INPUT", `decodeRows: ${B} rows; 1 … ${this.maxBatchSize} per step`);
    const inputs = rows.map((r, b) => {
      if (!(Number.isInteger(r.pos) && r.pos >= 0)) throw new TrtbError("RUN_BAD_INPUT", `decodeRows: row ${b} has position ${r.pos}`);
      this.#checkRow(`decodeRows row ${b}`, () => r.token, r.pos, r.pos + 1, r.table);
      return { token: r.token, pos: r.pos, table: r.table, params: r.sample === undefined ? GREEDY : samplingRow(r.sample, b), step: r.step };
    });
    this.#launchDecode(B, writeDecodeRows(s, inputs));
    const want = rows.map((r) => !!r.logits);
    let out: StepOutput | null = null;
    const wait = (): StepOutput => {
      if (!out) {
        if (this.#inflight === wait) this.#inflight = null;
        s.ctx.sync();
        const V = this.desc.vocab_size;
        const Vr = this.desc.lm_head_rows;
        out = {
          tokens: this.#sampled(B),
          logits: want.map((w, b) => (w ? downloadLogits(s, s.b.logits!.add(b * Vr * s.les), V) : null)),
        };
      }
      return out;
    };
    this.#inflight = wait;
    return wait;
  }

  /**
   * GPU time of each op of one decode step for `batch` (prompts are prefilled first), measured op
   * by op with events: where a step's time goes. Totals per op kind, in ms.
   */
  profileDecode(batch: number[][]): { total: number; byOp: OpTimes; gemm: Record<string, number> } {
    this.#check(batch, 2);
    return profileDecode(this.#s, batch);
  }

  /** GPU time of each op of a prefill of `prompt` (one chunk), op by op with events, totals per op kind. */
  profilePrefill(prompt: number[]): { total: number; byOp: OpTimes } {
    this.#check([prompt]);
    return profilePrefill(this.#s, prompt);
  }

  /** Free the GPU memory, graphs and context. Idempotent. */
  destroy(): void {
    if (this.#destroyed) return;
    try {
      this.#inflight?.();
    } catch {
      // the step's failure does not keep the memory
    }
    this.#destroyed = true;
    for (const g of this.#graphs.values()) g.destroy();
    this.#graphs.clear();
    this.#s.destroy();
  }

  [Symbol.dispose](): void {
    this.destroy();
  }
}
