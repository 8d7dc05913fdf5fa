/**
 * The quantization kernel's TypeScript reference (src/quant/kernel.ts) against the spec, re-derived
 * independently in test/quant/_ref.ts: layouts (int4 packed along rows, scales [rows, cols/group]),
 * the scale rule of each scheme, e4m3 conversion against a brute-force nearest-value search, and the
 * per-element error budgets (ggml test-quantize-fns style, named constants).
 */
import { describe, expect, test } from "bun:test";
import {
  dequantizeTS, e4m3ToF32Bits, f32BitsToE4m3, type QuantKernelParams, quantizeTS, quantSizes, roundQ,
} from "../../src/quant/kernel.ts";
import { bitsToF32, f32Bits } from "../../src/numeric.ts";
import { decodeFloats, E4M3_VALUES, f32, halfAway, nearestE4m3, rne, roundTo, unpackInt4Rows, weights } from "./_ref.ts";

/** int formats: |w − q·s| ≤ s/2 · (1 + INT_ROUNDING_SLACK) when q is computed against the stored s. */
const INT_ROUNDING_SLACK = 2 ** -20;
/** fp8 e4m3: |x − deq| ≤ max(|x|·2^-4, s·2^-10) (half an ulp: 3 mantissa bits; subnormal step 2^-9·s), plus f32 slack. */
const FP8_REL_HALF_ULP = 2 ** -4;

export const AWQ: Omit<QuantKernelParams, "rows" | "cols"> = {
  format: "int4_packed_rows", srcDtype: "BF16", scaleDtype: "BF16", groupSize: 64, divisor: 7, minScale: 0, zeroScale: 1,
  clamp: null, qmin: -8, qmax: 7, rounding: "half_even", divideByStoredScale: true,
};
export const WO8: Omit<QuantKernelParams, "rows" | "cols" | "groupSize"> = {
  format: "int8", srcDtype: "BF16", scaleDtype: "BF16", divisor: 128, minScale: 0, zeroScale: 0, clamp: null, qmin: -128, qmax: 127,
  rounding: "half_away", divideByStoredScale: false,
};
export const FP8: Omit<QuantKernelParams, "rows" | "cols" | "groupSize"> = {
  format: "fp8_e4m3", srcDtype: "BF16", scaleDtype: "F32", divisor: 448, minScale: f32(1 / (448 * 512)), zeroScale: 0,
  clamp: [-1200, 1200], qmin: 0, qmax: 0, rounding: "half_even", divideByStoredScale: false,
};

function run(p: QuantKernelParams, src: Uint8Array) {
  const sz = quantSizes(p);
  const q = new Uint8Array(sz.q);
  const s = new Uint8Array(sz.scales);
  quantizeTS(p, src, q, s);
  const deq = new Uint8Array(p.rows * p.cols * 4);
  dequantizeTS(p, q, s, deq, "F32");
  return { q, s, scales: decodeFloats(s, p.scaleDtype), deq: new Float32Array(deq.buffer) };
}

describe("e4m3", () => {
  test("every code decodes to its defined value and re-encodes to itself", () => {
    for (let b = 0; b < 256; b++) {
      const v = bitsToF32(e4m3ToF32Bits(b));
      const want = E4M3_VALUES[b]!;
      if (Number.isNaN(want)) {
        expect(Number.isNaN(v)).toBe(true);
        expect(f32BitsToE4m3(e4m3ToF32Bits(b))).toBe(0x7f); // one NaN code, whatever the sign
      } else {
        expect(v).toBe(want);
        expect(f32BitsToE4m3(e4m3ToF32Bits(b))).toBe(b);
      }
    }
  });

  test("f32 → e4m3 rounds to the nearest code, ties to even, saturates at 448 (brute force)", () => {
    const xs: number[] = [448, 449, 463.99, 464, 465, 1e6, Infinity, 2 ** -6, 2 ** -7, 2 ** -10, 2 ** -11, 1.5 * 2 ** -10, 0.0009765625];
    // every midpoint between neighbouring codes, and its two f32 neighbours
    const pos = [...E4M3_VALUES.slice(0, 0x7f)];
    for (let i = 0; i + 1 < pos.length; i++) {
      const mid = f32((pos[i]! + pos[i + 1]!) / 2);
      xs.push(mid, bitsToF32(f32Bits(mid) + 1), bitsToF32(f32Bits(mid) - 1), pos[i]!);
    }
    let seed = 7;
    for (let i = 0; i < 20000; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      xs.push(f32((seed / 2 ** 32 - 0.5) * 2 ** ((seed % 24) - 12)));
    }
    for (const x of xs)
      for (const v of [x, -x]) {
        const got = f32BitsToE4m3(f32Bits(v));
        expect({ v, code: got }).toEqual({ v, code: nearestE4m3(v) });
      }
    expect(f32BitsToE4m3(f32Bits(NaN))).toBe(0x7f);
    expect(f32BitsToE4m3(0xffc00000)).toBe(0x7f); // x86's inf/inf NaN is negative; GPUs' is positive
  });
});

