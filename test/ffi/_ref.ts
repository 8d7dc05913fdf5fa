/**
 * Test helpers for the native layer: the TypeScript reference (`src/numeric.ts`, bit-exact
 * including NaN payloads), deterministic random data, and a check that reports the first
 * mismatches.
 */
import { expect } from "bun:test";
import type { DType } from "../../src/dtype.ts";
import { DTYPE_SIZE } from "../../src/dtype.ts";
import { castArrayTS } from "../../src/numeric.ts";

export type FloatDType = "F32" | "F16" | "BF16";

/** The reference conversion: `castArrayTS` (works on bit patterns, so NaN payloads follow the documented rule). */
export function refConvert(src: Uint8Array, from: FloatDType, to: FloatDType): Uint8Array {
  const out = new Uint8Array((src.byteLength / DTYPE_SIZE[from]) * DTYPE_SIZE[to]);
  castArrayTS(src, from, out, to);
  return out;
}

/** xorshift32: deterministic data without fixtures. */
export function rng(seed = 0x9e3779b9): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  };
}

/** `n` random bytes. */
export function randomBytes(n: number, seed?: number): Uint8Array {
  const next = rng(seed);
  const out = new Uint8Array(n);
  const words = Math.floor(n / 4);
  const u32 = new Uint32Array(out.buffer, 0, words);
  for (let i = 0; i < words; i++) u32[i] = next();
  for (let i = words * 4; i < n; i++) out[i] = next() & 0xff;
  return out;
}

/** Assert two byte buffers are equal element by element, printing the first mismatches in hex. */
export function expectSameElements(got: Uint8Array, want: Uint8Array, elemBytes: number, label: string, input?: Uint8Array, inBytes?: number): void {
  expect(got.byteLength).toBe(want.byteLength);
  const n = got.byteLength / elemBytes;
  const hex = (b: Uint8Array, i: number, w: number) =>
    Array.from(b.subarray(i * w, i * w + w))
      .reverse()
      .map((x) => x.toString(16).padStart(2, "0"))
      .join("");
  const bad: string[] = [];
  let count = 0;
  for (let i = 0; i < n; i++) {
    let same = true;
    for (let k = 0; k < elemBytes; k++) if (got[i * elemBytes + k] !== want[i * elemBytes + k]) same = false;
    if (!same) {
      count++;
      if (bad.length < 8)
        bad.push(`  [${i}]${input && inBytes ? ` in ${hex(input, i, inBytes)}` : ""} got ${hex(got, i, elemBytes)} want ${hex(want, i, elemBytes)}`);
    }
  }
  if (count > 0) throw new Error(`${label}: ${count} of ${n} elements differ:\n${bad.join("\n")}`);
}

/** Plain TS transpose: the reference for native and GPU transposes. */
export function refTranspose(src: Uint8Array, rows: number, cols: number, e: number): Uint8Array {
  const dst = new Uint8Array(src.byteLength);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const s = (r * cols + c) * e;
      const d = (c * rows + r) * e;
      for (let k = 0; k < e; k++) dst[d + k] = src[s + k]!;
    }
  return dst;
}

/**
 * f32 bit patterns that stress the conversions, `n` of them: uniform random words (every
 * exponent, NaNs with random payloads, infinities, f32 subnormals), values around the f16
 * subnormal / normal / overflow boundaries and bf16's, and exact round-to-even ties.
 */
export function stressF32(n: number, seed = 12345): Uint8Array {
  const next = rng(seed);
  const out = new Uint32Array(n);
  const fixed = [
    0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x00800000, 0x33000000, 0x33000001, 0x337fffff, 0x33800000,
    0x387fc000, 0x387fe000, 0x387fffff, 0x38800000, 0x477fe000, 0x477fefff, 0x477ff000, 0x477fffff, 0x47800000,
    0xc77ff000, 0x7f7f7fff, 0x7f7f8000, 0x7f7fffff, 0x7f800000, 0xff800000, 0x7f800001, 0x7fbfffff, 0x7fc00000,
    0xffc00001, 0x7fffffff, 0xffffffff, 0x3f808000, 0x3f818000, 0x3f801000, 0x3f803000, 0x3f800fff,
  ];
  for (let i = 0; i < n; i++) {
    const r = next();
    let u: number;
    if (i < fixed.length) u = fixed[i]!;
    else
      switch (i % 8) {
        case 0:
        case 1:
        case 2: // uniform over all 2^32 patterns
          u = r;
          break;
        case 3: // exponents around f16's range (2^-27 .. 2^18), random mantissa and sign
          u = ((r & 0x80000000) | ((100 + (next() % 46)) << 23) | (next() & 0x7fffff)) >>> 0;
          break;
        case 4: // f16 ties: 13 dropped bits exactly half (normal), or odd multiples of 2^-25 (subnormal)
          u = r & 1 ? ((r & 0x80000000) | ((113 + (next() % 30)) << 23) | (next() & 0x7fe000) | 0x1000) >>> 0 : f32BitsOf((2 * (next() % 1024) + 1) * 2 ** -25) | (r & 0x80000000);
          break;
        case 5: // bf16 ties and near-ties
          u = ((r & 0xffff0000) | [0x8000, 0x7fff, 0x8001][next() % 3]!) >>> 0;
          break;
        case 6: // NaN and inf with random payloads, f32 subnormals
          u = r & 1 ? ((r & 0x80000000) | 0x7f800000 | (next() & 0x7fffff)) >>> 0 : (r & 0x807fffff) >>> 0;
          break;
        default: // near overflow: f16 (65504 .. 65536) and bf16 (near FLT_MAX)
          u = r & 1 ? ((r & 0x80000000) | (0x477fe000 + (next() % 0x3000))) >>> 0 : ((r & 0x80000000) | (0x7f7f0000 + (next() & 0xffff))) >>> 0;
      }
    out[i] = u >>> 0;
  }
  return new Uint8Array(out.buffer);
}

function f32BitsOf(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0]!;
}

export const ALL_FLOAT: readonly FloatDType[] = ["F32", "F16", "BF16"];
export type { DType };
