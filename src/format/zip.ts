/**
 * Read-only ZIP reader over memory-mapped files, enough for `torch.save` archives.
 *
 * Layout (PKWARE APPNOTE 6.3, the subset used here; all integers little endian):
 *
 *   [local file header 1][data 1] … [local file header n][data n]
 *   [central directory: n file headers]
 *   [ZIP64 end-of-central-directory record]   (optional; torch always writes it)
 *   [ZIP64 end-of-central-directory locator]  (20 bytes, immediately before the EOCD)
 *   [end-of-central-directory record]         (22 bytes + comment, at the very end)
 *
 *   local file header  (30 B): sig 0x04034b50 · version u16 · flags u16 · method u16 · time u16 ·
 *                              date u16 · crc32 u32 · csize u32 · usize u32 · name_len u16 ·
 *                              extra_len u16 · name · extra
 *   central header     (46 B): sig 0x02014b50 · made_by u16 · version u16 · flags u16 · method u16 ·
 *                              time u16 · date u16 · crc32 u32 · csize u32 · usize u32 · name_len u16 ·
 *                              extra_len u16 · comment_len u16 · disk u16 · int_attr u16 ·
 *                              ext_attr u32 · local_offset u32 · name · extra · comment
 *   ZIP64 extra (id 0x0001)  : usize u64, csize u64, local_offset u64, disk u32 — each present only
 *                              when the matching 32-bit field above is 0xFFFFFFFF (0xFFFF for disk)
 *   EOCD               (22 B): sig 0x06054b50 · disk u16 · cd_disk u16 · n_disk u16 · n u16 ·
 *                              cd_size u32 · cd_offset u32 · comment_len u16 · comment
 *   ZIP64 locator      (20 B): sig 0x07064b50 · disk u32 · zip64_eocd_offset u64 · n_disks u32
 *   ZIP64 EOCD         (56 B): sig 0x06064b50 · record_size u64 · made_by u16 · version u16 ·
 *                              disk u32 · cd_disk u32 · n_disk u64 · n u64 · cd_size u64 · cd_offset u64
 *
 * torch writes every member *stored* (method 0), with flag bit 3 (sizes in a trailing data
 * descriptor, zeros in the local header) and local "extra" padding that aligns data to 64 bytes.
 *
 * Policy:
 * - The whole file is mapped once when it is at most `wholeMapLimit` bytes (default 1 GiB);
 *   larger files (torch shards pass 4 GiB, JSC's ArrayBuffer cap) are mapped in windows: the tail
 *   for the EOCD, the central directory, and each requested data range on demand.
 * - Stored members are returned zero-copy. Deflated members (method 8) are inflated with a hard
 *   output cap (`MAX_INFLATE_BYTES`) and their CRC-32 is checked. Stored members are *not*
 *   CRC-checked: that would mean reading every weight byte at open; the structure is validated
 *   instead (bounds, local/central header agreement).
 * - Strict: the EOCD must end exactly at end of file (no trailing bytes, no polyglots), the central
 *   directory must lie before the EOCD records, every member's data must lie before the central
 *   directory, and names must be unique.
 * - Mappings are private (MAP_PRIVATE): writing into a returned view never touches the file.
 *
 * Errors (TrtbError codes):
 *   ZIP_OPEN          the file cannot be opened or mapped (missing, a directory, permissions)
 *   ZIP_NO_EOCD       no end-of-central-directory record: not a ZIP file
 *   ZIP_TRUNCATED     starts like a ZIP but its end is missing, or a structure runs past end of file
 *   ZIP_BAD_HEADER    a malformed or inconsistent header (signature, sizes, counts, duplicate names,
 *                     trailing bytes after the EOCD)
 *   ZIP_BAD_DATA      a deflated member fails to inflate, has the wrong size or the wrong CRC-32
 *   ZIP_UNSUPPORTED   encryption, multi-disk archives, compression methods other than 0 and 8,
 *                     compressed members above MAX_INFLATE_BYTES, ranges too large to map
 *   ZIP_MISSING_ENTRY the requested member does not exist
 *   ZIP_CLOSED        use after close()
 */
