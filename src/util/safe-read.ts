/**
 * Reading input files without trusting them: every file is opened with O_NONBLOCK (a FIFO planted
 * where a config or shard should be cannot block the open) and `fstat`-checked as a regular file
 * before any byte is read; a small file (config, index, params) is refused past a size limit
 * before it is read, and its text must be valid UTF-8 (no silent U+FFFD). Each caller words the
 * failure with its own codes (`SafeReadErrors`).
 */
import fs from "node:fs";
import { type ErrorCode, TrtbError } from "../errors.ts";

/** Largest JSON side file (config.json, params.json, an index) read whole: far above any real one. */
export const MAX_JSON_FILE_BYTES = 64 * 2 ** 20;

/** Why a read failed: the file is not there / not readable, not a regular file, too large, not UTF-8. */
export type SafeReadFailure = "missing" | "unreadable" | "not_file" | "too_large" | "utf8";

export type SafeReadErrors = (kind: SafeReadFailure, message: string, cause?: unknown) => Error;

/** Open `path` read-only and non-blocking; throw unless it is a regular file. Returns fd and size. */
export function openRegularFile(path: string, err: SafeReadErrors): { fd: number; size: number } {
  let fd: number;
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw err("missing", `${path}: not found`, e);
    throw err("unreadable", `${path}: cannot open (${code ?? (e as Error).message})`, e);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw err("not_file", `${path}: not a regular file (${kindOf(st)})`);
    return { fd, size: st.size };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

function kindOf(st: fs.Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSocket()) return "a socket";
  return "not a file";
}

/** The bytes of a regular file of at most `maxBytes` (default MAX_JSON_FILE_BYTES). */
export function readRegularFile(path: string, err: SafeReadErrors, maxBytes = MAX_JSON_FILE_BYTES): Uint8Array {
  const { fd, size } = openRegularFile(path, err);
  try {
    if (size > maxBytes) throw err("too_large", `${path}: ${size} bytes, over the ${maxBytes}-byte limit for this file`);
    const out = new Uint8Array(size);
    let done = 0;
    while (done < size) {
      let k: number;
      try {
        k = fs.readSync(fd, out, done, size - done, done);
      } catch (e) {
        throw err("unreadable", `${path}: read failed (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, e);
      }
      if (k === 0) throw err("unreadable", `${path}: file shrank while reading (${done} of ${size} bytes)`);
      done += k;
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

/** A regular file's text, strict UTF-8 (a BOM is dropped). */
export function readTextFile(path: string, err: SafeReadErrors, maxBytes = MAX_JSON_FILE_BYTES): string {
  const bytes = readRegularFile(path, err, maxBytes);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    const at = firstBadUtf8(bytes);
    throw err("utf8", `${path}: not valid UTF-8 (first bad byte at offset ${at})`, e);
  }
}

/** Offset of the first byte that does not start or continue a valid UTF-8 sequence. */
export function firstBadUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    const n = c < 0x80 ? 0 : c >= 0xc2 && c < 0xe0 ? 1 : c >= 0xe0 && c < 0xf0 ? 2 : c >= 0xf0 && c < 0xf5 ? 3 : -1;
    if (n < 0) return i;
    for (let k = 1; k <= n; k++) if (i + k >= b.length || (b[i + k]! & 0xc0) !== 0x80) return i;
    i += n + 1;
  }
  return b.length;
}

/** The codes a format gives a missing/unreadable file and a file that is not (UTF-8) JSON. */
export interface JsonCodes {
  missing: ErrorCode;
  json: ErrorCode;
}

/**
 * `SafeReadErrors` as TrtbErrors: missing/unreadable → `codes.missing` (with `hint` appended),
 * invalid UTF-8 → `codes.json`, a FIFO/device/directory → IO_NOT_FILE, over the limit → IO_TOO_LARGE.
 */
export function trtbReadErrors(file: string, codes: JsonCodes, hint = ""): SafeReadErrors {
  return (kind, message, cause) => {
    const code: ErrorCode = kind === "not_file" ? "IO_NOT_FILE" : kind === "too_large" ? "IO_TOO_LARGE" : kind === "utf8" ? codes.json : codes.missing;
    return new TrtbError(code, kind === "missing" && hint ? `${message} (${hint})` : message, { file, cause });
  };
}

/** Parse a regular file as JSON (strict UTF-8, size-limited), failures as TrtbErrors with `codes`. */
export function readJsonFileSafe(path: string, codes: JsonCodes, hint = "", maxBytes = MAX_JSON_FILE_BYTES): unknown {
  const text = readTextFile(path, trtbReadErrors(path, codes, hint), maxBytes);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TrtbError(codes.json, `${path}: not valid JSON (${(e as Error).message})`, { file: path, cause: e });
  }
}
