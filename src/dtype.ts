/**
 * Element types, named as safetensors names them (the TRT-LLM checkpoint uses these strings), plus
 * the mapping to TRT-LLM's config names (`float16`, `bfloat16`, `float32`).
 */
import { TrtbError } from "./errors.ts";

export const DTYPES = [
  "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
  "I32", "U32", "F32", "F64", "I64", "U64",
] as const;
export type DType = (typeof DTYPES)[number];

/** Size of one element in bytes. */
export const DTYPE_SIZE: Record<DType, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
};

export function isDType(s: string): s is DType {
  return (DTYPES as readonly string[]).includes(s);
}

/** Floating types the converter writes for non-quantized tensors. */
export type ModelDType = "float16" | "bfloat16" | "float32";
export const MODEL_DTYPES: readonly ModelDType[] = ["float16", "bfloat16", "float32"];

export function modelDTypeToST(d: ModelDType): "F16" | "BF16" | "F32" {
  return d === "float16" ? "F16" : d === "bfloat16" ? "BF16" : "F32";
}

export function stToModelDType(d: DType): ModelDType {
  if (d === "F16") return "float16";
  if (d === "BF16") return "bfloat16";
  if (d === "F32") return "float32";
  throw new TrtbError("CFG_DTYPE", `no model dtype corresponds to ${d}`);
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function byteSize(dtype: DType, shape: readonly number[]): number {
  return numel(shape) * DTYPE_SIZE[dtype];
}
