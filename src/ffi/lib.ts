/**
 * Finds and loads the native libraries. Together with the other files of `src/ffi/`, this is the
 * only code that imports `bun:ffi`.
 *
 * Candidates, in order (the first that loads and reports the right ABI version wins):
 *
 *  1. `TRTB_LIB` / `TRTB_CUDA_LIB`: an explicit path. When set it is the *only* candidate, so a
 *     typo fails loudly instead of silently picking up another copy.
 *  2. A copy embedded in a `bun build --compile` binary (`scripts/compile.ts` adds the libraries as
 *     extra entry points; they show up in `Bun.embeddedFiles`). It is extracted once into a
 *     content-addressed cache, `$XDG_CACHE_HOME/trtllm-build/<sha256 prefix>/libtrtb.so` (or
 *     `~/.cache/...`, else a per-user folder under the temp dir), and later launches reuse that
 *     file. Handing the `/$bunfs/` path to dlopen instead would make Bun write a fresh temp copy
 *     on every launch and never delete it (oven-sh/bun#40076); that remains the last resort.
 *  3. `build/` of a source checkout (`bun run build`). It comes before prebuilt/ because a checkout
 *     may hold a prebuilt/ left over from packing, older than the last build; an installed package
 *     has no build/.
 *  4. `prebuilt/<platform>-<arch>/` in the installed package (`scripts/prepack.ts` puts it there).
 *
 * `TRTB_DEBUG_FFI=1` prints every candidate and what happened to it to stderr.
 */
