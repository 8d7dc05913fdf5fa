/**
 * libtrtb_cuda's quantization kernels bit for bit against the CPU (libtrtb, or the TypeScript
 * reference without it): every case of the CPU suite, unaligned views (narrower vector paths), large
 * and wide matrices, dequantization, errors, and a whole checkpoint quantized on the GPU equal to the
 * CPU's. Runs only where libtrtb_cuda loads and sees a device; skipped elsewhere.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { DTYPE_SIZE } from "../../src/dtype.ts";
import { isTrtbError } from "../../src/errors.ts";
import { type Cuda, cudaLib } from "../../src/ffi/index.ts";
import { Mapping } from "../../src/mapping.ts";
import { cpuQuantBackend } from "../../src/quant/backend.ts";
import type { FloatDType, QuantKernelParams } from "../../src/quant/kernel.ts";
import { quantSizes } from "../../src/quant/kernel.ts";
import { quantize } from "../../src/quantize.ts";
import { tempDir } from "../helpers.ts";
import { writeSyntheticLlama } from "../quant/_synthetic.ts";
import { quantCases, specialWeights } from "./_quant-ref.ts";

let cuda: Cuda | null = null;
let why = "";
try {
  cuda = cudaLib();
} catch (e) {
  why = isTrtbError(e) ? `${e.code}: ${e.message.split("\n")[0]}` : String(e);
}
const gpu = cuda !== null && cuda.deviceCount() > 0;
if (!gpu) console.warn(`test/ffi/quant-cuda.test.ts: no usable GPU, skipping (${why})`);

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : a.length;
}

describe.skipIf(!gpu)("cuda quantize == CPU", () => {
  const c = cuda!;
  const cpu = cpuQuantBackend();

  /** Quantize on the GPU with the source at byte offset `srcOff` and the output at `dstOff` of their allocations. */
  const onGpu = (p: QuantKernelParams, src: Uint8Array, srcOff = 0, dstOff = 0) => {
    const sz = quantSizes(p);
    using a = c.alloc(src.byteLength + srcOff);
    using b = c.alloc(sz.q + dstOff);
    using s = c.alloc(sz.scales);
    const av = a.subarray(srcOff);
    const bv = b.subarray(dstOff);
    av.upload(src);
    c.quantize(p, av, bv, s);
    return { q: bv.download(), s: s.download() };
  };
  const onCpu = (p: QuantKernelParams, src: Uint8Array) => {
    const sz = quantSizes(p);
    const q = new Uint8Array(sz.q);
    const s = new Uint8Array(sz.scales);
    cpu.quantize(p, src, q, s);
    return { q, s };
  };

  test("every CPU-suite case, GPU == CPU (quantize and dequantize to f32/bf16/f16)", () => {
    const bad: string[] = []; // every mismatching case, not just the first
    for (const k of quantCases()) {
      const src = specialWeights(k.p.rows * k.p.cols, k.p.srcDtype, k.seed);
      const want = onCpu(k.p, src);
      const got = onGpu(k.p, src);
      const dq = firstDiff(got.q, want.q);
      const ds = firstDiff(got.s, want.s);
      if (dq >= 0 || ds >= 0) bad.push(`${k.label}: q differs at ${dq} (gpu ${got.q[dq]} cpu ${want.q[dq]}), scales at ${ds}`);
      for (const dt of ["F32", "BF16", "F16"] as FloatDType[]) {
        const n = k.p.rows * k.p.cols * DTYPE_SIZE[dt];
        const ref = new Uint8Array(n);
        cpu.dequantize(k.p, want.q, want.s, ref, dt);
        using dqb = c.upload(want.q.byteLength ? want.q : new Uint8Array(1));
        using dsb = c.upload(want.s);
        using out = c.alloc(n);
        c.dequantize(k.p, dqb.subarray(0, want.q.byteLength), dsb, out, dt);
        const d = firstDiff(out.download(), ref);
        if (d >= 0) bad.push(`${k.label}: dequantize to ${dt} differs at byte ${d}`);
      }
    }
    expect(bad).toEqual([]);
  }, 120_000);

  test("unaligned source and destination views take the narrow vector paths, same bits", () => {
    const bad: string[] = [];
    for (const k of quantCases().filter((x) => x.p.cols >= 64)) {
      const src = specialWeights(k.p.rows * k.p.cols, k.p.srcDtype, k.seed + 1000);
      const want = onCpu(k.p, src);
      for (const [so, dO] of [[DTYPE_SIZE[k.p.srcDtype], 0], [0, 1], [2 * DTYPE_SIZE[k.p.srcDtype], 2]]) {
        const got = onGpu(k.p, src, so, dO);
        const dq = firstDiff(got.q, want.q);
        const ds = firstDiff(got.s, want.s);
        if (dq >= 0 || ds >= 0) bad.push(`${k.label} src+${so} dst+${dO}: q differs at ${dq}, scales at ${ds}`);
      }
    }
    expect(bad).toEqual([]);
  }, 120_000);

  test("Llama-8B-sized matrices (14336 x 4096 AWQ, 4096 x 14336 fp8 per channel)", () => {
    const cases: QuantKernelParams[] = [
      { format: "int4_packed_rows", srcDtype: "BF16", scaleDtype: "BF16", rows: 14336, cols: 4096, groupSize: 128, divisor: 7, minScale: 0, zeroScale: 1, clamp: null, qmin: -8, qmax: 7, rounding: "half_even", divideByStoredScale: true },
      { format: "fp8_e4m3", srcDtype: "BF16", scaleDtype: "F32", rows: 4096, cols: 14336, groupSize: 14336, divisor: 448, minScale: Math.fround(1 / 229376), zeroScale: 0, clamp: [-1200, 1200], qmin: 0, qmax: 0, rounding: "half_even", divideByStoredScale: false },
    ];
    for (const p of cases) {
      // 1 Mi special weights tiled over the matrix (generating 58 M in JS would take seconds)
      const tile = specialWeights(1 << 20, "BF16", 4242);
      const src = new Uint8Array(p.rows * p.cols * 2);
      for (let o = 0; o < src.length; o += tile.length) src.set(tile.subarray(0, Math.min(tile.length, src.length - o)), o);
      const want = onCpu(p, src);
      const got = onGpu(p, src);
      expect(firstDiff(got.q, want.q)).toBe(-1);
      expect(firstDiff(got.s, want.s)).toBe(-1);
    }
  }, 120_000);

  test("errors: sizes, dtypes, group", () => {
    const p: QuantKernelParams = { format: "int8", srcDtype: "BF16", scaleDtype: "BF16", rows: 4, cols: 64, groupSize: 64, divisor: 128, minScale: 0, zeroScale: 0, clamp: null, qmin: -128, qmax: 127, rounding: "half_away", divideByStoredScale: false };
    using a = c.alloc(512);
    using b = c.alloc(256);
    using s = c.alloc(8);
    const err = (fn: () => void) => {
      try {
        fn();
      } catch (e) {
        return isTrtbError(e) ? e.code : String(e);
      }
      return "none";
    };
    expect(err(() => c.quantize(p, a, b.subarray(0, 255), s))).toBe("NATIVE_SIZE");
    expect(err(() => c.quantize({ ...p, groupSize: 48 }, a, b, s))).toBe("NATIVE_INVALID_ARG");
    expect(err(() => c.quantize({ ...p, scaleDtype: "I8" as FloatDType }, a, b, s.subarray(0, 4)))).toBe("NATIVE_DTYPE");
    expect(err(() => c.quantize(p, a.subarray(1, 513 - 1), b, s))).toBe("NATIVE_SIZE");
    c.quantize(p, a, b, s);
    c.synchronize();
  });

  test("a whole checkpoint quantized on the GPU is byte-identical to the CPU's (int4_awq_rtn, fp8_rowwise; tp=2)", async () => {
    using src = tempDir();
    writeSyntheticLlama(src.path, { V: 512, H: 256, nH: 4, nKV: 2, I: 768, L: 2 });
    for (const quant_algo of ["W4A16_AWQ", "FP8_PER_CHANNEL_PER_TOKEN"] as const) {
      using a = tempDir();
      using b = tempDir();
      await quantize(src.path, a.path, { quant_algo, group_size: 64 }, { mapping: new Mapping({ tpSize: 2 }), device: "cpu" });
      await quantize(src.path, b.path, { quant_algo, group_size: 64 }, { mapping: new Mapping({ tpSize: 2 }), device: "cuda" });
      const files = readdirSync(a.path).sort();
      expect(readdirSync(b.path).sort()).toEqual(files);
      for (const f of files) expect({ f, same: firstDiff(readFileSync(join(b.path, f)), readFileSync(join(a.path, f))) }).toEqual({ f, same: -1 });
    }
  }, 120_000);
});
