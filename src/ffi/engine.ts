/**
 * libtrtb_engine behind a typed surface: `engineLib()` (the loaded library, cached), a
 * `GpuContext` per device (stream, cuBLASLt, staging buffers, GEMM tactics), owning classes for
 * device and pinned host memory, and `Program`, the one writer of op programs.
 *
 * Nothing outside `src/ffi/` sees a pointer: device memory is a `DeviceMem` and places in it are
 * `DevRef`s (memory + byte offset); pinned host memory is a `PinnedHost` with typed views. Programs
 * take refs and turn them into addresses here.
 *
 * Ownership as in `cuda.ts`: `destroy()` (or `using`) frees; a use after that throws
 * `NATIVE_DESTROYED`; a `FinalizationRegistry` frees what was dropped, as a backstop only.
 */
import { type Library, type Pointer, toArrayBuffer } from "bun:ffi";
import type { DType } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import { type Checker, makeChecker } from "./check.ts";
import {
  DEVICE_INFO, ENGINE_INTERFACE_VERSION, type EngineSymbols, OP, SAMPLE_PARAMS, TACTIC_KIND, TUNE_PARAMS, TUNE_RESULT,
} from "./engine-symbols.ts";
import { describeAttempts, ENGINE_LIB, loadLibrary, platformTag } from "./lib.ts";
import { DTYPE_CODE } from "./symbols.ts";

type Syms = Library<EngineSymbols>["symbols"];
/** The one native function a pinned buffer / a graph needs to free itself. */
type HostFreeFn = { trtb_engine_host_free(p: Pointer | null): unknown };
type GraphFreeFn = { trtb_engine_graph_destroy(p: Pointer | null): unknown };
const asPtr = (p: number): Pointer | null => (p === 0 ? null : (p as Pointer));

export interface EngineDeviceInfo {
  readonly name: string;
  readonly major: number;
  readonly minor: number;
  readonly multiprocessors: number;
  readonly totalMemory: number;
  readonly freeMemory: number;
  readonly l2Bytes: number;
  readonly smemOptin: number;
  readonly cublasLtVersion: number;
}

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
  ab: "F16" | "BF16";
  y: "F32" | "F16" | "BF16";
  maxAlgos?: number;
  allowGemv?: boolean;
  /** Each measurement spans at least this much GPU time (ms). */
  minMs?: number;
  /** 8 / 4: a weight-only site (`Program.gemmWo`); default 0 (16-bit weights). */
  wBits?: 0 | 4 | 8;
}

export interface TuneResult extends Tactic {
  timeUs: number;
  workspaceKb: number;
}

// ---- library ----------------------------------------------------------------------------------

let loaded: { lib?: EngineLib; error?: TrtbError } | undefined;

/**
 * The engine library, loaded once. Throws `TrtbError` `ENGINE_UNAVAILABLE` listing every path
 * tried when libtrtb_engine (or a library it needs, such as libcublasLt) cannot be loaded.
 */
export function engineLib(): EngineLib {
  loaded ??= loadEngine();
  if (loaded.lib) return loaded.lib;
  throw loaded.error!;
}

function loadEngine(): { lib?: EngineLib; error?: TrtbError } {
  const r = loadLibrary(ENGINE_LIB);
  if (!r.ok)
    return {
      error: new TrtbError(
        "ENGINE_UNAVAILABLE",
        `engine library ${ENGINE_LIB.file} for ${platformTag()} could not be loaded; tried:\n${describeAttempts(r.attempts)}\n` +
          `build it on a machine with the CUDA toolkit and cuBLASLt (\`bun run build\`), or set ${ENGINE_LIB.env}`,
      ),
    };
  const v = r.lib.symbols.trtb_engine_interface_version();
  if (v !== ENGINE_INTERFACE_VERSION) {
    r.lib.close();
    return {
      error: new TrtbError("ENGINE_UNAVAILABLE", `${r.path}: engine interface version ${v}, expected ${ENGINE_INTERFACE_VERSION} (rebuild it: bun run build)`),
    };
  }
  return { lib: new EngineLib(r.lib, r.path) };
}

export class EngineLib {
  readonly #s: Syms;
  readonly #check: Checker;
  readonly #i32 = new Int32Array(1);
  readonly #u64 = new BigUint64Array(1);

