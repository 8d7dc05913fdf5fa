/**
 * The safetensors reader: open, parse and validate a file (or a buffer), then hand out tensor
 * bytes as views over the file's maps. The format, the checks and their error codes are described
 * at the top of `safetensors.ts`; the bytes come from `byte-source.ts`.
 */
import fs from "node:fs";
import { DTYPES, DTYPE_SIZE, type DType, isDType } from "../dtype.ts";
import { type ErrorCode, TrtbError } from "../errors.ts";
import { log } from "../log.ts";
import type { TensorSource, TensorView } from "../tensor.ts";
import { type ByteSource, type MapErrors, MappedSource, MAX_VIEW_BYTES, MemorySource, type ReadErrors, ReadSource, readAt } from "./byte-source.ts";
import { JsonFloat, JsonStrictError, type JsonValue, parseJsonStrict } from "./json-strict.ts";

// ---------------------------------------------------------------------------------------------
// Constants

/** Largest header the reference reader (and writer) accepts, in bytes. */
export const MAX_HEADER_SIZE = 100_000_000;

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

export function stErr(code: ErrorCode, file: string, msg: string, tensor?: string): TrtbError {
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
// Errors of file access (ST_IO), shared with the writer

export function ioErr(file: string, what: string, e: unknown, tensor?: string): TrtbError {
  const err = e as { code?: string; message?: string };
  const reason = err?.code ? `${err.code}${err.message ? ` (${err.message})` : ""}` : String(err?.message ?? e);
  return new TrtbError("ST_IO", `${file}: ${what}: ${reason}`, tensor === undefined ? { file, cause: e } : { file, tensor, cause: e });
}

/** How the byte sources of `file` word their failures. */
export function sourceErrors(file: string): MapErrors & ReadErrors {
  return {
    map: (offset, size, e) => ioErr(file, `cannot map ${size} bytes at offset ${offset}`, e),
    mapShort: (_offset, size, got) => new TrtbError("ST_IO", `${file}: the file changed size while open (mapped ${got} of ${size} bytes)`, { file }),
    read: (offset, length, e) => ioErr(file, `cannot read ${length} bytes at offset ${offset}`, e),
    readShort: (at) => new TrtbError("ST_IO", `${file}: the file shrank while open (short read at offset ${at})`, { file }),
  };
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
    // O_NONBLOCK: a FIFO planted as a shard cannot block the open (the fstat below refuses it).
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
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
    if (access === "read") source = new ReadSource(fd, fileSize, sourceErrors(path));
    else {
      try {
        source = new MappedSource({ fd, size: fileSize, path, errors: sourceErrors(path) });
      } catch (e) {
        if (access === "mmap") throw e;
        // Bun.mmap opens read-write; read-only files and filesystems without mmap land here.
        log.debug(`${path}: cannot map (${(e as Error).message}); reading tensors with positioned reads instead`);
        source = new ReadSource(fd, fileSize, sourceErrors(path));
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
  let done: number;
  try {
    done = readAt(fd, out, position);
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
