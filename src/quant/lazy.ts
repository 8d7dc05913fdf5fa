/**
 * Lazy tensors for quantized checkpoints. A `QuantizedLinear` owns one fp weight (itself lazy: a
 * mapped view, or a split/fusion of views) and produces its quantized tensor and its scales in one
 * kernel call. The checkpoint writer asks for the quantized tensor first, with its whole destination
 * (the scratch buffer it then writes to the file), so the kernel writes straight there; the scales
 * are kept until written, then dropped.
 *
 * The fp input is handed to the kernel without a copy when it is one view of the source in the
 * model dtype (`directBytes()`, e.g. a column split of a mapped tensor); otherwise it is assembled
 * once into a reused buffer.
 */
import { type DType, DTYPE_SIZE } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import { LazyTensor } from "../tensor/lazy.ts";
import { castInto } from "../tensor/cast.ts";
import { checkFinite } from "../tensor/finite.ts";
import type { QuantBackend } from "./backend.ts";
import { type FloatDType, type QuantKernelParams, quantSizes } from "./kernel.ts";

let fpScratch = new Uint8Array(0);

/** `w`'s bytes in `dtype`: its mapped view when it is one, else assembled into a reused buffer. */
export function fpBytesOf(w: LazyTensor, dtype: FloatDType): Uint8Array {
  if (w.dtype === dtype) {
    const d = w.directBytes();
    if (d) return d;
  }
  const n = w.numel * DTYPE_SIZE[dtype];
  if (fpScratch.byteLength < n) fpScratch = new Uint8Array(n);
  const buf = fpScratch.subarray(0, n);
  w.writeRange(buf, dtype, 0, w.numel);
  return buf;
}

/** Drop the reused assembly buffer (after a checkpoint is written). */
export function releaseQuantScratch(): void {
  fpScratch = new Uint8Array(0);
}

export class QuantizedLinear {
  #q: Uint8Array | null = null;
  #s: Uint8Array | null = null;
  #qDone = false;
  #sDone = false;
  readonly sizes: { q: number; scales: number };

  constructor(readonly weight: LazyTensor, readonly params: QuantKernelParams, readonly backend: QuantBackend) {
    this.sizes = quantSizes(params);
    if (weight.numel !== params.rows * params.cols)
      throw new TrtbError("QUANT_SHAPE", `${weight.name}: ${weight.numel} elements do not form a ${params.rows}×${params.cols} matrix`, { tensor: weight.name });
  }

  #compute(into?: Uint8Array): void {
    const q = into ?? new Uint8Array(this.sizes.q);
    const s = new Uint8Array(this.sizes.scales);
    const src = fpBytesOf(this.weight, this.params.srcDtype);
    // Quantization would hide NaN/Inf (int4 of NaN is a finite value): scan the fp input first.
    checkFinite(src, this.params.srcDtype, { tensor: this.weight.name, shape: [this.params.rows, this.params.cols] });
    this.backend.quantize(this.params, src, q, s);
    this.#s = s;
    this.#q = into ? null : q;
  }

  #maybeRelease(): void {
    if (this.#qDone && this.#sDone) {
      this.#q = null;
      this.#s = null;
      this.#qDone = this.#sDone = false;
    }
  }

  /** Bytes [start, start + count) of the quantized tensor into dst. */
  writeQ(dst: Uint8Array, start: number, count: number): void {
    if (start === 0 && count === this.sizes.q && !this.#q) this.#compute(dst);
    else {
      if (!this.#q) this.#compute();
      dst.set(this.#q!.subarray(start, start + count));
    }
    if (start + count === this.sizes.q) this.#qDone = true;
    this.#maybeRelease();
  }

  /** The scales as stored (params.scaleDtype). */
  scales(): Uint8Array {
    if (!this.#s) this.#compute();
    return this.#s!;
  }

  scalesWritten(): void {
    this.#sDone = true;
    this.#maybeRelease();
  }
}

/** The quantized tensor of a `QuantizedLinear` (I8 or F8_E4M3 bytes, one byte per stored element). */
export class QuantTensor extends LazyTensor {
  constructor(name: string, dtype: "I8" | "F8_E4M3", shape: readonly number[], readonly owner: QuantizedLinear) {
    super(name, dtype, shape);
    if (this.numel !== owner.sizes.q) throw new TrtbError("QUANT_SHAPE", `${name}: shape [${shape}] does not hold ${owner.sizes.q} bytes`, { tensor: name });
  }
  writeRange(dst: Uint8Array, dtype: DType, start: number, count: number): void {
    if (dtype !== this.dtype) throw new TrtbError("QUANT_DTYPE", `${this.name}: a ${this.dtype} tensor cannot be written as ${dtype}`, { tensor: this.name });
    this.owner.writeQ(dst, start, count);
  }
}

/** The scales of a `QuantizedLinear`, in the dtype the kernel stored them. */
export class ScaleTensor extends LazyTensor {
  constructor(name: string, shape: readonly number[], readonly owner: QuantizedLinear) {
    super(name, owner.params.scaleDtype, shape);
    if (this.numel * DTYPE_SIZE[this.dtype] !== owner.sizes.scales)
      throw new TrtbError("QUANT_SHAPE", `${name}: shape [${shape}] does not hold the ${owner.sizes.scales} scale bytes`, { tensor: name });
  }
  writeRange(dst: Uint8Array, dtype: DType, start: number, count: number): void {
    const es = DTYPE_SIZE[this.dtype];
    castInto(this.owner.scales().subarray(start * es, (start + count) * es), this.dtype, dst, dtype);
    if (start + count === this.numel) this.owner.scalesWritten();
  }
}

const ONE_BITS: Partial<Record<DType, [number, number]>> = { F32: [0x3f800000, 4], F16: [0x3c00, 2], BF16: [0x3f80, 2] };

/** A tensor of ones (AWQ's prequant_scaling_factor when there is no calibration). */
export class OnesTensor extends LazyTensor {
  writeRange(dst: Uint8Array, dtype: DType, _start: number, count: number): void {
    const one = ONE_BITS[dtype];
    if (!one) throw new TrtbError("QUANT_DTYPE", `${this.name}: cannot write ones as ${dtype}`, { tensor: this.name });
    const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
    for (let i = 0; i < count; i++) {
      if (one[1] === 4) dv.setUint32(i * 4, one[0], true);
      else dv.setUint16(i * 2, one[0], true);
    }
  }
}

/** An F32 tensor computed on first use (the runner's dequantized weights). */
export class ComputedF32 extends LazyTensor {
  #cache: Float32Array | null = null;
  constructor(name: string, shape: readonly number[], private readonly fn: () => Float32Array) {
    super(name, "F32", shape);
  }
  values(): Float32Array {
    if (!this.#cache) {
      const v = this.fn();
      if (v.length !== this.numel) throw new TrtbError("QUANT_SHAPE", `${this.name}: computed ${v.length} values for shape [${this.shape}]`);
      this.#cache = v;
    }
    return this.#cache;
  }
  writeRange(dst: Uint8Array, dtype: DType, start: number, count: number): void {
    const v = this.values();
    castInto(new Uint8Array(v.buffer, v.byteOffset + start * 4, count * 4), "F32", dst, dtype);
  }
}
