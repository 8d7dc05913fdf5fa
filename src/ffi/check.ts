/**
 * Turns native status codes into `TrtbError`s. Each library has its own thread-local last-error
 * slot, so a checker is bound to one library's `last_error` / `status_str` pair.
 *
 * Codes (stable, asserted by tests):
 *
 * | status | code                 | meaning                                                        |
 * |-------:|----------------------|----------------------------------------------------------------|
 * |     -1 | `NATIVE_INVALID_ARG` | NULL with a length, bad element size, overlapping buffers, ... |
 * |     -2 | `NATIVE_DTYPE`       | unknown dtype or a conversion the call does not do             |
 * |     -3 | `NATIVE_SIZE`        | byte lengths disagree with dtype or shape                      |
 * |     -4 | `NATIVE_OUT_OF_MEMORY` | host allocation failed                                       |
 * |     -5 | `NATIVE_INTERNAL`    | bug in the shim                                                |
 * |     -6 | `NATIVE_UNSUPPORTED` | not compiled into this build                                   |
 * |   -100 | `CUDA_UNAVAILABLE`   | no NVIDIA driver, or one older than the runtime built in      |
 * |   -101 | `CUDA_NO_DEVICE`     | driver present, no device visible                              |
 * |   -102 | `CUDA_OUT_OF_MEMORY` | device allocation failed                                       |
 * |   -103 | `CUDA_ERROR`         | any other CUDA error (message has the CUDA error name)         |
 * |  other | `NATIVE_UNKNOWN_STATUS` | a status this TypeScript does not know (newer library?)     |
 *
 * Raised on the TypeScript side of the boundary: `NATIVE_NOT_FOUND` (no loadable libtrtb),
 * `NATIVE_DESTROYED` (use of a destroyed handle), `CUDA_UNAVAILABLE` also when libtrtb_cuda cannot
 * be found or loaded.
 */
import { type ErrorCode, TrtbError } from "../errors.ts";
import { STATUS } from "./symbols.ts";

export const STATUS_CODE: Readonly<Record<number, ErrorCode>> = {
  [STATUS.INVALID_ARG]: "NATIVE_INVALID_ARG",
  [STATUS.DTYPE]: "NATIVE_DTYPE",
  [STATUS.SIZE]: "NATIVE_SIZE",
  [STATUS.OUT_OF_MEMORY]: "NATIVE_OUT_OF_MEMORY",
  [STATUS.INTERNAL]: "NATIVE_INTERNAL",
  [STATUS.UNSUPPORTED]: "NATIVE_UNSUPPORTED",
  [STATUS.CUDA_UNAVAILABLE]: "CUDA_UNAVAILABLE",
  [STATUS.CUDA_NO_DEVICE]: "CUDA_NO_DEVICE",
  [STATUS.CUDA_OUT_OF_MEMORY]: "CUDA_OUT_OF_MEMORY",
  [STATUS.CUDA]: "CUDA_ERROR",
};

/** The `TrtbError` code for a native status (`NATIVE_UNKNOWN_STATUS` for one not listed). */
export function statusCode(status: number): ErrorCode {
  return STATUS_CODE[status] ?? "NATIVE_UNKNOWN_STATUS";
}

/** The two per-library functions a checker needs. */
export interface ErrorSource {
  lastError(buf: Uint8Array, len: number): number;
  statusStr(status: number): string | null;
}

export type Checker = (status: number) => void;

/**
 * Returns `check(status)`: nothing on `TRTB_OK`, otherwise throws a `TrtbError` whose message is
 * the library's last-error text (falling back to the status description).
 */
export function makeChecker(src: ErrorSource): Checker {
  const buf = new Uint8Array(1024);
  const decoder = new TextDecoder();
  const lastErrorText = (): string => {
    const n = src.lastError(buf, buf.byteLength);
    return n > 0 ? decoder.decode(buf.subarray(0, Math.min(n, buf.byteLength - 1))) : "";
  };
  return (status: number): void => {
    if (status === STATUS.OK) return;
    const text = lastErrorText() || src.statusStr(status) || `native status ${status}`;
    throw new TrtbError(statusCode(status), text);
  };
}
