/**
 * safetensors: a validating zero-copy reader and an atomic, streaming writer.
 *
 * FORMAT (huggingface/safetensors README "Format" and `safetensors/src/tensor.rs`)
 *
 *   offset 0      u64 little-endian N: byte length of the JSON header (N ≤ 100,000,000)
 *   offset 8      N bytes of UTF-8 JSON: one object, first byte `{`, optionally padded at the end
 *                 with spaces (0x20) so that 8 + N is a multiple of 8
 *   offset 8 + N  the byte buffer: every tensor's bytes, back to back, no gaps, nothing after
 *
 *   header = {
 *     "__metadata__": { "format": "pt", ... },       optional; string → string only
 *     "<tensor name>": {
 *       "dtype": "BF16",                              one of DTYPES in src/dtype.ts
 *       "shape": [4096, 4096],                        integers ≥ 0; [] is a scalar (1 element),
 *                                                     a 0 dim an empty tensor
 *       "data_offsets": [BEGIN, END]                  [BEGIN, END) relative to the byte buffer,
 *     },                                              so the file offset is 8 + N + BEGIN
 *     ...
 *   }
 *
 *   Entries have exactly these three fields. Keys are unique everywhere (JSON.parse would keep the
 *   last duplicate silently, so the header is read by the strict parser below). Elements are
 *   little-endian, row-major. Values are never checked (NaN/Inf are fine).
 *
 * VALIDATION, in the reference reader's order (`read_metadata`, then `Metadata::validate`). Each
 * failure is a TrtbError whose `code` never changes meaning, naming the file and, where there is
 * one, the tensor:
 *
 *    1. file ≥ 8 bytes                                          ST_TOO_SMALL
 *    2. N ≤ 100,000,000                                         ST_HEADER_TOO_LARGE
 *    3. 8 + N ≤ file size                                       ST_HEADER_OUT_OF_BOUNDS
 *    4. the header is UTF-8 (a BOM is not skipped)              ST_HEADER_UTF8
 *    5. the header starts with `{`                              ST_HEADER_NOT_OBJECT
 *    6. the header is JSON (whitespace may follow the object)   ST_HEADER_JSON
 *       with no duplicate key in any object                     ST_DUPLICATE_KEY
 *    7. `__metadata__` maps strings to strings                  ST_BAD_METADATA
 *    8. each entry is {dtype, shape, data_offsets}, nothing
 *       missing, nothing extra, arrays where arrays belong      ST_BAD_ENTRY
 *       dtype is known                                          ST_UNKNOWN_DTYPE
 *       dims are integers ≥ 0                                   ST_BAD_SHAPE
 *       offsets are integers ≥ 0                                ST_BAD_OFFSETS
 *    9. in (BEGIN, END) order each BEGIN equals the previous
 *       END (the first 0)                                       ST_GAP / ST_OVERLAP
 *       END ≥ BEGIN                                             ST_BAD_OFFSETS
 *       Π shape · element size, checked at every step           ST_SIZE_OVERFLOW
 *       END − BEGIN = Π shape · element size                    ST_SIZE_MISMATCH
 *   10. 8 + N + last END = file size (no trailing bytes)        ST_FILE_LENGTH
 *
 *   Integers are exact only below 2^53 in JS, so any dim or offset above 2^53 is ST_SIZE_OVERFLOW,
 *   and so is a product that passes 2^53 (the reference uses 2^64; such files would be 8 PiB).
 *   Floats (`2.0`, `1e3`) and `-0` are not integers here, as in serde_json.
 *
 *   Other codes: ST_MISSING_TENSOR (get of an absent name), ST_BAD_RANGE (range() outside the
 *   tensor), ST_IO (open/read/write failures),
 *   ST_CLOSED (use after close), ST_TENSOR_TOO_LARGE (a view over 4 GiB was asked for: JSC caps an
 *   ArrayBuffer at 2^32 bytes, so such a tensor can be listed and read with `range()` in pieces,
 *   but not viewed whole), and for the writer ST_WRITE_UNKNOWN, ST_WRITE_TWICE, ST_WRITE_SIZE,
 *   ST_WRITE_INCOMPLETE, ST_WRITE_CLOSED, ST_NO_SPACE.
 *
 * MEMORY. The reader reads only the header; tensor bytes are Uint8Array views over private (copy-on-
 * write) memory maps, made on first use. `Bun.mmap` cannot map more than 4 GiB at once, so the file
 * is mapped in 1 GiB windows at 1 GiB-aligned offsets; a tensor that straddles a window boundary
 * gets a mapping of its own. Views keep their mapping alive; `close()` only drops the reader's
 * references (the GC unmaps), so a view taken before `close()` stays valid. Maps are made through
 * `/proc/self/fd/N` of the descriptor opened with the header, so a file renamed over the path later
 * cannot be mixed in. `Bun.mmap` opens files read-write even for private maps, so a file we may not
 * write (read-only mount, another user's cache) falls back to positioned reads (copies).
 *
 * WRITER. The header is planned up front from names, dtypes and shapes exactly as the reference
 * writer plans it (tensors sorted by dtype, largest alignment first, then by name as UTF-8 bytes;
 * header padded with spaces to a multiple of 8, so every tensor is aligned to its element size). The
 * file is written to `.<name>.tmp-<pid>-<rand>` beside the target, sized up front, and renamed over
 * the target by `commit()` after fsync: the target is never truncated or written in place, so a
 * process that has the old file mapped keeps reading the old bytes. `writeWith` hands out a shared
 * writable map of exactly the tensor's region (producers write in place, no copy); `write` does a
 * positioned write from the caller's bytes. Nothing ever holds the whole file in memory.
 */
import fs from "node:fs";
import nodePath from "node:path";
import { DTYPES, DTYPE_SIZE, type DType, isDType } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import { log } from "../log.ts";
import type { TensorSource, TensorView } from "../tensor.ts";

// ---------------------------------------------------------------------------------------------
// Constants

