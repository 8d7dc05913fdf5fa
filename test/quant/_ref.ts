/**
 * Independent re-derivations for quantization tests, written from the spec (§3) with no code
 * shared with src/quant: decoding of every stored format, and the expected q / scale of one group
 * computed in doubles with explicit f32 rounding. Tests compare the library's bytes with these.
 */
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "../../src/numeric.ts";

export const f32 = Math.fround;

/** Float tensor bytes → numbers. */
export function decodeFloats(bytes: Uint8Array, dtype: string): Float64Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const es = dtype === "F32" ? 4 : 2;
  const out = new Float64Array(bytes.byteLength / es);
  for (let i = 0; i < out.length; i++)
    out[i] = dtype === "F32" ? dv.getFloat32(i * 4, true) : dtype === "F16" ? f16BitsToF32(dv.getUint16(i * 2, true)) : bf16BitsToF32(dv.getUint16(i * 2, true));
  return out;
}

/** x rounded to a float dtype's nearest value. */
export function roundTo(x: number, dtype: string): number {
  if (dtype === "BF16") return bf16BitsToF32(f32ToBf16Bits(x));
  if (dtype === "F16") return f16BitsToF32(f32ToF16Bits(x));
  return f32(x);
}

/** Int4 packed along rows ([rows/2, cols] bytes) → signed values [rows, cols]. */
export function unpackInt4Rows(bytes: Uint8Array, rows: number, cols: number): Int8Array {
  const out = new Int8Array(rows * cols);
  for (let r2 = 0; r2 < rows / 2; r2++)
    for (let c = 0; c < cols; c++) {
      const b = bytes[r2 * cols + c]!;
      const lo = b & 15;
      const hi = b >> 4;
      out[2 * r2 * cols + c] = lo >= 8 ? lo - 16 : lo;
      out[(2 * r2 + 1) * cols + c] = hi >= 8 ? hi - 16 : hi;
    }
  return out;
}

/** The 256 e4m3fn values by code, from the format's definition (NaN for S.1111.111). */
export const E4M3_VALUES: Float64Array = (() => {
  const v = new Float64Array(256);
  for (let b = 0; b < 256; b++) {
    const s = b & 0x80 ? -1 : 1;
    const e = (b >> 3) & 15;
    const m = b & 7;
    v[b] = e === 15 && m === 7 ? NaN : e === 0 ? s * m * 2 ** -9 : s * (1 + m / 8) * 2 ** (e - 7);
  }
  return v;
})();

/** e4m3fn code nearest to x (ties to the even code), saturating at ±448; brute force over all codes. */
export function nearestE4m3(x: number): number {
  if (Number.isNaN(x)) return 0x7f;
  const c = Math.max(-448, Math.min(448, x));
  let best = -1;
  let bestD = Infinity;
  for (let b = 0; b < 256; b++) {
    const v = E4M3_VALUES[b]!;
    if (Number.isNaN(v) || (v === 0 && b === 0x80 && !Object.is(c, -0) && c >= 0)) continue;
    if (b === 0x80 && c > 0) continue;
    if (b === 0 && (c < 0 || Object.is(c, -0))) continue;
    const d = Math.abs(v - c);
    if (d < bestD || (d === bestD && (b & 1) === 0)) {
      best = b;
      bestD = d;
    }
  }
  return best;
}

/** Round half to even / half away from zero, in doubles. */
export const rne = (y: number) => {
  const f = Math.floor(y);
  const d = y - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
};
export const halfAway = (y: number) => Math.sign(y) * Math.floor(Math.abs(y) + 0.5) + 0; // +0: no -0

/** Deterministic bf16-representable weights with some structure (rows of different ranges). */
export function weights(rows: number, cols: number, seed = 1, dtype: "BF16" | "F16" | "F32" = "BF16"): { bytes: Uint8Array; values: Float64Array } {
  let s = seed >>> 0 || 1;
  const rnd = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32 - 0.5;
  };
  const es = dtype === "F32" ? 4 : 2;
  const bytes = new Uint8Array(rows * cols * es);
  const dv = new DataView(bytes.buffer);
  for (let r = 0; r < rows; r++) {
    const range = 2 ** ((r % 9) - 4); // 1/16 .. 16
    for (let c = 0; c < cols; c++) {
      const x = rnd() * range * (c % 37 === 0 ? 6 : 1);
      const i = r * cols + c;
      if (dtype === "F32") dv.setFloat32(i * 4, x, true);
      else dv.setUint16(i * 2, dtype === "F16" ? f32ToF16Bits(x) : f32ToBf16Bits(x), true);
    }
  }
  return { bytes, values: decodeFloats(bytes, dtype) };
}
