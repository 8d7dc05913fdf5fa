/**
 * The safetensors writer: plan a header exactly as the reference writer does, serialize small
 * tensor sets in memory, and stream large files to a temp file that is renamed over the target
 * (see WRITER at the top of `safetensors.ts`). Tracks its temp files so a normal exit removes them.
 */
import fs from "node:fs";
import nodePath from "node:path";
import { DTYPES, DTYPE_SIZE, type DType, isDType } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import { log } from "../log.ts";
import { fdPath, IO_CHUNK, Mapper, MAX_VIEW_BYTES } from "./byte-source.ts";
import { ioErr, MAX_HEADER_SIZE, type SafetensorsTensorInfo, sourceErrors, stErr } from "./safetensors-reader.ts";

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
  /** Bytes between background writeback starts (default WRITE_BEHIND_BYTES); false: none, commit's fsync does it all. */
  writeBehind?: number | false;
}

/**
 * Write-behind: after this many bytes have been written to a file since the last time, the writer
 * asks the kernel to start writing them back (an fdatasync on a second descriptor, run on the
 * runtime's I/O thread pool), so the disk works while the next tensors are copied and the fsync in
 * `commit()` finds little left to do. Without it, every byte of a rank file was written back inside
 * that one fsync, after all the copying (~0.4 s per GB on the 2-core VM, bench/convert.ts).
 */
export const WRITE_BEHIND_BYTES = 128 * 2 ** 20;

/** Write-behind syncs started and not finished yet (see writeBehindIdle). */
let behindPending = 0;
let behindWaiters: (() => void)[] = [];

/**
 * Resolves when no write-behind sync is running. Their descriptors are closed as they finish, which
 * needs the event loop: a worker thread awaits this before it reports done and is terminated.
 */
export function writeBehindIdle(): Promise<void> {
  if (behindPending === 0) return Promise.resolve();
  return new Promise((resolve) => behindWaiters.push(resolve));
}

/**
 * The write-behind side of one temp file: its own descriptor, so a failed writeback is still
 * reported to the fsync in `commit()` on the writer's descriptor (Linux reports a writeback error to
 * every open file of the inode once), and so that closing the writer's descriptor can never hand
 * its number to another file while a sync is queued on it. The writer is synchronous, so it never
 * sees a sync finish while it writes: each one is started after another WRITE_BEHIND_BYTES (a
 * dozen or so for a GB-sized rank file), and the descriptor is closed when the file is done and
 * the last of them has finished. Errors here are dropped: the commit fsync is the one that counts.
 */
class WriteBehind {
  private fd = -1;
  private running = 0;
  private finished = false;
  private since = 0;
  constructor(private readonly path: string, private readonly every: number | false) {
    if (every === false) this.finished = true;
  }

  wrote(bytes: number): void {
    this.since += bytes;
    if (this.finished || this.since < (this.every as number)) return;
    if (this.fd < 0) {
      try {
        this.fd = fs.openSync(this.path, "r");
      } catch {
        this.finished = true; // no write-behind for this file; commit's fsync does it all
        return;
      }
    }
    this.since = 0;
    this.running++;
    behindPending++;
    fs.fdatasync(this.fd, () => {
      if (--this.running === 0 && this.finished) this.closeFd();
      if (--behindPending === 0) {
        const w = behindWaiters;
        behindWaiters = [];
        for (const f of w) f();
      }
    });
  }

  /** No more syncs; the descriptor is closed now or when the last running sync ends. */
  finish(): void {
    this.finished = true;
    if (this.running === 0) this.closeFd();
  }

  private closeFd(): void {
    if (this.fd < 0) return;
    try {
      fs.closeSync(this.fd);
    } catch {
      // nothing to do
    }
    this.fd = -1;
  }
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
 * `writeStream(name, fill)` writes a tensor as consecutive pieces (several source views, or a
 * buffer refilled a chunk at a time), each with positioned writes. Every WRITE_BEHIND_BYTES
 * written, the writer starts the kernel's writeback of the file in the background (see
 * WRITE_BEHIND_BYTES), so `commit()`'s fsync, which still makes the file durable before it is
 * renamed, has little left to wait for.
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
  private readonly behind: WriteBehind;
  private fd: number;
  private state: "open" | "committed" | "aborted" = "open";

  private constructor(readonly path: string, readonly tempPath: string, plan: SafetensorsPlan, fd: number, writeBehind: number | false) {
    this.plan = plan;
    this.fd = fd;
    for (const t of plan.tensors) {
      this.byName.set(t.name, t);
      const w = t.byteLength === 0 ? -1 : Mapper.windowOf(t.offset, t.byteLength);
      if (w >= 0) this.windowLeft.set(w, (this.windowLeft.get(w) ?? 0) + 1);
    }
    this.mapper = new Mapper(fdPath(fd, tempPath), plan.fileSize, true, sourceErrors(tempPath));
    this.behind = new WriteBehind(fdPath(fd, tempPath), writeBehind);
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
      const every = opts.writeBehind ?? WRITE_BEHIND_BYTES;
      return new SafetensorsWriter(path, tempPath, plan, fd, every === false || every > 0 ? every : false);
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
    this.behind.wrote(t.byteLength);
  }

  /** Write the tensor from `bytes` (exactly its byte length) with positioned writes. */
  write(name: string, bytes: Uint8Array): void {
    const t = this.claim(name);
    if (bytes.length !== t.byteLength)
      throw new TrtbError("ST_WRITE_SIZE", `${this.path}: tensor ${JSON.stringify(name)}: got ${bytes.length} bytes, ${t.dtype} [${t.shape.join(", ")}] needs ${t.byteLength}`, { file: this.path, tensor: name });
    pwriteAll(this.fd, bytes, t.offset, this.path, name);
    this.done(t);
    this.behind.wrote(t.byteLength);
  }

  /**
   * Write the tensor as consecutive pieces: `fill` calls `write(bytes)` with its bytes in order
   * (any number of pieces, of any sizes), each written at once with positioned writes; together they
   * must be exactly the tensor's byte length (else ST_WRITE_SIZE). The way to stream a tensor
   * gathered from several source views, or checked a piece at a time, with no buffer of its size.
   * If `fill` throws, the tensor stays unwritten (its bytes in the temp file are unspecified).
   */
  writeStream(name: string, fill: (write: (bytes: Uint8Array) => void) => void): void {
    const t = this.claim(name);
    let at = 0;
    const size = (got: number) =>
      new TrtbError("ST_WRITE_SIZE", `${this.path}: tensor ${JSON.stringify(name)}: got ${got} bytes, ${t.dtype} [${t.shape.join(", ")}] needs ${t.byteLength}`, { file: this.path, tensor: name });
    fill((bytes) => {
      if (at + bytes.length > t.byteLength) throw size(at + bytes.length);
      pwriteAll(this.fd, bytes, t.offset + at, this.path, name);
      at += bytes.length;
      this.behind.wrote(bytes.length);
    });
    if (at !== t.byteLength) throw size(at);
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
    this.behind.finish();
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
    this.behind.finish();
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
