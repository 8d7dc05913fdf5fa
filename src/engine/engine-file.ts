/**
 * `rank{N}.engine`: our engine file.
 *
 *   offset  size  field
 *        0     8  magic "TRTBENG\0"
 *        8     4  u32 format version (1)
 *       12     4  u32 header size (64)
 *       16     8  u64 plan offset (64)
 *       24     8  u64 plan size (UTF-8 JSON, see plan.ts)
 *       32     8  u64 weight blob offset (4096-aligned)
 *       40     8  u64 weight blob size
 *       48     8  u64 FNV-1a 64 of the plan bytes
 *       56     4  u32 0x01020304 (little-endian marker)
 *       60     4  reserved (0)
 *       64        plan JSON, zero padding to the blob offset
 *     blob        tensors at 256-byte aligned offsets (plan.tensors[i].offset, relative to the blob)
 *
 * The blob is laid out exactly as it goes to the GPU: the runtime uploads it into one allocation
 * in large windows mapped straight from the file (Bun.mmap windows, so files past 4 GiB work) and
 * tensor i lives at that allocation + offset_i. Files are written to a temp name and renamed.
 */
import { closeSync, constants, fstatSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { DTYPE_SIZE } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import { mapFile, readAt } from "../format/byte-source.ts";
import type { LazyTensor } from "../tensor/lazy.ts";
import { ENGINE_FORMAT, ENGINE_FORMAT_VERSION, type EnginePlan, type PlanTensor } from "./plan.ts";

/** One tensor of an engine file: its name and layout, and the lazy source of its bytes. */
export interface EngineTensor {
  name: string;
  dtype: "F32" | "F16" | "BF16" | "I8" | "F8_E4M3";
  shape: number[];
  source: LazyTensor;
}

export const ENGINE_MAGIC = "TRTBENG\0";
const HEADER_BYTES = 64;
const BLOB_ALIGN = 4096;
export const TENSOR_ALIGN = 256;
const ENDIAN = 0x01020304;
/** Largest window mapped at once when reading the blob. */
const WINDOW = 1 << 30;

const align = (n: number, a: number) => Math.ceil(n / a) * a;

export function fnv1a64(bytes: Uint8Array): bigint {
  let h = 0xcbf29ce484222325n;
  const p = 0x100000001b3n;
  for (let i = 0; i < bytes.length; i++) h = BigInt.asUintN(64, (h ^ BigInt(bytes[i]!)) * p);
  return h;
}

/** Offsets of each tensor in the blob, and the blob size. */
export function layoutTensors(tensors: readonly EngineTensor[]): { tensors: PlanTensor[]; blobBytes: number } {
  let off = 0;
  const out: PlanTensor[] = [];
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new TrtbError("BUILD_INTERNAL", `engine tensor ${t.name} appears twice`);
    seen.add(t.name);
    off = align(off, TENSOR_ALIGN);
    const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[t.dtype];
    out.push({ name: t.name, dtype: t.dtype, shape: [...t.shape], offset: off, bytes });
    off += bytes;
  }
  return { tensors: out, blobBytes: align(off, TENSOR_ALIGN) };
}

/** Write `path` atomically: header, plan (with tensor offsets filled in), blob. Returns bytes written. */
export function writeEngineFile(path: string, plan: EnginePlan, tensors: readonly EngineTensor[], onProgress?: (done: number, total: number) => void): number {
  const { tensors: placed, blobBytes } = layoutTensors(tensors);
  const full: EnginePlan = { ...plan, tensors: placed };
  const planBytes = new TextEncoder().encode(JSON.stringify(full));
  const blobOffset = align(HEADER_BYTES + planBytes.length, BLOB_ALIGN);
  const header = new Uint8Array(HEADER_BYTES);
  const dv = new DataView(header.buffer);
  header.set(new TextEncoder().encode(ENGINE_MAGIC), 0);
  dv.setUint32(8, ENGINE_FORMAT_VERSION, true);
  dv.setUint32(12, HEADER_BYTES, true);
  dv.setBigUint64(16, BigInt(HEADER_BYTES), true);
  dv.setBigUint64(24, BigInt(planBytes.length), true);
  dv.setBigUint64(32, BigInt(blobOffset), true);
  dv.setBigUint64(40, BigInt(blobBytes), true);
  dv.setBigUint64(48, fnv1a64(planBytes), true);
  dv.setUint32(56, ENDIAN, true);

  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  let fd = -1;
  try {
    fd = openSync(tmp, "w");
    writeAll(fd, header, 0);
    writeAll(fd, planBytes, HEADER_BYTES);
    const pad = blobOffset - HEADER_BYTES - planBytes.length;
    if (pad > 0) writeAll(fd, new Uint8Array(pad), HEADER_BYTES + planBytes.length);
    let scratch = new Uint8Array(0);
    let done = 0;
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i]!;
      const p = placed[i]!;
      const direct = t.source.dtype === t.dtype ? t.source.directBytes() : null;
      let bytes: Uint8Array;
      if (direct && direct.byteLength === p.bytes) bytes = direct;
      else {
        if (scratch.byteLength < p.bytes) scratch = new Uint8Array(p.bytes);
        bytes = scratch.subarray(0, p.bytes);
        t.source.writeInto(bytes, t.dtype);
      }
      writeAll(fd, bytes, blobOffset + p.offset);
      done += p.bytes;
      onProgress?.(done, blobBytes);
    }
    // the blob's tail padding: extend the file to its full size
    const end = blobOffset + blobBytes;
    if (fstatSync(fd).size < end) writeAll(fd, new Uint8Array(end - fstatSync(fd).size), fstatSync(fd).size);
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    renameSync(tmp, path);
  } catch (e) {
    if (fd >= 0) closeSync(fd);
    rmSync(tmp, { force: true });
    if (e instanceof TrtbError) throw e;
    throw new TrtbError("IO_WRITE", `cannot write ${path}: ${(e as Error).message}`, { file: path, cause: e });
  }
  return blobOffset + blobBytes;
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let off = 0;
  while (off < bytes.byteLength) {
    // writeSync takes at most 2 GiB per call
    const n = writeSync(fd, bytes, off, Math.min(bytes.byteLength - off, 1 << 30), position + off);
    if (n <= 0) throw new TrtbError("IO_WRITE", `short write at byte ${position + off} (the disk may be full)`);
    off += n;
  }
}

