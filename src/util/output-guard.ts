/**
 * Output-location safety for every writer (convert, quantize, trtllm-build, run / eval outputs):
 * before anything is written, the output is resolved through symlinks (`M/.`, `M/../M` and a link
 * to M are all M) and refused when it is, contains or lies inside one of the command's inputs
 * (IO_OUTPUT_IS_INPUT), or when it sits on a read-only file system or in a directory we may not
 * write (IO_READ_ONLY). Nothing here writes.
 */
import fs from "node:fs";
import nodePath from "node:path";
import { TrtbError } from "../errors.ts";

/** Inputs as callers build them: `flag && { path, what }` leaves "", false, null or undefined for an absent one. */
export type MaybeInput = GuardInput | undefined | null | false | "";

export interface GuardInput {
  /** A file or directory the command reads. */
  path: string;
  /** What it is, for the message (e.g. "--model_dir"). */
  what: string;
}

/**
 * The absolute, symlink-free form of `p`, which need not exist: the deepest existing ancestor is
 * resolved with realpath and the missing rest appended.
 */
export function resolveReal(p: string): string {
  let cur = nodePath.resolve(p);
  const rest: string[] = [];
  for (;;) {
    try {
      return nodePath.join(fs.realpathSync(cur), ...rest.reverse());
    } catch {
      const parent = nodePath.dirname(cur);
      if (parent === cur) return nodePath.join(cur, ...rest.reverse());
      rest.push(nodePath.basename(cur));
      cur = parent;
    }
  }
}

function within(inner: string, outer: string): boolean {
  return inner === outer || inner.startsWith(outer.endsWith(nodePath.sep) ? outer : outer + nodePath.sep);
}

/** Throw IO_OUTPUT_IS_INPUT unless `output` (`what`, e.g. "--output_dir") is disjoint from every input. */
export function checkOutputNotInput(output: string, what: string, inputs: readonly MaybeInput[]): void {
  const out = resolveReal(output);
  for (const i of inputs) {
    if (!i || !i.path) continue;
    const inp = resolveReal(i.path);
    const rel = out === inp ? "is" : within(out, inp) ? "lies inside" : within(inp, out) ? "contains" : null;
    if (rel)
      throw new TrtbError(
        "IO_OUTPUT_IS_INPUT",
        `${what} ${output} ${rel} ${i.what} ${i.path}${out !== nodePath.resolve(output) ? ` (${out})` : ""}; writing there could overwrite the input, so nothing was written. Choose a separate output location.`,
        { file: output },
      );
  }
}

/** Throw IO_READ_ONLY when `output` (a file or directory, existing or not) cannot be created or written. */
export function checkWritable(output: string, what: string): void {
  let cur = nodePath.resolve(output);
  while (!fs.existsSync(cur)) {
    const parent = nodePath.dirname(cur);
    if (parent === cur) break;
    cur = parent;
  }
  try {
    fs.accessSync(cur, fs.constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new TrtbError("IO_READ_ONLY", `${what} ${output}: ${cur} is not writable (${code === "EROFS" ? "read-only file system" : (code ?? (e as Error).message)}); nothing was written`, { file: output, cause: e });
  }
}

/** Both checks, as every writer runs them before its first write. */
export function guardOutput(output: string, what: string, inputs: readonly MaybeInput[]): void {
  checkOutputNotInput(output, what, inputs);
  checkWritable(output, what);
}

/** IO_READ_ONLY for EROFS / EACCES / EPERM, else IO_WRITE: one wording for a failed write of `path`. */
export function writeError(e: unknown, path: string, doing: string): TrtbError {
  if (e instanceof TrtbError) return e;
  const code = (e as NodeJS.ErrnoException).code;
  const ro = code === "EROFS" || code === "EACCES" || code === "EPERM";
  return new TrtbError(ro ? "IO_READ_ONLY" : "IO_WRITE", `cannot ${doing} ${path}: ${code === "EROFS" ? "read-only file system" : (code ?? (e as Error).message)}`, { file: path, cause: e });
}