/** Largest header the reference reader (and writer) accepts, in bytes. */
export const MAX_HEADER_SIZE = 100_000_000;
/** Largest byte view JS can hold: JSC caps an ArrayBuffer at 2^32 bytes (research-notes §E.3). */
export const MAX_VIEW_BYTES = 2 ** 32;
/** Mapping window size for readers and writers (a power of two, ≤ MAX_VIEW_BYTES). */
const WINDOW = 2 ** 30;
/**
 * Bytes per read/write syscall. Linux caps one call at 0x7ffff000 bytes, but the chunk size matters
 * long before that: copying a mapped 1 GiB tensor with 8 MiB writes ran at ~2× the speed of one
 * 1 GiB write (page-cache copy, warm cache, measured with bench/safetensors-copy.ts); 4–16 MiB
 * were equally good.
 */
const IO_CHUNK = 8 * 2 ** 20;
/** serde_json's default recursion limit. */
const MAX_JSON_DEPTH = 128;

// ---------------------------------------------------------------------------------------------
// Types

/** Where one tensor lives. `offset` is absolute in the file (8 + N + BEGIN). */
export interface SafetensorsTensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly byteLength: number;
  readonly offset: number;
}

/** A tensor of a safetensors file: its info plus `bytes()`, a view made on first call. */
export interface SafetensorsTensor extends TensorView, SafetensorsTensorInfo {}

export interface SafetensorsFile extends TensorSource, Disposable {
  /** The path given to `openSafetensors` (a label for in-memory files). */
  readonly path: string;
  readonly fileSize: number;
  /** N, the JSON header's length in bytes (padding included). */
  readonly headerLength: number;
  /** 8 + N: file offset of the byte buffer. */
  readonly dataOffset: number;
  /** `__metadata__` ({} when absent). */
  readonly metadata: Readonly<Record<string, string>>;
  /** How bytes are obtained: zero-copy maps, positioned reads (copies), or an in-memory buffer. */
  readonly access: "mmap" | "read" | "memory";
  /** Throws ST_MISSING_TENSOR when absent. */
  info(name: string): SafetensorsTensorInfo;
  /** All tensors in file (offset) order. */
  infos(): SafetensorsTensorInfo[];
  get(name: string): SafetensorsTensor;
  /** Bytes [start, end) of one tensor; the way to read a tensor over 4 GiB in pieces. */
  range(name: string, start: number, end: number): Uint8Array;
}

export interface OpenSafetensorsOptions {
  /** "auto" (default) maps and falls back to reads where mapping fails; "read" never maps. */
  access?: "auto" | "mmap" | "read";
}

// ---------------------------------------------------------------------------------------------
// Strict JSON: like JSON.parse, but rejects duplicate keys, keeps key order (objects are Maps,
// so a key like "__proto__" or "0" is just a key), and keeps integers apart from floats.

/** Integers: `number` when exact (|v| ≤ 2^53 − 1), `bigint` beyond. Non-integer literals: JsonFloat. */
export type JsonValue = null | boolean | string | number | bigint | JsonFloat | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

/** A number literal with a fraction or exponent (`2.0`, `1e3`): never an integer here, as in serde. */
export class JsonFloat {
  constructor(readonly text: string, readonly value: number) {}
}

export class JsonStrictError extends Error {
  override readonly name = "JsonStrictError";
  constructor(
    readonly kind: "syntax" | "duplicate",
    message: string,
    /** UTF-16 index into the text. */
    readonly at: number,
    /** Keys leading to the object the error is in ([] for the top level). */
    readonly path: readonly string[] = [],
    /** The duplicated key. */
    readonly key?: string,
  ) {
    super(message);
  }
}

