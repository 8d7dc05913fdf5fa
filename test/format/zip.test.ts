// ZIP reader: the real torch fixture, then one hand-built malformed archive per error code.
//
// Archives are built by `buildZip` below: stored or deflated members with real CRC-32s
// (Bun.hash.crc32), optional torch-style data descriptors and ZIP64 records. The reader checks
// CRC-32 only for deflated members (see zip.ts), so stored-member tests do not depend on it.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { deflateRawSync } from "node:zlib";
import { TrtbError } from "../../src/errors.ts";
import { ZipArchive } from "../../src/format/zip.ts";
import { expectCode } from "../helpers.ts";

const SHARED = path.resolve(import.meta.dir, "../../../shared");
const FIXTURE = path.join(SHARED, "fixtures/hf-tiny/llama-meta-mp2/consolidated.00.pth");
const tmp = mkdtempSync(path.join(tmpdir(), "trtb-zip-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// ---- a small ZIP writer -----------------------------------------------------------------------

interface Member {
  name: string;
  data: Uint8Array;
  /** 0 stored (default) or 8 deflate; other values are written as-is with the raw data. */
  method?: number;
  flags?: number;
  /** Override the CRC written to the headers. */
  crc?: number;
  /** Override the uncompressed size written to the headers. */
  size?: number;
}
interface ZipOpts {
  /** Write ZIP64 end records (as torch does). */
  zip64?: boolean;
  /** Put sizes/offsets in ZIP64 extra fields (0xFFFFFFFF in the 32-bit slots). */
  zip64Extra?: boolean;
  /** torch style: flag bit 3, zero sizes in local headers. */
  descriptor?: boolean;
}

function buildZip(members: Member[], o: ZipOpts = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let off = 0;
  const enc = new TextEncoder();
  for (const m of members) {
    const name = enc.encode(m.name);
    const method = m.method ?? 0;
    const payload = method === 8 ? new Uint8Array(deflateRawSync(m.data)) : m.data;
    const crc = m.crc ?? Bun.hash.crc32(m.data);
    const usize = m.size ?? m.data.length;
    const flags = (m.flags ?? 0) | (o.descriptor ? 0x8 : 0);
    const lh = new DataView(new ArrayBuffer(30));
    lh.setUint32(0, 0x04034b50, true);
    lh.setUint16(4, 20, true);
    lh.setUint16(6, flags, true);
    lh.setUint16(8, method, true);
    lh.setUint32(14, o.descriptor ? 0 : crc, true);
    lh.setUint32(18, o.descriptor ? 0 : payload.length, true);
    lh.setUint32(22, o.descriptor ? 0 : usize, true);
    lh.setUint16(26, name.length, true);
    const local = off;
    parts.push(new Uint8Array(lh.buffer), name, payload);
    off += 30 + name.length + payload.length;

    const extra = o.zip64Extra ? new DataView(new ArrayBuffer(4 + 24)) : null;
    if (extra) {
      extra.setUint16(0, 1, true);
      extra.setUint16(2, 24, true);
      extra.setBigUint64(4, BigInt(usize), true);
      extra.setBigUint64(12, BigInt(payload.length), true);
      extra.setBigUint64(20, BigInt(local), true);
    }
    const ch = new DataView(new ArrayBuffer(46));
    ch.setUint32(0, 0x02014b50, true);
    ch.setUint16(4, 20, true);
    ch.setUint16(6, 20, true);
    ch.setUint16(8, flags, true);
    ch.setUint16(10, method, true);
    ch.setUint32(16, crc, true);
    ch.setUint32(20, extra ? 0xffffffff : payload.length, true);
    ch.setUint32(24, extra ? 0xffffffff : usize, true);
    ch.setUint16(28, name.length, true);
    ch.setUint16(30, extra ? extra.byteLength : 0, true);
    ch.setUint32(42, extra ? 0xffffffff : local, true);
    central.push(new Uint8Array(ch.buffer), name);
    if (extra) central.push(new Uint8Array(extra.buffer));
  }
  const cdOff = off;
  const cdSize = central.reduce((a, b) => a + b.length, 0);
  parts.push(...central);
  off += cdSize;
  if (o.zip64) {
    const z = new DataView(new ArrayBuffer(56 + 20));
    z.setUint32(0, 0x06064b50, true);
    z.setBigUint64(4, 44n, true);
    z.setBigUint64(24, BigInt(members.length), true);
    z.setBigUint64(32, BigInt(members.length), true);
    z.setBigUint64(40, BigInt(cdSize), true);
    z.setBigUint64(48, BigInt(cdOff), true);
    z.setUint32(56, 0x07064b50, true);
    z.setBigUint64(64, BigInt(off), true);
    z.setUint32(72, 1, true);
    parts.push(new Uint8Array(z.buffer));
  }
  const e = new DataView(new ArrayBuffer(22));
  e.setUint32(0, 0x06054b50, true);
  e.setUint16(8, o.zip64 ? 0xffff : members.length, true);
  e.setUint16(10, o.zip64 ? 0xffff : members.length, true);
  e.setUint32(12, o.zip64 ? 0xffffffff : cdSize, true);
  e.setUint32(16, o.zip64 ? 0xffffffff : cdOff, true);
  parts.push(new Uint8Array(e.buffer));
  return concat(parts);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, b) => a + b.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const text = (s: string) => new TextEncoder().encode(s);

/** Run `f`, require a TrtbError with `code`, return it. */
function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof TrtbError) return e.code;
    throw e;
  }
  return "OK";
}

