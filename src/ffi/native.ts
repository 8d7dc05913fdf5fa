/**
 * The CPU library behind the `Native` interface: argument checks on the TypeScript side (things
 * bun:ffi would otherwise turn into crashes or wrapped integers), then one native call, then the
 * status check.
 */
import type { Library } from "bun:ffi";
import type { DType } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import { type Checker, makeChecker } from "./check.ts";
import type { QuantKernelParams } from "./quant-params.ts";
import type { CpuSymbols } from "./symbols.ts";
import { DTYPE_CODE, encodeQuantParams } from "./symbols.ts";

/** CPU kernels of libtrtb. All buffers are host memory (`Uint8Array`, possibly `Bun.mmap`ed). */
export interface Native {
  /** `trtb_abi_version()` of the loaded library. */
  readonly abiVersion: number;
  /** Where the library was loaded from. */
  readonly path: string;
  /**
   * Convert `src` (dtype `from`) into `dst` (dtype `to`): F32/F16/BF16 among themselves, bit for
   * bit like `src/numeric.ts` (round to nearest even, overflow to inf, NaN kept); same dtype is a
   * copy. `dst.byteLength` must be exactly the converted size. Throws `TrtbError`
   * (`NATIVE_DTYPE`, `NATIVE_SIZE`, `NATIVE_INVALID_ARG` for overlapping buffers).
   */
  convert(src: Uint8Array, from: DType, dst: Uint8Array, to: DType): void;
  /**
   * `dst` (cols x rows) = transpose of `src` (rows x cols), row-major, `elemBytes` 1/2/4/8.
   * Throws `TrtbError` (`NATIVE_SIZE`, `NATIVE_INVALID_ARG`).
   */
  transpose2d(src: Uint8Array, dst: Uint8Array, rows: number, cols: number, elemBytes: number): void;
  /** Threads the large-buffer paths may use (0 = one per CPU, the default). Returns the old value. */
  setNumThreads(n: number): number;
  /**
   * `trtb_quantize` (ABI 2): quantize `src` (p.rows × p.cols of p.srcDtype) into `dst` (int8, int4
   * packed along rows, or fp8) and `scales` in one threaded pass, bit for bit like
   * `src/quant/kernel.ts`. Throws `TrtbError` (`NATIVE_INVALID_ARG`, `NATIVE_DTYPE`, `NATIVE_SIZE`).
   */
  quantize(p: QuantKernelParams, src: Uint8Array, dst: Uint8Array, scales: Uint8Array): void;
  /** `trtb_dequantize`: `dst` (dstDtype F32/F16/BF16) = q · scale per group. Same errors. */
  dequantize(p: QuantKernelParams, q: Uint8Array, scales: Uint8Array, dst: Uint8Array, dstDtype: DType): void;
  /**
   * `trtb_wo_pack` (ABI 3): int8 values `q` [rows, cols] into the engine weight-only layout of
   * `bits` (src/build/wo-pack.ts), threaded. Throws `TrtbError` (`NATIVE_INVALID_ARG`, `NATIVE_SIZE`).
   */
  woPack(q: Uint8Array, rows: number, cols: number, bits: 8 | 4, dst: Uint8Array): void;
  /**
   * `trtb_find_nonfinite` (ABI 5): index of the first NaN/Inf element of `src` (dtype `dtype`), or
   * -1 when all are finite (integer dtypes always are); threaded, like `firstNonFiniteTS` in
   * src/numeric.ts. Throws `TrtbError` (`NATIVE_DTYPE`, `NATIVE_SIZE`).
   */
  findNonFinite(src: Uint8Array, dtype: DType): number;
}

/** The params struct, after checking the integers bun:ffi would otherwise wrap. */
export function quantParamsArg(p: QuantKernelParams): Uint8Array {
  sizeArg("rows", p.rows);
  sizeArg("cols", p.cols);
  sizeArg("groupSize", p.groupSize);
  for (const k of ["qmin", "qmax"] as const)
    if (!Number.isInteger(p[k]) || Math.abs(p[k]) > 0x7fffffff) throw new TrtbError("NATIVE_INVALID_ARG", `${k} must be an int32, got ${p[k]}`);
  dtypeArg("srcDtype", p.srcDtype);
  dtypeArg("scaleDtype", p.scaleDtype);
  return encodeQuantParams(p);
}

