/**
 * A lazily-read tensor: name, dtype, shape and a function that returns its bytes. Readers
 * (safetensors, torch .pth) hand these out as zero-copy views into mapped files; transforms compose
 * them without touching data until a writer asks for bytes.
 */
import type { DType } from "./dtype.ts";

export interface TensorView {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Contiguous row-major bytes. Zero-copy where the source allows; do not mutate. */
  bytes(): Uint8Array;
}

/** Any reader of named tensors (one safetensors file, a sharded HF checkpoint, a .pth). */
export interface TensorSource {
  /** Names in the source, in file order. */
  names(): string[];
  has(name: string): boolean;
  /** Throws TrtbError (`*_MISSING_TENSOR`) naming the source when absent. */
  get(name: string): TensorView;
  /** Release mappings. Views obtained earlier must not be used afterwards. */
  close(): void;
}

export function tensorFromBytes(name: string, dtype: DType, shape: readonly number[], data: Uint8Array): TensorView {
  return { name, dtype, shape, bytes: () => data };
}

/** A parameter a model declares for one rank: what `PretrainedModel.load` requires. */
export interface ParamSpec {
  name: string;
  shape: number[];
  /** Expected dtype; undefined accepts any (quantized layers choose their own). */
  dtype?: DType;
}