function writeTmp(name: string, bytes: Uint8Array): string {
  const p = path.join(tmp, name);
  writeFileSync(p, bytes);
  return p;
}

// ---- the real torch archive -------------------------------------------------------------------

describe("torch fixture", () => {
  test("lists members, reads ZIP64 end records and torch's data-descriptor local headers", () => {
    const z = ZipArchive.open(FIXTURE);
    expect(z.entries.length).toBe(27);
    expect(z.names()).toContain("consolidated.00/data.pkl");
    expect(z.names()).toContain("consolidated.00/data/20");
    expect(new TextDecoder().decode(z.read("consolidated.00/byteorder"))).toBe("little");
    const pkl = z.read("consolidated.00/data.pkl");
    expect(pkl.length).toBe(1940);
    expect([pkl[0], pkl[1], pkl[pkl.length - 1]]).toEqual([0x80, 0x02, 0x2e]);
    // torch aligns storage data to 64 bytes with local "extra" padding.
    expect(z.dataRange("consolidated.00/data/0").offset % 64).toBe(0);
    z.close();
  });

  test("window mode (wholeMapLimit 0) returns the same bytes as one whole mapping", () => {
    const whole = ZipArchive.open(FIXTURE);
    const win = ZipArchive.open(FIXTURE, { wholeMapLimit: 0 });
    for (const n of whole.names()) expect(win.read(n)).toEqual(whole.read(n));
    expect(win.readRange("consolidated.00/data/0", 100, 50)).toEqual(whole.read("consolidated.00/data/0").subarray(100, 150));
  });

  test("stored members are zero-copy views of one mapping", () => {
    const z = ZipArchive.open(FIXTURE);
    const a = z.read("consolidated.00/data/0");
    const b = z.readRange("consolidated.00/data/3", 0, 16);
    expect(a.buffer).toBe(b.buffer);
    expect(a.buffer.byteLength).toBe(z.fileSize);
  });

  test("truncating the file anywhere is reported as truncation", () => {
    const bytes = new Uint8Array(Bun.mmap(FIXTURE));
    for (const cut of [1, 3, 4, 30, 1000, bytes.length >> 1, bytes.length - 200, bytes.length - 60, bytes.length - 23, bytes.length - 1]) {
      expectCode(() => ZipArchive.fromBytes(bytes.subarray(0, cut), `cut@${cut}`), "ZIP_TRUNCATED", /truncated/);
    }
    const p = writeTmp("cut.pth", bytes.subarray(0, 5000));
    expectCode(() => ZipArchive.open(p), "ZIP_TRUNCATED", new RegExp(p));
  });
});

// ---- built archives ---------------------------------------------------------------------------

describe("valid archives", () => {
  const members: Member[] = [
    { name: "a/one", data: text("hello") },
    { name: "a/empty", data: new Uint8Array(0) },
    { name: "a/zipped", data: text("x".repeat(5000)), method: 8 },
  ];

  for (const [label, opts] of [
    ["plain", {}],
    ["zip64", { zip64: true }],
    ["zip64 extra fields", { zip64: true, zip64Extra: true }],
    ["data descriptors", { descriptor: true, zip64: true }],
  ] as [string, ZipOpts][]) {
    test(`reads stored, empty and deflated members (${label})`, () => {
      const bytes = buildZip(members, opts);
      for (const z of [ZipArchive.fromBytes(bytes), ZipArchive.open(writeTmp(`ok-${label}.zip`, bytes), { wholeMapLimit: 0 })]) {
        expect(z.names()).toEqual(["a/one", "a/empty", "a/zipped"]);
        expect(new TextDecoder().decode(z.read("a/one"))).toBe("hello");
        expect(z.read("a/empty").length).toBe(0);
        expect(z.read("a/zipped")).toEqual(text("x".repeat(5000)));
        expect(z.readRange("a/zipped", 10, 3)).toEqual(text("xxx"));
        expect(z.entry("a/zipped").method).toBe(8);
      }
    });
  }

  test("stored reads from memory share the caller's buffer", () => {
    const bytes = buildZip(members);
    expect(ZipArchive.fromBytes(bytes).read("a/one").buffer).toBe(bytes.buffer);
  });

  test("missing member → ZIP_MISSING_ENTRY naming it", () => {
    const z = ZipArchive.fromBytes(buildZip(members), "t.zip");
    expect(z.has("nope")).toBe(false);
    expectCode(() => z.read("nope"), "ZIP_MISSING_ENTRY", /t\.zip.*"nope"/);
  });

  test("out-of-range readRange → ZIP_TRUNCATED", () => {
    const z = ZipArchive.fromBytes(buildZip(members));
    expectCode(() => z.readRange("a/one", 3, 3), "ZIP_TRUNCATED");
    expectCode(() => z.readRange("a/one", -1, 1), "ZIP_TRUNCATED");
  });

  test("closed archive → ZIP_CLOSED", () => {
    const z = ZipArchive.fromBytes(buildZip(members));
    z.close();
    expectCode(() => z.read("a/one"), "ZIP_CLOSED");
  });
});