/** Parse JSON text strictly (RFC 8259, nesting ≤ 128, no duplicate keys, no lone surrogates). */
export function parseJsonStrict(text: string): JsonValue {
  const n = text.length;
  const keys: string[] = [];
  let i = 0;

  const fail = (what: string, at = i): never => {
    throw new JsonStrictError("syntax", `${at >= n ? "unexpected end of input" : what} at offset ${at}`, at, [...keys]);
  };
  const ws = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      i++;
    }
  };
  const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;

  const hex4 = (): number => {
    if (i + 4 > n) fail("bad \\u escape");
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const c = text.charCodeAt(i + k);
      const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
      if (d < 0) fail("bad \\u escape", i + k);
      v = (v << 4) | d;
    }
    i += 4;
    return v;
  };

  const string = (): string => {
    const open = i++;
    const start = i;
    for (;;) {
      if (i >= n) fail("unterminated string", open);
      const c = text.charCodeAt(i);
      if (c === 0x22) return text.slice(start, i++);
      if (c === 0x5c) break;
      if (c < 0x20) fail("control character in string");
      i++;
    }
    // Slow path: escapes present.
    const parts: string[] = [text.slice(start, i)];
    for (;;) {
      if (i >= n) fail("unterminated string", open);
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return parts.join("");
      }
      if (c < 0x20) fail("control character in string");
      if (c !== 0x5c) {
        const runStart = i;
        while (i < n) {
          const d = text.charCodeAt(i);
          if (d === 0x22 || d === 0x5c || d < 0x20) break;
          i++;
        }
        parts.push(text.slice(runStart, i));
        continue;
      }
      i++; // backslash
      const e = text.charCodeAt(i++);
      switch (e) {
        case 0x22: parts.push('"'); break;
        case 0x5c: parts.push("\\"); break;
        case 0x2f: parts.push("/"); break;
        case 0x62: parts.push("\b"); break;
        case 0x66: parts.push("\f"); break;
        case 0x6e: parts.push("\n"); break;
        case 0x72: parts.push("\r"); break;
        case 0x74: parts.push("\t"); break;
        case 0x75: {
          const u = hex4();
          if (u >= 0xdc00 && u <= 0xdfff) fail("lone trailing surrogate in \\u escape", i - 6);
          if (u >= 0xd800 && u <= 0xdbff) {
            if (text.charCodeAt(i) !== 0x5c || text.charCodeAt(i + 1) !== 0x75) fail("lone leading surrogate in \\u escape", i - 6);
            i += 2;
            const lo = hex4();
            if (lo < 0xdc00 || lo > 0xdfff) fail("lone leading surrogate in \\u escape", i - 12);
            parts.push(String.fromCharCode(u, lo));
          } else {
            parts.push(String.fromCharCode(u));
          }
          break;
        }
        default:
          fail("bad escape", i - 2);
      }
    }
  };

  const number = (): number | bigint | JsonFloat => {
    const start = i;
    if (text.charCodeAt(i) === 0x2d) i++;
    const c = text.charCodeAt(i);
    if (c === 0x30) i++;
    else if (c >= 0x31 && c <= 0x39) while (isDigit(text.charCodeAt(i))) i++;
    else fail("bad number");
    let integer = true;
    if (text.charCodeAt(i) === 0x2e) {
      integer = false;
      i++;
      if (!isDigit(text.charCodeAt(i))) fail("bad number");
      while (isDigit(text.charCodeAt(i))) i++;
    }
    const e = text.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      integer = false;
      i++;
      const s = text.charCodeAt(i);
      if (s === 0x2b || s === 0x2d) i++;
      if (!isDigit(text.charCodeAt(i))) fail("bad number");
      while (isDigit(text.charCodeAt(i))) i++;
    }
    const lexeme = text.slice(start, i);
    if (!integer) return new JsonFloat(lexeme, Number(lexeme));
    const v = Number(lexeme);
    return Number.isSafeInteger(v) ? v : BigInt(lexeme);
  };

  const literal = <T>(word: string, v: T): T => {
    if (!text.startsWith(word, i)) fail("unexpected character");
    i += word.length;
    return v;
  };

  const value = (depth: number): JsonValue => {
    ws();
    if (i >= n) fail("unexpected end of input");
    const c = text.charCodeAt(i);
    if (c === 0x7b) return object(depth + 1);
    if (c === 0x5b) return array(depth + 1);
    if (c === 0x22) return string();
    if (c === 0x74) return literal("true", true);
    if (c === 0x66) return literal("false", false);
    if (c === 0x6e) return literal("null", null);
    if (c === 0x2d || isDigit(c)) return number();
    return fail(`unexpected character ${JSON.stringify(text[i])}`);
  };

  const object = (depth: number): JsonObject => {
    if (depth > MAX_JSON_DEPTH) fail(`nesting deeper than ${MAX_JSON_DEPTH}`);
    i++; // {
    const m: JsonObject = new Map();
    ws();
    if (text.charCodeAt(i) === 0x7d) {
      i++;
      return m;
    }
    for (;;) {
      ws();
      if (text.charCodeAt(i) !== 0x22) fail("expected a string key");
      const at = i;
      const k = string();
      if (m.has(k)) throw new JsonStrictError("duplicate", `duplicate key ${JSON.stringify(k)} at offset ${at}`, at, [...keys], k);
      ws();
      if (text.charCodeAt(i) !== 0x3a) fail("expected ':'");
      i++;
      keys.push(k);
      m.set(k, value(depth));
      keys.pop();
      ws();
      const d = text.charCodeAt(i);
      if (d === 0x2c) i++;
      else if (d === 0x7d) {
        i++;
        return m;
      } else fail("expected ',' or '}'");
    }
  };

  const array = (depth: number): JsonValue[] => {
    if (depth > MAX_JSON_DEPTH) fail(`nesting deeper than ${MAX_JSON_DEPTH}`);
    i++; // [
    const a: JsonValue[] = [];
    ws();
    if (text.charCodeAt(i) === 0x5d) {
      i++;
      return a;
    }
    for (;;) {
      a.push(value(depth));
      ws();
      const d = text.charCodeAt(i);
      if (d === 0x2c) i++;
      else if (d === 0x5d) {
        i++;
        return a;
      } else fail("expected ',' or ']'");
    }
  };

  const v = value(0);
  ws();
  if (i !== n) fail("trailing characters after the JSON value");
  return v;
}

// ---------------------------------------------------------------------------------------------
// Header parsing and validation (shared by the file reader and parseSafetensorsBytes)

interface Entry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

interface ParsedHeader {
  headerLength: number;
  metadata: Record<string, string>;
  /** Offset order. */
  entries: Entry[];
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const ENTRY_FIELDS = ["dtype", "shape", "data_offsets"];

function stErr(code: string, file: string, msg: string, tensor?: string): TrtbError {
  const where = tensor === undefined ? file : `${file}: tensor ${JSON.stringify(tensor)}`;
  return new TrtbError(code, `${where}: ${msg}`, tensor === undefined ? { file } : { file, tensor });
}

const describe = (v: JsonValue | undefined): string =>
  v === undefined ? "nothing" : v === null ? "null" : v instanceof Map ? "an object" : Array.isArray(v) ? "an array"
    : v instanceof JsonFloat ? `the number ${v.text}` : typeof v === "bigint" ? `the integer ${v}` : JSON.stringify(v);

/** Steps 1–3: returns N given the first 8 bytes (or fewer when the file is shorter). */
function checkPrefix(prefix: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8 || prefix.length < 8)
    throw stErr("ST_TOO_SMALL", file, `not a safetensors file: ${fileSize} bytes, but the header length alone takes 8`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_SIZE))
    throw stErr("ST_HEADER_TOO_LARGE", file, `header length ${n} is over the ${MAX_HEADER_SIZE.toLocaleString("en-US")}-byte limit (not a safetensors file, or corrupt)`);
  const headerLength = Number(n);
  if (8 + headerLength > fileSize)
    throw stErr("ST_HEADER_OUT_OF_BOUNDS", file, `header length ${headerLength} runs past the end of the ${fileSize}-byte file (truncated?)`);
  return headerLength;
}

