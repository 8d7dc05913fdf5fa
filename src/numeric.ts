/**
 * Scalar and array conversions between f32, f16 and bf16 in plain TypeScript.
 *
 * These are the reference the native kernels are tested against (bit for bit), and the fallback when
 * the shim is not loaded. Rounding is round-to-nearest-even (what torch does); NaN stays NaN (sign
 * and top payload kept, quiet bit set); overflow goes to ±inf for f16/bf16.
 */
import type { DType } from "./dtype.ts";
import { DTYPE_SIZE } from "./dtype.ts";
import { TrtbError } from "./errors.ts";

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

export function f32Bits(x: number): number {
  f32buf[0] = x;
  return u32buf[0]!;
}

export function bitsToF32(u: number): number {
  u32buf[0] = u >>> 0;
  return f32buf[0]!;
}

/** f32 → bf16 bits, round to nearest even. */
export function f32ToBf16Bits(x: number): number {
  const u = f32Bits(x);
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  // No uint32 overflow: the largest non-NaN pattern (0xff800000) plus 0x8000 stays below 2^32.
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  return bitsToF32((h & 0xffff) << 16);
}

/** f32 → f16 bits, round to nearest even, subnormals handled, overflow → inf. */
export function f32ToF16Bits(x: number): number {
  const u = f32Bits(x);
  const sign = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a >= 0x7f800000) return sign | (a > 0x7f800000 ? 0x7e00 | ((a >>> 13) & 0x3ff) : 0x7c00);
  if (a >= 0x477ff000) return sign | 0x7c00; // ≥ 65520 rounds to inf
  if (a < 0x38800000) {
    // f16 subnormal: value = m16 · 2^-24
    const exp = a >>> 23;
    if (exp < 102) return sign; // < 2^-25 → ±0 (exactly 2^-25 ties to even 0 below)
    const mant = (a & 0x7fffff) | 0x800000;
    const shift = 126 - exp; // 14..24
    let m16 = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (m16 & 1) === 1)) m16++;
    return sign | m16;
  }
  // normal: rebias exponent 127 → 15 and round the 13 dropped bits to nearest even
  return sign | ((a - (112 << 23) + 0xfff + ((a >>> 13) & 1)) >>> 13);
}

export function f16BitsToF32(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) {
    if (mant === 0) return bitsToF32(sign);
    return (sign ? -1 : 1) * mant * 2 ** -24;
  }
  if (exp === 31) return bitsToF32(sign | 0x7f800000 | (mant << 13));
  return bitsToF32(sign | ((exp + 112) << 23) | (mant << 13));
}

type FloatDType = "F32" | "F16" | "BF16";
export function isFloatDType(d: DType): d is FloatDType {
  return d === "F32" || d === "F16" || d === "BF16";
}

/** Read element `i` of a little-endian float buffer as a JS number. */
function reader(src: Uint8Array, dtype: FloatDType): (i: number) => number {
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  if (dtype === "F32") return (i) => dv.getFloat32(i * 4, true);
  if (dtype === "F16") return (i) => f16BitsToF32(dv.getUint16(i * 2, true));
  return (i) => bf16BitsToF32(dv.getUint16(i * 2, true));
}

/**
 * Convert `count` elements of `src` (dtype `from`) into `dst` (dtype `to`). Same-dtype is a copy.
 * Reference implementation: exact, simple, slow-ish (used for tests and small tensors).
 */
export function castArrayTS(src: Uint8Array, from: DType, dst: Uint8Array, to: DType): void {
  if (!isFloatDType(from) || !isFloatDType(to)) {
    if (from === to) return void dst.set(src.subarray(0, dst.byteLength));
    throw new TrtbError("CONV_DTYPE", `cannot convert ${from} to ${to}`);
  }
  const count = src.byteLength / DTYPE_SIZE[from];
  if (dst.byteLength !== count * DTYPE_SIZE[to])
    throw new TrtbError("CONV_SIZE", `cast ${from}→${to}: destination holds ${dst.byteLength} bytes, need ${count * DTYPE_SIZE[to]}`);
  if (from === to) return void dst.set(src);
  const get = reader(src, from);
  const out = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  if (to === "F32") for (let i = 0; i < count; i++) out.setFloat32(i * 4, get(i), true);
  else if (to === "F16") for (let i = 0; i < count; i++) out.setUint16(i * 2, f32ToF16Bits(get(i)), true);
  else for (let i = 0; i < count; i++) out.setUint16(i * 2, f32ToBf16Bits(get(i)), true);
}

/** Decode a float tensor's bytes into a fresh Float32Array (used by the CPU runner). */
export function toFloat32(src: Uint8Array, dtype: DType): Float32Array {
  if (dtype === "F32" && src.byteOffset % 4 === 0) return new Float32Array(src.buffer, src.byteOffset, src.byteLength / 4).slice();
  if (!isFloatDType(dtype)) throw new TrtbError("CONV_DTYPE", `cannot read ${dtype} as float`);
  const n = src.byteLength / DTYPE_SIZE[dtype];
  const out = new Float32Array(n);
  const get = reader(src, dtype);
  for (let i = 0; i < n; i++) out[i] = get(i);
  return out;
}