  constructor(lib: Library<EngineSymbols>, readonly path: string) {
    const s = (this.#s = lib.symbols);
    this.#check = makeChecker({ lastError: (b, n) => s.trtb_engine_last_error(b, n), statusStr: (st) => s.trtb_engine_status_str(st) });
  }

  /** Visible devices (0 when there are none; throws CUDA_UNAVAILABLE without a driver). */
  deviceCount(): number {
    this.#check(this.#s.trtb_engine_device_count(this.#i32));
    return this.#i32[0]!;
  }

  deviceInfo(device = 0): EngineDeviceInfo {
    const buf = new Uint8Array(DEVICE_INFO.size);
    const dv = new DataView(buf.buffer);
    dv.setUint32(0, DEVICE_INFO.size, true);
    this.#check(this.#s.trtb_engine_device_info_get(intArg("device", device), buf));
    const nameBytes = buf.subarray(DEVICE_INFO.name, DEVICE_INFO.name + DEVICE_INFO.nameLength);
    const nul = nameBytes.indexOf(0);
    return {
      name: new TextDecoder().decode(nul >= 0 ? nameBytes.subarray(0, nul) : nameBytes),
      major: dv.getInt32(DEVICE_INFO.major, true),
      minor: dv.getInt32(DEVICE_INFO.minor, true),
      multiprocessors: dv.getInt32(DEVICE_INFO.multiprocessors, true),
      totalMemory: Number(dv.getBigUint64(DEVICE_INFO.totalMemory, true)),
      freeMemory: Number(dv.getBigUint64(DEVICE_INFO.freeMemory, true)),
      l2Bytes: Number(dv.getBigUint64(DEVICE_INFO.l2, true)),
      smemOptin: dv.getInt32(DEVICE_INFO.smemOptin, true),
      cublasLtVersion: dv.getInt32(DEVICE_INFO.cublasLtVersion, true),
    };
  }

  /** A context on `device` (stream, cuBLASLt handle + workspace). Destroy it when done. */
  createContext(device = 0, workspaceBytes = 0): GpuContext {
    this.#check(this.#s.trtb_engine_ctx_create(intArg("device", device), workspaceBytes, this.#u64));
    return new GpuContext(this.#s, this.#check, Number(this.#u64[0]), device);
  }
}

function intArg(name: string, v: number): number {
  if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new TrtbError("NATIVE_INVALID_ARG", `${name} must be an int32, got ${v}`);
  return v;
}

function sizeArg(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 0) throw new TrtbError("NATIVE_INVALID_ARG", `${name} must be a non-negative integer, got ${v}`);
  return v;
}

// ---- memory -------------------------------------------------------------------------------------

interface Cell {
  ptr: number;
  freed: boolean;
}

// Module-internal access to private state, set up in the classes' static blocks (declared first:
// static blocks run when the class is defined).
let memAddr: (m: DeviceMem, off: number, need: number) => number;
let memCtx: (m: DeviceMem) => EngineContext;
let memCell: (m: DeviceMem) => Cell;
let hostAddr: (h: PinnedHost, off: number, need: number) => number;
let graphHandle: (g: Graph) => number;

/** Device memory owned by a context. */
export class DeviceMem implements Disposable {
  readonly #ctx: EngineContext;
  readonly #cell: Cell;
  /** @internal Use `ctx.alloc()`. */
  constructor(ctx: EngineContext, cell: Cell, readonly bytes: number, readonly label: string) {
    this.#ctx = ctx;
    this.#cell = cell;
  }
  static {
    memAddr = (m, off, need) => {
      if (m.#cell.freed) throw new TrtbError("NATIVE_DESTROYED", `device memory ${m.label} (${m.bytes} bytes) is destroyed`);
      if (off < 0 || off + need > m.bytes)
        throw new TrtbError("NATIVE_INVALID_ARG", `[${off}, ${off + need}) is outside device memory ${m.label} of ${m.bytes} bytes`);
      return m.#cell.ptr + off;
    };
    memCtx = (m) => m.#ctx;
    memCell = (m) => m.#cell;
  }
  get destroyed(): boolean {
    return this.#cell.freed;
  }
  /** A place `offset` bytes in. */
  at(offset = 0): DevRef {
    return new DevRef(this, offset);
  }
  destroy(): void {
    if (this.#cell.freed) return;
    this.#ctx.freeCell(this.#cell, this);
  }
  [Symbol.dispose](): void {
    this.destroy();
  }
}

/** A byte offset into device memory. */
export class DevRef {
  constructor(readonly mem: DeviceMem, readonly offset: number) {}
  add(bytes: number): DevRef {
    return new DevRef(this.mem, this.offset + bytes);
  }
}

/** Pinned host memory (page-locked; programs may copy to and from it inside a CUDA graph). */
export class PinnedHost implements Disposable {
  readonly #syms: HostFreeFn;
  #ptr: number;
  /** The bytes, valid until destroy(). */
  readonly u8: Uint8Array;
  readonly dv: DataView;
  /** @internal Use `ctx.hostAlloc()`. `backing` replaces the native memory (CPU emulation in tests). */
  constructor(syms: HostFreeFn, ptr: number, readonly bytes: number, backing?: ArrayBuffer) {
    this.#syms = syms;
    this.#ptr = ptr;
    const ab = backing ?? (bytes > 0 ? toArrayBuffer(ptr as Pointer, 0, bytes) : new ArrayBuffer(0));
    this.u8 = new Uint8Array(ab);
    this.dv = new DataView(ab);
  }
  static {
    hostAddr = (h, off, need) => {
      if (h.#ptr === 0 && h.bytes > 0) throw new TrtbError("NATIVE_DESTROYED", "pinned host memory is destroyed");
      if (off < 0 || off + need > h.bytes) throw new TrtbError("NATIVE_INVALID_ARG", `[${off}, ${off + need}) is outside ${h.bytes} bytes of pinned memory`);
      return h.#ptr + off;
    };
  }
  at(offset = 0): HostRef {
    return new HostRef(this, offset);
  }
  destroy(): void {
    if (this.#ptr === 0) return;
    const p = this.#ptr;
    this.#ptr = 0;
    this.#syms.trtb_engine_host_free(asPtr(p));
  }
  [Symbol.dispose](): void {
    this.destroy();
  }
}

export class HostRef {
  constructor(readonly host: PinnedHost, readonly offset: number) {}
}

/** A captured program, replayed with `ctx.launch(graph)`. */
export class Graph implements Disposable {
  readonly #syms: GraphFreeFn;
  #h: number;
  /** @internal Use `ctx.capture()`. */
  constructor(syms: GraphFreeFn, h: number) {
    this.#syms = syms;
    this.#h = h;
  }
  static {
    graphHandle = (g) => {
      if (g.#h === 0) throw new TrtbError("NATIVE_DESTROYED", "graph is destroyed");
      return g.#h;
    };
  }
  destroy(): void {
    if (this.#h === 0) return;
    const h = this.#h;
    this.#h = 0;
    this.#syms.trtb_engine_graph_destroy(asPtr(h));
  }
  [Symbol.dispose](): void {
    this.destroy();
  }
}

// ---- context --------------------------------------------------------------------------------------

/** What the runtime needs from a device context (GpuContext; a CPU emulation in tests). */
export interface EngineContext extends Disposable {
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

/** Module-internal: the address of a ref (for CPU emulation of programs in tests). */
export function refAddress(r: DevRef | HostRef, need = 0): number {
  return r instanceof DevRef ? memAddr(r.mem, r.offset, need) : hostAddr(r.host, r.offset, need);
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

// ---- programs -------------------------------------------------------------------------------------

export type Dt = "F32" | "F16" | "BF16";
type Addr = DevRef | HostRef | null | undefined;

/**
 * An op program (see trtb_engine.h for the encoding and each op's arguments). Methods append one
 * op each; `words` is its length in uint64 words. Addresses are resolved when the op is added.
 */
export class Program {
  #buf = new ArrayBuffer(4096);
  #dv = new DataView(this.#buf);
  #n = 0; // words
  readonly ops: string[] = [];

  get words(): number {
    return this.#n;
  }

  /** @internal The encoded words (a view of the used part). */
  buffer(): BigUint64Array {
    return new BigUint64Array(this.#buf, 0, Math.max(this.#n, 1));
  }

  /** One program per op (for per-op timing). */
  split(): Program[] {
    const out: Program[] = [];
    const all = new BigUint64Array(this.#buf, 0, this.#n);
    let i = 0;
    let k = 0;
    while (i < this.#n) {
      const n = Number(all[i]! >> 32n);
      const p = new Program();
      p.#grow(1 + n);
      new BigUint64Array(p.#buf, 0, 1 + n).set(all.subarray(i, i + 1 + n));
      p.#n = 1 + n;
      p.ops.push(this.ops[k++]!);
      out.push(p);
      i += 1 + n;
    }
    return out;
  }

  #grow(words: number): void {
    const need = (this.#n + words) * 8;
    if (need <= this.#buf.byteLength) return;
    let cap = this.#buf.byteLength * 2;
    while (cap < need) cap *= 2;
    const nb = new ArrayBuffer(cap);
    new Uint8Array(nb).set(new Uint8Array(this.#buf, 0, this.#n * 8));
    this.#buf = nb;
    this.#dv = new DataView(nb);
  }

  #u(v: number): void {
    // integers, two's complement for negatives; |v| < 2^53
    const o = this.#n * 8;
    if (v >= 0) {
      this.#dv.setUint32(o, v % 0x100000000, true);
      this.#dv.setUint32(o + 4, Math.floor(v / 0x100000000), true);
    } else {
      this.#dv.setBigInt64(o, BigInt(v), true);
    }
    this.#n++;
  }

  #f(v: number): void {
    this.#dv.setFloat64(this.#n * 8, v, true);
    this.#n++;
  }

  #a(r: Addr, need = 0): void {
    if (!r) return this.#u(0);
    if (r instanceof DevRef) return this.#u(memAddr(r.mem, r.offset, need));
    return this.#u(hostAddr(r.host, r.offset, need));
  }

  #op(name: keyof typeof OP, args: (() => void)[]): this {
    const [code, nargs] = OP[name];
    if (args.length !== nargs) throw new TrtbError("NATIVE_INTERNAL", `program: ${name} takes ${nargs} arguments, got ${args.length}`);
    this.#grow(1 + nargs);
    this.#u(code + nargs * 0x100000000);
    for (const a of args) a();
    this.ops.push(name);
    return this;
  }

  #dt(d: Dt): number {
    return DTYPE_CODE[d];
  }

  embed(a: { ids: DevRef; table: DevRef; tableDtype: Dt; rows: number; vocabStart: number; H: number; scale: number; out: DevRef; T: number }): this {
    return this.#op("EMBED", [
      () => this.#a(a.ids), () => this.#a(a.table), () => this.#u(this.#dt(a.tableDtype)), () => this.#u(a.rows), () => this.#u(a.vocabStart),
      () => this.#u(a.H), () => this.#f(a.scale), () => this.#a(a.out), () => this.#u(a.T),
    ]);
  }

  addNorm(a: {
    res: DevRef; delta?: DevRef; deltaLd?: number; deltaBias?: DevRef; deltaNorm?: DevRef; normW?: DevRef; eps: number;
    out?: DevRef; outDtype: Dt; H: number; T: number;
  }): this {
    return this.#op("ADD_NORM", [
      () => this.#a(a.res), () => this.#a(a.delta), () => this.#u(a.deltaLd ?? a.H), () => this.#a(a.deltaBias), () => this.#a(a.deltaNorm),
      () => this.#a(a.normW), () => this.#f(a.eps), () => this.#a(a.out), () => this.#u(this.#dt(a.outDtype)), () => this.#u(a.H), () => this.#u(a.T),
    ]);
  }

  /** `ab` is the weight dtype; `xDtype` (default `ab`) F32 selects the exact path (needs `scratch` of 4·M·K bytes when M > 8). */
  gemm(a: {
    w: DevRef; x: DevRef; y: DevRef; M: number; N: number; K: number; ab: Dt; yDtype: Dt; ldx?: number; ldy?: number; tactic: number; xDtype?: Dt;
    scratch?: DevRef;
  }): this {
    return this.#op("GEMM", [
      () => this.#a(a.w), () => this.#a(a.x), () => this.#a(a.y), () => this.#u(a.M), () => this.#u(a.N), () => this.#u(a.K),
      () => this.#u(this.#dt(a.ab)), () => this.#u(this.#dt(a.yDtype)), () => this.#u(a.ldx ?? a.K), () => this.#u(a.ldy ?? a.N), () => this.#u(a.tactic),
      () => this.#u(this.#dt(a.xDtype ?? a.ab)), () => this.#a(a.scratch),
    ]);
  }

  /**
   * Weight-only GEMM: `w` is q in the tiled layout of src/build/wo-pack.ts (`bits` 8 or 4), `scale`
   * f32 [N]; `ab` the activation dtype. M ≤ 64 runs our kernel; beyond that (or with a cuBLASLt
   * tactic) the weights are expanded into `deq` (2·N·K bytes). `xDtype` F32 is the exact path
   * (needs `scratch` of 4·M·K bytes).
   */
  gemmWo(a: {
    w: DevRef; scale: DevRef; x: DevRef; y: DevRef; M: number; N: number; K: number; bits: 8 | 4; ab: Dt; yDtype: Dt; ldx?: number; ldy?: number;
    tactic: number; xDtype?: Dt; scratch?: DevRef; deq?: DevRef;
  }): this {
    return this.#op("GEMM_WO", [
      () => this.#a(a.w), () => this.#a(a.scale), () => this.#a(a.x), () => this.#a(a.y), () => this.#u(a.M), () => this.#u(a.N), () => this.#u(a.K),
      () => this.#u(a.bits), () => this.#u(this.#dt(a.ab)), () => this.#u(this.#dt(a.yDtype)), () => this.#u(a.ldx ?? a.K), () => this.#u(a.ldy ?? a.N),
      () => this.#u(a.tactic), () => this.#u(this.#dt(a.xDtype ?? a.ab)), () => this.#a(a.scratch), () => this.#a(a.deq),
    ]);
  }

  qkvRope(a: {
    qkv: DevRef; ld: number; bias?: DevRef; qNorm?: DevRef; kNorm?: DevRef; eps: number; pos: DevRef; slot: DevRef; kv: DevRef; kvDtype: Dt;
    tpb: number; nH: number; nKV: number; D: number; rot: number; invFreq: DevRef; qOut: DevRef; T: number;
  }): this {
    return this.#op("QKV_ROPE", [
      () => this.#a(a.qkv), () => this.#u(a.ld), () => this.#a(a.bias), () => this.#a(a.qNorm), () => this.#a(a.kNorm), () => this.#f(a.eps),
      () => this.#a(a.pos), () => this.#a(a.slot), () => this.#a(a.kv), () => this.#u(this.#dt(a.kvDtype)), () => this.#u(a.tpb),
      () => this.#u(a.nH), () => this.#u(a.nKV), () => this.#u(a.D), () => this.#u(a.rot), () => this.#a(a.invFreq), () => this.#a(a.qOut),
      () => this.#u(a.T),
    ]);
  }