describe("rejects", () => {
  const one = (extra: Partial<Member> = {}, o: ZipOpts = {}) => buildZip([{ name: "m", data: text("payload"), ...extra }], o);
  /** Patch bytes at `at`. */
  const patch = (b: Uint8Array, at: number, vals: number[]) => {
    const c = b.slice();
    c.set(vals, at);
    return c;
  };
  const cdStart = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset).getUint32(b.length - 6, true);

  test("garbage and empty input → ZIP_NO_EOCD", () => {
    expectCode(() => ZipArchive.fromBytes(new Uint8Array(0)), "ZIP_NO_EOCD", /not a ZIP/);
    expectCode(() => ZipArchive.fromBytes(text("definitely not a zip file, just some text here")), "ZIP_NO_EOCD");
    const rnd = new Uint8Array(100_000);
    for (let i = 0; i < rnd.length; i++) rnd[i] = (i * 2654435761) >>> 24;
    expectCode(() => ZipArchive.fromBytes(rnd), "ZIP_NO_EOCD");
  });

  test("missing or unreadable file → ZIP_OPEN", () => {
    expectCode(() => ZipArchive.open(path.join(tmp, "does-not-exist.zip")), "ZIP_OPEN", /does-not-exist/);
    expectCode(() => ZipArchive.open(tmp), "ZIP_OPEN");
    expectCode(() => ZipArchive.open(writeTmp("empty.zip", new Uint8Array(0))), "ZIP_NO_EOCD");
  });

  test("trailing bytes after the end record → ZIP_BAD_HEADER", () => {
    expectCode(() => ZipArchive.fromBytes(concat([one(), text("junk")])), "ZIP_BAD_HEADER", /trailing/);
  });

  test("central directory outside the file → ZIP_TRUNCATED / ZIP_BAD_HEADER", () => {
    const b = one();
    const e = b.length - 22;
    expectCode(() => ZipArchive.fromBytes(patch(b, e + 16, [0xff, 0xff, 0xff, 0x00])), "ZIP_TRUNCATED", /central directory/);
    expectCode(() => ZipArchive.fromBytes(patch(b, e + 12, [0x01, 0x00, 0x00, 0x00])), "ZIP_BAD_HEADER");
    expectCode(() => ZipArchive.fromBytes(patch(b, e + 10, [0x09, 0x00])), "ZIP_UNSUPPORTED"); // count ≠ count on disk
    expectCode(() => ZipArchive.fromBytes(patch(b, e + 8, [0x09, 0x00, 0x09, 0x00])), "ZIP_BAD_HEADER", /cannot fit/);
  });

  test("bad ZIP64 records → ZIP_BAD_HEADER", () => {
    const b = one({}, { zip64: true });
    const loc = b.length - 22 - 20;
    expectCode(() => ZipArchive.fromBytes(patch(b, loc + 8, [0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00])), "ZIP_BAD_HEADER", /ZIP64/);
    const z64 = loc - 56;
    expectCode(() => ZipArchive.fromBytes(patch(b, z64, [0, 0, 0, 0])), "ZIP_BAD_HEADER", /ZIP64/);
    expectCode(() => ZipArchive.fromBytes(patch(b, z64 + 48, [0xf0, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00])), "ZIP_TRUNCATED");
  });

  test("malformed central entries → ZIP_BAD_HEADER", () => {
    const b = one();
    const cd = cdStart(b);
    expectCode(() => ZipArchive.fromBytes(patch(b, cd, [0, 0, 0, 0])), "ZIP_BAD_HEADER", /signature/);
    expectCode(() => ZipArchive.fromBytes(patch(b, cd + 28, [0xff, 0x00])), "ZIP_BAD_HEADER", /past the end/);
    expectCode(() => ZipArchive.fromBytes(patch(b, cd + 42, [0x00, 0x00, 0x01, 0x00])), "ZIP_BAD_HEADER", /local header offset/);
    expectCode(() => ZipArchive.fromBytes(patch(b, cd + 20, [0x00, 0x10, 0x00, 0x00])), "ZIP_BAD_HEADER", /cannot fit/);
    // 0xFFFFFFFF size without a ZIP64 extra field
    expectCode(() => ZipArchive.fromBytes(patch(b, cd + 24, [0xff, 0xff, 0xff, 0xff])), "ZIP_BAD_HEADER", /ZIP64 extra/);
    expectCode(() => ZipArchive.fromBytes(buildZip([{ name: "d", data: text("1") }, { name: "d", data: text("2") }])), "ZIP_BAD_HEADER", /duplicate/);
  });

  test("inconsistent local headers → ZIP_BAD_HEADER on read", () => {
    const b = one();
    expectCode(() => ZipArchive.fromBytes(patch(b, 0, [0, 0, 0, 0])).read("m"), "ZIP_BAD_HEADER", /local file header/);
    expectCode(() => ZipArchive.fromBytes(patch(b, 30, [0x6e])).read("m"), "ZIP_BAD_HEADER", /names "n"/);
    expectCode(() => ZipArchive.fromBytes(patch(b, 8, [8, 0])).read("m"), "ZIP_BAD_HEADER", /method/);
    expectCode(() => ZipArchive.fromBytes(patch(b, 18, [9, 0, 0, 0])).read("m"), "ZIP_BAD_HEADER", /compressed size/);
    expectCode(() => ZipArchive.fromBytes(patch(b, 28, [0x40, 0x00])).read("m"), "ZIP_BAD_HEADER", /central directory/);
    // stored with csize ≠ usize
    expectCode(() => ZipArchive.fromBytes(one({ size: 3 })).read("m"), "ZIP_BAD_HEADER", /stored/);
  });

  test("encryption and unknown methods → ZIP_UNSUPPORTED", () => {
    expectCode(() => ZipArchive.fromBytes(one({ flags: 1 })).read("m"), "ZIP_UNSUPPORTED", /encrypted/);
    expectCode(() => ZipArchive.fromBytes(one({ method: 12 })).read("m"), "ZIP_UNSUPPORTED", /method 12/);
    expectCode(() => ZipArchive.fromBytes(one({ method: 99 })).read("m"), "ZIP_UNSUPPORTED");
    expectCode(() => ZipArchive.fromBytes(one({ method: 8, size: 1 << 30 })).read("m"), "ZIP_UNSUPPORTED", /refused/);
  });

  test("corrupt deflate data → ZIP_BAD_DATA (CRC, bomb, garbage)", () => {
    expectCode(() => ZipArchive.fromBytes(one({ method: 8, crc: 1234 })).read("m"), "ZIP_BAD_DATA", /CRC/);
    // A member that inflates past its declared size stops at the cap instead of filling memory.
    const bomb = buildZip([{ name: "m", data: new Uint8Array(10_000_000), method: 8, size: 100 }]);
    expectCode(() => ZipArchive.fromBytes(bomb).read("m"), "ZIP_BAD_DATA", /declared 100/);
    expectCode(() => ZipArchive.fromBytes(one({ method: 8, size: 100 })).read("m"), "ZIP_BAD_DATA");
    const garbage = buildZip([{ name: "m", data: text("payload") }]);
    const g = garbage.slice();
    g[8] = 8; // local method
    g[cdStart(g) + 10] = 8; // central method
    g.set([0xff, 0xff, 0xff], 30 + 1); // not a deflate stream
    expectCode(() => ZipArchive.fromBytes(g).read("m"), "ZIP_BAD_DATA");
  });

  test("random corruption of a valid archive only ever throws TrtbError", () => {
    const base = buildZip(
      [
        { name: "x/data.pkl", data: text("p".repeat(300)) },
        { name: "x/z", data: text("q".repeat(300)), method: 8 },
      ],
      { zip64: true, descriptor: true },
    );
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / (1 << 24);
    const codes = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      const b = base.slice();
      const k = 1 + Math.floor(rnd() * 4);
      for (let j = 0; j < k; j++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      const c = codeOf(() => {
        const z = ZipArchive.fromBytes(b);
        for (const n of z.names()) z.read(n);
      });
      codes.add(c);
    }
    expect(codes.has("OK")).toBe(true);
    for (const c of codes) expect(c === "OK" || c.startsWith("ZIP_")).toBe(true);
  });
});
