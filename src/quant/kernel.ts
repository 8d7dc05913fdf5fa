/**
 * The quantization kernel in plain TypeScript: the reference the native kernels are tested against
 * (bit for bit) and the fallback when libtrtb is not loaded. The rules (also in cshim/common/quant.h,
 * cshim/include/trtb.h):
 *
 *   A matrix is [rows, cols] (rows = output channels; MoE experts stacked as more rows). Each row is
 *   cut into groups of `groupSize` columns; each group gets one scale:
 *     x      = w as f32, clamped to `clamp` when set (NaN passes)
 *     amax   = max |x| (NaN ignored)
 *     s      = amax / divisor (f32); s = max(s, minScale); s == 0 → zeroScale
 *     stored = s rounded to scaleDtype (RNE)          ← written to the scales tensor
 *     sq     = divideByStoredScale ? stored : s       ← what x is divided by
 *   int8 / int4:  y = x / sq (f32); NaN or sq == 0 → 0; clamp to [qmin, qmax]; round (RNE or
 *                 half away from zero)
 *   fp8 e4m3:     y = x / sq (0 if sq == 0); clamp to ±448; e4m3fn RNE (NaN → 0x7f)
 *   Layouts: int8 [rows, cols]; int4_packed_rows [rows/2, cols] with byte (r2, c) = low nibble
 *   q[2·r2, c], high nibble q[2·r2+1, c]; fp8 [rows, cols]; scales [rows, cols/groupSize].
 *   Dequantize: w = f32(q) · f32(stored) (NaN → 0x7fc00000), narrowed to the output dtype.
 *
 * f32 arithmetic: a JS double operation on two f32 values followed by Math.fround is the correctly
 * rounded f32 result for +, -, ×, ÷ (53 ≥ 2·24 + 2), so these loops give the C/CUDA bits.
 */
import type { DType } from "../dtype.ts";
import { DTYPE_SIZE } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import type { FloatDType, QFormat, QRounding, QuantKernelParams } from "../ffi/quant-params.ts";
import { bf16BitsToF32Bits, bitsToF32, f16BitsToF32Bits, f32Bits, f32BitsToBf16Bits, f32BitsToF16Bits } from "../numeric.ts";

export type { FloatDType, QFormat, QRounding, QuantKernelParams };

export function isFloatDType(d: DType): d is FloatDType {
  return d === "F32" || d === "F16" || d === "BF16";
}

/** Bytes of the quantized buffer, and of the scales. */
export function quantSizes(p: QuantKernelParams): { q: number; scales: number; scaleCount: number } {
  const n = p.rows * p.cols;
  const scaleCount = p.rows * (p.cols / p.groupSize);
  return { q: p.format === "int4_packed_rows" ? n / 2 : n, scales: scaleCount * DTYPE_SIZE[p.scaleDtype], scaleCount };
}

/** The checks the native library makes, with the same meaning (throws TrtbError QUANT_PARAMS). */
export function checkQuantParams(p: QuantKernelParams): void {
  const bad = (m: string) => { throw new TrtbError("QUANT_PARAMS", `quantize: ${m}`); };
  for (const k of ["rows", "cols", "groupSize"] as const)
    if (!Number.isSafeInteger(p[k]) || p[k] < 0) bad(`${k} must be a non-negative integer, got ${p[k]}`);
  if (p.groupSize === 0 || p.cols % p.groupSize !== 0) bad(`group size ${p.groupSize} does not divide ${p.cols} columns`);
  if (p.format === "int4_packed_rows" && p.rows % 2 !== 0) bad(`int4 packed along rows needs an even number of rows, got ${p.rows}`);
  if (!(p.divisor > 0) || !Number.isFinite(p.divisor)) bad("divisor must be finite and > 0");
  if (!(p.minScale >= 0) || !(p.zeroScale >= 0) || !Number.isFinite(p.minScale) || !Number.isFinite(p.zeroScale)) bad("minScale and zeroScale must be finite and ≥ 0");
  if (p.clamp && !(p.clamp[0] < p.clamp[1])) bad("clamp lower bound must be below the upper bound");
  if (p.format !== "fp8_e4m3") {
    const [lo, hi] = p.format === "int8" ? [-128, 127] : [-8, 7];
    if (!Number.isInteger(p.qmin) || !Number.isInteger(p.qmax) || p.qmin < lo || p.qmax > hi || p.qmin >= p.qmax)
      bad(`[qmin, qmax] = [${p.qmin}, ${p.qmax}] is not inside [${lo}, ${hi}]`);
  }
}

// ---------------------------------------------------------------------------------------------
// scalar rules (mirror cshim/common/quant.h)

const f32 = Math.fround;

