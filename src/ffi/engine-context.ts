/**
 * The GPU context of the engine library: `EngineContext` (what the runtime needs from a device:
 * memory, copies, programs, graphs, GEMM tactics and tuning, timers) and `GpuContext`, its
 * implementation over one native context (stream, cuBLASLt handle + workspace, staging buffers).
 */
import type { Library, Pointer } from "bun:ffi";
import { TrtbError } from "../errors.ts";
import type { Checker } from "./check.ts";
import { asPtr, type Cell, DeviceMem, type DevRef, Graph, graphHandle, memAddr, memCell, memCtx, type MemOwner, PinnedHost } from "./engine-mem.ts";
import type { Program } from "./engine-program.ts";
import { type EngineSymbols, TACTIC_KIND, TUNE_PARAMS, TUNE_RESULT } from "./engine-symbols.ts";
import { DTYPE_CODE } from "./symbols.ts";

/** @internal The engine library's symbols. */
export type Syms = Library<EngineSymbols>["symbols"];

export type TacticKind = keyof typeof TACTIC_KIND;

/** A GEMM tactic: how one GEMM shape runs. `algo` is cuBLASLt's 64-byte algorithm (kind cublaslt). */
export interface Tactic {
  kind: TacticKind;
  variant: number;
  algo?: Uint8Array;
}

export interface TuneProblem {
  m: number;
  n: number;
  k: number;
  /** F8_E4M3: an FP8 site (`Program.gemmFp8`: e4m3 weights and input). */
  ab: "F16" | "BF16" | "F8_E4M3";
  y: "F32" | "F16" | "BF16";
  maxAlgos?: number;
  allowGemv?: boolean;
  /** Each measurement spans at least this much GPU time (ms). */
  minMs?: number;
  /** 8 / 4: a weight-only site (`Program.gemmWo`); default 0 (16-bit weights). */
  wBits?: 0 | 4 | 8;
  /** Weight-only: the group size of group-wise (AWQ) scales; default 0 (per channel). */
  wGroup?: number;
}

export interface TuneResult extends Tactic {
  timeUs: number;
  workspaceKb: number;
}

/** @internal */
export function intArg(name: string, v: number): number {
  if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new TrtbError("NATIVE_INVALID_ARG", `${name} must be an int32, got ${v}`);
  return v;
}

/** @internal */
export function sizeArg(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 0) throw new TrtbError("NATIVE_INVALID_ARG", `${name} must be a non-negative integer, got ${v}`);
  return v;
}

/** What the runtime needs from a device context (GpuContext; a CPU emulation in tests). */
export interface EngineContext extends Disposable, MemOwner {
  readonly device: number;
  alloc(bytes: number, label?: string): DeviceMem;
  /** @internal */
  freeCell(cell: { ptr: number; freed: boolean }, owner: DeviceMem): void;
  hostAlloc(bytes: number): PinnedHost;
  upload(dst: DevRef, src: Uint8Array): void;
  download(src: DevRef, bytes: number, dst?: Uint8Array): Uint8Array;
  memInfo(): { free: number; total: number };
  exec(p: Program): void;
  capture(p: Program): Graph;
  launch(g: Graph): void;
  sync(): void;
  addTactic(t: Tactic): number;
  tune(p: TuneProblem): TuneResult[];
  timerStart(): void;
  timerStop(): number;
  benchCopy(bytes: number, iters?: number): number;
  benchGemm(m: number, n: number, k: number, minMs?: number): number;
  destroy(): void;
}

export class GpuContext implements EngineContext {
  readonly #s: Syms;
  readonly #check: Checker;
  #h: number;
  readonly #u64 = new BigUint64Array(2);
  readonly #i32 = new Int32Array(1);
  readonly #f64 = new Float64Array(1);
  readonly #cells = new Set<Cell>();
  readonly #registry: FinalizationRegistry<Cell>;

