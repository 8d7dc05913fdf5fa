/**
 * Numeric sanity: the NaN/Inf scan every writer runs over the bytes it is about to write (the
 * converter over each output tensor, direct copies included; quantization over its fp input, since
 * int4/int8 would turn NaN into a finite value; the CPU runner's weight merge). The shim's threaded
 * `trtb_find_nonfinite` when it is loaded, else the TypeScript reference (`src/numeric.ts`).
 *
 * A hit is NUM_NONFINITE naming the tensor (and file) and the first bad index, unless non-finite
 * values are allowed (`--allow_nonfinite`: `setAllowNonfinite` for the process, `withNonfinite`
 * for one synchronous job), in which case it is a warning naming the same.
 */
import { type DType, DTYPE_SIZE } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import { nativeLib } from "../ffi/index.ts";
import { log } from "../log.ts";
import { firstNonFiniteTS } from "../numeric.ts";

/** Below this many bytes the FFI round trip costs more than the TS loop. */
const NATIVE_MIN_BYTES = 4096;

let allowGlobal = false;
let allowScoped: boolean | undefined;

/** Allow non-finite values process-wide (the CLI's `--allow_nonfinite`). Returns the old setting. */
export function setAllowNonfinite(allow: boolean): boolean {
  const old = allowGlobal;
  allowGlobal = allow;
  return old;
}

/** Run `fn` (synchronous) with non-finite values allowed or refused, whatever the process setting. */
export function withNonfinite<T>(allow: boolean | undefined, fn: () => T): T {
  if (allow === undefined) return fn();
  const old = allowScoped;
  allowScoped = allow;
  try {
    return fn();
  } finally {
    allowScoped = old;
  }
}

export function nonfiniteAllowed(): boolean {
  return allowScoped ?? allowGlobal;
}

/** Index of the first NaN/Inf element of `bytes` (of `dtype`), or -1. */
export function firstNonFinite(bytes: Uint8Array, dtype: DType): number {
  const native = bytes.byteLength >= NATIVE_MIN_BYTES ? nativeLib() : null;
  return native ? native.findNonFinite(bytes, dtype) : firstNonFiniteTS(bytes, dtype);
}

/** `index` of a row-major `shape` as `[i, j, …]`. */
function unflatten(index: number, shape: readonly number[]): number[] {
  const out: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    const n = shape[d]!;
    out.unshift(n > 0 ? index % n : 0);
    index = n > 0 ? Math.floor(index / n) : 0;
  }
  return out;
}

function valueAt(bytes: Uint8Array, dtype: DType, i: number): string {
  const es = DTYPE_SIZE[dtype];
  const dv = new DataView(bytes.buffer, bytes.byteOffset + i * es, es);
  const hex = (es === 8 ? dv.getBigUint64(0, true) : es === 4 ? dv.getUint32(0, true) : es === 2 ? dv.getUint16(0, true) : dv.getUint8(0)).toString(16);
  return `0x${hex.padStart(es * 2, "0")}`;
}

/**
 * Throw NUM_NONFINITE (or warn, when allowed) if `bytes` holds a NaN or Inf. `what` names the
 * tensor as the message should (`"<file>: tensor <name>"`); `shape` turns the flat index into
 * coordinates.
 */
export function checkFinite(bytes: Uint8Array, dtype: DType, what: { tensor: string; file?: string; shape?: readonly number[] }): void {
  const i = firstNonFinite(bytes, dtype);
  if (i >= 0) reportNonFinite(bytes, dtype, i, 0, what);
}

/** The NUM_NONFINITE error (or warning) for element `i` of `bytes`, which starts at element `base` of the tensor. */
function reportNonFinite(bytes: Uint8Array, dtype: DType, i: number, base: number, what: { tensor: string; file?: string; shape?: readonly number[] }): void {
  const flat = base + i;
  const at = what.shape && what.shape.length > 1 ? `[${unflatten(flat, what.shape).join(", ")}]` : `[${flat}]`;
  const msg = `${what.file ? `${what.file}: ` : ""}tensor ${what.tensor} holds a non-finite value (NaN or Inf, bits ${valueAt(bytes, dtype, i)}) at index ${at} (flat ${flat})`;
  if (nonfiniteAllowed()) {
    log.warn(`${msg}; kept because non-finite values are allowed (--allow_nonfinite)`);
    return;
  }
  throw new TrtbError("NUM_NONFINITE", `${msg}; the weights are corrupt (pass --allow_nonfinite to write them anyway)`, { file: what.file, tensor: what.tensor });
}

/**
 * The NaN/Inf scan of one tensor fed in consecutive pieces: the first hit throws (or warns once)
 * as `checkFinite` does, with the index counted over the whole tensor.
 */
export class FiniteScan {
  #base = 0; // elements fed so far
  #warned = false;
  constructor(readonly dtype: DType, readonly what: { tensor: string; file?: string; shape?: readonly number[] }) {}

  /** Scan the next `bytes` of the tensor. */
  next(bytes: Uint8Array): void {
    if (!this.#warned) {
      const i = firstNonFinite(bytes, this.dtype);
      if (i >= 0) {
        reportNonFinite(bytes, this.dtype, i, this.#base, this.what);
        this.#warned = true; // allowed: reported; later hits stay silent, as with one whole-tensor scan
      }
    }
    this.#base += bytes.byteLength / DTYPE_SIZE[this.dtype];
  }
}

/**
 * Scan `parts` (back to back, one tensor of `dtype`) for NaN/Inf and hand them to `write`,
 * `chunkBytes` at a time: each chunk is scanned just before it is written, so the write copies
 * bytes the scan has just brought into cache. On a hit that throws, neither the chunk holding it
 * nor anything after is written.
 */
export function checkedChunks(parts: readonly Uint8Array[], scan: FiniteScan, chunkBytes: number, write: (bytes: Uint8Array) => void): void {
  const es = DTYPE_SIZE[scan.dtype];
  const step = Math.max(es, chunkBytes - (chunkBytes % es));
  for (const p of parts) {
    for (let o = 0; o < p.byteLength; o += step) {
      const c = p.subarray(o, Math.min(o + step, p.byteLength));
      scan.next(c);
      write(c);
    }
  }
}
