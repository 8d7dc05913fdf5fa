/** Small filesystem helpers: atomic text writes and checkpoint-directory bookkeeping. */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { TrtbError } from "../errors.ts";

/** Write `text` to a temp file beside `path`, fsync, then rename over `path`. */
export function writeFileAtomic(path: string, text: string): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  try {
    const fd = openSync(tmp, "w");
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new TrtbError("IO_WRITE", `cannot write ${path}: ${(e as Error).message}`, { file: path, cause: e });
  }
}

export function ensureDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new TrtbError("IO_WRITE", `cannot create directory ${dir}: ${(e as Error).message}`, { file: dir, cause: e });
  }
}

/**
 * Prepare `dir` to receive a checkpoint: remove `config.json` first (so the directory never looks
 * complete while ranks are being written), then rank files left over from an earlier, larger run.
 */
export function prepareCheckpointDir(dir: string, worldSize = 0, suffix = "safetensors"): void {
  ensureDir(dir);
  rmSync(join(dir, "config.json"), { force: true });
  for (const f of readdirSync(dir)) {
    const m = new RegExp(`^rank(\\d+)\\.${suffix}$`).exec(f);
    if (m && Number(m[1]) >= worldSize) rmSync(join(dir, f), { force: true });
  }
}