/** Steps 4–10 on the N header bytes. */
function parseHeader(bytes: Uint8Array, fileSize: number, file: string): ParsedHeader {
  const headerLength = bytes.length;
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw stErr("ST_HEADER_UTF8", file, "the header is not valid UTF-8");
  }
  if (text.charCodeAt(0) !== 0x7b)
    throw stErr("ST_HEADER_NOT_OBJECT", file, `the header must be a JSON object starting with "{", it starts with ${text.length === 0 ? "nothing (N = 0)" : JSON.stringify(text.slice(0, 16))}`);
  let root: JsonValue;
  try {
    root = parseJsonStrict(text);
  } catch (e) {
    if (!(e instanceof JsonStrictError)) throw e;
    if (e.kind === "duplicate") {
      const owner = e.path.length === 0 ? e.key : e.path[0];
      const tensor = owner === "__metadata__" ? undefined : owner;
      const what = e.path.length === 0
        ? (tensor === undefined ? "__metadata__ appears twice" : "the tensor name appears twice")
        : `key ${JSON.stringify(e.key)} appears twice in ${tensor === undefined ? "__metadata__" : "its entry"}`;
      throw stErr("ST_DUPLICATE_KEY", file, `${what} in the header (JSON readers disagree on which one wins, so duplicates are rejected)`, tensor);
    }
    throw stErr("ST_HEADER_JSON", file, `the header is not valid JSON: ${e.message}`);
  }
  if (!(root instanceof Map)) throw stErr("ST_HEADER_NOT_OBJECT", file, "the header must be a JSON object");

  let metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, v] of root) {
    if (name === "__metadata__") {
      if (!(v instanceof Map)) throw stErr("ST_BAD_METADATA", file, `__metadata__ must be an object of strings, got ${describe(v)}`);
      const md: [string, string][] = [];
      for (const [k, s] of v) {
        if (typeof s !== "string") throw stErr("ST_BAD_METADATA", file, `__metadata__[${JSON.stringify(k)}] must be a string, got ${describe(s)}`);
        md.push([k, s]);
      }
      metadata = Object.fromEntries(md);
      continue;
    }
    entries.push(parseEntry(name, v, file));
  }

  // Step 9: contiguity and sizes, in offset order.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let start = 0;
  for (const e of entries) {
    if (e.begin > start)
      throw stErr("ST_GAP", file, `data_offsets [${e.begin}, ${e.end}] leave a gap of ${e.begin - start} bytes after offset ${start}; tensors must be contiguous`, e.name);
    if (e.begin < start)
      throw stErr("ST_OVERLAP", file, `data_offsets [${e.begin}, ${e.end}] overlap the previous tensor, which ends at ${start}`, e.name);
    if (e.end < e.begin) throw stErr("ST_BAD_OFFSETS", file, `data_offsets [${e.begin}, ${e.end}] end before they begin`, e.name);
    start = e.end;
    let nel = 1;
    for (const d of e.shape) {
      nel *= d;
      if (nel > Number.MAX_SAFE_INTEGER) throw stErr("ST_SIZE_OVERFLOW", file, `shape [${e.shape.join(", ")}] has more than 2^53 elements`, e.name);
    }
    const nbytes = nel * DTYPE_SIZE[e.dtype];
    if (nbytes > Number.MAX_SAFE_INTEGER) throw stErr("ST_SIZE_OVERFLOW", file, `${e.dtype} [${e.shape.join(", ")}] is over 2^53 bytes`, e.name);
    if (e.end - e.begin !== nbytes)
      throw stErr("ST_SIZE_MISMATCH", file, `data_offsets [${e.begin}, ${e.end}] hold ${e.end - e.begin} bytes but ${e.dtype} [${e.shape.join(", ")}] needs ${nbytes}`, e.name);
  }
  // Step 10.
  if (8 + headerLength + start !== fileSize) {
    const expect = 8 + headerLength + start;
    throw stErr("ST_FILE_LENGTH", file, `the header describes a ${expect}-byte file but it has ${fileSize} bytes (${fileSize > expect ? "trailing bytes" : "truncated"})`);
  }
  return { headerLength, metadata, entries };
}

function parseEntry(name: string, v: JsonValue, file: string): Entry {
  if (!(v instanceof Map)) throw stErr("ST_BAD_ENTRY", file, `the entry must be an object {dtype, shape, data_offsets}, got ${describe(v)}`, name);
  for (const k of v.keys())
    if (!ENTRY_FIELDS.includes(k)) throw stErr("ST_BAD_ENTRY", file, `unknown field ${JSON.stringify(k)} (an entry has exactly dtype, shape, data_offsets)`, name);
  for (const k of ENTRY_FIELDS) if (!v.has(k)) throw stErr("ST_BAD_ENTRY", file, `the entry has no "${k}"`, name);

  const dtype = v.get("dtype");
  if (typeof dtype !== "string") throw stErr("ST_BAD_ENTRY", file, `dtype must be a string, got ${describe(dtype)}`, name);
  if (!isDType(dtype))
    throw stErr("ST_UNKNOWN_DTYPE", file, `unknown dtype ${JSON.stringify(dtype)}; supported: ${DTYPES.join(", ")}`, name);

  const shapeV = v.get("shape");
  if (!Array.isArray(shapeV)) throw stErr("ST_BAD_ENTRY", file, `shape must be an array, got ${describe(shapeV)}`, name);
  const shape = shapeV.map((d) => {
    if (typeof d === "bigint" && d > 0n) throw stErr("ST_SIZE_OVERFLOW", file, `shape dim ${d} is over 2^53`, name);
    if (typeof d !== "number" || d < 0 || Object.is(d, -0)) throw stErr("ST_BAD_SHAPE", file, `shape dims must be integers ≥ 0, got ${describe(d)}`, name);
    return d;
  });

  const offs = v.get("data_offsets");
  if (!Array.isArray(offs) || offs.length !== 2)
    throw stErr("ST_BAD_ENTRY", file, `data_offsets must be an array [BEGIN, END], got ${describe(offs)}${Array.isArray(offs) ? ` of length ${offs.length}` : ""}`, name);
  const [begin, end] = offs.map((o) => {
    if (typeof o === "bigint" && o > 0n) throw stErr("ST_SIZE_OVERFLOW", file, `data offset ${o} is over 2^53`, name);
    if (typeof o !== "number" || o < 0 || Object.is(o, -0)) throw stErr("ST_BAD_OFFSETS", file, `data_offsets must be integers ≥ 0, got ${describe(o)}`, name);
    return o;
  }) as [number, number];
  return { name, dtype, shape, begin, end };
}

// ---------------------------------------------------------------------------------------------
// Byte sources: how a reader turns (file offset, length) into a Uint8Array.

interface ByteSource {
  readonly access: "mmap" | "read" | "memory";
  view(offset: number, length: number): Uint8Array;
  close(): void;
}