import { statSync } from "node:fs";
import { inflateRawSync } from "node:zlib";
import { TrtbError } from "../errors.ts";
import { type ByteSource, type MapErrors, MappedSource, MemorySource, mapFile } from "./byte-source.ts";

export const METHOD_STORED = 0;
export const METHOD_DEFLATE = 8;
/** Deflated members above this (declared) size are refused; torch never compresses tensors. */
export const MAX_INFLATE_BYTES = 256 * 1024 * 1024;
/** Files up to this size are mapped whole; bigger ones are mapped in windows. */
export const DEFAULT_WHOLE_MAP_LIMIT = 1024 * 1024 * 1024;

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const LOCAL_LEN = 30;
const CENTRAL_LEN = 46;
const EOCD_LEN = 22;
const LOCATOR_LEN = 20;
const ZIP64_EOCD_LEN = 56;
const MAX_COMMENT = 0xffff;
const FLAG_ENCRYPTED = 0x0001;
const FLAG_DATA_DESCRIPTOR = 0x0008;
const FLAG_STRONG_ENCRYPTION = 0x0040;

export interface ZipEntry {
  /** Member name as stored (UTF-8 decoded). */
  readonly name: string;
  /** 0 stored, 8 deflate; anything else is refused on read. */
  readonly method: number;
  readonly flags: number;
  readonly crc32: number;
  /** Bytes of (possibly compressed) data in the file. */
  readonly compressedSize: number;
  /** Bytes after decompression. */
  readonly size: number;
  /** Absolute file offset of the local file header. */
  readonly localHeaderOffset: number;
}

export interface ZipOpenOptions {
  /** Map the whole file at once when it is at most this many bytes (default 1 GiB). 0 forces windows. */
  wholeMapLimit?: number;
}

/** Where a member's data lies in the file, after its local header was checked. */
export interface ZipDataRange {
  /** Absolute file offset of the first data byte. */
  readonly offset: number;
  /** Bytes of (possibly compressed) data. */
  readonly length: number;
}

// ---------------------------------------------------------------------------------------------
// Byte access (byte-source.ts): one whole mapping, or each range mapped on its own.

function mapWhole(path: string): Uint8Array {
  try {
    return mapFile(path);
  } catch (e) {
    throw new TrtbError("ZIP_OPEN", `cannot map ${path}: ${(e as Error).message}`, { file: path, cause: e });
  }
}

function mapErrors(path: string): MapErrors {
  return {
    map: (offset, size, e) =>
      new TrtbError("ZIP_UNSUPPORTED", `cannot map ${size} bytes at offset ${offset} of ${path}: ${(e as Error).message}`, { file: path, cause: e }),
    mapShort: (offset, size, got) =>
      new TrtbError("ZIP_TRUNCATED", `${path}: file changed size while open (wanted ${size} bytes at ${offset}, got ${got})`, { file: path }),
  };
}

function u16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}
function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}
/** u64 as a JS number, or -1 when it does not fit in 2^53 (callers treat that as out of bounds). */
function u64(b: Uint8Array, o: number): number {
  const lo = u32(b, o);
  const hi = u32(b, o + 4);
  if (hi >= 0x200000) return -1;
  return hi * 0x100000000 + lo;
}

const utf8 = new TextDecoder("utf-8");