/** A host buffer as bun:ffi wants it. Refuses non-views: a bare ArrayBuffer segfaults bun:ffi. */
export function hostArg(name: string, a: Uint8Array): Uint8Array | null {
  if (!ArrayBuffer.isView(a))
    throw new TrtbError("NATIVE_INVALID_ARG", `${name} must be a Uint8Array (or another typed array view), got ${Object.prototype.toString.call(a)}`);
  // ptr() refuses empty views; the C side accepts NULL with length 0.
  return a.byteLength === 0 ? null : a;
}

/** A non-negative integer that bun:ffi will pass to a u64 without wrapping. */
export function sizeArg(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 0)
    throw new TrtbError("NATIVE_INVALID_ARG", `${name} must be a non-negative integer, got ${v}`);
  return v;
}

export function dtypeArg(name: string, d: DType): number {
  const code = DTYPE_CODE[d];
  if (code === undefined) throw new TrtbError("NATIVE_DTYPE", `${name}: ${String(d)} is not a dtype`);
  return code;
}

export class NativeLib implements Native {
  readonly #s: Library<CpuSymbols>["symbols"];
  readonly #check: Checker;

  constructor(
    lib: Library<CpuSymbols>,
    readonly path: string,
    readonly abiVersion: number,
  ) {
    this.#s = lib.symbols;
    const s = this.#s;
    this.#check = makeChecker({ lastError: (b, n) => s.trtb_last_error(b, n), statusStr: (st) => s.trtb_status_str(st) });
  }

  convert(src: Uint8Array, from: DType, dst: Uint8Array, to: DType): void {
    const f = dtypeArg("from", from);
    const t = dtypeArg("to", to);
    const sp = hostArg("src", src);
    const dp = hostArg("dst", dst);
    this.#check(this.#s.trtb_cast(sp, src.byteLength, f, dp, dst.byteLength, t));
  }

  transpose2d(src: Uint8Array, dst: Uint8Array, rows: number, cols: number, elemBytes: number): void {
    const sp = hostArg("src", src);
    const dp = hostArg("dst", dst);
    const r = sizeArg("rows", rows);
    const c = sizeArg("cols", cols);
    const e = sizeArg("elemBytes", elemBytes);
    if (e > 0xffffffff) throw new TrtbError("NATIVE_INVALID_ARG", `elemBytes must be 1, 2, 4 or 8, got ${elemBytes}`);
    this.#check(this.#s.trtb_transpose2d(sp, src.byteLength, dp, dst.byteLength, r, c, e));
  }

  setNumThreads(n: number): number {
    if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff)
      throw new TrtbError("NATIVE_INVALID_ARG", `thread count must be a non-negative integer, got ${n}`);
    return this.#s.trtb_set_num_threads(n);
  }

  quantize(p: QuantKernelParams, src: Uint8Array, dst: Uint8Array, scales: Uint8Array): void {
    const pp = quantParamsArg(p);
    const sp = hostArg("src", src);
    const dp = hostArg("dst", dst);
    const cp = hostArg("scales", scales);
    this.#check(this.#s.trtb_quantize(pp, sp, src.byteLength, dp, dst.byteLength, cp, scales.byteLength));
  }

  woPack(q: Uint8Array, rows: number, cols: number, bits: 8 | 4, dst: Uint8Array): void {
    if (bits !== 8 && bits !== 4) throw new TrtbError("NATIVE_INVALID_ARG", `bits must be 8 or 4, got ${bits}`);
    this.#check(this.#s.trtb_wo_pack(hostArg("q", q), q.byteLength, sizeArg("rows", rows), sizeArg("cols", cols), bits, hostArg("dst", dst), dst.byteLength));
  }

  findNonFinite(src: Uint8Array, dtype: DType): number {
    const out = new BigUint64Array(1);
    this.#check(this.#s.trtb_find_nonfinite(hostArg("src", src), src.byteLength, dtypeArg("dtype", dtype), out));
    return out[0] === 0xffffffffffffffffn ? -1 : Number(out[0]);
  }

  dequantize(p: QuantKernelParams, q: Uint8Array, scales: Uint8Array, dst: Uint8Array, dstDtype: DType): void {
    const pp = quantParamsArg(p);
    const t = dtypeArg("dstDtype", dstDtype);
    const qp = hostArg("q", q);
    const cp = hostArg("scales", scales);
    const dp = hostArg("dst", dst);
    this.#check(this.#s.trtb_dequantize(pp, qp, q.byteLength, cp, scales.byteLength, dp, dst.byteLength, t));
  }
}