  constructor(syms: Syms, check: Checker, handle: number, readonly device: number) {
    this.#s = syms;
    this.#check = check;
    this.#h = handle;
    const s = syms;
    this.#registry = new FinalizationRegistry((cell) => {
      if (cell.freed || this.#h === 0) return;
      cell.freed = true;
      this.#cells.delete(cell);
      s.trtb_engine_free(asPtr(this.#h), cell.ptr);
    });
  }

  get #ctx(): Pointer {
    if (this.#h === 0) throw new TrtbError("NATIVE_DESTROYED", `GPU context on cuda:${this.device} is destroyed`);
    return this.#h as Pointer;
  }

  get destroyed(): boolean {
    return this.#h === 0;
  }

  /** Device memory of `bytes` bytes (uninitialised). */
  alloc(bytes: number, label = "buffer"): DeviceMem {
    sizeArg("bytes", bytes);
    this.#check(this.#s.trtb_engine_malloc(this.#ctx, Math.max(bytes, 1), this.#u64));
    const cell: Cell = { ptr: Number(this.#u64[0]), freed: false };
    const m = new DeviceMem(this, cell, bytes, label);
    this.#cells.add(cell);
    this.#registry.register(m, cell, m);
    return m;
  }

  /** @internal */
  freeCell(cell: Cell, owner: DeviceMem): void {
    this.#registry.unregister(owner);
    this.#cells.delete(cell);
    cell.freed = true;
    this.#check(this.#s.trtb_engine_free(this.#ctx, cell.ptr));
  }

  hostAlloc(bytes: number): PinnedHost {
    sizeArg("bytes", bytes);
    if (bytes === 0) return new PinnedHost(this.#s, 0, 0);
    const out = new BigUint64Array(1);
    this.#check(this.#s.trtb_engine_host_alloc(bytes, out));
    return new PinnedHost(this.#s, Number(out[0]), bytes);
  }

  /** Copy host bytes (any memory, a mapped file included) to `dst`; returns when they are there. */
  upload(dst: DevRef, src: Uint8Array): void {
    if (src.byteLength === 0) return;
    this.#own(dst.mem);
    this.#check(this.#s.trtb_engine_upload(this.#ctx, memAddr(dst.mem, dst.offset, src.byteLength), src, src.byteLength));
  }

  /** Copy `bytes` from `src` into `dst` (or a new array); returns when done. */
  download(src: DevRef, bytes: number, dst: Uint8Array = new Uint8Array(bytes)): Uint8Array {
    if (dst.byteLength !== bytes) throw new TrtbError("NATIVE_SIZE", `download: destination has ${dst.byteLength} bytes, asked for ${bytes}`);
    if (bytes === 0) return dst;
    this.#own(src.mem);
    this.#check(this.#s.trtb_engine_download(this.#ctx, dst, memAddr(src.mem, src.offset, bytes), bytes));
    return dst;
  }

  memInfo(): { free: number; total: number } {
    const f = new BigUint64Array(1);
    const t = new BigUint64Array(1);
    this.#check(this.#s.trtb_engine_mem_info(this.#ctx, f, t));
    return { free: Number(f[0]), total: Number(t[0]) };
  }

  /** Queue a program on the context's stream. */
  exec(p: Program): void {
    if (p.words === 0) return;
    this.#check(this.#s.trtb_engine_exec(this.#ctx, p.buffer(), p.words));
  }

  /** Capture a program into a CUDA graph. */
  capture(p: Program): Graph {
    const out = new BigUint64Array(1);
    this.#check(this.#s.trtb_engine_graph_capture(this.#ctx, p.buffer(), p.words, out));
    return new Graph(this.#s, Number(out[0]));
  }

  launch(g: Graph): void {
    this.#check(this.#s.trtb_engine_graph_launch(this.#ctx, graphHandle(g) as Pointer));
  }

  /** Wait for everything queued. */
  sync(): void {
    this.#check(this.#s.trtb_engine_sync(this.#ctx));
  }

  /** Register a tactic; the id goes into `Program.gemm`. */
  addTactic(t: Tactic): number {
    const kind = TACTIC_KIND[t.kind];
    if (kind === undefined) throw new TrtbError("NATIVE_INVALID_ARG", `unknown tactic kind ${t.kind}`);
    let algo: Uint8Array | null = null;
    if (t.kind === "cublaslt") {
      if (!t.algo || t.algo.byteLength !== 64) throw new TrtbError("NATIVE_INVALID_ARG", "a cuBLASLt tactic needs its 64 algorithm bytes");
      algo = new Uint8Array(64);
      algo.set(t.algo);
    }
    this.#check(this.#s.trtb_engine_tactic_add(this.#ctx, kind, intArg("variant", t.variant), algo, this.#i32));
    return this.#i32[0]!;
  }

  /** Time every candidate for one GEMM shape; fastest first. */
  tune(p: TuneProblem): TuneResult[] {
    const buf = new Uint8Array(TUNE_PARAMS.size);
    const dv = new DataView(buf.buffer);
    dv.setUint32(0, TUNE_PARAMS.size, true);
    dv.setInt32(TUNE_PARAMS.m, intArg("m", p.m), true);
    dv.setInt32(TUNE_PARAMS.n, intArg("n", p.n), true);
    dv.setInt32(TUNE_PARAMS.k, intArg("k", p.k), true);
    dv.setInt32(TUNE_PARAMS.ab, DTYPE_CODE[p.ab], true);
    dv.setInt32(TUNE_PARAMS.y, DTYPE_CODE[p.y], true);
    dv.setInt32(TUNE_PARAMS.maxAlgos, p.maxAlgos ?? 8, true);
    dv.setInt32(TUNE_PARAMS.allowGemv, p.allowGemv === false ? 0 : 1, true);
    dv.setFloat64(TUNE_PARAMS.minMs, p.minMs ?? 1, true);
    dv.setInt32(TUNE_PARAMS.wBits, p.wBits ?? 0, true);
    dv.setInt32(TUNE_PARAMS.wGroup, intArg("wGroup", p.wGroup ?? 0), true);
    const max = 40;
    const out = new Uint8Array(TUNE_RESULT.size * max);
    this.#check(this.#s.trtb_engine_tune(this.#ctx, buf, out, max, this.#i32));
    const n = this.#i32[0]!;
    const odv = new DataView(out.buffer);
    const res: TuneResult[] = [];
    for (let i = 0; i < n; i++) {
      const o = i * TUNE_RESULT.size;
      const kindCode = odv.getInt32(o + TUNE_RESULT.kind, true);
      const kind = (Object.keys(TACTIC_KIND) as TacticKind[]).find((k) => TACTIC_KIND[k] === kindCode) ?? "heuristic";
      res.push({
        kind,
        variant: odv.getInt32(o + TUNE_RESULT.variant, true),
        timeUs: odv.getFloat32(o + TUNE_RESULT.timeUs, true),
        workspaceKb: odv.getUint32(o + TUNE_RESULT.workspaceKb, true),
        algo: kind === "cublaslt" ? out.slice(o + TUNE_RESULT.algo, o + TUNE_RESULT.algo + 64) : undefined,
      });
    }
    return res;
  }

  timerStart(): void {
    this.#check(this.#s.trtb_engine_timer_start(this.#ctx));
  }

  /** Milliseconds of GPU time since `timerStart()` (waits for the stream). */
  timerStop(): number {
    this.#check(this.#s.trtb_engine_timer_stop(this.#ctx, this.#f64));
    return this.#f64[0]!;
  }

  /** Device-to-device copy bandwidth, GB/s counting bytes read plus written. */
  benchCopy(bytes: number, iters = 20): number {
    sizeArg("bytes", bytes);
    this.#check(this.#s.trtb_engine_bench_copy(this.#ctx, bytes, iters, this.#f64));
    return this.#f64[0]!;
  }

  /** cuBLASLt bf16 GEMM rate (TFLOP/s), best of the heuristic's top 8. */
  benchGemm(m: number, n: number, k: number, minMs = 20): number {
    this.#check(this.#s.trtb_engine_bench_gemm(this.#ctx, m, n, k, minMs, this.#f64));
    return this.#f64[0]!;
  }

  /** Wait for pending work, free all memory this context allocated, and the context. Idempotent. */
  destroy(): void {
    if (this.#h === 0) return;
    const h = this.#h;
    for (const c of this.#cells) {
      if (!c.freed) {
        c.freed = true;
        this.#s.trtb_engine_free(h as Pointer, c.ptr);
      }
    }
    this.#cells.clear();
    this.#h = 0;
    this.#check(this.#s.trtb_engine_ctx_destroy(h as Pointer));
  }

  [Symbol.dispose](): void {
    this.destroy();
  }

  #own(m: DeviceMem): void {
    if (memCtx(m) !== this) throw new TrtbError("NATIVE_INVALID_ARG", `device memory ${m.label} belongs to another context`);
    void memCell;
  }
}
