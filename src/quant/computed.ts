/**
 * Lazy tensors computed in TypeScript on first use, for the calibrated schemes whose scales come
 * from statistics rather than from the kernel's own amax (FP8 per tensor, SmoothQuant int8 with
 * full-row scales): raw bytes in any dtype, computed once and dropped after they are written.
 */
import { type DType, DTYPE_SIZE } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import { castInto } from "../tensor/cast.ts";
import { LazyTensor } from "../tensor/lazy.ts";

export class ComputedBytes extends LazyTensor {
  #bytes: Uint8Array | null = null;
  constructor(name: string, dtype: DType, shape: readonly number[], private readonly fn: () => Uint8Array) {
    super(name, dtype, shape);
  }
  override bytes(): Uint8Array {
    if (!this.#bytes) {
      const b = this.fn();
      if (b.byteLength !== this.numel * DTYPE_SIZE[this.dtype]) throw new TrtbError("QUANT_SIZE", `${this.name}: computed ${b.byteLength} bytes for [${this.shape}] ${this.dtype}`, { tensor: this.name });
      this.#bytes = b;
    }
    return this.#bytes;
  }
  writeRange(dst: Uint8Array, dtype: DType, start: number, count: number): void {
    const es = DTYPE_SIZE[this.dtype];
    const src = this.bytes().subarray(start * es, (start + count) * es);
    if (dtype === this.dtype) dst.set(src);
    else if (this.dtype === "F8_E4M3" || this.dtype === "I8") throw new TrtbError("QUANT_DTYPE", `${this.name}: a ${this.dtype} tensor cannot be written as ${dtype}`, { tensor: this.name });
    else castInto(src, this.dtype, dst, dtype);
    if (start + count === this.numel) this.#bytes = null;
  }
}

/** An F32 tensor of given values. */
export function f32Values(name: string, shape: readonly number[], fn: () => Float32Array): ComputedBytes {
  return new ComputedBytes(name, "F32", shape, () => {
    const v = fn();
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  });
}
