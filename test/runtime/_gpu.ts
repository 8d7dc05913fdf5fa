/** Whether the GPU engine tests can run here: the engine library loads and sees a CUDA device. */
import { isTrtbError } from "../../src/errors.ts";
import { engineLib } from "../../src/ffi/engine.ts";

/** True when a GPU is usable; otherwise warns once that `file` is skipped, and why. */
export function gpuOrSkip(file: string): boolean {
  let why = "";
  try {
    if (engineLib().deviceCount() > 0) return true;
    why = "no CUDA device";
  } catch (e) {
    why = isTrtbError(e) ? `${e.code}: ${e.message.split("\n")[0]}` : String(e);
  }
  console.warn(`${file}: skipped (${why})`);
  return false;
}