function readerBits(buf: Uint8Array, dtype: FloatDType): (i: number) => number {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (dtype === "F32") return (i) => dv.getUint32(i * 4, true);
  if (dtype === "F16") return (i) => f16BitsToF32Bits(dv.getUint16(i * 2, true));
  return (i) => bf16BitsToF32Bits(dv.getUint16(i * 2, true));
}

function writerBits(buf: Uint8Array, dtype: FloatDType): (i: number, u: number) => void {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (dtype === "F32") return (i, u) => dv.setUint32(i * 4, u >>> 0, true);
  if (dtype === "F16") return (i, u) => dv.setUint16(i * 2, f32BitsToF16Bits(u), true);
  return (i, u) => dv.setUint16(i * 2, f32BitsToBf16Bits(u), true);
}

/** f32 bits rounded to `dtype` and widened back (the value a tensor of that dtype holds). */
export function roundToDtypeBits(u: number, dtype: FloatDType): number {
  if (dtype === "F16") return f16BitsToF32Bits(f32BitsToF16Bits(u));
  if (dtype === "BF16") return bf16BitsToF32Bits(f32BitsToBf16Bits(u));
  return u >>> 0;
}

function clampX(x: number, clamp: readonly [number, number] | null): number {
  if (!clamp) return x;
  const lo = f32(clamp[0]);
  const hi = f32(clamp[1]);
  return x < lo ? lo : x > hi ? hi : x;
}

function absKey(x: number): number {
  const a = f32Bits(x) & 0x7fffffff;
  return a > 0x7f800000 ? 0 : a;
}

/** Scale of a group from its amax bit pattern: [value to divide by, stored f32 bits]. */
export function groupScale(amaxBits: number, p: QuantKernelParams): [number, number] {
  let s = f32(bitsToF32(amaxBits) / f32(p.divisor));
  const min = f32(p.minScale);
  s = s < min ? min : s;
  s = s === 0 ? f32(p.zeroScale) : s;
  const stored = roundToDtypeBits(f32Bits(s), p.scaleDtype);
  return [p.divideByStoredScale ? bitsToF32(stored) : s, stored];
}

/** Round an f32 (|y| ≤ 128) to an integer, nearest even or half away from zero. */
export function roundQ(y: number, rounding: QRounding): number {
  const fl = Math.floor(y);
  const frac = y - fl; // exact for |y| < 2^22
  let r = frac > 0.5 ? fl + 1 : frac < 0.5 ? fl : fl % 2 === 0 ? fl : fl + 1;
  if (rounding === "half_away" && frac === 0.5) r = y < 0 ? fl : fl + 1;
  return r === 0 ? 0 : r; // no -0
}

export function quantInt(x: number, sq: number, qmin: number, qmax: number, rounding: QRounding): number {
  if (sq === 0) return 0;
  let y = f32(x / sq);
  if (Number.isNaN(y)) return 0;
  y = y < qmin ? qmin : y > qmax ? qmax : y;
  return roundQ(y, rounding);
}

/** f32 bits → e4m3fn byte: RNE, saturating at ±448, NaN → 0x7f whatever its sign (mirrors trtb__f32_to_e4m3). */
export function f32BitsToE4m3(u: number): number {
  u >>>= 0;
  const sign = (u >>> 24) & 0x80;
  const a = u & 0x7fffffff;
  let r: number;
  if (a > 0x7f800000) return 0x7f; // one NaN code: CPUs and GPUs disagree on the sign of inf/inf
  if (a >= 0x43e00000) r = 0x7e;
  else if (a < 0x3c800000) r = (f32Bits(f32(bitsToF32(a) + 16384)) - 0x46800000) >>> 0;
  else r = ((a - (120 << 23) + 0x7ffff + ((a >>> 20) & 1)) >>> 20) & 0xff;
  return sign | r;
}

/** e4m3fn byte → f32 bits, exact. */
export function e4m3ToF32Bits(b: number): number {
  const sign = (b & 0x80) << 24;
  const exp = (b >>> 3) & 0xf;
  const man = b & 7;
  let r: number;
  if (exp === 15 && man === 7) r = 0x7fc00000;
  else if (exp === 0) r = f32Bits(man * 0.001953125);
  else r = ((exp + 120) << 23) | (man << 20);
  return (sign | r) >>> 0;
}

export function quantFp8(x: number, sq: number): number {
  let y = sq === 0 ? 0 : f32(x / sq);
  y = y < -448 ? -448 : y > 448 ? 448 : y;
  return f32BitsToE4m3(f32Bits(y));
}

// ---------------------------------------------------------------------------------------------
// whole-matrix reference

