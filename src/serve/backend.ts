/**
 * What the in-flight scheduler (scheduler.ts) runs on: a backend-neutral step interface —
 * `reserve` KV blocks for a sequence, `admit` prefill chunks (the first token of chunks that end a
 * prompt), `step` one decode step over the live sequences, `free` — and its two implementations:
 *
 *   CpuStepBackend   the fp32 reference runner: one CpuKvCache per sequence, rows looped, host
 *                    sampling with the runner's Sampler (so seeded output equals LLM.generate's on
 *                    the CPU); KV blocks are counted by the same BlockAllocator as the GPU's
 *   GpuStepBackend   GpuModelRunner's step API: paged KV blocks, one packed prefill pass for the
 *                    chunks, one decode step (CUDA graph by row count) for all live sequences,
 *                    launched without waiting (`launch`) so the host's streaming overlaps the GPU;
 *                    sampling on the device (seeded output equals GpuModelRunner.generate's)
 */
import { TrtbError } from "../errors.ts";
import type { CpuKvCache, CpuRunner } from "../runtime/cpu.ts";
import { BlockAllocator } from "../runtime/gpu/kv-cache.ts";
import type { GpuModelRunner } from "../runtime/gpu/runner.ts";
import { Sampler, type SamplingOptions } from "../runtime/sampling.ts";

/** A sequence as the backend sees it (the scheduler owns it). */
export interface BackendSeq {
  readonly id: number;
  /** Prompt ids, then the generated ids. */
  readonly tokens: number[];
  readonly promptLen: number;
  /** Most positions it will hold (prompt + max new tokens): its KV reservation. */
  readonly capacity: number;
  readonly sampling: "greedy" | SamplingOptions;
  /** Backend-private state (KV cache or block table, sampler). */
  slot?: unknown;
}

/** A prefill chunk: prompt positions pos0 … pos0+n-1 of `seq`; `last` ends the prompt (a token is drawn). */
export interface PrefillChunk {
  seq: BackendSeq;
  pos0: number;
  n: number;
  last: boolean;
  /** Logits wanted: none, the chunk's last row [V], or all its rows [n × V]. */
  logits: "none" | "last" | "all";
}

/** A live sequence in a decode step: its newest token is fed; `logits`: return the row's logits. */
export interface DecodeItem {
  seq: BackendSeq;
  logits: boolean;
}

/** Per chunk or row: the token drawn (null for a chunk that does not end its prompt) and the logits asked for. */
export interface StepToken {
  token: number | null;
  logits: Float32Array | null;
}

export interface StepBackend {
  readonly kind: "cpu" | "gpu";
  readonly vocabSize: number;
  /** Most live sequences per step. */
  readonly maxBatchSize: number;
  /** Most prompt tokens per prefill pass. */
  readonly maxNumTokens: number;
  /** Longest prompt + generation. */
  readonly maxSeqLen: number;
  /** Longest prompt, and where that limit comes from (for errors). */
  readonly maxInputLen: number;
  readonly limitWhere: string;
  readonly kvBlocks: number;
  readonly tokensPerBlock: number;
  freeBlocks(): number;
  blocksFor(tokens: number): number;
  /** Take the KV blocks of `seq.capacity` positions; false (taking nothing) when too few are free. */
  reserve(seq: BackendSeq): boolean;
  /** One prefill pass over chunks (≤ maxBatchSize chunks, ≤ maxNumTokens tokens). */
  admit(chunks: readonly PrefillChunk[]): StepToken[];
  /** One decode step over live sequences (≤ maxBatchSize), each feeding its newest token. */
  step(rows: readonly DecodeItem[]): StepToken[];
  /**
   * Asynchronous backends: launch the step and return at once with a function that waits for its
   * output; the scheduler streams the previous tokens meanwhile (a sequence that stopped then
   * computed one token for nothing). No other call comes between the launch and the wait.
   */
  launch?(rows: readonly DecodeItem[]): () => StepToken[];
  /** Give the sequence's KV blocks back. Idempotent. */
  free(seq: BackendSeq): void;
}

export interface CpuBackendOptions {
  /** Most live sequences (default 16). */
  maxBatchSize?: number;
  /** Most prompt tokens per prefill pass (default 512). */
  maxNumTokens?: number;
  /** Tokens the (accounted) KV cache holds (default maxBatchSize × max_seq_len). */
  maxKvTokens?: number;
  /** Accounting block size (default 32). */
  tokensPerBlock?: number;
}

interface CpuSlot {
  cache: CpuKvCache;
  sampler: Sampler;
  blocks: number[];
}

function positive(name: string, v: number | undefined, dflt: number): number {
  const n = v ?? dflt;
  if (!(Number.isInteger(n) && n >= 1)) throw new TrtbError("SERVE_BAD_OPTION", `${name} must be an integer ≥ 1, got ${v}`);
  return n;
}

export class CpuStepBackend implements StepBackend {
  readonly kind = "cpu" as const;
  readonly vocabSize: number;
  readonly maxBatchSize: number;
  readonly maxNumTokens: number;
  readonly maxSeqLen: number;
  readonly maxInputLen: number;
  readonly limitWhere: string;
  readonly kvBlocks: number;
  readonly tokensPerBlock: number;
  readonly #alloc: BlockAllocator;

