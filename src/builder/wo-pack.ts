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
import { unpackInt4Rows, type WoBits, woGroupScalesTS, woKTile, woPackedBytes, woPackTS } from "../engine/wo-layout.ts";

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
/** What the packed tensor asks of its linear. */
interface PackedOwner {
  readonly rows: number;
  readonly cols: number;
  readonly bits: WoBits;
  pack(dst: Uint8Array): void;
}

export class WoLinear implements PackedOwner {
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

  get cols(): number {
    return this.params.cols;
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

/** The packed weights of a WoLinear / AwqLinear: I8 [ceil(N/16)·16, K_padded·bits/8]. */
export class WoPackedTensor extends LazyTensor {
  constructor(name: string, readonly owner: PackedOwner) {
    const kt = woKTile(owner.bits);
    super(name, "I8", [Math.ceil(owner.rows / 16) * 16, (Math.ceil(owner.cols / kt) * kt * owner.bits) / 8]);
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

// ---- AWQ (W4A16_AWQ): the checkpoint's int4 values and group scales, rearranged -----------------

/**
 * One W4A16_AWQ linear of an engine: the checkpoint's q (modelopt's int4 packing along the output
 * dim, [N/2, K] I8, as stored: no requantization) repacked into the tiled int4 layout, and its
 * group scales ([N, K/group]) in the kernel's tiled order (woGroupScalesTS).
 */
export class AwqLinear implements PackedOwner {
  readonly bits = 4 as const;
  readonly rows: number;
  readonly cols: number;

  constructor(readonly weight: LazyTensor, readonly scales: LazyTensor, readonly group: number) {
    this.rows = weight.shape[0]! * 2;
    this.cols = weight.shape[1]!;
    const G = this.cols / group;
    if (weight.dtype !== "I8" || weight.shape.length !== 2)
      throw new TrtbError("BUILD_UNSUPPORTED", `${weight.name} is ${weight.dtype} [${weight.shape}]; W4A16_AWQ engines take modelopt's I8 [out/2, in] int4 weights`, { tensor: weight.name });
    if (!Number.isInteger(G) || scales.shape.length !== 2 || scales.shape[0] !== this.rows || scales.shape[1] !== G)
      throw new TrtbError("BUILD_UNSUPPORTED",
        `${scales.name} is [${scales.shape}]; expected [${this.rows}, ${this.cols}/${group}] for ${weight.name} (group_size ${group})`, { tensor: scales.name });
  }

  pack(dst: Uint8Array): void {
    const q = unpackInt4Rows(this.weight.bytes(), this.rows, this.cols);
    woPack(q, this.rows, this.cols, 4, dst);
  }

  /** The tiled group scales as f32 (the stored values, widened). */
  tiledScales(): Float32Array {
    const s = new Float32Array(this.scales.numel);
    this.scales.writeRange(new Uint8Array(s.buffer), "F32", 0, s.length);
    return woGroupScalesTS(s, this.rows, this.cols / this.group);
  }
}

/** The group scales of an AwqLinear: [ceil(N/16), K/group, 8, 2] in the model dtype. */
export class AwqScaleTensor extends LazyTensor {
  constructor(name: string, readonly owner: AwqLinear, dtype: "F16" | "BF16") {
    super(name, dtype, [Math.ceil(owner.rows / 16), owner.cols / owner.group, 8, 2]);
  }
  writeRange(dst: Uint8Array, dtype: DType, start: number, count: number): void {
    const s = this.owner.tiledScales();
    castInto(new Uint8Array(s.buffer, start * 4, count * 4), "F32", dst, dtype);
  }
}

// ---- W4A8_AWQ: int4 weights expanded at build to the e4m3 values its FP8 MMA multiplies ---------

/**
 * The F8_E4M3 [rows, in] weights of a W4A8_AWQ engine linear (fused modules stacked along the
 * rows): each module's e4m3(q · f16(s / wsf2)) (quant/w4a8-awq.ts w4a8E4m3Weights, the values the
 * CPU runner replays), so the engine runs it as an FP8 GEMM with alpha = a · wsf2 per module. It
 * takes 1 byte per weight, twice the checkpoint's int4: correct and on FP8 tensor cores, not yet
 * int4 bandwidth.
 */
export class W4a8E4m3Tensor extends LazyTensor {
  #bytes: Uint8Array | null = null;
  constructor(name: string, readonly parts: (() => Uint8Array)[], rows: number, cols: number) {
    super(name, "F8_E4M3", [rows, cols]);
  }
  writeRange(dst: Uint8Array, dtype: DType, start: number, count: number): void {
    if (dtype !== "F8_E4M3") throw new TrtbError("BUILD_INTERNAL", `${this.name}: e4m3 weights cannot be written as ${dtype}`);
    if (!this.#bytes) {
      const all = new Uint8Array(this.numel);
      let o = 0;
      for (const p of this.parts) {
        const b = p();
        all.set(b, o);
        o += b.length;
      }
      this.#bytes = all;
    }
    dst.set(this.#bytes.subarray(start, start + count));
    if (start + count === this.numel) this.#bytes = null;
  }
}
