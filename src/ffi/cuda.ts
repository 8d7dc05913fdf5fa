/**
 * The CUDA library behind the `Cuda` interface: devices, owning `DeviceBuffer` and `Stream`
 * classes, and the GPU kernels.
 *
 * Ownership: a `DeviceBuffer` or `Stream` owns its native object and frees it on `destroy()` or
 * `[Symbol.dispose]` (`using buf = cuda.alloc(n)`). Any use after that throws `NATIVE_DESTROYED`
 * instead of touching freed memory. A `FinalizationRegistry` frees what was dropped without
 * `destroy()`, as a backstop only: GC timing is unpredictable and device memory is scarce.
 *
 * Ordering: every operation takes an optional `Stream`; without one it goes on the device's
 * default stream (one per device, created on first use), so operations that name no stream run in
 * the order they were issued. Kernels are asynchronous. Host copies (`upload`, `download`) wait for
 * their stream before returning, because the host side is JS memory that the GC owns.
 *
 * Adding a kernel (quantization, ...): add its C entry point to trtb.h and `CUDA_SYMBOLS`, then a
 * method on `CudaLib` that checks its arguments, resolves buffers with `devicePtr()` and streams
 * with `this.#stream()`, and passes the status to `this.#check`.
 */
import type { Library, Pointer } from "bun:ffi";
import type { DType } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import { type Checker, makeChecker } from "./check.ts";
import { debugFfi } from "./lib.ts";
import type { QuantKernelParams } from "./quant-params.ts";
import { dtypeArg, hostArg, quantParamsArg, sizeArg } from "./native.ts";
import type { CudaSymbols } from "./symbols.ts";
import { CUDA_FEATURE, DEVICE_PROPS } from "./symbols.ts";

type Syms = Library<CudaSymbols>["symbols"];

const asPtr = (p: number): Pointer | null => (p === 0 ? null : (p as Pointer));

/** Properties of one device. */
export interface DeviceProps {
  readonly name: string;
  /** Compute capability, e.g. 9.0 for H100 is `{ major: 9, minor: 0 }`. */
  readonly major: number;
  readonly minor: number;
  readonly multiprocessors: number;
  /** Bytes of device memory. */
  readonly totalMemory: number;
}

/** GPU access through libtrtb_cuda. Obtain it with `cudaLib()`. */
export interface Cuda {
  readonly abiVersion: number;
  /** Where the library was loaded from. */
  readonly path: string;
  /** CUDA runtime built into the library, e.g. 13000 for 13.0. */
  readonly runtimeVersion: number;
  /** Newest CUDA version the installed driver supports (same encoding). */
  readonly driverVersion: number;
  /** Optional parts compiled in. */
  readonly features: { readonly cublasLt: boolean; readonly tensorrt: boolean };
  /** Number of visible devices (at least 1: `cudaLib()` throws `CUDA_NO_DEVICE` otherwise). */
  deviceCount(): number;
  deviceProps(device?: number): DeviceProps;
  /** Allocate `byteLength` bytes of uninitialized device memory. */
  alloc(byteLength: number, device?: number): DeviceBuffer;
  /** Allocate a device buffer holding a copy of `host`. */
  upload(host: Uint8Array, opts?: { device?: number; stream?: Stream }): DeviceBuffer;
  /** A new stream, owned by the caller (destroy it). */
  createStream(device?: number): Stream;
  /** The device's default stream, owned by this object (its `destroy()` does nothing). */
  defaultStream(device?: number): Stream;
  /** `trtb_cast` on the GPU (same rules, bit-identical), queued on the stream. */
  convert(src: DeviceBuffer, from: DType, dst: DeviceBuffer, to: DType, stream?: Stream): void;
  /** `dst` (cols x rows) = transpose of `src` (rows x cols), queued on the stream. */
  transpose2d(src: DeviceBuffer, dst: DeviceBuffer, rows: number, cols: number, elemBytes: number, stream?: Stream): void;
  /** Wait for all work on `device` (cudaDeviceSynchronize). */
  synchronize(device?: number): void;
  /** `trtb_cuda_quantize` (ABI 2): `Native.quantize` on device buffers, bit-identical, queued on the stream. */
  quantize(p: QuantKernelParams, src: DeviceBuffer, dst: DeviceBuffer, scales: DeviceBuffer, stream?: Stream): void;
  /** `trtb_cuda_dequantize`: `Native.dequantize` on device buffers, queued on the stream. */
  dequantize(p: QuantKernelParams, q: DeviceBuffer, scales: DeviceBuffer, dst: DeviceBuffer, dstDtype: DType, stream?: Stream): void;
  /** Device-to-device copy of `src` into `dst` (same byte length), queued on the stream. */
  copy(src: DeviceBuffer, dst: DeviceBuffer, stream?: Stream): void;
}