describe("rounding", () => {
  test("half-even vs half-away on ties and near ties", () => {
    for (const [y, even, away] of [[0.5, 0, 1], [1.5, 2, 2], [2.5, 2, 3], [-0.5, 0, -1], [-2.5, -2, -3], [7.5, 8, 8], [0.49999997, 0, 0], [-7.4, -7, -7]]) {
      expect(roundQ(f32(y!), "half_even")).toBe(even!);
      expect(roundQ(f32(y!), "half_away")).toBe(away!);
    }
  });
});

describe("int4 packed along rows (W4A16_AWQ)", () => {
  for (const [dtype, G] of [["BF16", 64], ["BF16", 128], ["F16", 128], ["F32", 64]] as const) {
    test(`${dtype} group ${G}: layout and scales re-derived from the weights`, () => {
      const rows = 18;
      const cols = 4 * G;
      const { bytes, values } = weights(rows, cols, 11, dtype);
      const p: QuantKernelParams = { ...AWQ, srcDtype: dtype, scaleDtype: dtype, rows, cols, groupSize: G };
      const { q, scales, deq } = run(p, bytes);
      expect(q.byteLength).toBe((rows / 2) * cols);
      expect(scales.length).toBe(rows * (cols / G));
      const qv = unpackInt4Rows(q, rows, cols);
      for (let r = 0; r < rows; r++)
        for (let g = 0; g < cols / G; g++) {
          let amax = 0;
          for (let c = g * G; c < (g + 1) * G; c++) amax = Math.max(amax, Math.abs(values[r * cols + c]!));
          const s = roundTo(f32(amax / 7), dtype) || 1;
          expect(scales[r * (cols / G) + g]).toBe(s);
          for (let c = g * G; c < (g + 1) * G; c++) {
            const w = values[r * cols + c]!;
            const want = Math.max(-8, Math.min(7, rne(f32(w / s))));
            expect(qv[r * cols + c]).toBe(want);
            expect(Math.abs(w - deq[r * cols + c]!)).toBeLessThanOrEqual((s / 2) * (1 + INT_ROUNDING_SLACK));
          }
        }
    });
  }

  test("the byte (r2, c) holds row 2·r2 low and row 2·r2+1 high (hand-made values)", () => {
    // row 0 = [7, -8, ...] · s, row 1 = [-1, 3, ...] · s with s = 1 (amax 7)
    const cols = 64;
    const vals = new Float32Array(2 * cols);
    vals[0] = 7; vals[1] = -7; vals[2] = 1; vals[cols] = -7; vals[cols + 1] = 3; vals[cols + 2] = 7;
    const p: QuantKernelParams = { ...AWQ, srcDtype: "F32", scaleDtype: "F32", rows: 2, cols, groupSize: cols };
    const { q } = run(p, new Uint8Array(vals.buffer));
    expect([q[0], q[1], q[2], q[3]]).toEqual([(7 & 15) | ((-7 & 15) << 4), (-7 & 15) | (3 << 4), 1 | (7 << 4), 0]);
  });

  test("an all-zero group gets scale 1 and q 0 (modelopt's rule)", () => {
    const p: QuantKernelParams = { ...AWQ, srcDtype: "F32", scaleDtype: "F32", rows: 2, cols: 128, groupSize: 64 };
    const src = new Float32Array(256);
    src[100] = 3.5;
    const { q, scales } = run(p, new Uint8Array(src.buffer));
    expect(Array.from(scales)).toEqual([1, f32(3.5 / 7), 1, 1]);
    expect(q.every((b, i) => (i === 100 ? b === 7 : b === 0))).toBe(true);
  });
});