/** Quote a member name for a message: JSON-escaped (names are untrusted) and cut short. */
function q(s: string): string {
  return JSON.stringify(s.length > 120 ? `${s.slice(0, 120)}…` : s);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------

export class ZipArchive {
  /** Members in central-directory order. */
  readonly entries: readonly ZipEntry[];
  private readonly byName: Map<string, ZipEntry>;
  private readonly rawNames: Map<string, Uint8Array>;
  private readonly ranges = new Map<string, ZipDataRange>();
  /** Members' data must end at or before this offset (start of the central directory). */
  private readonly dataLimit: number;
  private src: ByteSource | null;

  private constructor(
    /** File path, or the label given to `fromBytes`; used in every message. */
    readonly path: string,
    src: ByteSource,
  ) {
    this.src = src;
    const { entries, rawNames, cdOffset } = readCentralDirectory(path, src);
    this.entries = entries;
    this.rawNames = rawNames;
    this.dataLimit = cdOffset;
    this.byName = new Map(entries.map((e) => [e.name, e]));
  }

  /** Open a ZIP file by path (memory-mapped, read-only). */
  static open(path: string, opts: ZipOpenOptions = {}): ZipArchive {
    let size: number;
    try {
      const st = statSync(path);
      if (!st.isFile()) throw new Error("not a regular file");
      size = st.size;
    } catch (e) {
      throw new TrtbError("ZIP_OPEN", `cannot open ${path}: ${(e as Error).message}`, { file: path, cause: e });
    }
    if (size < EOCD_LEN) return new ZipArchive(path, new MemorySource(size === 0 ? new Uint8Array(0) : mapWhole(path)));
    const limit = opts.wholeMapLimit ?? DEFAULT_WHOLE_MAP_LIMIT;
    if (size <= limit) {
      const whole = mapWhole(path);
      if (whole.length !== size) throw new TrtbError("ZIP_TRUNCATED", `${path}: file changed size while opening`, { file: path });
      return new ZipArchive(path, new MemorySource(whole));
    }
    return new ZipArchive(path, new MappedSource({ path, size, windows: false, errors: mapErrors(path) }));
  }

  /** Read a ZIP held in memory (tests, fuzzing). `label` names it in messages. */
  static fromBytes(bytes: Uint8Array, label = "<memory>"): ZipArchive {
    return new ZipArchive(label, new MemorySource(bytes));
  }

  /** Size of the underlying file in bytes. */
  get fileSize(): number {
    return this.source().size;
  }

  names(): string[] {
    return this.entries.map((e) => e.name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The entry called `name`; ZIP_MISSING_ENTRY when absent. */
  entry(name: string): ZipEntry {
    const e = this.byName.get(name);
    if (e === undefined) throw new TrtbError("ZIP_MISSING_ENTRY", `${this.path}: archive has no member ${q(name)}`, { file: this.path });
    return e;
  }

  /**
   * Validate the member's local header and return where its data lies. Checked once per member:
   * signature, name and method agree with the central directory, sizes agree unless deferred to a
   * data descriptor, and the data lies before the central directory.
   */
  dataRange(name: string): ZipDataRange {
    const cached = this.ranges.get(name);
    if (cached !== undefined) return cached;
    const e = this.entry(name);
    const src = this.source();
    const where = `${this.path}: member ${q(name)}`;
    const bad = (msg: string): never => {
      throw new TrtbError("ZIP_BAD_HEADER", `${where}: ${msg}`, { file: this.path });
    };
    const at = e.localHeaderOffset;
    // readCentralDirectory guaranteed at + LOCAL_LEN <= dataLimit.
    const h = src.view(at, LOCAL_LEN);
    if (u32(h, 0) !== SIG_LOCAL) bad(`no local file header at offset ${at}`);
    const flags = u16(h, 6);
    const method = u16(h, 8);
    const nameLen = u16(h, 26);
    const extraLen = u16(h, 28);
    if (method !== e.method) bad(`local header says method ${method}, central directory says ${e.method}`);
    if ((flags & FLAG_ENCRYPTED) !== (e.flags & FLAG_ENCRYPTED)) bad("local and central headers disagree on encryption");
    const dataStart = at + LOCAL_LEN + nameLen + extraLen;
    if (dataStart > this.dataLimit) bad(`local header at ${at} runs into the central directory`);
    const localName = src.view(at + LOCAL_LEN, nameLen);
    if (!sameBytes(localName, this.rawNames.get(name)!)) bad(`local header names ${q(utf8.decode(localName))}`);
    if ((flags & FLAG_DATA_DESCRIPTOR) === 0) {
      const lc = u32(h, 18);
      const lu = u32(h, 22);
      // 0xFFFFFFFF defers to a ZIP64 extra field; the central directory has the real values.
      if (lc !== 0xffffffff && lc !== e.compressedSize) bad(`local header compressed size ${lc} != central ${e.compressedSize}`);
      if (lu !== 0xffffffff && lu !== e.size) bad(`local header size ${lu} != central ${e.size}`);
    }
    const dataEnd = dataStart + e.compressedSize;
    if (dataEnd > src.size) {
      throw new TrtbError("ZIP_TRUNCATED", `${where}: data [${dataStart}, ${dataEnd}) runs past end of file (${src.size} bytes)`, { file: this.path });
    }
    if (dataEnd > this.dataLimit) bad(`data [${dataStart}, ${dataEnd}) overlaps the central directory at ${this.dataLimit}`);
    const r: ZipDataRange = { offset: dataStart, length: e.compressedSize };
    this.ranges.set(name, r);
    return r;
  }

  /**
   * The member's bytes. Stored members: a zero-copy view of the mapping. Deflated members: a fresh
   * inflated buffer (size-capped, CRC-checked).
   */
  read(name: string): Uint8Array {
    const e = this.entry(name);
    this.checkReadable(e);
    const r = this.dataRange(name);
    const raw = this.source().view(r.offset, r.length);
    if (e.method === METHOD_STORED) return raw;
    return this.inflate(e, raw);
  }

  /**
   * `length` bytes starting `start` bytes into the member's (uncompressed) data. Zero-copy for
   * stored members; in window mode only this range is mapped, so it suits tensors in big files.
   */
  readRange(name: string, start: number, length: number): Uint8Array {
    const e = this.entry(name);
    this.checkReadable(e);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length < 0 || start + length > e.size) {
      throw new TrtbError("ZIP_TRUNCATED", `${this.path}: member ${q(name)} has ${e.size} bytes; range [${start}, ${start + length}) is outside it`, { file: this.path });
    }
    if (e.method !== METHOD_STORED) return this.read(name).subarray(start, start + length);
    const r = this.dataRange(name);
    return this.source().view(r.offset + start, length);
  }

  /** Drop the mapping. Views returned earlier stay readable until garbage-collected. */
  close(): void {
    this.src?.close();
    this.src = null;
  }

  private source(): ByteSource {
    if (this.src === null) throw new TrtbError("ZIP_CLOSED", `${this.path}: archive is closed`, { file: this.path });
    return this.src;
  }

  private checkReadable(e: ZipEntry): void {
    const where = `${this.path}: member ${q(e.name)}`;
    if ((e.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION)) !== 0) {
      throw new TrtbError("ZIP_UNSUPPORTED", `${where} is encrypted; encrypted archives are not supported`, { file: this.path });
    }
    if (e.method !== METHOD_STORED && e.method !== METHOD_DEFLATE) {
      throw new TrtbError("ZIP_UNSUPPORTED", `${where} uses compression method ${e.method}; only stored (0) and deflate (8) are supported`, { file: this.path });
    }
    if (e.method === METHOD_STORED && e.compressedSize !== e.size) {
      throw new TrtbError("ZIP_BAD_HEADER", `${where} is stored but its sizes differ (${e.compressedSize} vs ${e.size})`, { file: this.path });
    }
    if (e.method === METHOD_DEFLATE && e.size > MAX_INFLATE_BYTES) {
      throw new TrtbError("ZIP_UNSUPPORTED", `${where} is compressed and ${e.size} bytes; compressed members above ${MAX_INFLATE_BYTES} bytes are refused`, { file: this.path });
    }
  }

  private inflate(e: ZipEntry, raw: Uint8Array): Uint8Array {
    const where = `${this.path}: member ${q(e.name)}`;
    let out: Uint8Array;
    try {
      // maxOutputLength bounds the work whatever the stream claims (no inflate bombs).
      out = inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) });
    } catch (err) {
      throw new TrtbError("ZIP_BAD_DATA", `${where}: deflate data is corrupt or inflates past its declared ${e.size} bytes (${(err as Error).message})`, { file: this.path, cause: err });
    }
    if (out.length !== e.size) throw new TrtbError("ZIP_BAD_DATA", `${where}: inflated to ${out.length} bytes, expected ${e.size}`, { file: this.path });
    const crc = Bun.hash.crc32(out);
    if (crc !== e.crc32) throw new TrtbError("ZIP_BAD_DATA", `${where}: CRC-32 mismatch (${crc.toString(16)} vs ${e.crc32.toString(16)})`, { file: this.path });
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  }
}