  attnDecode(a: {
    q: DevRef; kv: DevRef; kvDtype: Dt; blockTable: DevRef; maxBlocks: number; ctxLen: DevRef; nH: number; nKV: number; D: number; tpb: number;
    scale: number; softcap: number; window: number; nsplit: number; ws: DevRef; out: DevRef; outDtype: Dt; B: number;
  }): this {
    return this.#op("ATTN_DECODE", [
      () => this.#a(a.q), () => this.#a(a.kv), () => this.#u(this.#dt(a.kvDtype)), () => this.#a(a.blockTable), () => this.#u(a.maxBlocks),
      () => this.#a(a.ctxLen), () => this.#u(a.nH), () => this.#u(a.nKV), () => this.#u(a.D), () => this.#u(a.tpb), () => this.#f(a.scale),
      () => this.#f(a.softcap), () => this.#u(a.window), () => this.#u(a.nsplit), () => this.#a(a.ws), () => this.#a(a.out),
      () => this.#u(this.#dt(a.outDtype)), () => this.#u(a.B),
    ]);
  }

  attnPrefill(a: {
    q: DevRef; kv: DevRef; kvDtype: Dt; blockTable: DevRef; maxBlocks: number; tiles: DevRef; nTiles: number; cuQ: DevRef; pos0: DevRef;
    nH: number; nKV: number; D: number; tpb: number; scale: number; softcap: number; window: number; out: DevRef; outDtype: Dt;
  }): this {
    return this.#op("ATTN_PREFILL", [
      () => this.#a(a.q), () => this.#a(a.kv), () => this.#u(this.#dt(a.kvDtype)), () => this.#a(a.blockTable), () => this.#u(a.maxBlocks),
      () => this.#a(a.tiles), () => this.#u(a.nTiles), () => this.#a(a.cuQ), () => this.#a(a.pos0), () => this.#u(a.nH), () => this.#u(a.nKV),
      () => this.#u(a.D), () => this.#u(a.tpb), () => this.#f(a.scale), () => this.#f(a.softcap), () => this.#u(a.window), () => this.#a(a.out),
      () => this.#u(this.#dt(a.outDtype)),
    ]);
  }

  gatedAct(a: { in: DevRef; inDtype: Dt; bias?: DevRef; out: DevRef; outDtype: Dt; I: number; T: number; act: "silu" | "gelu_tanh" }): this {
    return this.#op("GATED_ACT", [
      () => this.#a(a.in), () => this.#u(this.#dt(a.inDtype)), () => this.#a(a.bias), () => this.#a(a.out), () => this.#u(this.#dt(a.outDtype)),
      () => this.#u(a.I), () => this.#u(a.T), () => this.#u(a.act === "silu" ? 0 : 1),
    ]);
  }

  gatherRows(a: { src: DevRef; dst: DevRef; idx: DevRef; R: number; rowBytes: number }): this {
    return this.#op("GATHER_ROWS", [() => this.#a(a.src), () => this.#a(a.dst), () => this.#a(a.idx), () => this.#u(a.R), () => this.#u(a.rowBytes)]);
  }

  scatterAdd(a: { y: DevRef; out: DevRef; idx: DevRef; w: DevRef; R: number; H: number }): this {
    return this.#op("SCATTER_ADD", [() => this.#a(a.y), () => this.#a(a.out), () => this.#a(a.idx), () => this.#a(a.w), () => this.#u(a.R), () => this.#u(a.H)]);
  }

  softcap(a: { x: DevRef; n: number; cap: number }): this {
    return this.#op("SOFTCAP", [() => this.#a(a.x), () => this.#u(a.n), () => this.#f(a.cap)]);
  }

  sample(a: { logits: DevRef; ld: number; V: number; params: DevRef; out: DevRef; R: number }): this {
    return this.#op("SAMPLE", [() => this.#a(a.logits), () => this.#u(a.ld), () => this.#u(a.V), () => this.#a(a.params), () => this.#a(a.out), () => this.#u(a.R)]);
  }

  memcpy(dst: DevRef | HostRef, src: DevRef | HostRef, bytes: number): this {
    const kind = src instanceof HostRef ? 1 : dst instanceof HostRef ? 2 : 3;
    if (src instanceof HostRef && dst instanceof HostRef) throw new TrtbError("NATIVE_INVALID_ARG", "program memcpy: host to host");
    return this.#op("MEMCPY", [() => this.#a(dst, bytes), () => this.#a(src, bytes), () => this.#u(bytes), () => this.#u(kind)]);
  }

  memset(dst: DevRef, value: number, bytes: number): this {
    return this.#op("MEMSET", [() => this.#a(dst, bytes), () => this.#u(value & 0xff), () => this.#u(bytes)]);
  }

  moeRoute(a: { x: DevRef; xDtype: Dt; router: DevRef; E: number; H: number; topK: number; ids: DevRef; w: DevRef; T: number }): this {
    return this.#op("MOE_ROUTE", [
      () => this.#a(a.x), () => this.#u(this.#dt(a.xDtype)), () => this.#a(a.router), () => this.#u(a.E), () => this.#u(a.H), () => this.#u(a.topK),
      () => this.#a(a.ids), () => this.#a(a.w), () => this.#u(a.T),
    ]);
  }
}

/** Write one row of `trtb_engine_sample_params` into `dv` at `offset`. */
export function writeSampleParams(dv: DataView, offset: number, p: { temperature: number; topK: number; topP: number; seed: number; step: number }): void {
  dv.setFloat32(offset + SAMPLE_PARAMS.temperature, p.temperature, true);
  dv.setInt32(offset + SAMPLE_PARAMS.topK, p.topK, true);
  dv.setFloat32(offset + SAMPLE_PARAMS.topP, p.topP, true);
  dv.setInt32(offset + 12, 0, true);
  dv.setBigUint64(offset + SAMPLE_PARAMS.seed, BigInt.asUintN(64, BigInt(Math.trunc(p.seed))), true);
  dv.setBigUint64(offset + SAMPLE_PARAMS.step, BigInt(p.step), true);
}

export const SAMPLE_PARAMS_BYTES = SAMPLE_PARAMS.size;
