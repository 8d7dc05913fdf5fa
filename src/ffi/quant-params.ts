/**
 * The parameters of one quantization kernel call: part of the shim's ABI (`trtb_quant_params` in
 * cshim/include/trtb.h), so they live with the FFI layer. The rules they select are described in
 * src/quant/kernel.ts (the TypeScript reference of the kernel).
 */

export type FloatDType = "F32" | "F16" | "BF16";
export type QFormat = "int8" | "int4_packed_rows" | "fp8_e4m3";
export type QRounding = "half_even" | "half_away";

/** One quantization call: the shape, the formats and the scale rule (rules: src/quant/kernel.ts). */
export interface QuantKernelParams {
  format: QFormat;
  srcDtype: FloatDType;
  scaleDtype: FloatDType;
  rows: number;
  cols: number;
  groupSize: number;
  divisor: number;
  minScale: number;
  zeroScale: number;
  clamp: readonly [number, number] | null;
  qmin: number;
  qmax: number;
  rounding: QRounding;
  divideByStoredScale: boolean;
}
