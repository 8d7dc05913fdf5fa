/**
 * Element-type conversion of byte buffers: the shim's threaded kernel when it is loaded, else the
 * TypeScript reference (`src/numeric.ts`). Both give identical bits (tested in test/ffi).
 */
import type { DType } from "../dtype.ts";
import { nativeLib } from "../ffi/index.ts";
import { castArrayTS } from "../numeric.ts";

/** Below this many bytes the FFI round trip costs more than the TS loop. */
const NATIVE_MIN_BYTES = 4096;

export function castInto(src: Uint8Array, from: DType, dst: Uint8Array, to: DType): void {
  if (from === to) {
    dst.set(src);
    return;
  }
  const native = src.byteLength >= NATIVE_MIN_BYTES ? nativeLib() : null;
  if (native) native.convert(src, from, dst, to);
  else castArrayTS(src, from, dst, to);
}