function ioErr(file: string, what: string, e: unknown, tensor?: string): TrtbError {
  const err = e as { code?: string; message?: string };
  const reason = err?.code ? `${err.code}${err.message ? ` (${err.message})` : ""}` : String(err?.message ?? e);
  return new TrtbError("ST_IO", `${file}: ${what}: ${reason}`, tensor === undefined ? { file, cause: e } : { file, tensor, cause: e });
}

/** A path that opens the same inode as `fd`, so renames over the original path do not matter. */
function fdPath(fd: number, fallback: string): string {
  return process.platform === "linux" && fs.existsSync(`/proc/self/fd/${fd}`) ? `/proc/self/fd/${fd}` : fallback;
}

/**
 * Windows of `WINDOW` bytes at multiples of `WINDOW`, mapped on demand. A range inside one window is
 * a subarray of it; one that straddles a boundary gets its own map, started at a page boundary so
 * that views keep the file's alignment (a tensor at a 4-aligned offset gets a 4-aligned byteOffset).
 */
class Mapper {
  private windows: (Uint8Array | undefined)[] = [];
  constructor(
    private readonly mapPath: string,
    private readonly fileSize: number,
    private readonly shared: boolean,
    private readonly file: string,
  ) {}

  private map(offset: number, size: number): Uint8Array {
    let m: Uint8Array;
    try {
      m = Bun.mmap(this.mapPath, { shared: this.shared, offset, size });
    } catch (e) {
      throw ioErr(this.file, `cannot map ${size} bytes at offset ${offset}`, e);
    }
    // Bun clamps the size to the file: a shorter map means the file shrank under us.
    if (m.length !== size) throw new TrtbError("ST_IO", `${this.file}: the file changed size while open (mapped ${m.length} of ${size} bytes)`, { file: this.file });
    return m;
  }

  window(w: number): Uint8Array {
    let m = this.windows[w];
    if (!m) {
      const start = w * WINDOW;
      m = this.map(start, Math.min(WINDOW, this.fileSize - start));
      this.windows[w] = m;
    }
    return m;
  }

  /** The window index when [offset, offset+length) fits in one window, else -1. */
  static windowOf(offset: number, length: number): number {
    const w = Math.floor(offset / WINDOW);
    return offset + length <= (w + 1) * WINDOW ? w : -1;
  }

  view(offset: number, length: number): Uint8Array {
    if (length === 0) return new Uint8Array(0);
    const w = Mapper.windowOf(offset, length);
    if (w >= 0) {
      const base = w * WINDOW;
      return this.window(w).subarray(offset - base, offset - base + length);
    }
    const lead = offset % 4096;
    if (lead + length <= MAX_VIEW_BYTES) return this.map(offset - lead, lead + length).subarray(lead);
    return this.map(offset, length);
  }

  release(w: number): void {
    this.windows[w] = undefined;
  }

  close(): void {
    this.windows = [];
  }
}