describe("int8 per channel (W8A16 build-time simulation)", () => {
  test("cutlass symmetric_quantize: scale amax/128 (f32), q against the f32 scale, half away, stored in model dtype", () => {
    const rows = 9;
    const cols = 200;
    const { bytes, values } = weights(rows, cols, 5);
    const p: QuantKernelParams = { ...WO8, rows, cols, groupSize: cols };
    const { q, scales, deq } = run(p, bytes);
    for (let r = 0; r < rows; r++) {
      let amax = 0;
      for (let c = 0; c < cols; c++) amax = Math.max(amax, Math.abs(values[r * cols + c]!));
      const s32 = f32(amax / 128);
      const stored = roundTo(s32, "BF16");
      expect(scales[r]).toBe(stored);
      for (let c = 0; c < cols; c++) {
        const w = values[r * cols + c]!;
        const want = Math.max(-128, Math.min(127, halfAway(f32(w / s32))));
        expect((q[r * cols + c]! << 24) >> 24).toBe(want);
        // budget: half a step of the f32 scale (a full step for weights above 127.5 steps: upstream's
        // divisor 128 with q ≤ 127 clips the largest positive weight), plus |q| times the scale's
        // rounding to the model dtype
        const step = w / s32 > 127.5 ? s32 : s32 / 2;
        expect(Math.abs(w - deq[r * cols + c]!)).toBeLessThanOrEqual(step + 128 * Math.abs(stored - s32) + 1e-7 * Math.abs(w));
      }
    }
  });

  test("int4 per channel: divisor 8, q in [-8, 7], stored one per byte", () => {
    const rows = 4;
    const cols = 96;
    const { bytes, values } = weights(rows, cols, 9);
    const p: QuantKernelParams = { ...WO8, divisor: 8, qmin: -8, qmax: 7, rows, cols, groupSize: cols };
    const { q } = run(p, bytes);
    for (let r = 0; r < rows; r++) {
      let amax = 0;
      for (let c = 0; c < cols; c++) amax = Math.max(amax, Math.abs(values[r * cols + c]!));
      for (let c = 0; c < cols; c++) expect((q[r * cols + c]! << 24) >> 24).toBe(Math.max(-8, Math.min(7, halfAway(f32(values[r * cols + c]! / f32(amax / 8))))));
    }
  });

  test("a zero row keeps scale 0 and q 0", () => {
    const p: QuantKernelParams = { ...WO8, srcDtype: "F32", rows: 2, cols: 8, groupSize: 8 };
    const src = new Float32Array(16).fill(0);
    src[9] = -2;
    const { q, scales } = run(p, new Uint8Array(src.buffer));
    expect(Array.from(scales)).toEqual([0, roundTo(2 / 128, "BF16")]);
    expect((q[9]! << 24) >> 24).toBe(-128);
  });
});

describe("fp8 e4m3 per channel (FP8_PER_CHANNEL_PER_TOKEN)", () => {
  test("clamp, scale max(amax/448, 1/(448·512)) in f32, nearest e4m3; error within half an ulp", () => {
    const rows = 9;
    const cols = 160;
    const { bytes, values } = weights(rows, cols, 3);
    const clamp: [number, number] = [-5, 5]; // narrow, so some rows are clamped
    const p: QuantKernelParams = { ...FP8, clamp, rows, cols, groupSize: cols };
    const { q, scales, deq } = run(p, bytes);
    for (let r = 0; r < rows; r++) {
      const xs = Array.from(values.subarray(r * cols, (r + 1) * cols), (w) => Math.max(-5, Math.min(5, w)));
      const amax = Math.max(...xs.map(Math.abs));
      const s = Math.max(f32(amax / 448), f32(1 / (448 * 512)));
      expect(scales[r]).toBe(s);
      xs.forEach((x, c) => {
        expect(q[r * cols + c]).toBe(nearestE4m3(f32(x / s)));
        expect(Math.abs(x - deq[r * cols + c]!)).toBeLessThanOrEqual(Math.max(Math.abs(x) * FP8_REL_HALF_ULP, s * 2 ** -10) * (1 + 2 ** -20));
      });
    }
  });

  test("a zero row uses the minimum scale; NaN weights stay NaN and do not set the scale", () => {
    const p: QuantKernelParams = { ...FP8, srcDtype: "F32", rows: 2, cols: 4, groupSize: 4 };
    const src = new Float32Array([0, 0, 0, 0, NaN, 1, -2, 448]);
    const { q, scales } = run(p, new Uint8Array(src.buffer));
    expect(Array.from(scales)).toEqual([f32(1 / (448 * 512)), 1]);
    expect(Array.from(q)).toEqual([0, 0, 0, 0, 0x7f, nearestE4m3(1), nearestE4m3(-2), 0x7e]);
  });
});

test("bad params are refused with QUANT_PARAMS / QUANT_SIZE", () => {
  const p: QuantKernelParams = { ...AWQ, rows: 3, cols: 64 };
  expect(() => quantizeTS(p, new Uint8Array(3 * 64 * 2), new Uint8Array(96), new Uint8Array(6))).toThrow(/even number of rows/);
  expect(() => quantizeTS({ ...AWQ, rows: 2, cols: 100 }, new Uint8Array(400), new Uint8Array(100), new Uint8Array(4))).toThrow(/does not divide/);
  expect(() => quantizeTS({ ...AWQ, rows: 2, cols: 64 }, new Uint8Array(10), new Uint8Array(64), new Uint8Array(4))).toThrow(/needs 256 fp bytes/);
});