/** An opened engine file: its plan, and the blob readable in windows. */
export interface EngineFile {
  readonly path: string;
  readonly plan: EnginePlan;
  readonly blobOffset: number;
  readonly blobBytes: number;
  /** Visit the blob in windows of at most `maxWindow` bytes (mapped when possible, else read). */
  forEachWindow(fn: (offset: number, bytes: Uint8Array) => void, maxWindow?: number): void;
  /** One tensor's bytes (a copy). */
  readTensor(name: string): Uint8Array;
}

/** Open and validate `path` (header, plan, sizes); `ENGINE_*` errors name the file. */
export function openEngineFile(path: string): EngineFile {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK); // a FIFO cannot block the open
  } catch (e) {
    throw new TrtbError("ENGINE_NOT_FOUND", `${path}: cannot open (${(e as Error).message})`, { file: path });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new TrtbError("IO_NOT_FILE", `${path}: not a regular file`, { file: path });
    const size = st.size;
    const bad = (msg: string): never => {
      throw new TrtbError("ENGINE_FORMAT", `${path}: ${msg}`, { file: path });
    };
    if (size < HEADER_BYTES) bad(`file of ${size} bytes is too small for an engine header`);
    const header = new Uint8Array(HEADER_BYTES);
    readSync(fd, header, 0, HEADER_BYTES, 0);
    const dv = new DataView(header.buffer);
    if (new TextDecoder().decode(header.subarray(0, 8)) !== ENGINE_MAGIC) bad("not an engine file of this toolkit (bad magic); TensorRT engines are not supported");
    const version = dv.getUint32(8, true);
    if (version < 1 || version > ENGINE_FORMAT_VERSION) bad(`engine format version ${version}; this build reads versions 1 to ${ENGINE_FORMAT_VERSION} (rebuild the engine)`);
    if (dv.getUint32(56, true) !== ENDIAN) bad("byte order marker mismatch");
    const planOff = Number(dv.getBigUint64(16, true));
    const planLen = Number(dv.getBigUint64(24, true));
    const blobOffset = Number(dv.getBigUint64(32, true));
    const blobBytes = Number(dv.getBigUint64(40, true));
    if (planOff < HEADER_BYTES || planOff + planLen > size || blobOffset < planOff + planLen || blobOffset + blobBytes > size)
      bad(`header offsets do not fit a ${size}-byte file (plan ${planOff}+${planLen}, blob ${blobOffset}+${blobBytes}); the file is truncated or corrupt`);
    const planBytes = new Uint8Array(planLen);
    readSync(fd, planBytes, 0, planLen, planOff);
    if (fnv1a64(planBytes) !== dv.getBigUint64(48, true)) bad("plan checksum mismatch; the file is corrupt");
    let plan: EnginePlan;
    try {
      plan = JSON.parse(new TextDecoder().decode(planBytes)) as EnginePlan;
    } catch (e) {
      return bad(`plan is not valid JSON (${(e as Error).message})`);
    }
    if (plan.format !== ENGINE_FORMAT) bad(`plan format ${JSON.stringify(plan.format)}, expected ${ENGINE_FORMAT}`);
    for (const t of plan.tensors ?? []) if (t.offset % TENSOR_ALIGN || t.offset + t.bytes > blobBytes) bad(`tensor ${t.name} lies outside the blob`);
    closeSync(fd);
    fd = -1;
    return makeEngineFile(path, plan, blobOffset, blobBytes);
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

function makeEngineFile(path: string, plan: EnginePlan, blobOffset: number, blobBytes: number): EngineFile {
  const readRange = (offset: number, len: number): Uint8Array => {
    try {
      return mapFile(path, blobOffset + offset, len);
    } catch {
      const out = new Uint8Array(len);
      const fd = openSync(path, "r");
      try {
        if (readAt(fd, out, blobOffset + offset, 1 << 30) < len) throw new TrtbError("ENGINE_FORMAT", `${path}: unexpected end of file`, { file: path });
      } finally {
        closeSync(fd);
      }
      return out;
    }
  };
  return {
    path,
    plan,
    blobOffset,
    blobBytes,
    forEachWindow(fn, maxWindow = WINDOW) {
      for (let off = 0; off < blobBytes; off += maxWindow) {
        const len = Math.min(maxWindow, blobBytes - off);
        fn(off, readRange(off, len));
      }
    },
    readTensor(name) {
      const t = plan.tensors.find((x) => x.name === name);
      if (!t) throw new TrtbError("ENGINE_FORMAT", `${path}: no tensor ${name}`, { file: path, tensor: name });
      return readRange(t.offset, t.bytes).slice();
    },
  };
}