import { dlopen, type FFIFunction, type Library, suffix } from "bun:ffi";
import { existsSync, lstatSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { ABI_VERSION, CPU_SYMBOLS, CUDA_SYMBOLS } from "./symbols.ts";

/** One library: file name, env override, symbol table, ABI getter. */
export interface LibSpec<S extends Record<string, FFIFunction>> {
  readonly file: string;
  readonly env: string;
  readonly symbols: S;
  readonly abiSymbol: keyof S & string;
}

export const CPU_LIB: LibSpec<typeof CPU_SYMBOLS> = {
  file: `libtrtb.${suffix}`,
  env: "TRTB_LIB",
  symbols: CPU_SYMBOLS,
  abiSymbol: "trtb_abi_version",
};

export const CUDA_LIB: LibSpec<typeof CUDA_SYMBOLS> = {
  file: `libtrtb_cuda.${suffix}`,
  env: "TRTB_CUDA_LIB",
  symbols: CUDA_SYMBOLS,
  abiSymbol: "trtb_cuda_abi_version",
};

export type CandidateSource = "env" | "embedded" | "embedded-bunfs" | "prebuilt" | "build";

/** What happened to one candidate path. */
export interface Attempt {
  readonly source: CandidateSource;
  readonly path: string;
  /** "loaded", or why not ("not found", "dlopen failed: ...", "ABI version 2, expected 1"). */
  readonly outcome: string;
}

export type LoadResult<S extends Record<string, FFIFunction>> =
  | { ok: true; lib: Library<S>; path: string; source: CandidateSource; abiVersion: number; attempts: Attempt[] }
  | { ok: false; attempts: Attempt[] };

const debugEnabled = (): boolean => !!process.env.TRTB_DEBUG_FFI && process.env.TRTB_DEBUG_FFI !== "0";

/** Print a loader line to stderr when `TRTB_DEBUG_FFI` is set (independent of the log level). */
export function debugFfi(msg: string): void {
  if (debugEnabled()) process.stderr.write(`[trtb:ffi] ${msg}\n`);
}

/** Root of the package or checkout (the folder holding `src/`), or null inside a compiled binary. */
function packageRoot(): string | null {
  const dir = import.meta.dir;
  if (dir.startsWith("/$bunfs") || dir.includes("~BUN")) return null;
  return path.resolve(dir, "../..");
}

/** `linux-x64`, `linux-arm64`, ... as used under `prebuilt/`. */
export function platformTag(): string {
  return `${process.platform}-${process.arch}`;
}

// ---- embedded libraries (compiled binaries) ---------------------------------------------------

/** The embedded copy of `file`, if this is a compiled binary that has one. */
function findEmbedded(file: string): Blob | undefined {
  const files = (Bun as { embeddedFiles?: readonly Blob[] }).embeddedFiles;
  if (!files || files.length === 0) return undefined;
  const stem = file.slice(0, file.lastIndexOf("."));
  const ext = file.slice(file.lastIndexOf("."));
  // `--asset-naming="[name].[ext]"` keeps the plain name; tolerate Bun's default `[name]-[hash]`.
  const hashed = new RegExp(`^${stem.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}-[a-z0-9]+${ext.replace(".", "\\.")}$`);
  return files.find((f) => {
    const name = (f as Blob & { name?: string }).name ?? "";
    return name === file || hashed.test(name);
  });
}

/** Cache roots to try, most preferred first. */
function cacheRoots(): string[] {
  const roots: string[] = [];
  const xdg = process.env.XDG_CACHE_HOME;
  if (xdg && path.isAbsolute(xdg)) roots.push(path.join(xdg, "trtllm-build"));
  else roots.push(path.join(homedir(), ".cache", "trtllm-build"));
  const uid = typeof process.getuid === "function" ? process.getuid() : "user";
  roots.push(path.join(tmpdir(), `trtllm-build-${uid}`));
  return roots;
}

function sha256Hex(bytes: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
}

/** A folder we may trust to hold code: a real directory, ours, not writable by others. */
function safeDir(dir: string): boolean {
  const st = lstatSync(dir);
  if (!st.isDirectory()) return false;
  if (typeof process.getuid === "function" && st.uid !== process.getuid()) return false;
  return (st.mode & 0o022) === 0;
}

/**
 * Write `bytes` to `<root>/<hash>/<file>` unless an identical file is already there; return the
 * path. Writes go to a temp name and are renamed into place, so concurrent launches never see a
 * half-written library.
 */
function extractToCache(file: string, bytes: Uint8Array, attempts: Attempt[]): string | undefined {
  const hash = sha256Hex(bytes).slice(0, 16);
  for (const root of cacheRoots()) {
    const dir = path.join(root, hash);
    const target = path.join(dir, file);
    let tmp: string | undefined;
    try {
      if (existsSync(target)) {
        if (safeDir(dir) && sha256Hex(readFileSync(target)).slice(0, 16) === hash) {
          debugFfi(`${file}: reusing extracted copy ${target}`);
          return target;
        }
        debugFfi(`${file}: ${target} does not match the embedded copy; rewriting it`);
      }
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      if (!safeDir(dir)) throw new Error(`${dir} is not a private directory owned by this user`);
      tmp = path.join(dir, `.${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
      writeFileSync(tmp, bytes, { mode: 0o755 });
      renameSync(tmp, target);
      tmp = undefined;
      debugFfi(`${file}: extracted embedded copy to ${target}`);
      return target;
    } catch (e) {
      attempts.push({ source: "embedded", path: target, outcome: `cannot extract: ${(e as Error).message}` });
      debugFfi(`${file}: cannot extract to ${target}: ${(e as Error).message}`);
      if (tmp) {
        try {
          unlinkSync(tmp);
        } catch {}
      }
    }
  }
  return undefined;
}

// ---- candidates and loading ------------------------------------------------------------------

interface Candidate {
  source: CandidateSource;
  path: string;
}

function candidates(spec: LibSpec<any>, attempts: Attempt[]): Candidate[] {
  const env = process.env[spec.env];
  if (env) return [{ source: "env", path: path.resolve(env) }];
  const list: Candidate[] = [];
  const embedded = findEmbedded(spec.file);
  if (embedded) {
    const name = (embedded as Blob & { name?: string }).name ?? spec.file;
    const bunfsPath = `/$bunfs/root/${name}`;
    let extracted: string | undefined;
    try {
      extracted = extractToCache(spec.file, new Uint8Array(readFileSync(bunfsPath)), attempts);
    } catch (e) {
      attempts.push({ source: "embedded", path: bunfsPath, outcome: `cannot read: ${(e as Error).message}` });
    }
    if (extracted) list.push({ source: "embedded", path: extracted });
    // Last resort: let Bun extract it (leaves a temp copy per launch).
    list.push({ source: "embedded-bunfs", path: bunfsPath });
  }
  const root = packageRoot();
  if (root) {
    // build/ first: it exists only in a checkout, where it is fresher than a prebuilt/ left over
    // from an earlier `bun pm pack`. An installed package has no build/ (not in `files`).
    list.push({ source: "build", path: path.join(root, "build", spec.file) });
    list.push({ source: "prebuilt", path: path.join(root, "prebuilt", platformTag(), spec.file) });
  }
  return list;
}

/**
 * Try each candidate for `spec` in order and return the first library that loads and reports
 * `ABI_VERSION`, with every attempt recorded. Never throws. Not cached: `index.ts` caches.
 */
export function loadLibrary<S extends Record<string, FFIFunction>>(spec: LibSpec<S>): LoadResult<S> {
  const attempts: Attempt[] = [];
  for (const c of candidates(spec, attempts)) {
    const record = (outcome: string) => {
      attempts.push({ source: c.source, path: c.path, outcome });
      debugFfi(`${spec.file}: [${c.source}] ${c.path}: ${outcome}`);
    };
    if (c.source !== "embedded-bunfs" && !existsSync(c.path)) {
      record("not found");
      continue;
    }
    let lib: Library<S>;
    try {
      lib = dlopen(c.path, spec.symbols);
    } catch (e) {
      record(`dlopen failed: ${(e as Error).message}`);
      continue;
    }
    const abi = Number((lib.symbols[spec.abiSymbol] as unknown as () => number)());
    if (abi !== ABI_VERSION) {
      lib.close();
      record(`ABI version ${abi}, expected ${ABI_VERSION} (rebuild it: bun run build)`);
      continue;
    }
    record("loaded");
    return { ok: true, lib, path: c.path, source: c.source, abiVersion: abi, attempts };
  }
  if (attempts.length === 0) debugFfi(`${spec.file}: no candidate paths`);
  return { ok: false, attempts };
}

/** Human-readable list of attempts for error messages. */
export function describeAttempts(attempts: readonly Attempt[]): string {
  if (attempts.length === 0) return "  (no candidates)";
  return attempts.map((a) => `  [${a.source}] ${a.path}: ${a.outcome}`).join("\n");
}

// ---- libtrtb_engine.so: the CUDA engine backend (build + run) ---------------------------------
// Appended for the engine runtime; found like the others (env TRTB_ENGINE_LIB, embedded copy,
// build/, prebuilt/). Its ABI getter reports trtb.h's ABI_VERSION like the other libraries;
// src/ffi/engine.ts checks the engine's own interface version after loading.
import { ENGINE_SYMBOLS } from "./engine-symbols.ts";

export const ENGINE_LIB: LibSpec<typeof ENGINE_SYMBOLS> = {
  file: `libtrtb_engine.${suffix}`,
  env: "TRTB_ENGINE_LIB",
  symbols: ENGINE_SYMBOLS,
  abiSymbol: "trtb_engine_abi_version",
};