function checkBuffers(p: QuantKernelParams, fp: Uint8Array, fpDtype: FloatDType, q: Uint8Array, scales: Uint8Array): void {
  checkQuantParams(p);
  const sz = quantSizes(p);
  const fpBytes = p.rows * p.cols * DTYPE_SIZE[fpDtype];
  if (fp.byteLength !== fpBytes || q.byteLength !== sz.q || scales.byteLength !== sz.scales)
    throw new TrtbError("QUANT_SIZE",
      `quantize: a ${p.rows}×${p.cols} matrix needs ${fpBytes} fp bytes, ${sz.q} quantized bytes and ${sz.scales} scale bytes; got ${fp.byteLength}, ${q.byteLength} and ${scales.byteLength}`);
}

/** Quantize `src` (rows × cols of p.srcDtype) into `dst` and `scales` (TS reference of trtb_quantize). */
export function quantizeTS(p: QuantKernelParams, src: Uint8Array, dst: Uint8Array, scales: Uint8Array): void {
  checkBuffers(p, src, p.srcDtype, dst, scales);
  const read = readerBits(src, p.srcDtype);
  const writeScale = writerBits(scales, p.scaleDtype);
  const { rows, cols, groupSize: G } = p;
  const gpr = cols / G;
  const pair = p.format === "int4_packed_rows";
  const x = [new Float32Array(G), new Float32Array(G)];
  const sq = [0, 0];
  const units = pair ? rows / 2 : rows;
  for (let u = 0; u < units; u++) {
    const r0 = pair ? 2 * u : u;
    for (let g = 0; g < gpr; g++) {
      for (let k = 0; k < (pair ? 2 : 1); k++) {
        const xs = x[k]!;
        const off = (r0 + k) * cols + g * G;
        let m = 0;
        for (let i = 0; i < G; i++) {
          const v = clampX(bitsToF32(read(off + i)), p.clamp);
          xs[i] = v;
          const key = absKey(v);
          if (key > m) m = key;
        }
        const [s, stored] = groupScale(m, p);
        sq[k] = s;
        writeScale((r0 + k) * gpr + g, stored);
      }
      const x0 = x[0]!;
      const x1 = x[1]!;
      const col = g * G;
      if (p.format === "int8") {
        for (let i = 0; i < G; i++) dst[r0 * cols + col + i] = quantInt(x0[i]!, sq[0]!, p.qmin, p.qmax, p.rounding) & 0xff;
      } else if (p.format === "fp8_e4m3") {
        for (let i = 0; i < G; i++) dst[r0 * cols + col + i] = quantFp8(x0[i]!, sq[0]!);
      } else {
        for (let i = 0; i < G; i++) {
          const lo = quantInt(x0[i]!, sq[0]!, p.qmin, p.qmax, p.rounding);
          const hi = quantInt(x1[i]!, sq[1]!, p.qmin, p.qmax, p.rounding);
          dst[u * cols + col + i] = (lo & 0xf) | ((hi & 0xf) << 4);
        }
      }
    }
  }
}

/** Quantized value q[r, c] as a number (int8/int4 signed integer, fp8 as its f32 value). */
export function quantValueAt(p: Pick<QuantKernelParams, "format" | "cols">, q: Uint8Array, r: number, c: number): number {
  if (p.format === "int8") return (q[r * p.cols + c]! << 24) >> 24;
  if (p.format === "int4_packed_rows") {
    const b = q[(r >> 1) * p.cols + c]!;
    const nib = r & 1 ? b >>> 4 : b & 0xf;
    return nib >= 8 ? nib - 16 : nib;
  }
  return bitsToF32(e4m3ToF32Bits(q[r * p.cols + c]!));
}

/** Dequantize into `dst` of `dstDtype` (TS reference of trtb_dequantize). */
export function dequantizeTS(p: QuantKernelParams, q: Uint8Array, scales: Uint8Array, dst: Uint8Array, dstDtype: FloatDType): void {
  checkBuffers({ ...p, divisor: 1, minScale: 0, zeroScale: 0, qmin: -1, qmax: 0, clamp: null }, dst, dstDtype, q, scales);
  const readScale = readerBits(scales, p.scaleDtype);
  const write = writerBits(dst, dstDtype);
  const { rows, cols, groupSize: G } = p;
  const gpr = cols / G;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < gpr; g++) {
      const s = bitsToF32(readScale(r * gpr + g));
      for (let c = g * G; c < (g + 1) * G; c++) {
        const v = f32(quantValueAt(p, q, r, c) * s);
        write(r * cols + c, Number.isNaN(v) ? 0x7fc00000 : f32Bits(v)); // canonical NaN, as the shim
      }
    }
  }
}
