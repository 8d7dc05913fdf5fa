/** Small filesystem helpers: atomic text writes and checkpoint-directory bookkeeping. */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { writeError } from "./output-guard.ts";

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
    throw writeError(e, path, "write");
  }
}

export function ensureDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw writeError(e, dir, "create directory");
  }
}

/**
 * Prepare `dir` to receive a checkpoint: remove `config.json` first (so the directory never looks
 * complete while ranks are being written), then rank files left over from an earlier, larger run,
 * and temp files of a run that was killed (`.rank0.safetensors.tmp-<pid>-<rand>`).
 */
export function prepareCheckpointDir(dir: string, worldSize = 0, suffix = "safetensors"): void {
  ensureDir(dir);
  try {
    rmSync(join(dir, "config.json"), { force: true });
    const rank = new RegExp(`^rank(\\d+)\\.${suffix}$`);
    const temp = new RegExp(`^\\.(rank\\d+\\.${suffix}|config\\.json)\\.tmp-(\\d+)-`);
    for (const f of readdirSync(dir)) {
      const m = rank.exec(f);
      const t = temp.exec(f);
      // A temp file is stale when the process that wrote it is gone.
      if ((m && Number(m[1]) >= worldSize) || (t && !processAlive(Number(t[2])))) rmSync(join(dir, f), { force: true });
    }
  } catch (e) {
    throw writeError(e, dir, "prepare output directory");
  }
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