class MappedSource implements ByteSource {
  readonly access = "mmap" as const;
  private readonly mapper: Mapper;
  constructor(private fd: number, fileSize: number, file: string) {
    this.mapper = new Mapper(fdPath(fd, file), fileSize, false, file);
    // Probe now so that "auto" can fall back before any tensor is asked for.
    if (fileSize > 0) this.mapper.window(0);
  }
  view(offset: number, length: number): Uint8Array {
    return this.mapper.view(offset, length);
  }
  close(): void {
    this.mapper.close();
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

class ReadSource implements ByteSource {
  readonly access = "read" as const;
  constructor(private fd: number, private readonly file: string) {}
  view(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let done = 0;
    try {
      while (done < length) {
        const k = fs.readSync(this.fd, out, done, Math.min(IO_CHUNK, length - done), offset + done);
        if (k === 0) throw new TrtbError("ST_IO", `${this.file}: the file shrank while open (short read at offset ${offset + done})`, { file: this.file });
        done += k;
      }
    } catch (e) {
      if (e instanceof TrtbError) throw e;
      throw ioErr(this.file, `cannot read ${length} bytes at offset ${offset}`, e);
    }
    return out;
  }
  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

class MemorySource implements ByteSource {
  readonly access = "memory" as const;
  constructor(private readonly buf: Uint8Array) {}
  view(offset: number, length: number): Uint8Array {
    return this.buf.subarray(offset, offset + length);
  }
  close(): void {}
}

// ---------------------------------------------------------------------------------------------
// Reader

class SafetensorsReader implements SafetensorsFile {
  readonly headerLength: number;
  readonly dataOffset: number;
  readonly metadata: Readonly<Record<string, string>>;
  private readonly byName = new Map<string, SafetensorsTensorInfo>();
  private readonly order: SafetensorsTensorInfo[];
  private source: ByteSource | undefined;

  constructor(readonly path: string, readonly fileSize: number, header: ParsedHeader, source: ByteSource) {
    this.headerLength = header.headerLength;
    this.dataOffset = 8 + header.headerLength;
    this.metadata = header.metadata;
    // Frozen: info objects are shared by every caller.
    this.order = header.entries.map((e) =>
      Object.freeze({
        name: e.name,
        dtype: e.dtype,
        shape: Object.freeze(e.shape),
        byteLength: e.end - e.begin,
        offset: this.dataOffset + e.begin,
      }),
    );
    for (const t of this.order) this.byName.set(t.name, t);
    this.source = source;
    this.access = source.access;
  }

  readonly access: "mmap" | "read" | "memory";

  private closedErr(): TrtbError {
    return new TrtbError("ST_CLOSED", `${this.path}: the file was closed`, { file: this.path });
  }

  names(): string[] {
    return this.order.map((t) => t.name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): SafetensorsTensorInfo {
    const t = this.byName.get(name);
    if (!t) throw new TrtbError("ST_MISSING_TENSOR", `${this.path}: no tensor ${JSON.stringify(name)} (the file has ${this.order.length})`, { file: this.path, tensor: name });
    return t;
  }

  infos(): SafetensorsTensorInfo[] {
    return [...this.order];
  }

  get(name: string): SafetensorsTensor {
    if (!this.source) throw this.closedErr();
    const t = this.info(name);
    return { ...t, bytes: () => this.range(name, 0, t.byteLength) };
  }

  range(name: string, start: number, end: number): Uint8Array {
    const t = this.info(name);
    if (!this.source) throw this.closedErr();
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > t.byteLength)
      throw new TrtbError("ST_BAD_RANGE", `${this.path}: tensor ${JSON.stringify(name)}: range [${start}, ${end}) is outside its ${t.byteLength} bytes`, { file: this.path, tensor: name });
    const length = end - start;
    if (length > MAX_VIEW_BYTES)
      throw new TrtbError(
        "ST_TENSOR_TOO_LARGE",
        `${this.path}: tensor ${JSON.stringify(name)}: ${length} bytes cannot be viewed at once (JavaScript caps a buffer at 4 GiB); read it in pieces with range()`,
        { file: this.path, tensor: name },
      );
    try {
      return this.source.view(t.offset + start, length);
    } catch (e) {
      if (e instanceof TrtbError && e.details.tensor === undefined)
        throw new TrtbError(e.code, e.message.replace(`${this.path}:`, `${this.path}: tensor ${JSON.stringify(name)}:`), { file: this.path, tensor: name, cause: e });
      throw e;
    }
  }

  close(): void {
    this.source?.close();
    this.source = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Open and validate a safetensors file. Reads the 8-byte prefix and the header only; tensor bytes
 * are mapped (or read) when `bytes()`/`range()` is called.
 */
export function openSafetensors(path: string, opts: OpenSafetensorsOptions = {}): SafetensorsFile {
  let fd: number;
  try {
    fd = fs.openSync(path, "r");
  } catch (e) {
    throw ioErr(path, "cannot open", e);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new TrtbError("ST_IO", `${path}: not a regular file`, { file: path });
    const fileSize = st.size;
    const prefix = readExact(fd, Math.min(8, fileSize), 0, path);
    const headerLength = checkPrefix(prefix, fileSize, path);
    const header = parseHeader(readExact(fd, headerLength, 8, path), fileSize, path);
    const access = opts.access ?? "auto";
    let source: ByteSource;
    if (access === "read") source = new ReadSource(fd, path);
    else {
      try {
        source = new MappedSource(fd, fileSize, path);
      } catch (e) {
        if (access === "mmap") throw e;
        // Bun.mmap opens read-write; read-only files and filesystems without mmap land here.
        log.debug(`${path}: cannot map (${(e as Error).message}); reading tensors with positioned reads instead`);
        source = new ReadSource(fd, path);
      }
    }
    return new SafetensorsReader(path, fileSize, header, source);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

function readExact(fd: number, length: number, position: number, file: string): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  try {
    while (done < length) {
      const k = fs.readSync(fd, out, done, Math.min(IO_CHUNK, length - done), position + done);
      if (k === 0) break;
      done += k;
    }
  } catch (e) {
    throw ioErr(file, `cannot read ${length} bytes at offset ${position}`, e);
  }
  if (done !== length) throw new TrtbError("ST_IO", `${file}: short read (${done} of ${length} bytes at offset ${position}); did the file change?`, { file });
  return out;
}

/**
 * Validate a whole safetensors file held in memory, with exactly the checks of `openSafetensors`.
 * Views are subarrays of `bytes`. `label` names the buffer in error messages.
 */
export function parseSafetensorsBytes(bytes: Uint8Array, label = "<buffer>"): SafetensorsFile {
  const headerLength = checkPrefix(bytes.subarray(0, 8), bytes.length, label);
  const header = parseHeader(bytes.subarray(8, 8 + headerLength), bytes.length, label);
  return new SafetensorsReader(label, bytes.length, header, new MemorySource(bytes));
}

// ---------------------------------------------------------------------------------------------
// Planning (the header a writer will emit)

export interface SafetensorsTensorSpec {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

export interface SafetensorsPlan {
  /** The first 8 + N bytes of the file: length prefix and space-padded JSON. */
  readonly header: Uint8Array<ArrayBuffer>;
  readonly headerLength: number;
  readonly dataOffset: number;
  readonly fileSize: number;
  /** File order: dtype alignment descending, then name (as UTF-8 bytes), like the reference writer. */
  readonly tensors: readonly SafetensorsTensorInfo[];
}

const DTYPE_RANK = new Map<string, number>(DTYPES.map((d, i) => [d, i]));
const utf8Encoder = new TextEncoder();

/** Byte-wise UTF-8 order (= code point order), which Rust's `String` ordering uses. */
function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

/** Validate tensor specs and compute the header and every tensor's location. */
export function planSafetensors(specs: readonly SafetensorsTensorSpec[], metadata?: Readonly<Record<string, string>>, file = "<plan>"): SafetensorsPlan {
  const seen = new Set<string>();
  for (const s of specs) {
    if (typeof s.name !== "string" || !s.name.isWellFormed()) throw stErr("ST_BAD_ENTRY", file, `tensor names must be well-formed strings, got ${JSON.stringify(s.name)}`);
    if (s.name === "__metadata__") throw stErr("ST_BAD_ENTRY", file, `"__metadata__" is reserved and cannot name a tensor`, s.name);
    if (seen.has(s.name)) throw stErr("ST_DUPLICATE_KEY", file, "the tensor is listed twice", s.name);
    seen.add(s.name);
    if (!isDType(s.dtype)) throw stErr("ST_UNKNOWN_DTYPE", file, `unknown dtype ${JSON.stringify(s.dtype)}; supported: ${DTYPES.join(", ")}`, s.name);
    if (!Array.isArray(s.shape) || s.shape.some((d) => !Number.isSafeInteger(d) || d < 0 || Object.is(d, -0)))
      throw stErr("ST_BAD_SHAPE", file, `shape dims must be integers ≥ 0, got ${JSON.stringify(s.shape)}`, s.name);
  }
  if (metadata !== undefined) {
    if (typeof metadata !== "object" || metadata === null) throw stErr("ST_BAD_METADATA", file, "metadata must be an object of strings");
    for (const [k, v] of Object.entries(metadata))
      if (typeof v !== "string" || !k.isWellFormed() || !v.isWellFormed()) throw stErr("ST_BAD_METADATA", file, `metadata[${JSON.stringify(k)}] must be a well-formed string`);
  }

  const sorted = [...specs].sort((a, b) => DTYPE_RANK.get(b.dtype)! - DTYPE_RANK.get(a.dtype)! || compareUtf8(a.name, b.name));
  const parts: string[] = [];
  if (metadata !== undefined) parts.push(`"__metadata__":${JSON.stringify(Object.fromEntries(Object.entries(metadata)))}`);
  const placed: { spec: SafetensorsTensorSpec; begin: number; end: number }[] = [];
  let offset = 0;
  for (const s of sorted) {
    let nel = 1;
    for (const d of s.shape) {
      nel *= d;
      if (nel > Number.MAX_SAFE_INTEGER) throw stErr("ST_SIZE_OVERFLOW", file, `shape [${s.shape.join(", ")}] has more than 2^53 elements`, s.name);
    }
    const nbytes = nel * DTYPE_SIZE[s.dtype];
    if (nbytes > Number.MAX_SAFE_INTEGER || offset + nbytes > Number.MAX_SAFE_INTEGER)
      throw stErr("ST_SIZE_OVERFLOW", file, "the file would be over 2^53 bytes", s.name);
    placed.push({ spec: s, begin: offset, end: offset + nbytes });
    parts.push(`${JSON.stringify(s.name)}:{"dtype":"${s.dtype}","shape":[${s.shape.join(",")}],"data_offsets":[${offset},${offset + nbytes}]}`);
    offset += nbytes;
  }
  const json = utf8Encoder.encode(`{${parts.join(",")}}`);
  const headerLength = json.length + ((8 - (json.length % 8)) % 8);
  if (headerLength > MAX_HEADER_SIZE)
    throw stErr("ST_HEADER_TOO_LARGE", file, `the header would be ${headerLength} bytes, over the ${MAX_HEADER_SIZE.toLocaleString("en-US")}-byte limit`);
  const header = new Uint8Array(8 + headerLength).fill(0x20, 8);
  new DataView(header.buffer).setBigUint64(0, BigInt(headerLength), true);
  header.set(json, 8);
  const dataOffset = 8 + headerLength;
  return {
    header,
    headerLength,
    dataOffset,
    fileSize: dataOffset + offset,
    tensors: placed.map((p) => ({ name: p.spec.name, dtype: p.spec.dtype, shape: [...p.spec.shape], byteLength: p.end - p.begin, offset: dataOffset + p.begin })),
  };
}

/** Serialize small tensor sets in memory (tests, tiny outputs). Large files: SafetensorsWriter. */
export function serializeSafetensors(
  tensors: readonly (SafetensorsTensorSpec & { readonly data: Uint8Array })[],
  metadata?: Readonly<Record<string, string>>,
): Uint8Array<ArrayBuffer> {
  const plan = planSafetensors(tensors, metadata, "<buffer>");
  const out = new Uint8Array(plan.fileSize);
  out.set(plan.header, 0);
  const byName = new Map(tensors.map((t) => [t.name, t]));
  for (const t of plan.tensors) {
    const data = byName.get(t.name)!.data;
    if (data.length !== t.byteLength)
      throw new TrtbError("ST_WRITE_SIZE", `<buffer>: tensor ${JSON.stringify(t.name)}: got ${data.length} bytes, ${t.dtype} [${t.shape.join(", ")}] needs ${t.byteLength}`, { tensor: t.name });
    out.set(data, t.offset);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writer

export interface SafetensorsWriterOptions {
  /** `__metadata__` (string → string), e.g. `{ format: "pt" }`. */
  metadata?: Readonly<Record<string, string>>;
}

/** Temp files of writers neither committed nor aborted; removed if the process exits. */
const liveTemps = new Set<string>();
let exitHookInstalled = false;
function trackTemp(p: string): void {
  liveTemps.add(p);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const t of liveTemps) fs.rmSync(t, { force: true });
    });
  }
}

/**
 * Streams a safetensors file to disk: plan → `write`/`writeWith` each tensor once, in any order →
 * `commit()` (or `abort()`). Synchronous. Not safe to share between workers.
 *
 * `writeWith(name, fill)` gives `fill` a view of exactly the tensor's bytes inside a shared map of
 * the temp file (zero-filled, aligned to the element size): the way to build a tensor in place,
 * with no buffer of its size. Do not keep the view after `fill` returns. `write(name, bytes)` is
 * the fast path when the bytes already exist (e.g. a mapped source view): a plain copy ran at
 * ~0.93× `cp` with `write` but ~0.5× with `writeWith` + `set`, because every destination page of
 * a shared map takes a write fault (bench/safetensors-copy.ts; a reused heap buffer + `write` was
 * no faster than `writeWith` and costs a buffer as large as the largest tensor).
 *
 * The temp file is sparse: blocks are allocated as pages are written. Free space is checked at
 * `create`, but if the disk fills up later, a write through the map raises SIGBUS instead of an
 * error; `write()` reports ENOSPC as ST_IO. A process killed by a signal leaves its temp file
 * (`.<name>.tmp-<pid>-*`); a normal exit removes it.
 */
export class SafetensorsWriter implements Disposable {
  readonly plan: SafetensorsPlan;
  private readonly byName = new Map<string, SafetensorsTensorInfo>();
  private readonly written = new Set<string>();
  /** Tensors left to write that lie inside each map window; the window is dropped at 0. */
  private readonly windowLeft = new Map<number, number>();
  private readonly mapper: Mapper;
  private fd: number;
  private state: "open" | "committed" | "aborted" = "open";

  private constructor(readonly path: string, readonly tempPath: string, plan: SafetensorsPlan, fd: number) {
    this.plan = plan;
    this.fd = fd;
    for (const t of plan.tensors) {
      this.byName.set(t.name, t);
      const w = t.byteLength === 0 ? -1 : Mapper.windowOf(t.offset, t.byteLength);
      if (w >= 0) this.windowLeft.set(w, (this.windowLeft.get(w) ?? 0) + 1);
    }
    this.mapper = new Mapper(fdPath(fd, tempPath), plan.fileSize, true, tempPath);
  }

  /** Plan the header, create and size the temp file, write the header. */
  static create(path: string, specs: readonly SafetensorsTensorSpec[], opts: SafetensorsWriterOptions = {}): SafetensorsWriter {
    const plan = planSafetensors(specs, opts.metadata, path);
    for (const t of plan.tensors)
      if (t.byteLength > MAX_VIEW_BYTES)
        throw new TrtbError("ST_TENSOR_TOO_LARGE", `${path}: tensor ${JSON.stringify(t.name)}: ${t.byteLength} bytes is over the 4 GiB a JavaScript buffer can hold; split it`, { file: path, tensor: t.name });
    const dir = nodePath.dirname(nodePath.resolve(path));
    try {
      const st = fs.statfsSync(dir);
      const free = Number(st.bavail) * Number(st.bsize);
      if (free < plan.fileSize)
        throw new TrtbError("ST_NO_SPACE", `${path}: needs ${plan.fileSize} bytes but ${dir} has ${free} free`, { file: path });
    } catch (e) {
      if (e instanceof TrtbError) throw e;
      throw ioErr(path, `cannot use directory ${dir}`, e);
    }
    const tempPath = nodePath.join(dir, `.${nodePath.basename(path)}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`);
    let fd: number;
    try {
      fd = fs.openSync(tempPath, "wx+", 0o644);
    } catch (e) {
      throw ioErr(path, `cannot create ${tempPath}`, e);
    }
    trackTemp(tempPath);
    try {
      fs.ftruncateSync(fd, plan.fileSize);
      pwriteAll(fd, plan.header, 0, path);
      return new SafetensorsWriter(path, tempPath, plan, fd);
    } catch (e) {
      fs.closeSync(fd);
      fs.rmSync(tempPath, { force: true });
      liveTemps.delete(tempPath);
      throw e instanceof TrtbError ? e : ioErr(path, "cannot prepare the temp file", e);
    }
  }

  /** Names not written yet, in file order. */
  pending(): string[] {
    return this.plan.tensors.filter((t) => !this.written.has(t.name)).map((t) => t.name);
  }

  private claim(name: string): SafetensorsTensorInfo {
    if (this.state !== "open") throw new TrtbError("ST_WRITE_CLOSED", `${this.path}: the writer is already ${this.state}`, { file: this.path, tensor: name });
    const t = this.byName.get(name);
    if (!t) throw new TrtbError("ST_WRITE_UNKNOWN", `${this.path}: tensor ${JSON.stringify(name)} was not in the plan given to create()`, { file: this.path, tensor: name });
    if (this.written.has(name)) throw new TrtbError("ST_WRITE_TWICE", `${this.path}: tensor ${JSON.stringify(name)} was already written`, { file: this.path, tensor: name });
    return t;
  }

  private done(t: SafetensorsTensorInfo): void {
    this.written.add(t.name);
    const w = t.byteLength === 0 ? -1 : Mapper.windowOf(t.offset, t.byteLength);
    if (w < 0) return;
    const left = this.windowLeft.get(w)! - 1;
    this.windowLeft.set(w, left);
    if (left === 0) this.mapper.release(w);
  }

  /** Let `fill` write the tensor's bytes in place. If `fill` throws, the tensor stays unwritten. */
  writeWith(name: string, fill: (dst: Uint8Array) => void): void {
    const t = this.claim(name);
    const dst = this.mapper.view(t.offset, t.byteLength);
    fill(dst);
    this.done(t);
  }

  /** Write the tensor from `bytes` (exactly its byte length) with positioned writes. */
  write(name: string, bytes: Uint8Array): void {
    const t = this.claim(name);
    if (bytes.length !== t.byteLength)
      throw new TrtbError("ST_WRITE_SIZE", `${this.path}: tensor ${JSON.stringify(name)}: got ${bytes.length} bytes, ${t.dtype} [${t.shape.join(", ")}] needs ${t.byteLength}`, { file: this.path, tensor: name });
    pwriteAll(this.fd, bytes, t.offset, this.path, name);
    this.done(t);
  }

  /**
   * Check every tensor was written, fsync, rename over `path`, fsync the directory. Throws
   * ST_WRITE_INCOMPLETE (the writer stays open) if some were not; on an I/O failure the temp file
   * is removed.
   */
  commit(): void {
    if (this.state !== "open") throw new TrtbError("ST_WRITE_CLOSED", `${this.path}: the writer is already ${this.state}`, { file: this.path });
    const missing = this.pending();
    if (missing.length > 0)
      throw new TrtbError(
        "ST_WRITE_INCOMPLETE",
        `${this.path}: ${missing.length} of ${this.plan.tensors.length} tensors were never written: ${missing.slice(0, 5).map((n) => JSON.stringify(n)).join(", ")}${missing.length > 5 ? ", …" : ""}`,
        { file: this.path, tensor: missing[0]! },
      );
    try {
      this.mapper.close();
      fs.fsyncSync(this.fd);
      fs.closeSync(this.fd);
      this.fd = -1;
      fs.renameSync(this.tempPath, this.path);
    } catch (e) {
      this.abort();
      throw ioErr(this.path, "cannot commit", e);
    }
    this.state = "committed";
    liveTemps.delete(this.tempPath);
    try {
      const dfd = fs.openSync(nodePath.dirname(this.tempPath), "r");
      try {
        fs.fsyncSync(dfd);
      } finally {
        fs.closeSync(dfd);
      }
    } catch (e) {
      log.debug(`${this.path}: directory fsync failed (${(e as Error).message}); the rename is done but may not be durable yet`);
    }
  }

  /** Drop the temp file. Does nothing after commit() or a previous abort(). */
  abort(): void {
    if (this.state !== "open") return;
    this.state = "aborted";
    this.mapper.close();
    if (this.fd >= 0) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // Already closed by a failed commit.
      }
      this.fd = -1;
    }
    fs.rmSync(this.tempPath, { force: true });
    liveTemps.delete(this.tempPath);
  }

  /** `using w = SafetensorsWriter.create(...)`: aborts unless committed. */
  [Symbol.dispose](): void {
    this.abort();
  }
}

function pwriteAll(fd: number, bytes: Uint8Array, position: number, file: string, tensor?: string): void {
  let done = 0;
  try {
    while (done < bytes.length) done += fs.writeSync(fd, bytes, done, Math.min(IO_CHUNK, bytes.length - done), position + done);
  } catch (e) {
    throw ioErr(file, `cannot write ${bytes.length} bytes at offset ${position}`, e, tensor);
  }
}