// ---------------------------------------------------------------------------------------------
// End records and central directory.

interface CentralDirectory {
  entries: ZipEntry[];
  rawNames: Map<string, Uint8Array>;
  cdOffset: number;
}

function readCentralDirectory(path: string, src: ByteSource): CentralDirectory {
  const size = src.size;
  const detail = { file: path };

  // --- EOCD: scan back over at most a maximal comment; it must end exactly at end of file.
  const tailLen = Math.min(size, EOCD_LEN + MAX_COMMENT);
  const tailStart = size - tailLen;
  const tail = tailLen > 0 ? src.view(tailStart, tailLen) : new Uint8Array(0);
  let eocd = -1;
  let early = -1; // an EOCD followed by stray bytes
  for (let i = tailLen - EOCD_LEN; i >= 0; i--) {
    if (tail[i] !== 0x50 || u32(tail, i) !== SIG_EOCD) continue;
    const end = i + EOCD_LEN + u16(tail, i + 20);
    if (end === tailLen) {
      eocd = i;
      break;
    }
    if (end < tailLen && early < 0) early = i;
  }
  if (eocd < 0 && early >= 0) {
    const extra = tailLen - (early + EOCD_LEN + u16(tail, early + 20));
    throw new TrtbError("ZIP_BAD_HEADER", `${path}: ${extra} bytes of trailing data after the end-of-central-directory record`, detail);
  }
  if (eocd < 0) {
    // A file that starts with a local header but has no end record was cut short.
    const head = tail.length > 0 && tailStart === 0 ? tail : src.view(0, Math.min(4, size));
    const sig = [0x50, 0x4b, 0x03, 0x04];
    const looksZip = size > 0 && sig.slice(0, Math.min(4, size)).every((b, i) => head[i] === b);
    if (looksZip) {
      throw new TrtbError("ZIP_TRUNCATED", `${path}: starts like a ZIP archive but has no end-of-central-directory record; the file is truncated (incomplete download or copy?)`, detail);
    }
    throw new TrtbError("ZIP_NO_EOCD", `${path}: not a ZIP archive (no end-of-central-directory record in ${size} bytes)`, detail);
  }
  const eocdAbs = tailStart + eocd;
  const diskNo = u16(tail, eocd + 4);
  const cdDisk = u16(tail, eocd + 6);
  const nOnDisk16 = u16(tail, eocd + 8);
  let count = u16(tail, eocd + 10);
  let cdSize = u32(tail, eocd + 12);
  let cdOffset = u32(tail, eocd + 16);
  if (diskNo !== 0 || cdDisk !== 0 || nOnDisk16 !== count) {
    throw new TrtbError("ZIP_UNSUPPORTED", `${path}: multi-disk (split) ZIP archives are not supported`, detail);
  }
  let recordsStart = eocdAbs; // the central directory must end at or before this offset

  // --- ZIP64: the locator sits right before the EOCD.
  if (eocdAbs >= LOCATOR_LEN) {
    const loc = src.view(eocdAbs - LOCATOR_LEN, LOCATOR_LEN);
    if (u32(loc, 0) === SIG_ZIP64_LOCATOR) {
      const z64Off = u64(loc, 8);
      if (u32(loc, 4) !== 0 || u32(loc, 16) > 1) {
        throw new TrtbError("ZIP_UNSUPPORTED", `${path}: multi-disk (split) ZIP64 archives are not supported`, detail);
      }
      const locAbs = eocdAbs - LOCATOR_LEN;
      if (z64Off < 0 || z64Off + ZIP64_EOCD_LEN > locAbs) {
        throw new TrtbError("ZIP_BAD_HEADER", `${path}: ZIP64 end record offset ${z64Off} is outside the file`, detail);
      }
      const z = src.view(z64Off, ZIP64_EOCD_LEN);
      if (u32(z, 0) !== SIG_ZIP64_EOCD) throw new TrtbError("ZIP_BAD_HEADER", `${path}: no ZIP64 end record at offset ${z64Off}`, detail);
      const recSize = u64(z, 4);
      if (recSize < ZIP64_EOCD_LEN - 12 || z64Off + 12 + recSize > locAbs) {
        throw new TrtbError("ZIP_BAD_HEADER", `${path}: ZIP64 end record has bad size ${recSize}`, detail);
      }
      if (u32(z, 16) !== 0 || u32(z, 20) !== 0 || u64(z, 24) !== u64(z, 32)) {
        throw new TrtbError("ZIP_UNSUPPORTED", `${path}: multi-disk (split) ZIP64 archives are not supported`, detail);
      }
      count = u64(z, 32);
      cdSize = u64(z, 40);
      cdOffset = u64(z, 48);
      recordsStart = z64Off;
    }
  }
  if (count < 0 || cdSize < 0 || cdOffset < 0 || cdOffset + cdSize > recordsStart) {
    const code = cdOffset + cdSize > size ? "ZIP_TRUNCATED" : "ZIP_BAD_HEADER";
    throw new TrtbError(code, `${path}: central directory [${cdOffset}, ${cdOffset + cdSize}) lies outside the file before its end records (${recordsStart})`, detail);
  }
  if (count * CENTRAL_LEN > cdSize) {
    throw new TrtbError("ZIP_BAD_HEADER", `${path}: ${count} entries cannot fit in a ${cdSize}-byte central directory`, detail);
  }

  // --- Central directory entries.
  const cd = src.view(cdOffset, cdSize);
  const entries: ZipEntry[] = [];
  const rawNames = new Map<string, Uint8Array>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    const bad = (msg: string): never => {
      throw new TrtbError("ZIP_BAD_HEADER", `${path}: central directory entry ${i}: ${msg}`, detail);
    };
    if (p + CENTRAL_LEN > cdSize) bad("runs past the end of the central directory");
    if (u32(cd, p) !== SIG_CENTRAL) bad(`bad signature at offset ${cdOffset + p}`);
    const flags = u16(cd, p + 8);
    const method = u16(cd, p + 10);
    const crc32 = u32(cd, p + 16);
    let compressedSize = u32(cd, p + 20);
    let usize = u32(cd, p + 24);
    const nameLen = u16(cd, p + 28);
    const extraLen = u16(cd, p + 30);
    const commentLen = u16(cd, p + 32);
    const disk = u16(cd, p + 34);
    let localOff = u32(cd, p + 42);
    const varStart = p + CENTRAL_LEN;
    const next = varStart + nameLen + extraLen + commentLen;
    if (next > cdSize) bad("name/extra/comment run past the end of the central directory");
    const rawName = cd.slice(varStart, varStart + nameLen);
    const name = utf8.decode(rawName);

    // ZIP64 extra: fields appear in a fixed order, only for the 32-bit fields that overflowed.
    const needU = usize === 0xffffffff;
    const needC = compressedSize === 0xffffffff;
    const needO = localOff === 0xffffffff;
    if (needU || needC || needO) {
      let x = varStart + nameLen;
      const xEnd = x + extraLen;
      let found = false;
      while (x + 4 <= xEnd) {
        const id = u16(cd, x);
        const len = u16(cd, x + 2);
        if (x + 4 + len > xEnd) bad(`${q(name)}: extra field runs past its end`);
        if (id === 0x0001) {
          let f = x + 4;
          const take = (): number => {
            if (f + 8 > x + 4 + len) bad(`${q(name)}: ZIP64 extra field too short`);
            const v = u64(cd, f);
            f += 8;
            if (v < 0) bad(`${q(name)}: ZIP64 value beyond 2^53`);
            return v;
          };
          if (needU) usize = take();
          if (needC) compressedSize = take();
          if (needO) localOff = take();
          found = true;
          break;
        }
        x += 4 + len;
      }
      if (!found) bad(`${q(name)}: 0xFFFFFFFF size/offset without a ZIP64 extra field`);
    }
    if (disk !== 0 && disk !== 0xffff) bad(`${q(name)}: lives on disk ${disk}; multi-disk archives are not supported`);
    if (localOff + LOCAL_LEN > cdOffset) bad(`${q(name)}: local header offset ${localOff} is not before the central directory`);
    if (compressedSize > cdOffset - localOff - LOCAL_LEN) bad(`${q(name)}: ${compressedSize} bytes of data cannot fit before the central directory`);
    if (rawNames.has(name)) bad(`duplicate member name ${q(name)}`);
    rawNames.set(name, rawName);
    entries.push({ name, method, flags, crc32, compressedSize, size: usize, localHeaderOffset: localOff });
    p = next;
  }
  return { entries, rawNames, cdOffset };
}
