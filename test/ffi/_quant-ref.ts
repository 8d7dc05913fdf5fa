/** Quantization test cases shared by the CPU (quant.test.ts) and GPU (quant-cuda.test.ts) suites. */
import { DTYPE_SIZE } from "../../src/dtype.ts";
import { f32ToBf16Bits, f32ToF16Bits } from "../../src/numeric.ts";
import type { FloatDType, QFormat, QuantKernelParams } from "../../src/quant/kernel.ts";
import { rng } from "./_ref.ts";

/**
 * Weights with the values that break kernels: mostly normal numbers of varying range, plus zeros,
 * whole zero rows/groups, NaN, ±inf, subnormals, huge values and exact quantization ties.
 */
export function specialWeights(n: number, dtype: FloatDType, seed: number): Uint8Array {
  const next = rng(seed);
  const out = new Uint8Array(n * DTYPE_SIZE[dtype]);
  const dv = new DataView(out.buffer);
  const zeroRun = next() % 97;
  for (let i = 0; i < n; i++) {
    const r = next();
    let x: number;
    const k = r % 1000;
    if (k === 0) x = NaN;
    else if (k === 1) x = Infinity;
    else if (k === 2) x = -Infinity;
    else if (k < 6) x = 1e-40 * ((r >>> 10) % 7);
    else if (k < 8) x = ((r >>> 12) % 2 ? 1 : -1) * 3e4;
    else if (k < 20) x = ((r >>> 10) % 17) - 8 + 0.5; // ties
    else if (i % 389 < 64 && i % 389 >= zeroRun % 64) x = 0; // zero runs
    else x = ((next() / 2 ** 32) - 0.5) * 2 ** ((r >>> 20) % 12 - 6);
    if (dtype === "F32") dv.setFloat32(i * 4, x, true);
    else dv.setUint16(i * 2, dtype === "F16" ? f32ToF16Bits(x) : f32ToBf16Bits(x), true);
  }
  return out;
}

export interface QuantCase {
  label: string;
  p: QuantKernelParams;
  seed: number;
  large?: boolean;
}

const SCHEME_PARAMS: Record<string, Omit<QuantKernelParams, "rows" | "cols" | "groupSize" | "srcDtype" | "scaleDtype">> = {
  awq: { format: "int4_packed_rows", divisor: 7, minScale: 0, zeroScale: 1, clamp: null, qmin: -8, qmax: 7, rounding: "half_even", divideByStoredScale: true },
  wo8: { format: "int8", divisor: 128, minScale: 0, zeroScale: 0, clamp: null, qmin: -128, qmax: 127, rounding: "half_away", divideByStoredScale: false },
  wo4: { format: "int8", divisor: 8, minScale: 0, zeroScale: 0, clamp: null, qmin: -8, qmax: 7, rounding: "half_away", divideByStoredScale: false },
  fp8: { format: "fp8_e4m3", divisor: 448, minScale: Math.fround(1 / (448 * 512)), zeroScale: 0, clamp: [-1200, 1200], qmin: 0, qmax: 0, rounding: "half_even", divideByStoredScale: false },
  fp8_noclamp: { format: "fp8_e4m3", divisor: 448, minScale: 0, zeroScale: 1, clamp: null, qmin: 0, qmax: 0, rounding: "half_even", divideByStoredScale: true },
  int4_rows_away: { format: "int4_packed_rows", divisor: 8, minScale: 1e-6, zeroScale: 0, clamp: [-3, 2], qmin: -7, qmax: 7, rounding: "half_away", divideByStoredScale: false },
};

/** Shapes × dtypes × schemes: small ones for the reference comparison, a few large ones. */
export function quantCases(): QuantCase[] {
  const out: QuantCase[] = [];
  const shapes: [number, number, number | "row"][] = [[2, 64, 64], [6, 128, 64], [34, 256, 128], [8, 96, "row"], [130, 520, "row"], [2, 32, 16], [4, 24, 8]];
  let seed = 1;
  for (const [name, sp] of Object.entries(SCHEME_PARAMS)) {
    for (const [rows, cols, g] of shapes) {
      for (const [src, scale] of [["BF16", "BF16"], ["F16", "F16"], ["F32", "F32"], ["BF16", "F32"], ["F32", "F16"]] as [FloatDType, FloatDType][]) {
        const groupSize = g === "row" ? cols : g;
        out.push({ label: `${name} ${rows}x${cols} group ${groupSize} ${src}→${sp.format as QFormat} scales ${scale}`, seed: seed++, p: { ...sp, rows, cols, groupSize, srcDtype: src, scaleDtype: scale } });
      }
    }
  }
  // Larger ones; groups ≥ 1024 take the GPU's block-per-group kernel (PAIR and not, all source dtypes).
  const large: [string, number, number, number, FloatDType, FloatDType][] = [
    ["awq", 1024, 4096, 128, "BF16", "BF16"], ["fp8", 512, 14336, 14336, "BF16", "F32"], ["wo8", 768, 4096, 4096, "BF16", "BF16"],
    ["awq", 256, 2048, 64, "BF16", "BF16"], ["int4_rows_away", 10, 4096, 2048, "BF16", "F16"], ["fp8_noclamp", 40, 3000, 3000, "F32", "F32"],
    ["wo4", 24, 2560, 1280, "F16", "F16"], ["awq", 6, 6144, 1536, "F32", "BF16"],
  ];
  for (const [name, rows, cols, g, src, scale] of large)
    out.push({ label: `${name} ${rows}x${cols} group ${g} ${src} large`, seed: seed++, large: true, p: { ...SCHEME_PARAMS[name]!, rows, cols, groupSize: g, srcDtype: src, scaleDtype: scale } });
  return out;
}
