/**
 * libtrtb's quantization kernels (trtb_quantize / trtb_dequantize) bit for bit against the
 * TypeScript reference (src/quant/kernel.ts), on random data with special values, every format,
 * source and scale dtype, both roundings, threaded and not; plus every status code. Skipped without
 * build/libtrtb.so unless TRTB_REQUIRE_NATIVE=1.
 */
import { describe, expect, test } from "bun:test";
import { DTYPE_SIZE } from "../../src/dtype.ts";
import { isTrtbError, type TrtbError } from "../../src/errors.ts";
import { nativeLib } from "../../src/ffi/index.ts";
import { dequantizeTS, type FloatDType, type QuantKernelParams, quantizeTS, quantSizes } from "../../src/quant/kernel.ts";
import { randomBytes } from "./_ref.ts";
import { quantCases, specialWeights } from "./_quant-ref.ts";

const native = nativeLib();
if (!native && process.env.TRTB_REQUIRE_NATIVE === "1") throw new Error("TRTB_REQUIRE_NATIVE=1 but libtrtb could not be loaded");

function trtbErr(fn: () => unknown): TrtbError {
  try {
    fn();
  } catch (e) {
    if (isTrtbError(e)) return e;
    throw e;
  }
  throw new Error("expected a TrtbError");
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : a.length;
}

describe.skipIf(!native)("native quantize == TypeScript reference", () => {
  const n = native!;
  const both = (p: QuantKernelParams, src: Uint8Array) => {
    const sz = quantSizes(p);
    const ref = { q: new Uint8Array(sz.q), s: new Uint8Array(sz.scales) };
    const got = { q: new Uint8Array(sz.q), s: new Uint8Array(sz.scales) };
    quantizeTS(p, src, ref.q, ref.s);
    n.quantize(p, src, got.q, got.s);
    return { ref, got };
  };

  for (const c of quantCases()) {
    test(c.label, () => {
      const src = specialWeights(c.p.rows * c.p.cols, c.p.srcDtype, c.seed);
      const { ref, got } = both(c.p, src);
      expect(firstDiff(got.q, ref.q)).toBe(-1);
      expect(firstDiff(got.s, ref.s)).toBe(-1);
      for (const dt of ["F32", "BF16", "F16"] as FloatDType[]) {
        const a = new Uint8Array(c.p.rows * c.p.cols * DTYPE_SIZE[dt]);
        const b = new Uint8Array(a.length);
        dequantizeTS(c.p, ref.q, ref.s, a, dt);
        n.dequantize(c.p, got.q, got.s, b, dt);
        expect(firstDiff(b, a)).toBe(-1);
      }
    });
  }

  test("threaded (1, 3, 8 threads) results are identical on large matrices", () => {
    for (const p of quantCases().filter((c) => c.large).map((c) => c.p)) {
      const src = specialWeights(p.rows * p.cols, p.srcDtype, 99);
      const sz = quantSizes(p);
      const outs = [1, 3, 8].map((t) => {
        const prev = n.setNumThreads(t);
        try {
          const q = new Uint8Array(sz.q);
          const s = new Uint8Array(sz.scales);
          n.quantize(p, src, q, s);
          return [q, s] as const;
        } finally {
          n.setNumThreads(prev);
        }
      });
      for (const [q, s] of outs.slice(1)) {
        expect(firstDiff(q, outs[0]![0])).toBe(-1);
        expect(firstDiff(s, outs[0]![1])).toBe(-1);
      }
    }
  });

  test("status codes", () => {
    const base: QuantKernelParams = {
      format: "int4_packed_rows", srcDtype: "BF16", scaleDtype: "BF16", rows: 4, cols: 128, groupSize: 64, divisor: 7, minScale: 0,
      zeroScale: 1, clamp: null, qmin: -8, qmax: 7, rounding: "half_even", divideByStoredScale: true,
    };
    const src = randomBytes(4 * 128 * 2, 3);
    const q = new Uint8Array(256);
    const s = new Uint8Array(16);
    const call = (p: QuantKernelParams, a = src, b = q, c = s) => trtbErr(() => n.quantize(p, a, b, c));
    expect(call(base, src, new Uint8Array(255)).code).toBe("NATIVE_SIZE");
    expect(call(base, src, q, new Uint8Array(15)).code).toBe("NATIVE_SIZE");
    expect(call({ ...base, groupSize: 48 }).code).toBe("NATIVE_INVALID_ARG");
    expect(call({ ...base, rows: 3 }, randomBytes(3 * 128 * 2), new Uint8Array(192), new Uint8Array(12)).code).toBe("NATIVE_INVALID_ARG");
    expect(call({ ...base, qmin: -9 }).code).toBe("NATIVE_INVALID_ARG");
    expect(call({ ...base, divisor: 0 }).code).toBe("NATIVE_INVALID_ARG");
    expect(call({ ...base, clamp: [1, -1] }).code).toBe("NATIVE_INVALID_ARG");
    expect(call({ ...base, scaleDtype: "I8" as FloatDType }, src, q, new Uint8Array(8)).code).toBe("NATIVE_DTYPE");
    expect(call({ ...base, srcDtype: "I32" as FloatDType }, randomBytes(4 * 128 * 4)).code).toBe("NATIVE_DTYPE");
    const whole = new Uint8Array(src.length + 256);
    const e = call(base, whole.subarray(0, src.length), whole.subarray(src.length - 10, src.length + 246));
    expect(e.code).toBe("NATIVE_INVALID_ARG");
    expect(e.message).toContain("overlap");
    expect(trtbErr(() => n.dequantize(base, q, s, new Uint8Array(4 * 128 * 4), "I8")).code).toBe("NATIVE_DTYPE");
    expect(trtbErr(() => n.dequantize(base, q, s, new Uint8Array(7), "F32")).code).toBe("NATIVE_SIZE");
    expect(trtbErr(() => n.quantize({ ...base, rows: -1 }, src, q, s)).code).toBe("NATIVE_INVALID_ARG");
    // an empty matrix is a no-op
    n.quantize({ ...base, rows: 0 }, new Uint8Array(0), new Uint8Array(0), new Uint8Array(0));
  });
});
