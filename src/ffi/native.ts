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
import { ACT_CODE, DTYPE_CODE, encodeQuantParams, GEMM_FLAG, GEMM_ISA_CODE } from "./symbols.ts";

/** Kernel sets of `gemmF32` (`trtb_gemm_isa`). */
export type GemmIsa = keyof typeof GEMM_ISA_CODE;

/** Leading dimensions (in floats; default: the row lengths, i.e. dense) and W's layout for `gemmF32`. */
export interface GemmOptions {
  ldx?: number;
  ldw?: number;
  ldy?: number;
  /** W is [k, n] (row i at w[i·ldw]) instead of [n, k] (row c = output channel c). */
  wKN?: boolean;
}

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
   * `bits` (src/engine/wo-layout.ts), threaded. Throws `TrtbError` (`NATIVE_INVALID_ARG`, `NATIVE_SIZE`).
   */
  woPack(q: Uint8Array, rows: number, cols: number, bits: 8 | 4, dst: Uint8Array): void;
  /**
   * `trtb_gemm_f32`: y[r·ldy + c] = Σ_i x[r·ldx + i] · W(c, i) (+ bias[c]) for r < m, c < n, i < k;
   * W(c, i) = w[c·ldw + i], or w[i·ldw + c] with `wKN`. Threaded, vectorised; each element's
   * summation order depends only on k and the kernel set, so a row's result does not depend on m,
   * n or the thread count. Views may be longer than the extents used. Throws `TrtbError`
   * (`NATIVE_SIZE` for short buffers or a bias that is not n long, `NATIVE_INVALID_ARG`).
   */
  gemmF32(x: Float32Array, w: Float32Array, bias: Float32Array | null, y: Float32Array, m: number, n: number, k: number, opts?: GemmOptions): void;
  /** `trtb_gemm_isa`: the kernel set in use; with `set`, use that one (`auto`: the widest this CPU has). Throws `NATIVE_UNSUPPORTED` for one this CPU lacks. */
  gemmIsa(set?: GemmIsa): GemmIsa;
  /**
   * `trtb_find_nonfinite` (ABI 5): index of the first NaN/Inf element of `src` (dtype `dtype`), or
   * -1 when all are finite (integer dtypes always are); threaded, like `firstNonFiniteTS` in
   * src/numeric.ts. Throws `TrtbError` (`NATIVE_DTYPE`, `NATIVE_SIZE`).
   */
  findNonFinite(src: Uint8Array, dtype: DType): number;
  /**
   * `trtb_gated_act_f32`: y[r·cols + c] = act(a[r·lda + c]) · g[r·ldg + c] for rows × cols, in f32
   * (a few ulp from exact; the same on every CPU). Throws `TrtbError` (`NATIVE_SIZE`, `NATIVE_INVALID_ARG`).
   */
  gatedAct(a: Float32Array, g: Float32Array, y: Float32Array, rows: number, cols: number, act: keyof typeof ACT_CODE, lda?: number, ldg?: number): void;
}

function f32Arg(name: string, a: Float32Array): Float32Array | null {
  if (!(a instanceof Float32Array)) throw new TrtbError("NATIVE_INVALID_ARG", `${name} must be a Float32Array, got ${Object.prototype.toString.call(a)}`);
  return a.byteLength === 0 ? null : a;
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

  gemmF32(x: Float32Array, w: Float32Array, bias: Float32Array | null, y: Float32Array, m: number, n: number, k: number, opts?: GemmOptions): void {
    const kn = opts?.wKN === true;
    const ldx = sizeArg("ldx", opts?.ldx ?? k);
    const ldw = sizeArg("ldw", opts?.ldw ?? (kn ? n : k));
    const ldy = sizeArg("ldy", opts?.ldy ?? n);
    const bp = bias === null ? null : f32Arg("bias", bias);
    this.#check(
      this.#s.trtb_gemm_f32(
        f32Arg("x", x), x.byteLength, f32Arg("w", w), w.byteLength, bp, bp === null ? 0 : bias!.byteLength, f32Arg("y", y), y.byteLength,
        sizeArg("m", m), sizeArg("n", n), sizeArg("k", k), ldx, ldw, ldy, kn ? GEMM_FLAG.W_KN : 0,
      ),
    );
  }

  gatedAct(a: Float32Array, g: Float32Array, y: Float32Array, rows: number, cols: number, act: keyof typeof ACT_CODE, lda = cols, ldg = cols): void {
    const code = ACT_CODE[act];
    if (code === undefined) throw new TrtbError("NATIVE_INVALID_ARG", `unknown activation ${String(act)}`);
    this.#check(
      this.#s.trtb_gated_act_f32(f32Arg("a", a), a.byteLength, f32Arg("g", g), g.byteLength, f32Arg("y", y), y.byteLength,
        sizeArg("rows", rows), sizeArg("cols", cols), sizeArg("lda", lda), sizeArg("ldg", ldg), code),
    );
  }

  gemmIsa(set?: GemmIsa): GemmIsa {
    const req = set === undefined ? -1 : GEMM_ISA_CODE[set];
    if (req === undefined) throw new TrtbError("NATIVE_INVALID_ARG", `unknown GEMM kernel set ${String(set)}`);
    const r = this.#s.trtb_gemm_isa(req);
    this.#check(r < 0 ? r : 0);
    const name = (Object.keys(GEMM_ISA_CODE) as GemmIsa[]).find((key) => GEMM_ISA_CODE[key] === r);
    if (!name) throw new TrtbError("NATIVE_INTERNAL", `trtb_gemm_isa returned ${r}`);
    return name;
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
