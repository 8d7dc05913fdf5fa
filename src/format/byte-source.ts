/**
 * Byte sources: how a file reader turns (file offset, length) into a Uint8Array. One scheme for
 * every reader (safetensors, ZIP/torch, engine files) and the safetensors writer: memory maps in
 * windows, positioned reads (copies) where mapping is refused, or a buffer already in memory.
 *
 * WINDOWS. `Bun.mmap` cannot map more than 4 GiB at once (JSC caps an ArrayBuffer at 2^32 bytes),
 * so a `Mapper` maps a file in `WINDOW` (1 GiB) windows at 1 GiB-aligned offsets, on demand, and
 * keeps them until released or closed; a range that straddles a window boundary gets a mapping of
 * its own, started at a page boundary so that views keep the file's alignment (a range at a
 * 4-aligned offset gets a 4-aligned byteOffset). A Mapper made with `windows: false` keeps
 * nothing: every range is mapped on its own, exactly, so only the bytes asked for are mapped.
 * Views keep their mapping alive; closing only drops the source's references (the GC unmaps), so
 * a view taken before `close()` stays valid.
 *
 * ERRORS. Each format keeps its own codes and wording: a source reports failures through the
 * `MapErrors` / `ReadErrors` its owner passes in.
 */
import fs from "node:fs";

/** Largest byte view JS can hold: JSC caps an ArrayBuffer at 2^32 bytes (research-notes §E.3). */
export const MAX_VIEW_BYTES = 2 ** 32;
/** Mapping window size for readers and writers (a power of two, ≤ MAX_VIEW_BYTES). */
export const WINDOW = 2 ** 30;
/**
 * Bytes per read/write syscall. Linux caps one call at 0x7ffff000 bytes, but the chunk size matters
 * long before that: copying a mapped 1 GiB tensor with 8 MiB writes ran at ~2× the speed of one
 * 1 GiB write (page-cache copy, warm cache, measured with bench/safetensors-copy.ts); 4–16 MiB
 * were equally good.
 */
export const IO_CHUNK = 8 * 2 ** 20;

/** `length` bytes at absolute `offset`; the caller has checked the bounds. */
export interface ByteSource {
  /** How bytes are obtained: zero-copy maps, positioned reads (copies), or an in-memory buffer. */
  readonly access: "mmap" | "read" | "memory";
  /** Bytes in the file (or buffer). */
  readonly size: number;
  view(offset: number, length: number): Uint8Array;
  close(): void;
}

/** The errors a mapping source raises, worded by the format that owns it. */
export interface MapErrors {
  /** `Bun.mmap` refused to map `size` bytes at `offset`. */
  map(offset: number, size: number, cause: unknown): Error;
  /** The map came back `got` of `size` bytes: the file shrank under us (Bun clamps to the file). */
  mapShort(offset: number, size: number, got: number): Error;
}

/** The errors a reading source raises, worded by the format that owns it. */
export interface ReadErrors {
  /** A positioned read of `length` bytes at `offset` failed. */
  read(offset: number, length: number, cause: unknown): Error;
  /** End of file at `at`, before the range was read. */
  readShort(at: number): Error;
}

/** A path that opens the same inode as `fd`, so renames over the original path do not matter. */
export function fdPath(fd: number, fallback: string): string {
  return process.platform === "linux" && fs.existsSync(`/proc/self/fd/${fd}`) ? `/proc/self/fd/${fd}` : fallback;
}

/** A private (or shared) map of `path`: the whole file, or `size` bytes at `offset`. Throws what `Bun.mmap` throws. */
export function mapFile(path: string, offset?: number, size?: number, shared = false): Uint8Array {
  return offset === undefined ? Bun.mmap(path, { shared }) : Bun.mmap(path, { shared, offset, size });
}

/**
 * Positioned reads into `out` from file offset `position`, `chunk` bytes a call, until `out` is
 * full or the file ends. Returns the bytes read; throws what `fs.readSync` throws.
 */
export function readAt(fd: number, out: Uint8Array, position: number, chunk = IO_CHUNK): number {
  let done = 0;
  while (done < out.length) {
    const k = fs.readSync(fd, out, done, Math.min(chunk, out.length - done), position + done);
    if (k === 0) break;
    done += k;
  }
  return done;
}

/**
 * Maps of one file: `WINDOW`-byte windows at multiples of `WINDOW`, mapped on demand (see the top
 * of this file), or with `windows: false` every range on its own.
 */
export class Mapper {
  private windows: (Uint8Array | undefined)[] = [];
  constructor(
    private readonly mapPath: string,
    private readonly fileSize: number,
    private readonly shared: boolean,
    private readonly errors: MapErrors,
    private readonly windowed = true,
  ) {}

  private map(offset: number, size: number): Uint8Array {
    let m: Uint8Array;
    try {
      m = mapFile(this.mapPath, offset, size, this.shared);
    } catch (e) {
      throw this.errors.map(offset, size, e);
    }
    if (m.length !== size) throw this.errors.mapShort(offset, size, m.length);
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
    if (!this.windowed) return this.map(offset, length);
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

export interface MappedSourceOptions {
  /** The file's size in bytes. */
  size: number;
  /** The file's path (maps go through `/proc/self/fd/N` of `fd` when there is one). */
  path: string;
  /** A descriptor the source owns and closes; -1 or absent: map `path`. */
  fd?: number;
  errors: MapErrors;
  /**
   * true (default): windows, and window 0 is mapped at once so that a caller can fall back to
   * reads before any range is asked for. false: every range mapped on its own, nothing up front.
   */
  windows?: boolean;
}

/** Zero-copy views over private (copy-on-write) maps of a file. */
export class MappedSource implements ByteSource {
  readonly access = "mmap" as const;
  readonly size: number;
  private readonly mapper: Mapper;
  private fd: number;
  constructor(opts: MappedSourceOptions) {
    this.size = opts.size;
    this.fd = opts.fd ?? -1;
    const windowed = opts.windows ?? true;
    this.mapper = new Mapper(this.fd >= 0 ? fdPath(this.fd, opts.path) : opts.path, opts.size, false, opts.errors, windowed);
    // Probe now so that "auto" can fall back before any tensor is asked for.
    if (windowed && opts.size > 0) this.mapper.window(0);
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

/** Copies made with positioned reads of a descriptor the source owns (for files that cannot be mapped). */
export class ReadSource implements ByteSource {
  readonly access = "read" as const;
  constructor(private fd: number, readonly size: number, private readonly errors: ReadErrors) {}
  view(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let done: number;
    try {
      done = readAt(this.fd, out, offset);
    } catch (e) {
      throw this.errors.read(offset, length, e);
    }
    if (done < length) throw this.errors.readShort(offset + done);
    return out;
  }
  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

/** Subarrays of a buffer already in memory. */
export class MemorySource implements ByteSource {
  readonly access = "memory" as const;
  constructor(private readonly buf: Uint8Array) {}
  get size(): number {
    return this.buf.length;
  }
  view(offset: number, length: number): Uint8Array {
    return this.buf.subarray(offset, offset + length);
  }
  close(): void {}
}
