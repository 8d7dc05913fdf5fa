/**
 * Build-time weight-only quantization and packing: `woPack` (libtrtb, threaded, when it loads; else
 * the TypeScript reference `woPackTS` of src/engine/wo-layout.ts, which has the layout) and the
 * lazy engine tensors of a quantized linear.
 */
import type { DType } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import { nativeLib } from "../ffi/index.ts";
import { toFloat32 } from "../numeric.ts";
import type { QuantBackend } from "../quant/backend.ts";
import { type QuantKernelParams, quantSizes } from "../quant/kernel.ts";
import { fpBytesOf } from "../quant/lazy.ts";
import { castInto } from "../tensor/cast.ts";
import { LazyTensor } from "../tensor/lazy.ts";
import { type WoBits, woKTile, woPackedBytes, woPackTS } from "../engine/wo-layout.ts";

/** Pack `q` (N·K int8 values) into `dst` (woPackedBytes) with libtrtb, or the TypeScript reference. */
export function woPack(q: Int8Array, N: number, K: number, bits: WoBits, dst: Uint8Array): void {
  const n = nativeLib();
  const qb = new Uint8Array(q.buffer, q.byteOffset, q.byteLength);
  if (n) n.woPack(qb, N, K, bits, dst);
  else dst.set(woPackTS(q, N, K, bits));
}

// ---- build-time quantization ----------------------------------------------------------------------

/**
 * One weight-only linear of an engine: its fp weight (lazy), quantized per output channel with the
 * checkpoint scheme's kernel parameters (the same call the CPU runner replays, so both see the same
 * q and scales), packed into the layout above. The packed tensor is written first (the kernel
 * writes straight into the writer's buffer); the scales are kept until written, then dropped.
 */
export class WoLinear {
  #scales: Float32Array | null = null;
  readonly packedBytes: number;

  constructor(readonly weight: LazyTensor, readonly params: QuantKernelParams, readonly bits: WoBits, readonly backend: QuantBackend) {
    if (params.format !== "int8" || params.groupSize !== params.cols)
      throw new TrtbError("BUILD_INTERNAL", `${weight.name}: weight-only engines take per-channel int8-format quantization`);
    this.packedBytes = woPackedBytes(params.rows, params.cols, bits);
  }

  get rows(): number {
    return this.params.rows;
  }

  /** Quantize and pack into `dst` (packedBytes); keeps the scales. */
  pack(dst: Uint8Array): void {
    const p = this.params;
    const sz = quantSizes(p);
    const q = new Uint8Array(sz.q);
    const s = new Uint8Array(sz.scales);
    this.backend.quantize(p, fpBytesOf(this.weight, p.srcDtype), q, s);
    woPack(new Int8Array(q.buffer), p.rows, p.cols, this.bits, dst);
    this.#scales = toFloat32(s, p.scaleDtype);
  }

  /** The per-channel scales as f32 (the stored model-dtype values, widened). */
  scales(): Float32Array {
    if (!this.#scales) this.pack(new Uint8Array(this.packedBytes));
    return this.#scales!;
  }

  release(): void {
    this.#scales = null;
  }
}

/** The packed weights of a WoLinear: I8 [ceil(N/16)·16, K_padded·bits/8]. */
export class WoPackedTensor extends LazyTensor {
  constructor(name: string, readonly owner: WoLinear) {
    const kt = woKTile(owner.bits);
    super(name, "I8", [Math.ceil(owner.params.rows / 16) * 16, (Math.ceil(owner.params.cols / kt) * kt * owner.bits) / 8]);
  }
  writeRange(dst: Uint8Array, dtype: DType, start: number, count: number): void {
    if (dtype !== "I8") throw new TrtbError("BUILD_INTERNAL", `${this.name}: packed weights cannot be written as ${dtype}`);
    if (start === 0 && count === this.numel) return this.owner.pack(dst);
    const all = new Uint8Array(this.numel);
    this.owner.pack(all);
    dst.set(all.subarray(start, start + count));
  }
}

/** The f32 scales of a WoLinear: [N]. */
export class WoScaleTensor extends LazyTensor {
  constructor(name: string, readonly owner: WoLinear) {
    super(name, "F32", [owner.params.rows]);
  }
  writeRange(dst: Uint8Array, dtype: DType, start: number, count: number): void {
    const s = this.owner.scales();
    castInto(new Uint8Array(s.buffer, s.byteOffset + start * 4, count * 4), "F32", dst, dtype);
    if (start + count === this.numel) this.owner.release();
  }
}