  constructor(readonly runner: CpuRunner, opts: CpuBackendOptions = {}, where = "config.json") {
    this.vocabSize = runner.cfg.vocab_size;
    this.maxBatchSize = positive("maxBatchSize", opts.maxBatchSize, 16);
    this.maxNumTokens = positive("maxNumTokens", opts.maxNumTokens, 512);
    this.maxSeqLen = runner.cfg.max_position_embeddings ?? 4096;
    this.maxInputLen = this.maxSeqLen - 1;
    this.limitWhere = `the model's max_position_embeddings ${this.maxSeqLen} (${where})`;
    this.tokensPerBlock = positive("tokensPerBlock", opts.tokensPerBlock, 32);
    const kvTokens = positive("maxKvTokens", opts.maxKvTokens, this.maxBatchSize * this.maxSeqLen);
    this.kvBlocks = Math.max(1, Math.floor(kvTokens / this.tokensPerBlock));
    this.#alloc = new BlockAllocator(this.kvBlocks, this.tokensPerBlock);
  }

  freeBlocks(): number {
    return this.#alloc.freeBlocks;
  }

  blocksFor(tokens: number): number {
    return this.#alloc.blocksFor(tokens);
  }

  reserve(seq: BackendSeq): boolean {
    if (this.#alloc.blocksFor(seq.capacity) > this.#alloc.freeBlocks) return false;
    const slot: CpuSlot = { cache: this.runner.newCache(), sampler: new Sampler(seq.sampling), blocks: this.#alloc.allocate(seq.capacity) };
    seq.slot = slot;
    return true;
  }

  #slot(seq: BackendSeq): CpuSlot {
    const s = seq.slot as CpuSlot | undefined;
    if (!s) throw new TrtbError("RUN_BAD_INPUT", `sequence ${seq.id} has no KV reservation`);
    return s;
  }

  admit(chunks: readonly PrefillChunk[]): StepToken[] {
    const V = this.vocabSize;
    return chunks.map((c) => {
      const slot = this.#slot(c.seq);
      if (slot.cache.length !== c.pos0) throw new TrtbError("RUN_BAD_INPUT", `sequence ${c.seq.id}: chunk at ${c.pos0}, cache holds ${slot.cache.length}`);
      const all = c.logits === "all";
      const out = this.runner.step(c.seq.tokens.slice(c.pos0, c.pos0 + c.n), slot.cache, { allLogits: all });
      const last = all ? out.subarray((c.n - 1) * V) : out;
      return { token: c.last ? slot.sampler.sample(last) : null, logits: c.logits === "none" ? null : out };
    });
  }

  step(rows: readonly DecodeItem[]): StepToken[] {
    return rows.map((r) => {
      const slot = this.#slot(r.seq);
      const logits = this.runner.step([r.seq.tokens.at(-1)!], slot.cache);
      return { token: slot.sampler.sample(logits), logits: r.logits ? logits : null };
    });
  }

  free(seq: BackendSeq): void {
    const s = seq.slot as CpuSlot | undefined;
    if (!s) return;
    seq.slot = undefined;
    this.#alloc.release(s.blocks);
  }
}

interface GpuSlot {
  table: number[];
}

export class GpuStepBackend implements StepBackend {
  readonly kind = "gpu" as const;
  readonly vocabSize: number;
  readonly maxBatchSize: number;
  readonly maxNumTokens: number;
  readonly maxSeqLen: number;
  readonly maxInputLen: number;
  readonly limitWhere: string;
  readonly kvBlocks: number;
  readonly tokensPerBlock: number;

  constructor(readonly runner: GpuModelRunner, where = "config.json") {
    this.vocabSize = runner.vocabSize;
    this.maxBatchSize = runner.maxBatchSize;
    this.maxNumTokens = runner.maxNumTokens;
    this.maxSeqLen = runner.maxSeqLen;
    this.maxInputLen = Math.min(runner.plan.limits.max_input_len, runner.maxSeqLen - 1);
    this.limitWhere = `the engine's max_input_len ${this.maxInputLen} (${where}: build_config.max_input_len; rebuild with a larger --max_input_len)`;
    this.kvBlocks = runner.kvBlocks;
    this.tokensPerBlock = runner.tokensPerBlock;
  }

  freeBlocks(): number {
    return this.runner.freeKvBlocks;
  }

  blocksFor(tokens: number): number {
    return this.runner.kvBlocksFor(tokens);
  }

  reserve(seq: BackendSeq): boolean {
    if (this.runner.kvBlocksFor(seq.capacity) > this.runner.freeKvBlocks) return false;
    const slot: GpuSlot = { table: this.runner.allocateKv(seq.capacity) };
    seq.slot = slot;
    return true;
  }

  #table(seq: BackendSeq): number[] {
    const s = seq.slot as GpuSlot | undefined;
    if (!s) throw new TrtbError("RUN_BAD_INPUT", `sequence ${seq.id} has no KV reservation`);
    return s.table;
  }

  admit(chunks: readonly PrefillChunk[]): StepToken[] {
    const out = this.runner.prefillStep(chunks.map((c) => ({
      tokens: c.seq.tokens, pos0: c.pos0, n: c.n, table: this.#table(c.seq), sample: c.last ? c.seq.sampling : undefined,
      logits: c.logits === "none" ? undefined : c.logits,
    })));
    return chunks.map((_, i) => ({ token: out.tokens[i]!, logits: out.logits[i]! }));
  }

  step(rows: readonly DecodeItem[]): StepToken[] {
    return this.launch(rows)();
  }

  launch(rows: readonly DecodeItem[]): () => StepToken[] {
    const wait = this.runner.launchDecodeRows(rows.map((r) => ({
      token: r.seq.tokens.at(-1)!, pos: r.seq.tokens.length - 1, table: this.#table(r.seq), sample: r.seq.sampling,
      step: r.seq.tokens.length - r.seq.promptLen, logits: r.logits,
    })));
    return () => {
      const out = wait();
      return rows.map((_, i) => ({ token: out.tokens[i]!, logits: out.logits[i]! }));
    };
  }

  free(seq: BackendSeq): void {
    const s = seq.slot as GpuSlot | undefined;
    if (!s) return;
    seq.slot = undefined;
    this.runner.releaseKv(s.table);
  }
}
