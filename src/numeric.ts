/**
 * Scalar and array conversions between f32, f16 and bf16 in plain TypeScript.
 *
 * These are the reference the native kernels are tested against (bit for bit), and the fallback when
 * the shim is not loaded. All array conversions work on bit patterns:
 *   widening (bf16/f16 → f32) is exact, NaN payloads untouched (f16 payload shifted left by 13);
 *   narrowing (f32 → bf16/f16) rounds to nearest even (what torch does), overflow → ±inf,
 *   NaN → quiet NaN keeping the sign and the top payload bits;
 *   f16 ↔ bf16 goes through the f32 bit pattern.
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

/** f32 bit pattern → bf16 bits, round to nearest even; NaN → quiet NaN keeping sign and top payload. */
export function f32BitsToBf16Bits(u: number): number {
  u >>>= 0;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  // No uint32 overflow: the largest non-NaN pattern (0xff800000) plus 0x8000 stays below 2^32.
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bf16 bits → f32 bits: exact widening (a 16-bit shift, NaN payloads untouched). */
export function bf16BitsToF32Bits(h: number): number {
  return ((h & 0xffff) << 16) >>> 0;
}

/** f32 bit pattern → f16 bits, round to nearest even, subnormals handled, overflow → inf, NaN → quiet NaN. */
export function f32BitsToF16Bits(u: number): number {
  u >>>= 0;
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

/** f16 bits → f32 bits: exact widening (subnormals normalised, NaN payload shifted, not quieted). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    let e = 113; // normalise the subnormal: value = mant · 2^-24
    while ((mant & 0x400) === 0) {
      mant <<= 1;
      e--;
    }
    return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
  }
  if (exp === 31) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
}

export const f32ToBf16Bits = (x: number): number => f32BitsToBf16Bits(f32Bits(x));
export const f32ToF16Bits = (x: number): number => f32BitsToF16Bits(f32Bits(x));
export const bf16BitsToF32 = (h: number): number => bitsToF32(bf16BitsToF32Bits(h));
export const f16BitsToF32 = (h: number): number => bitsToF32(f16BitsToF32Bits(h));

type FloatDType = "F32" | "F16" | "BF16";
export function isFloatDType(d: DType): d is FloatDType {
  return d === "F32" || d === "F16" || d === "BF16";
}

/** Read element `i` of a little-endian float buffer as f32 bits (no JS-number round trip: NaN payloads survive). */
function bitReader(src: Uint8Array, dtype: FloatDType): (i: number) => number {
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  if (dtype === "F32") return (i) => dv.getUint32(i * 4, true);
  if (dtype === "F16") return (i) => f16BitsToF32Bits(dv.getUint16(i * 2, true));
  return (i) => bf16BitsToF32Bits(dv.getUint16(i * 2, true));
}

/**
 * Convert `src` (dtype `from`) into `dst` (dtype `to`), bit-exactly as the shim does: widening is
 * exact, narrowing rounds to nearest even. Same-dtype is a copy. The reference for the native
 * kernels, and the fallback for small tensors.
 */
export function castArrayTS(src: Uint8Array, from: DType, dst: Uint8Array, to: DType): void {
  if (!isFloatDType(from) || !isFloatDType(to)) {
    if (from === to && dst.byteLength === src.byteLength) return void dst.set(src);
    throw new TrtbError("CONV_DTYPE", `cannot convert ${from} to ${to}`);
  }
  const count = src.byteLength / DTYPE_SIZE[from];
  if (dst.byteLength !== count * DTYPE_SIZE[to])
    throw new TrtbError("CONV_SIZE", `cast ${from}→${to}: destination holds ${dst.byteLength} bytes, need ${count * DTYPE_SIZE[to]}`);
  if (from === to) return void dst.set(src);
  const get = bitReader(src, from);
  const out = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  if (to === "F32") for (let i = 0; i < count; i++) out.setUint32(i * 4, get(i), true);
  else if (to === "F16") for (let i = 0; i < count; i++) out.setUint16(i * 2, f32BitsToF16Bits(get(i)), true);
  else for (let i = 0; i < count; i++) out.setUint16(i * 2, f32BitsToBf16Bits(get(i)), true);
}

/** Decode a float tensor's bytes into a fresh Float32Array (used by the CPU runner). */
export function toFloat32(src: Uint8Array, dtype: DType): Float32Array {
  if (dtype === "F32" && src.byteOffset % 4 === 0) return new Float32Array(src.buffer, src.byteOffset, src.byteLength / 4).slice();
  if (!isFloatDType(dtype)) throw new TrtbError("CONV_DTYPE", `cannot read ${dtype} as float`);
  const out = new Float32Array(src.byteLength / DTYPE_SIZE[dtype]);
  castArrayTS(src, dtype, new Uint8Array(out.buffer), "F32");
  return out;
}

/**
 * Index of the first NaN/Inf element of `src` (dtype `dtype`), or -1: the TypeScript reference of
 * the shim's `trtb_find_nonfinite`. A float is non-finite when its exponent bits are all ones
 * (F8_E4M3 has no inf: only S.1111.111 is NaN); integer and bool dtypes are always finite.
 */
export function firstNonFiniteTS(src: Uint8Array, dtype: DType): number {
  const es = DTYPE_SIZE[dtype];
  if (src.byteLength % es !== 0) throw new TrtbError("NATIVE_SIZE", `${src.byteLength} bytes is not a whole number of ${dtype} elements`);
  const n = src.byteLength / es;
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  switch (dtype) {
    case "F32":
      for (let i = 0; i < n; i++) if ((dv.getUint32(i * 4, true) & 0x7fffffff) >= 0x7f800000) return i;
      return -1;
    case "F16":
      for (let i = 0; i < n; i++) if ((dv.getUint16(i * 2, true) & 0x7fff) >= 0x7c00) return i;
      return -1;
    case "BF16":
      for (let i = 0; i < n; i++) if ((dv.getUint16(i * 2, true) & 0x7fff) >= 0x7f80) return i;
      return -1;
    case "F64":
      for (let i = 0; i < n; i++) if ((dv.getUint32(i * 8 + 4, true) & 0x7ff00000) === 0x7ff00000) return i;
      return -1;
    case "F8_E4M3":
      for (let i = 0; i < n; i++) if ((src[i]! & 0x7f) === 0x7f) return i;
      return -1;
    case "F8_E5M2":
      for (let i = 0; i < n; i++) if ((src[i]! & 0x7c) === 0x7c) return i;
      return -1;
    default:
      return -1;
  }
}
