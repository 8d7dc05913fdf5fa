import { describe, expect, test } from "bun:test";
import { bf16BitsToF32, bitsToF32, castArrayTS, f16BitsToF32, f32Bits, f32ToBf16Bits, f32ToF16Bits } from "../src/numeric.ts";

/** Check `bits` is the round-to-nearest-even encoding of x, using only decoding (spec of RNE). */
function isRne(x: number, bits: number, decode: (b: number) => number, maxFinite: number): boolean {
  const v = decode(bits);
  if (Number.isNaN(x)) return Number.isNaN(v);
  if (Math.abs(x) >= maxFinite * (1 + 2 ** -12) && !Number.isFinite(v)) return true; // overflow region
  const up = decode((bits + 1) & 0xffff);
  const down = decode((bits - 1) & 0xffff);
  const e = Math.abs(x - v);
  for (const n of [up, down]) {
    if (!Number.isFinite(n) || Number.isNaN(n) || Math.sign(n) * Math.sign(v) < 0) continue;
    const en = Math.abs(x - n);
    if (en < e) return false;
    if (en === e && (bits & 1) === 1) return false; // tie must go to even
  }
  return true;
}

function randomF32(i: number): number {
  // Deterministic spread over all exponents, plus hand-picked edge cases.
  const u = (Math.imul(i, 2654435761) ^ Math.imul(i >>> 7, 40503)) >>> 0;
  return bitsToF32(u);
}

describe("numeric: f32 → bf16 / f16 round to nearest even", () => {
  test("bf16 over 200k patterns", () => {
    for (let i = 0; i < 200_000; i++) {
      const x = randomF32(i);
      const b = f32ToBf16Bits(x);
      if (!isRne(x, b, bf16BitsToF32, 3.3895313892515355e38)) throw new Error(`bf16 RNE failed for ${x} (bits ${f32Bits(x).toString(16)}) → ${b.toString(16)}`);
    }
  });
  test("f16 over 200k patterns in and around the f16 range", () => {
    for (let i = 0; i < 200_000; i++) {
      const x = randomF32(i) % 70000; // keeps the exponent spread, folds into f16's range
      const h = f32ToF16Bits(x);
      if (!isRne(x, h, f16BitsToF32, 65504)) throw new Error(`f16 RNE failed for ${x} → ${h.toString(16)}`);
    }
  });
  test("edge cases", () => {
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // ties away from max round to even → inf
    expect(f32ToF16Bits(65519.99)).toBe(0x7bff);
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001);
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // tie → even (0)
    expect(f32ToF16Bits(1.5 * 2 ** -25)).toBe(0x0001);
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(f32ToF16Bits(Number.POSITIVE_INFINITY)).toBe(0x7c00);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(Number.NaN)))).toBe(true);
    expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie → even
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie → even (up)
    expect(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(Number.NaN)))).toBe(true);
    expect(f32ToBf16Bits(bitsToF32(0xff800001)) & 0x7fc0).toBe(0x7fc0); // signalling NaN stays NaN
  });
});

describe("numeric: bf16 → f16 / f32", () => {
  test("every bf16 pattern: f32 exact, f16 round to nearest even", () => {
    const src = new Uint8Array(65536 * 2);
    const dv = new DataView(src.buffer);
    for (let i = 0; i < 65536; i++) dv.setUint16(i * 2, i, true);
    const f32 = new Uint8Array(65536 * 4);
    castArrayTS(src, "BF16", f32, "F32");
    const f16 = new Uint8Array(65536 * 2);
    castArrayTS(src, "BF16", f16, "F16");
    const o32 = new DataView(f32.buffer);
    const o16 = new DataView(f16.buffer);
    for (let i = 0; i < 65536; i++) {
      expect(o32.getUint32(i * 4, true)).toBe((i << 16) >>> 0); // bf16 → f32 is a 16-bit shift
      const x = bf16BitsToF32(i);
      const h = o16.getUint16(i * 2, true);
      if (!isRne(x, h, f16BitsToF32, 65504)) throw new Error(`bf16 ${i.toString(16)} (${x}) → f16 ${h.toString(16)} is not RNE`);
    }
  });
  test("f16 → f32 → f16 round trips every non-NaN pattern", () => {
    for (let h = 0; h < 65536; h++) {
      const x = f16BitsToF32(h);
      if (Number.isNaN(x)) continue;
      expect(f32ToF16Bits(x)).toBe(h);
    }
  });
});