// ---- owning classes ---------------------------------------------------------------------------

/** One device allocation, shared by a buffer and its views. Held by the finalizer, so it must not
 * reference the buffer itself. */
interface Allocation {
  ptr: number;
  readonly bytes: number;
  readonly device: number;
  freed: boolean;
}

/** Internal access for this module, set up in the classes' static blocks. */
let devicePtrOf: (b: DeviceBuffer) => number;
let streamHandleOf: (s: Stream) => number;
let streamCellOf: (s: Stream) => { handle: number };
let bufferCtx: (b: DeviceBuffer) => CudaLib;

/**
 * Device memory. Either owns an allocation (from `alloc`/`upload`) or is a view of part of one
 * (from `subarray`), like a TypedArray over an ArrayBuffer. Destroying the owner invalidates its
 * views; destroying a view only detaches that view.
 */
export class DeviceBuffer implements Disposable {
  readonly #ctx: CudaLib;
  readonly #alloc: Allocation;
  readonly #offset: number;
  readonly #owner: DeviceBuffer | null; // keeps the owner (and its allocation) alive from a view
  #detached = false;
  /** Size in bytes. */
  readonly byteLength: number;
  /** CUDA device ordinal. */
  readonly device: number;

  /** @internal Use `cuda.alloc()`, `cuda.upload()` or `subarray()`. */
  constructor(ctx: CudaLib, alloc: Allocation, offset: number, byteLength: number, owner: DeviceBuffer | null) {
    this.#ctx = ctx;
    this.#alloc = alloc;
    this.#offset = offset;
    this.#owner = owner;
    this.byteLength = byteLength;
    this.device = alloc.device;
  }

  static {
    devicePtrOf = (b) => {
      b.#guard();
      return b.#alloc.ptr + b.#offset;
    };
    bufferCtx = (b) => b.#ctx;
  }

  /** True after `destroy()` (of this buffer, or of the owner of this view). */
  get destroyed(): boolean {
    return this.#detached || this.#alloc.freed;
  }

  /** True for a view made by `subarray`. */
  get isView(): boolean {
    return this.#owner !== null;
  }

