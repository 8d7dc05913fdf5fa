/**
 * The GPU runtime of an engine (ModelRunner-style): upload the weight blob once, keep a paged KV
 * cache, and run forward passes as op programs on one stream.
 *
 *   forwardLogits(ids)            logits [S, V] per sequence (testing, `trtllm run --output_logits`)
 *   generate(batch, opts)         packed prefill of all prompts, then one decode step per token for
 *                                 the whole batch, replayed from a CUDA graph per batch size
 *
 * Per layer (f32 residual stream; GEMMs read the model dtype and accumulate in f32):
 *   h = norm_in(res)                                           [fused into the previous add]
 *   qkv = h · Wqkv (+bias) → q/k norm, RoPE, k/v into the cache   (QKV_ROPE)
 *   ctx = attention(q, cache)                                   (prefill tiles or split-K decode)
 *   res += [post_norm](ctx · Wdense + bias); h = norm(res)       (ADD_NORM)
 *   y = act(h · Wgate_up) · Wdown  | MoE: route, per expert the same, weighted scatter-add
 *   res += [post_ff_norm](y + bias); h = next norm_in or ln_f (res)
 *   logits = h[last rows] · Wlm_head (f32), [soft-cap], sample
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
import { type Dt, type EngineContext, type EngineDeviceInfo, type Graph, Program } from "../../ffi/engine.ts";
import { Engine } from "../../engine/engine.ts";
import type { EngineModelDesc, EnginePlan } from "../../engine/plan.ts";
import { decodeProgram, emitHead, prefillProgram } from "./emit.ts";
import { type OpTimes, profileDecode, profilePrefill } from "./profile.ts";
import { type SampleRow, type SamplingOptions, samplingRow } from "./sampling.ts";
import { checkBatch, chunks, F32, I32, writeDecode, writePrefill } from "./schedule.ts";
import { RunnerState } from "./state.ts";

export type { SamplingOptions } from "./sampling.ts";

export interface RunnerOptions {
  /** CUDA device (default 0). */
  device?: number;
  /** Most sequences per call (≤ the engine's max_batch_size; default min(engine, 64)). */
  maxBatchSize?: number;
  /** Most tokens per forward pass (≤ the engine's max_num_tokens; default the engine's). */
  maxNumTokens?: number;
  /** Tokens the KV cache holds (default: min(maxBatchSize × max_seq_len, fraction of free memory)). */
  maxKvTokens?: number;
  /** Share of free device memory the KV cache may take when maxKvTokens is not given (0.9). */
  kvCacheFreeGpuMemFraction?: number;
  /** Replay decode steps from CUDA graphs (default true). */
  cudaGraphs?: boolean;
  /** Run on this context instead of a new one on `device` (embedding; a CPU emulation in tests). */
  context?: { ctx: EngineContext; info: EngineDeviceInfo };
  /**
   * "fast" (default): activations enter the GEMMs and the KV cache in the model dtype, as
   * TensorRT-LLM does (logits within ~1e-2 of fp32). "exact": activations and the KV cache stay
   * f32; GEMMs read f32 inputs (GEMV for ≤ 8 rows, else two 16-bit halves: 2× GEMM work), so
   * results follow the fp32 CPU reference runner (same greedy ids even at near-ties).
   */
  numerics?: "fast" | "exact";
}

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
  readonly numerics: "fast" | "exact";
  readonly #s: RunnerState;
  /** captured decode steps, by batch size */
  readonly #graphs = new Map<number, Graph>();
  readonly #useGraphs: boolean;
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
    this.numerics = s.numerics;
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
  }

  /** Logits f32 [S × V] for each sequence (all positions), computed with a packed prefill. */
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
          const buf = new Float32Array(s.ctx.download(s.b.logits!, n * Vr * F32).buffer);
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
    const s = this.#s;
    const B = seqs.length;
    const lay = writeDecode(s, promptLens, seqs, tables, params, step);
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
    s.ctx.sync();
    return Array.from(new Int32Array(s.hout.u8.buffer, s.hout.u8.byteOffset, B));
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
    this.#destroyed = true;
    for (const g of this.#graphs.values()) g.destroy();
    this.#graphs.clear();
    this.#s.destroy();
  }

  [Symbol.dispose](): void {
    this.destroy();
  }
}
