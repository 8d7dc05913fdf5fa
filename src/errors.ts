/**
 * The one error type of the library. Every failure a user can cause (bad file, bad flag, missing
 * tensor) is a `TrtbError` with a stable `code`; tests assert codes, the CLI prints `message` only
 * (stack traces only under `--verbose`).
 *
 * Codes are grouped by prefix: `ST_` safetensors, `PTH_` torch/pickle, `CFG_` configs, `CKPT_`
 * checkpoints, `CONV_` conversion, `FFI_`/`NATIVE_` shim, `CUDA_` GPU, `CLI_` command line,
 * `RUN_` runtime, `QUANT_` quantization.
 */
export class TrtbError extends Error {
  override readonly name = "TrtbError";
  constructor(
    /** Stable machine-readable code, e.g. `ST_GAP`. Never changes meaning once shipped. */
    readonly code: string,
    message: string,
    /** Optional context: the file and tensor the failure is about. */
    readonly details: { file?: string; tensor?: string; cause?: unknown } = {},
  ) {
    super(message);
    if (details.cause !== undefined) (this as { cause?: unknown }).cause = details.cause;
  }
}

export function isTrtbError(e: unknown): e is TrtbError {
  return e instanceof TrtbError;
}

/** Throw a TrtbError unless `cond` holds. */
export function check(cond: unknown, code: string, message: string, details?: TrtbError["details"]): asserts cond {
  if (!cond) throw new TrtbError(code, message, details);
}
