/**
 * Memory handles of the engine library: `DeviceMem` (device memory owned by a context) and the
 * places in it (`DevRef`), `PinnedHost` (page-locked host memory) and its places (`HostRef`), and
 * `Graph` (a captured program). Pointers stay inside these classes; the other engine*.ts files
 * reach them through the @internal accessors below.
 */
import { type Pointer, toArrayBuffer } from "bun:ffi";
import { TrtbError } from "../errors.ts";

/** The one native function a pinned buffer / a graph needs to free itself. */
type HostFreeFn = { trtb_engine_host_free(p: Pointer | null): unknown };
type GraphFreeFn = { trtb_engine_graph_destroy(p: Pointer | null): unknown };
/** @internal A native address as an FFI pointer argument (0 → null). */
export const asPtr = (p: number): Pointer | null => (p === 0 ? null : (p as Pointer));

/** @internal A device allocation's address and whether it was freed (shared with its context). */
/** What device memory needs from the context that made it (an `EngineContext`): taking its cell back. */
export interface MemOwner {
  freeCell(cell: { ptr: number; freed: boolean }, owner: DeviceMem): void;
}

export interface Cell {
  ptr: number;
  freed: boolean;
}

// Access to private state, set up in the classes' static blocks (declared first: static blocks
// run when the class is defined) and exported below for the other engine*.ts files only.
let memAddrOf: (m: DeviceMem, off: number, need: number) => number;
let memCtxOf: (m: DeviceMem) => MemOwner;
let memCellOf: (m: DeviceMem) => Cell;
let hostAddrOf: (h: PinnedHost, off: number, need: number) => number;
let graphHandleOf: (g: Graph) => number;

/** @internal The address `off` bytes into `m`, checked for `need` bytes; throws when destroyed. */
export const memAddr = (m: DeviceMem, off: number, need: number): number => memAddrOf(m, off, need);
/** @internal The context that owns `m`. */
export const memCtx = (m: DeviceMem): MemOwner => memCtxOf(m);
/** @internal The allocation cell of `m`. */
export const memCell = (m: DeviceMem): Cell => memCellOf(m);
/** @internal The address `off` bytes into `h`, checked for `need` bytes; throws when destroyed. */
export const hostAddr = (h: PinnedHost, off: number, need: number): number => hostAddrOf(h, off, need);
/** @internal The native handle of `g`; throws when destroyed. */
export const graphHandle = (g: Graph): number => graphHandleOf(g);

/** Device memory owned by a context. */
export class DeviceMem implements Disposable {
  readonly #ctx: MemOwner;
  readonly #cell: Cell;
  /** @internal Use `ctx.alloc()`. */
  constructor(ctx: MemOwner, cell: Cell, readonly bytes: number, readonly label: string) {
    this.#ctx = ctx;
    this.#cell = cell;
  }
  static {
    memAddrOf = (m, off, need) => {
      if (m.#cell.freed) throw new TrtbError("NATIVE_DESTROYED", `device memory ${m.label} (${m.bytes} bytes) is destroyed`);
      if (off < 0 || off + need > m.bytes)
        throw new TrtbError("NATIVE_INVALID_ARG", `[${off}, ${off + need}) is outside device memory ${m.label} of ${m.bytes} bytes`);
      return m.#cell.ptr + off;
    };
    memCtxOf = (m) => m.#ctx;
    memCellOf = (m) => m.#cell;
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
    hostAddrOf = (h, off, need) => {
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
    graphHandleOf = (g) => {
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

/** Module-internal: the address of a ref (for CPU emulation of programs in tests). */
export function refAddress(r: DevRef | HostRef, need = 0): number {
  return r instanceof DevRef ? memAddr(r.mem, r.offset, need) : hostAddr(r.host, r.offset, need);
}