  #guard(): void {
    if (this.destroyed)
      throw new TrtbError("NATIVE_DESTROYED", `DeviceBuffer (${this.byteLength} bytes on cuda:${this.device}) is destroyed`);
  }

  /** A view of bytes [begin, end) of this buffer, sharing its memory. */
  subarray(begin: number, end: number = this.byteLength): DeviceBuffer {
    this.#guard();
    if (!Number.isSafeInteger(begin) || !Number.isSafeInteger(end) || begin < 0 || end < begin || end > this.byteLength)
      throw new TrtbError("NATIVE_INVALID_ARG", `subarray(${begin}, ${end}) is outside a ${this.byteLength}-byte DeviceBuffer`);
    return new DeviceBuffer(this.#ctx, this.#alloc, this.#offset + begin, end - begin, this.#owner ?? this);
  }

  /** Copy `src` (exactly `byteLength` bytes) to the device; returns when the copy is done. */
  upload(src: Uint8Array, stream?: Stream): void {
    this.#guard();
    this.#ctx.copyHostToDevice(this, src, stream);
  }

  /** Copy the buffer to `dst` (or a new Uint8Array); returns it when the copy is done. */
  download(dst?: Uint8Array, stream?: Stream): Uint8Array {
    this.#guard();
    const out = dst ?? new Uint8Array(this.byteLength);
    this.#ctx.copyDeviceToHost(out, this, stream);
    return out;
  }

  /** Free the allocation (owner) or detach (view). Idempotent. */
  destroy(): void {
    if (this.#owner !== null) {
      this.#detached = true;
      return;
    }
    if (this.#alloc.freed) return;
    this.#ctx.freeAllocation(this.#alloc, this);
  }

  [Symbol.dispose](): void {
    this.destroy();
  }
}

/** A CUDA stream on one device. */
export class Stream implements Disposable {
  readonly #ctx: CudaLib;
  readonly #h: { handle: number };
  readonly #isDefault: boolean;
  readonly device: number;

  /** @internal Use `cuda.createStream()` or `cuda.defaultStream()`. */
  constructor(ctx: CudaLib, handle: number, device: number, isDefault: boolean) {
    this.#ctx = ctx;
    this.#h = { handle };
    this.device = device;
    this.#isDefault = isDefault;
  }

  static {
    streamHandleOf = (s) => {
      if (s.#h.handle === 0) throw new TrtbError("NATIVE_DESTROYED", `Stream on cuda:${s.device} is destroyed`);
      return s.#h.handle;
    };
    streamCellOf = (s) => s.#h;
  }

  get destroyed(): boolean {
    return this.#h.handle === 0;
  }

  /** Wait until everything queued on this stream has finished. */
  synchronize(): void {
    this.#ctx.syncStream(streamHandleOf(this));
  }

  /** Wait for pending work, then destroy the stream. Idempotent; does nothing on a default stream. */
  destroy(): void {
    if (this.#isDefault || this.#h.handle === 0) return;
    this.#ctx.destroyStream(this.#h, this);
  }

  [Symbol.dispose](): void {
    this.destroy();
  }
}

/** Device address of a live buffer, for other `src/ffi/` modules that add kernels. */
export function devicePtr(b: DeviceBuffer): number {
  return devicePtrOf(b);
}

// ---- the library ------------------------------------------------------------------------------

export class CudaLib implements Cuda {
  readonly #s: Syms;
  readonly #check: Checker;
  readonly #defaultStreams = new Map<number, Stream>();
  readonly #out = new BigUint64Array(1);
  readonly #i32 = new Int32Array(1);
  readonly #buffers: FinalizationRegistry<Allocation>;
  readonly #streams: FinalizationRegistry<{ handle: number }>;
  readonly runtimeVersion: number;
  readonly driverVersion: number;
  readonly features: { readonly cublasLt: boolean; readonly tensorrt: boolean };

  constructor(
    lib: Library<CudaSymbols>,
    readonly path: string,
    readonly abiVersion: number,
  ) {
    const s = (this.#s = lib.symbols);
    this.#check = makeChecker({ lastError: (b, n) => s.trtb_cuda_last_error(b, n), statusStr: (st) => s.trtb_cuda_status_str(st) });
    this.runtimeVersion = s.trtb_cuda_runtime_version();
    this.driverVersion = s.trtb_cuda_driver_version();
    const f = s.trtb_cuda_features();
    this.features = { cublasLt: (f & CUDA_FEATURE.CUBLASLT) !== 0, tensorrt: (f & CUDA_FEATURE.TENSORRT) !== 0 };
    this.#buffers = new FinalizationRegistry((a) => {
      if (a.freed) return;
      a.freed = true;
      debugFfi(`DeviceBuffer of ${a.bytes} bytes on cuda:${a.device} was garbage-collected without destroy(); freeing it`);
      s.trtb_cuda_free(asPtr(a.ptr));
    });
    this.#streams = new FinalizationRegistry((cell) => {
      if (cell.handle === 0) return;
      const h = cell.handle;
      cell.handle = 0;
      debugFfi("Stream was garbage-collected without destroy(); destroying it");
      s.trtb_cuda_stream_destroy(asPtr(h));
    });
  }

  /** Throws CUDA_UNAVAILABLE / CUDA_NO_DEVICE unless a device can be used. */
  probe(): number {
    const st = this.#s.trtb_cuda_device_count(this.#i32);
    this.#check(st);
    const n = this.#i32[0]!;
    if (n === 0)
      throw new TrtbError(
        "CUDA_NO_DEVICE",
        `no CUDA device is visible (driver supports CUDA ${fmtVersion(this.driverVersion)}; check nvidia-smi and CUDA_VISIBLE_DEVICES)`,
      );
    return n;
  }

  deviceCount(): number {
    this.#check(this.#s.trtb_cuda_device_count(this.#i32));
    return this.#i32[0]!;
  }

  deviceProps(device = 0): DeviceProps {
    const buf = new Uint8Array(DEVICE_PROPS.size);
    const dv = new DataView(buf.buffer);
    dv.setUint32(0, DEVICE_PROPS.size, true);
    this.#check(this.#s.trtb_cuda_device_props_get(deviceArg(device), buf));
    const nameBytes = buf.subarray(DEVICE_PROPS.name, DEVICE_PROPS.name + DEVICE_PROPS.nameLength);
    const nul = nameBytes.indexOf(0);
    return {
      name: new TextDecoder().decode(nul >= 0 ? nameBytes.subarray(0, nul) : nameBytes),
      major: dv.getInt32(DEVICE_PROPS.major, true),
      minor: dv.getInt32(DEVICE_PROPS.minor, true),
      multiprocessors: dv.getInt32(DEVICE_PROPS.multiprocessors, true),
      totalMemory: Number(dv.getBigUint64(DEVICE_PROPS.totalMemory, true)),
    };
  }

  alloc(byteLength: number, device = 0): DeviceBuffer {
    sizeArg("byteLength", byteLength);
    this.#check(this.#s.trtb_cuda_malloc(deviceArg(device), byteLength, this.#out));
    const a: Allocation = { ptr: Number(this.#out[0]), bytes: byteLength, device, freed: false };
    const b = new DeviceBuffer(this, a, 0, byteLength, null);
    this.#buffers.register(b, a, b);
    return b;
  }

  upload(host: Uint8Array, opts: { device?: number; stream?: Stream } = {}): DeviceBuffer {
    hostArg("host", host);
    const b = this.alloc(host.byteLength, opts.stream?.device ?? opts.device ?? 0);
    try {
      b.upload(host, opts.stream);
    } catch (e) {
      b.destroy();
      throw e;
    }
    return b;
  }

  createStream(device = 0): Stream {
    this.#check(this.#s.trtb_cuda_stream_create(deviceArg(device), this.#out));
    const st = new Stream(this, Number(this.#out[0]), device, false);
    this.#streams.register(st, streamCellOf(st), st);
    return st;
  }

  defaultStream(device = 0): Stream {
    let st = this.#defaultStreams.get(device);
    if (!st) {
      this.#check(this.#s.trtb_cuda_stream_create(deviceArg(device), this.#out));
      st = new Stream(this, Number(this.#out[0]), device, true);
      this.#defaultStreams.set(device, st);
    }
    return st;
  }

  convert(src: DeviceBuffer, from: DType, dst: DeviceBuffer, to: DType, stream?: Stream): void {
    const f = dtypeArg("from", from);
    const t = dtypeArg("to", to);
    const st = this.#stream([src, dst], stream);
    this.#check(
      this.#s.trtb_cuda_cast(asPtr(st), asPtr(devicePtr(src)), src.byteLength, f, asPtr(devicePtr(dst)), dst.byteLength, t),
    );
  }

  transpose2d(src: DeviceBuffer, dst: DeviceBuffer, rows: number, cols: number, elemBytes: number, stream?: Stream): void {
    const r = sizeArg("rows", rows);
    const c = sizeArg("cols", cols);
    const e = sizeArg("elemBytes", elemBytes);
    if (e > 0xffffffff) throw new TrtbError("NATIVE_INVALID_ARG", `elemBytes must be 1, 2, 4 or 8, got ${elemBytes}`);
    const st = this.#stream([src, dst], stream);
    this.#check(
      this.#s.trtb_cuda_transpose2d(asPtr(st), asPtr(devicePtr(src)), src.byteLength, asPtr(devicePtr(dst)), dst.byteLength, r, c, e),
    );
  }

  synchronize(device = 0): void {
    this.#check(this.#s.trtb_cuda_device_sync(deviceArg(device)));
  }

  quantize(p: QuantKernelParams, src: DeviceBuffer, dst: DeviceBuffer, scales: DeviceBuffer, stream?: Stream): void {
    const pp = quantParamsArg(p);
    const st = this.#stream([src, dst, scales], stream);
    this.#check(this.#s.trtb_cuda_quantize(asPtr(st), pp, asPtr(devicePtr(src)), src.byteLength, asPtr(devicePtr(dst)),
      dst.byteLength, asPtr(devicePtr(scales)), scales.byteLength));
  }

  dequantize(p: QuantKernelParams, q: DeviceBuffer, scales: DeviceBuffer, dst: DeviceBuffer, dstDtype: DType, stream?: Stream): void {
    const pp = quantParamsArg(p);
    const t = dtypeArg("dstDtype", dstDtype);
    const st = this.#stream([q, scales, dst], stream);
    this.#check(this.#s.trtb_cuda_dequantize(asPtr(st), pp, asPtr(devicePtr(q)), q.byteLength, asPtr(devicePtr(scales)),
      scales.byteLength, asPtr(devicePtr(dst)), dst.byteLength, t));
  }

  copy(src: DeviceBuffer, dst: DeviceBuffer, stream?: Stream): void {
    if (src.byteLength !== dst.byteLength)
      throw new TrtbError("NATIVE_SIZE", `copy: source has ${src.byteLength} bytes, destination ${dst.byteLength}`);
    const st = this.#stream([src, dst], stream);
    this.#check(this.#s.trtb_cuda_memcpy_d2d(asPtr(st), asPtr(devicePtr(dst)), asPtr(devicePtr(src)), src.byteLength));
  }

  // ---- used by DeviceBuffer / Stream (module-internal) ----

  /** The handle of `stream`, or of the default stream of the buffers' device; checks devices. */
  #stream(buffers: readonly DeviceBuffer[], stream: Stream | undefined): number {
    const device = buffers[0]!.device;
    for (const b of buffers) {
      if (bufferCtx(b) !== this) throw new TrtbError("NATIVE_INVALID_ARG", "DeviceBuffer belongs to another Cuda instance");
      if (b.device !== device)
        throw new TrtbError("NATIVE_INVALID_ARG", `buffers are on different devices (cuda:${device} and cuda:${b.device})`);
    }
    const s = stream ?? this.defaultStream(device);
    if (s.device !== device)
      throw new TrtbError("NATIVE_INVALID_ARG", `stream is on cuda:${s.device} but the buffers are on cuda:${device}`);
    return streamHandleOf(s);
  }

  copyHostToDevice(dst: DeviceBuffer, src: Uint8Array, stream: Stream | undefined): void {
    const sp = hostArg("src", src);
    if (src.byteLength !== dst.byteLength)
      throw new TrtbError("NATIVE_SIZE", `upload: host buffer has ${src.byteLength} bytes, DeviceBuffer has ${dst.byteLength}`);
    if (src.byteLength === 0) return;
    const st = this.#stream([dst], stream);
    this.#check(this.#s.trtb_cuda_memcpy_h2d(asPtr(st), asPtr(devicePtr(dst)), sp, src.byteLength));
    // The copy reads JS memory: wait for it before the GC may move or free that memory.
    this.syncStream(st);
  }

  copyDeviceToHost(dst: Uint8Array, src: DeviceBuffer, stream: Stream | undefined): void {
    const dp = hostArg("dst", dst);
    if (src.byteLength !== dst.byteLength)
      throw new TrtbError("NATIVE_SIZE", `download: host buffer has ${dst.byteLength} bytes, DeviceBuffer has ${src.byteLength}`);
    if (dst.byteLength === 0) return;
    const st = this.#stream([src], stream);
    this.#check(this.#s.trtb_cuda_memcpy_d2h(asPtr(st), dp, asPtr(devicePtr(src)), dst.byteLength));
    this.syncStream(st);
  }

  syncStream(handle: number): void {
    this.#check(this.#s.trtb_cuda_stream_sync(asPtr(handle)));
  }

  freeAllocation(a: Allocation, owner: DeviceBuffer): void {
    this.#buffers.unregister(owner);
    a.freed = true;
    this.#check(this.#s.trtb_cuda_free(asPtr(a.ptr)));
  }

  destroyStream(cell: { handle: number }, owner: Stream): void {
    this.#streams.unregister(owner);
    const h = cell.handle;
    cell.handle = 0;
    this.#check(this.#s.trtb_cuda_stream_destroy(asPtr(h)));
  }
}

function deviceArg(device: number): number {
  if (!Number.isInteger(device) || device < 0 || device > 0x7fffffff)
    throw new TrtbError("NATIVE_INVALID_ARG", `device must be a non-negative integer, got ${device}`);
  return device;
}

export function fmtVersion(v: number): string {
  return v === 0 ? "none" : `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}
