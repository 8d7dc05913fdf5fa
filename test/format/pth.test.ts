// torch.save checkpoints and Meta folders: the real mp2 fixture, then hand-built archives
// (pickles assembled byte by byte the way torch writes them, zipped by a small stored-only writer;
// the reader does not check CRC-32 of stored members, so the writer leaves it 0).
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { TrtbError } from "../../src/errors.ts";
import {
  listMetaShards,
  openMetaShard,
  openTorchCheckpoint,
  openTorchCheckpointBytes,
  readMetaParams,
  type TorchCheckpoint,
} from "../../src/format/pth.ts";
import { ZipArchive } from "../../src/format/zip.ts";
import { expectCode } from "../helpers.ts";

const SHARED = path.resolve(import.meta.dir, "../../../shared");
const META_DIR = path.join(SHARED, "fixtures/hf-tiny/llama-meta-mp2");
const SHARD = (i: number) => path.join(META_DIR, `consolidated.0${i}.pth`);
const tmp = mkdtempSync(path.join(tmpdir(), "trtb-pth-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));


// ---- the real Meta fixture --------------------------------------------------------------------

describe("llama-meta-mp2 fixture", () => {
  const params = readMetaParams(META_DIR);
  const shards = listMetaShards(META_DIR);
  const cks = shards.map((s) => openTorchCheckpoint(s));
  const mp = shards.length;

  test("params.json", () => {
    expect(params).toMatchObject({ dim: 128, n_layers: 2, n_heads: 2, n_kv_heads: 2, vocab_size: 256, norm_eps: 1e-5, rope_theta: 10000, multiple_of: 128 });
    expect("ffn_dim_multiplier" in params).toBe(false); // null in the file reads as absent
  });

  test("shards are found in order", () => {
    expect(shards).toEqual([SHARD(0), SHARD(1)]);
  });

  test("every shard has every key with the shape the mp2 split rules give", () => {
    const dim = params.dim;
    const hd = dim / params.n_heads;
    const nkv = params.n_kv_heads ?? params.n_heads;
    const m = params.multiple_of!;
    const ffn = m * Math.ceil(Math.floor((8 * dim) / 3) / m); // 384
    expect(ffn).toBe(384);
    const V = params.vocab_size!;
    const expected: Record<string, number[]> = {
      "tok_embeddings.weight": [V, dim / mp], // split on dim 1
      "norm.weight": [dim],
      "output.weight": [V / mp, dim], // split on dim 0
    };
    for (let l = 0; l < params.n_layers; l++) {
      const p = `layers.${l}.`;
      expected[`${p}attention.wq.weight`] = [(params.n_heads * hd) / mp, dim];
      expected[`${p}attention.wk.weight`] = [(nkv * hd) / mp, dim];
      expected[`${p}attention.wv.weight`] = [(nkv * hd) / mp, dim];
      expected[`${p}attention.wo.weight`] = [dim, (params.n_heads * hd) / mp];
      expected[`${p}feed_forward.w1.weight`] = [ffn / mp, dim];
      expected[`${p}feed_forward.w2.weight`] = [dim, ffn / mp];
      expected[`${p}feed_forward.w3.weight`] = [ffn / mp, dim];
      expected[`${p}attention_norm.weight`] = [dim];
      expected[`${p}ffn_norm.weight`] = [dim];
    }
    for (const ck of cks) {
      expect(new Set(ck.names())).toEqual(new Set(Object.keys(expected)));
      for (const [name, shape] of Object.entries(expected)) {
        const t = ck.get(name);
        expect(t.name).toBe(name);
        expect(t.dtype).toBe("BF16");
        expect([name, ...t.shape]).toEqual([name, ...shape]);
        expect(t.bytes().length).toBe(shape.reduce((a, b) => a * b, 2));
      }
    }
  });

  test("norms are replicated byte for byte; split weights differ", () => {
    for (const name of cks[0]!.names()) {
      const same = Bun.deepEquals(cks[0]!.get(name).bytes(), cks[1]!.get(name).bytes());
      expect([name, same]).toEqual([name, name.includes("norm")]);
    }
  });

  test("values look like the fixture's weights (bf16 ones for norms, small random otherwise)", () => {
    const f32 = (b: Uint8Array) => {
      const out = new Float32Array(b.length / 2);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < out.length; i++) u[i] = (b[2 * i]! | (b[2 * i + 1]! << 8)) << 16;
      return out;
    };
    for (const ck of cks) {
      for (const name of ck.names()) {
        const x = f32(ck.get(name).bytes());
        if (name.includes("norm")) {
          expect(x.every((v) => v === 1)).toBe(true);
          continue;
        }
        let s = 0;
        let s2 = 0;
        for (const v of x) {
          s += v;
          s2 += v * v;
        }
        expect(x.every(Number.isFinite)).toBe(true);
        const mean = s / x.length;
        const sd = Math.sqrt(s2 / x.length - mean * mean);
        expect(Math.abs(mean)).toBeLessThan(0.01);
        expect(sd).toBeGreaterThan(0.01);
        expect(sd).toBeLessThan(0.2);
      }
    }
  });

  test("contiguous tensors are zero-copy views of the mapped file", () => {
    const ck = cks[0]!;
    const a = ck.get("layers.0.attention.wq.weight").bytes();
    const b = ck.get("norm.weight").bytes();
    expect(a.buffer).toBe(b.buffer);
    const z = ZipArchive.open(SHARD(0));
    const info = ck.info("layers.0.attention.wq.weight");
    expect(info.contiguous).toBe(true);
    expect(a.byteOffset).toBe(z.dataRange(`consolidated.00/data/${info.storageKey}`).offset);
  });

  test("window mapping gives the same bytes", () => {
    const win = openTorchCheckpoint(SHARD(1), { wholeMapLimit: 0 });
    for (const n of win.names()) expect(win.get(n).bytes()).toEqual(cks[1]!.get(n).bytes());
    win.close();
  });

  test("openMetaShard opens a file shard", () => {
    const s = openMetaShard(SHARD(0));
    expect(s.names()).toEqual(cks[0]!.names());
    s.close();
  });

  test("missing tensor and closed source", () => {
    const ck = openTorchCheckpoint(SHARD(0));
    expectCode(() => ck.get("layers.9.attention.wq.weight"), "PTH_MISSING_TENSOR", /consolidated\.00\.pth.*layers\.9/);
    ck.close();
    expectCode(() => ck.names(), "PTH_CLOSED");
  });

  test("truncated shard → ZIP_TRUNCATED", () => {
    const bytes = new Uint8Array(Bun.mmap(SHARD(0)));
    for (const cut of [100, 2000, 250_000, bytes.length - 500, bytes.length - 1]) {
      expectCode(() => openTorchCheckpointBytes(bytes.subarray(0, cut), "cut.pth"), "ZIP_TRUNCATED", /cut\.pth/);
    }
  });
});

// ---- building torch checkpoints ---------------------------------------------------------------

type Part = number | string | Uint8Array | Part[];
function pk(...parts: Part[]): Uint8Array {
  const out: number[] = [];
  const add = (p: Part): void => {
    if (typeof p === "number") out.push(p);
    else if (typeof p === "string") for (let i = 0; i < p.length; i++) out.push(p.charCodeAt(i) & 0xff);
    else if (p instanceof Uint8Array) out.push(...p);
    else p.forEach(add);
  };
  parts.forEach(add);
  return new Uint8Array(out);
}
const u32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
const str = (s: string): Part => {
  const b = new TextEncoder().encode(s);
  return ["X", u32(b.length), b];
};
const int = (v: number): Part => ["J", u32(v)];
const tup = (xs: number[]): Part => ["(", xs.map(int), "t"];
const GLOBAL = (m: string, n: string): Part => ["c", `${m}\n${n}\n`];

interface TSpec {
  name: string;
  key: string;
  numel: number;
  shape: number[];
  stride?: number[];
  offset?: number;
  storage?: string;
  /** Use _rebuild_tensor_v3 over an UntypedStorage with this torch dtype. */
  v3?: string;
  /** Wrap in _rebuild_parameter. */
  param?: boolean;
}

function rowMajor(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** Pickle ops that push one tensor, as torch writes it. */
function tensorOps(t: TSpec): Part {
  const storageType = t.v3 ? "UntypedStorage" : (t.storage ?? "FloatStorage");
  const persid: Part = ["(", str("storage"), GLOBAL("torch", storageType), str(t.key), str("cpu"), int(t.numel), "t", "Q"];
  const common: Part = [persid, int(t.offset ?? 0), tup(t.shape), tup(t.stride ?? rowMajor(t.shape)), 0x89, GLOBAL("collections", "OrderedDict"), ")", "R"];
  const tensor: Part = t.v3
    ? [GLOBAL("torch._utils", "_rebuild_tensor_v3"), "(", common, GLOBAL("torch", t.v3), "t", "R"]
    : [GLOBAL("torch._utils", "_rebuild_tensor_v2"), "(", common, "t", "R"];
  return t.param ? [GLOBAL("torch._utils", "_rebuild_parameter"), "(", tensor, 0x89, GLOBAL("collections", "OrderedDict"), ")", "R", "t", "R"] : tensor;
}

/** Ops that push a dict of tensors (an OrderedDict with `_metadata` BUILD state, like torch). */
function stateDictOps(ts: TSpec[], ordered = false): Part {
  const items: Part = ["(", ts.map((t) => [str(t.name), tensorOps(t)]), "u"];
  if (!ordered) return ["}", items];
  return [GLOBAL("collections", "OrderedDict"), ")", "R", items, "}", "(", str("_metadata"), "}", "u", "b"];
}

const torchPickle = (body: Part) => pk(0x80, 2, body, ".");

/** A stored-only ZIP (no CRC, no ZIP64). */
function zip(entries: [string, Uint8Array][]): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let off = 0;
  for (const [n, data] of entries) {
    const name = new TextEncoder().encode(n);
    const h = new DataView(new ArrayBuffer(30));
    h.setUint32(0, 0x04034b50, true);
    h.setUint32(18, data.length, true);
    h.setUint32(22, data.length, true);
    h.setUint16(26, name.length, true);
    const c = new DataView(new ArrayBuffer(46));
    c.setUint32(0, 0x02014b50, true);
    c.setUint32(20, data.length, true);
    c.setUint32(24, data.length, true);
    c.setUint16(28, name.length, true);
    c.setUint32(42, off, true);
    parts.push(new Uint8Array(h.buffer), name, data);
    central.push(new Uint8Array(c.buffer), name);
    off += 30 + name.length + data.length;
  }
  const cdSize = central.reduce((a, b) => a + b.length, 0);
  const e = new DataView(new ArrayBuffer(22));
  e.setUint32(0, 0x06054b50, true);
  e.setUint16(8, entries.length, true);
  e.setUint16(10, entries.length, true);
  e.setUint32(12, cdSize, true);
  e.setUint32(16, off, true);
  return pk(parts, central, new Uint8Array(e.buffer));
}

/** A torch checkpoint: data.pkl from `body`, storages from `storages`, optional extra members. */
function checkpoint(body: Part, storages: Record<string, Uint8Array>, extra: [string, Uint8Array][] = []): Uint8Array {
  return zip([
    ["archive/data.pkl", torchPickle(body)],
    ["archive/byteorder", new TextEncoder().encode("little")],
    ...Object.entries(storages).map(([k, v]): [string, Uint8Array] => [`archive/data/${k}`, v]),
    ...extra,
  ]);
}

const f32bytes = (xs: number[]) => new Uint8Array(Float32Array.from(xs).buffer);
const asF32 = (b: Uint8Array) => Array.from(new Float32Array(b.slice().buffer));
const seq = (n: number) => Array.from({ length: n }, (_, i) => i);

function open(body: Part, storages: Record<string, Uint8Array>, extra: [string, Uint8Array][] = [], label = "t.pth"): TorchCheckpoint {
  return openTorchCheckpointBytes(checkpoint(body, storages, extra), label);
}

describe("built checkpoints", () => {
  test("contiguous f32, an offset view and a shared storage", () => {
    const ck = open(
      stateDictOps([
        { name: "a", key: "0", numel: 12, shape: [3, 4] },
        { name: "tail", key: "0", numel: 12, shape: [2, 2], offset: 8 },
        { name: "s", key: "1", numel: 1, shape: [] },
      ]),
      { "0": f32bytes(seq(12)), "1": f32bytes([7]) },
    );
    expect(ck.names()).toEqual(["a", "tail", "s"]);
    expect(asF32(ck.get("a").bytes())).toEqual(seq(12));
    expect(asF32(ck.get("tail").bytes())).toEqual([8, 9, 10, 11]);
    expect(ck.get("s").shape).toEqual([]);
    expect(asF32(ck.get("s").bytes())).toEqual([7]);
  });

  test("non-contiguous views are copied into row-major order", () => {
    const ck = open(
      stateDictOps([
        { name: "t", key: "0", numel: 6, shape: [3, 2], stride: [1, 3] }, // transpose of [[0,1,2],[3,4,5]]
        { name: "p", key: "1", numel: 24, shape: [4, 2, 3], stride: [1, 12, 4] }, // permute(2,0,1) of [2,3,4]
        { name: "col", key: "0", numel: 6, shape: [2], stride: [3], offset: 1 },
        { name: "bcast", key: "2", numel: 1, shape: [2, 3], stride: [0, 0] },
      ]),
      { "0": f32bytes(seq(6)), "1": f32bytes(seq(24)), "2": f32bytes([5]) },
    );
    expect(asF32(ck.get("t").bytes())).toEqual([0, 3, 1, 4, 2, 5]);
    expect(ck.info("t").contiguous).toBe(false);
    const p: number[] = [];
    for (let k = 0; k < 4; k++) for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) p.push(i * 12 + j * 4 + k);
    expect(asF32(ck.get("p").bytes())).toEqual(p);
    expect(asF32(ck.get("col").bytes())).toEqual([1, 4]);
    expect(asF32(ck.get("bcast").bytes())).toEqual([5, 5, 5, 5, 5, 5]);
  });

  test("dtypes from storage classes, float8 through _rebuild_tensor_v3, parameters", () => {
    const ck = open(
      stateDictOps([
        { name: "h", key: "0", numel: 2, shape: [2], storage: "HalfStorage" },
        { name: "bf", key: "0", numel: 2, shape: [2], storage: "BFloat16Storage" },
        { name: "l", key: "1", numel: 1, shape: [1], storage: "LongStorage" },
        { name: "b", key: "2", numel: 3, shape: [3], storage: "BoolStorage" },
        { name: "f8", key: "2", numel: 3, shape: [3], v3: "float8_e4m3fn" },
        { name: "u16", key: "0", numel: 4, shape: [2], v3: "uint16" },
        { name: "w", key: "1", numel: 2, shape: [2], storage: "IntStorage", param: true },
      ]),
      { "0": new Uint8Array(4), "1": new Uint8Array(8), "2": new Uint8Array([1, 0, 1]) },
    );
    const dt = Object.fromEntries(ck.names().map((n) => [n, ck.get(n).dtype]));
    expect(dt).toEqual({ h: "F16", bf: "BF16", l: "I64", b: "BOOL", f8: "F8_E4M3", u16: "U16", w: "I32" });
    expect(ck.get("f8").bytes()).toEqual(new Uint8Array([1, 0, 1]));
  });

  test("an OrderedDict state dict with torch's _metadata BUILD", () => {
    const ck = open(stateDictOps([{ name: "x", key: "0", numel: 2, shape: [2] }], true), { "0": f32bytes([1, 2]) });
    expect(asF32(ck.get("x").bytes())).toEqual([1, 2]);
  });

  test("a state dict nested under 'model' next to non-tensor values", () => {
    const body: Part = ["}", "(", str("epoch"), int(3), str("model"), stateDictOps([{ name: "x", key: "0", numel: 1, shape: [1] }]), "u"];
    expect(open(body, { "0": f32bytes([4]) }).names()).toEqual(["x"]);
  });

  test("empty tensors need no storage bytes", () => {
    const ck = open(stateDictOps([{ name: "e", key: "0", numel: 0, shape: [0, 4] }]), { "0": new Uint8Array(0) });
    expect(ck.get("e").bytes().length).toBe(0);
  });
});

describe("rejects", () => {
  const one = (t: Partial<TSpec> = {}): Part => stateDictOps([{ name: "w", key: "0", numel: 4, shape: [4], ...t }]);

  test("storage numel larger than its zip member → PTH_STORAGE_TOO_SMALL", () => {
    const e = expectCode(() => open(one({ numel: 1000, shape: [4] }), { "0": f32bytes([1, 2, 3, 4]) }, [], "big.pth"), "PTH_STORAGE_TOO_SMALL", /big\.pth: tensor "w".*1000.*"archive\/data\/0" holds 16 bytes/);
    expect(e.details).toMatchObject({ file: "big.pth", tensor: "w" });
  });

  test("tensor reaching past its storage → PTH_STORAGE_TOO_SMALL", () => {
    expectCode(() => open(one({ offset: 2 }), { "0": f32bytes([1, 2, 3, 4]) }), "PTH_STORAGE_TOO_SMALL", /reaches byte 24/);
    expectCode(() => open(one({ shape: [2, 2], stride: [3, 1] }), { "0": f32bytes([1, 2, 3, 4]) }), "PTH_STORAGE_TOO_SMALL");
    expectCode(() => open(one({ shape: [1e6, 1e6], stride: [1, 1] }), { "0": f32bytes([1, 2, 3, 4]) }), "PTH_STORAGE_TOO_SMALL");
    expectCode(() => open(one({ shape: [0x7fffffff, 0x7fffffff], stride: [1, 1] }), { "0": f32bytes([1, 2, 3, 4]) }), "PTH_BAD_TENSOR", /too large/);
  });

  test("huge broadcast views → PTH_UNSUPPORTED", () => {
    expectCode(() => open(one({ shape: [100000, 100000], stride: [0, 0] }), { "0": f32bytes([1, 2, 3, 4]) }), "PTH_UNSUPPORTED", /broadcast/);
  });

  test("missing storage member → ZIP_MISSING_ENTRY naming the tensor", () => {
    expectCode(() => open(one(), {}), "ZIP_MISSING_ENTRY", /tensor "w" needs storage member "archive\/data\/0"/);
  });

  test("zip without data.pkl → ZIP_MISSING_ENTRY; two of them → PTH_BAD_ARCHIVE", () => {
    const z = zip([["archive/data/0", f32bytes([1])]]);
    expectCode(() => openTorchCheckpointBytes(z, "nopkl.pth"), "ZIP_MISSING_ENTRY", /nopkl\.pth: no <root>\/data\.pkl/);
    const two = zip([
      ["a/data.pkl", torchPickle(["}"])],
      ["b/data.pkl", torchPickle(["}"])],
    ]);
    expectCode(() => openTorchCheckpointBytes(two), "PTH_BAD_ARCHIVE");
  });

  test("big-endian → PTH_BYTEORDER", () => {
    const z = zip([
      ["archive/data.pkl", torchPickle(["}"])],
      ["archive/byteorder", new TextEncoder().encode("big")],
    ]);
    expectCode(() => openTorchCheckpointBytes(z), "PTH_BYTEORDER", /"big"/);
  });

  test("complex storage → PTH_UNSUPPORTED_DTYPE", () => {
    expectCode(() => open(one({ storage: "ComplexFloatStorage", numel: 2, shape: [2] }), { "0": new Uint8Array(16) }), "PTH_UNSUPPORTED_DTYPE", /"w".*ComplexFloatStorage/);
  });

  test("malformed persistent ids → PTH_BAD_PERSID", () => {
    const persid = (...items: Part[]): Part => ["}", "(", str("w"), GLOBAL("torch._utils", "_rebuild_tensor_v2"), "(", "(", items, "t", "Q", int(0), tup([1]), tup([1]), 0x89, "N", "t", "R", "u"];
    const cases: Part[] = [
      persid(str("storage"), str("FloatStorage"), str("0"), str("cpu"), int(1)), // type is a string
      persid(str("storage"), GLOBAL("torch", "FloatStorage"), str("../../etc/passwd"), str("cpu"), int(1)),
      persid(str("storage"), GLOBAL("torch", "FloatStorage"), str("0"), str("cpu")),
      persid(str("module"), GLOBAL("torch", "FloatStorage"), str("0"), str("cpu"), int(1)),
      persid(str("storage"), GLOBAL("torch", "FloatStorage"), str("0"), str("cpu"), "N"),
      persid(str("storage"), GLOBAL("torch", "float8_e4m3fn"), str("0"), str("cpu"), int(1)),
    ];
    for (const c of cases) expectCode(() => open(c, { "0": f32bytes([1]) }), "PTH_BAD_PERSID");
  });

  test("malformed rebuild arguments → PTH_BAD_TENSOR", () => {
    const rebuild = (...args: Part[]): Part => ["}", "(", str("w"), GLOBAL("torch._utils", "_rebuild_tensor_v2"), "(", args, "t", "R", "u"];
    const storage: Part = ["(", str("storage"), GLOBAL("torch", "FloatStorage"), str("0"), str("cpu"), int(4), "t", "Q"];
    const hooks: Part = [GLOBAL("collections", "OrderedDict"), ")", "R"];
    const cases: Part[] = [
      rebuild(str("nope"), int(0), tup([4]), tup([1]), 0x89, hooks),
      rebuild(storage, int(0), tup([4]), tup([1, 1]), 0x89, hooks),
      rebuild(storage, ["J", u32(0xffffffff)], tup([4]), tup([1]), 0x89, hooks), // -1
      rebuild(storage, int(0), str("4"), tup([1]), 0x89, hooks),
      rebuild(storage, int(0), tup([4]), tup([1]), 0x89),
    ];
    for (const c of cases) expectCode(() => open(c, { "0": f32bytes([1, 2, 3, 4]) }), "PTH_BAD_TENSOR");
  });

  test("not a state dict → PTH_NOT_STATE_DICT", () => {
    expectCode(() => open(["}", "(", str("epoch"), int(3), "u"], {}), "PTH_NOT_STATE_DICT", /"epoch" holds int/);
    expectCode(() => open(["]"], {}), "PTH_NOT_STATE_DICT", /list/);
    expectCode(() => open(["}", "(", int(1), tensorOps({ name: "", key: "0", numel: 1, shape: [1] }), "u"], { "0": f32bytes([1]) }), "PTH_NOT_STATE_DICT", /non-string key/);
  });

  test("a pickle that calls os.system → PICKLE_FORBIDDEN_GLOBAL naming the file", () => {
    const evil = zip([["archive/data.pkl", pk(0x80, 2, GLOBAL("os", "system"), str("touch /tmp/trtb-pwned"), 0x85, "R", ".")]]);
    const p = path.join(tmp, "evil.pth");
    writeFileSync(p, evil);
    expectCode(() => openTorchCheckpoint(p), "PICKLE_FORBIDDEN_GLOBAL", new RegExp(`${p}:archive/data\\.pkl @ 2: forbidden global "os\\.system"`));
  });

  test("a legacy (non-zip) torch file → PTH_LEGACY_FORMAT", () => {
    const legacy = pk(0x80, 2, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, ".", "more pickles…");
    expectCode(() => openTorchCheckpointBytes(legacy, "old.pth"), "PTH_LEGACY_FORMAT", /old\.pth: legacy/);
    const p = path.join(tmp, "old.pth");
    writeFileSync(p, legacy);
    expectCode(() => openTorchCheckpoint(p), "PTH_LEGACY_FORMAT");
  });

  test("garbage → ZIP_NO_EOCD; missing file → ZIP_OPEN", () => {
    expectCode(() => openTorchCheckpointBytes(new TextEncoder().encode("<html>404 not found</html>".repeat(10)), "x.pth"), "ZIP_NO_EOCD", /x\.pth: not a ZIP/);
    expectCode(() => openTorchCheckpoint(path.join(tmp, "missing.pth")), "ZIP_OPEN", /missing\.pth/);
  });
});

// ---- files past 4 GiB (sparse) ----------------------------------------------------------------

describe("a 4.5 GiB checkpoint (sparse file, ZIP64 offsets, window mapping)", () => {
  test("tensors beyond 4 GiB read through mapped windows", () => {
    const GiB = 1024 ** 3;
    const S0 = 4.5 * GiB; // storage 0: mostly a hole
    const aOffset = 4.25 * GiB; // tensor "a" lives 4.25 GiB into storage 0
    const pkl = torchPickle(
      stateDictOps([
        { name: "a", key: "0", numel: S0 / 4, shape: [4], offset: aOffset / 4 },
        { name: "b", key: "1", numel: 2, shape: [2] },
      ]),
    );
    const members: [string, number, Uint8Array | null][] = [
      ["archive/data.pkl", pkl.length, pkl],
      ["archive/data/0", S0, null],
      ["archive/data/1", 8, f32bytes([5, 6])],
    ];
    const file = path.join(tmp, "huge.pth");
    const fd = openSync(file, "w");
    const central: Uint8Array[] = [];
    let off = 0;
    for (const [n, size, data] of members) {
      const name = new TextEncoder().encode(n);
      const h = new DataView(new ArrayBuffer(30));
      h.setUint32(0, 0x04034b50, true);
      h.setUint16(6, 0x8, true); // sizes in a data descriptor, as torch writes
      h.setUint16(26, name.length, true);
      writeSync(fd, pk(new Uint8Array(h.buffer), name), 0, 30 + name.length, off);
      const dataAt = off + 30 + name.length;
      if (data) writeSync(fd, data, 0, data.length, dataAt);
      else writeSync(fd, f32bytes([1, 2, 3, 4]), 0, 16, dataAt + aOffset);
      const c = new DataView(new ArrayBuffer(46 + 28));
      c.setUint32(0, 0x02014b50, true);
      c.setUint16(8, 0x8, true);
      c.setUint32(20, 0xffffffff, true);
      c.setUint32(24, 0xffffffff, true);
      c.setUint16(28, name.length, true);
      c.setUint16(30, 28, true);
      c.setUint32(42, 0xffffffff, true);
      c.setUint16(46, 1, true);
      c.setUint16(48, 24, true);
      c.setBigUint64(50, BigInt(size), true);
      c.setBigUint64(58, BigInt(size), true);
      c.setBigUint64(66, BigInt(off), true);
      const cb = new Uint8Array(c.buffer);
      central.push(pk(cb.subarray(0, 46), name, cb.subarray(46)));
      off = dataAt + size;
    }
    const cd = pk(central);
    const end = new DataView(new ArrayBuffer(56 + 20 + 22));
    end.setUint32(0, 0x06064b50, true);
    end.setBigUint64(4, 44n, true);
    end.setBigUint64(24, 3n, true);
    end.setBigUint64(32, 3n, true);
    end.setBigUint64(40, BigInt(cd.length), true);
    end.setBigUint64(48, BigInt(off), true);
    end.setUint32(56, 0x07064b50, true);
    end.setBigUint64(64, BigInt(off + cd.length), true);
    end.setUint32(72, 1, true);
    end.setUint32(76, 0x06054b50, true);
    end.setUint16(84, 0xffff, true);
    end.setUint16(86, 0xffff, true);
    end.setUint32(88, 0xffffffff, true);
    end.setUint32(92, 0xffffffff, true);
    const tail = pk(cd, new Uint8Array(end.buffer));
    writeSync(fd, tail, 0, tail.length, off);
    closeSync(fd);
    try {
      const ck = openTorchCheckpoint(file); // > 1 GiB: windows, not one mapping
      expect(asF32(ck.get("a").bytes())).toEqual([1, 2, 3, 4]);
      expect(asF32(ck.get("b").bytes())).toEqual([5, 6]);
      expect(ck.get("a").bytes().buffer.byteLength).toBe(16); // only the tensor was mapped
      ck.close();
    } finally {
      rmSync(file, { force: true });
    }
  });
});

// ---- Meta folders -----------------------------------------------------------------------------

describe("meta folder", () => {
  let n = 0;
  const dir = (files: Record<string, string | Uint8Array> = {}, dirs: string[] = []) => {
    const d = path.join(tmp, `meta${n++}`);
    mkdirSync(d);
    for (const sub of dirs) mkdirSync(path.join(d, sub));
    for (const [f, v] of Object.entries(files)) writeFileSync(path.join(d, f), v);
    return d;
  };
  const tiny = (name: string, v: number) => checkpoint(stateDictOps([{ name, key: "0", numel: 1, shape: [1] }]), { "0": f32bytes([v]) });

  test("params.json: unknown keys pass through, nulls read as absent", () => {
    const p = readMetaParams(dir({ "params.json": JSON.stringify({ dim: 8, n_layers: 1, n_heads: 2, norm_eps: 1e-6, vocab_size: -1, ffn_dim_multiplier: null, use_scaled_rope: true, extra_key: "kept" }) }));
    expect(p).toEqual({ dim: 8, n_layers: 1, n_heads: 2, norm_eps: 1e-6, vocab_size: -1, use_scaled_rope: true, extra_key: "kept" });
  });

  test("params.json errors", () => {
    expectCode(() => readMetaParams(dir()), "META_NO_PARAMS", /params\.json/);
    expectCode(() => readMetaParams(dir({ "params.json": "{dim: 1" })), "META_BAD_PARAMS", /not valid JSON/);
    expectCode(() => readMetaParams(dir({ "params.json": JSON.stringify({ dim: 8, n_layers: 1, norm_eps: 1e-6 }) })), "META_BAD_PARAMS", /n_heads/);
    expectCode(() => readMetaParams(dir({ "params.json": JSON.stringify({ dim: "8", n_layers: 1, n_heads: 1, norm_eps: 1e-6 }) })), "META_BAD_PARAMS", /dim/);
    expectCode(() => readMetaParams(dir({ "params.json": "[]" })), "META_BAD_PARAMS");
  });

  test("shard listing: order, gaps, absence", () => {
    const d = dir({ "consolidated.01.pth": "", "consolidated.00.pth": "", "consolidated.10.pth.bak": "", "params.json": "{}" });
    expect(listMetaShards(d)).toEqual([path.join(d, "consolidated.00.pth"), path.join(d, "consolidated.01.pth")]);
    expectCode(() => listMetaShards(dir({ "model.safetensors": "" })), "META_NO_SHARDS", /no consolidated/);
    expectCode(() => listMetaShards(path.join(tmp, "nope")), "META_NO_SHARDS");
    expectCode(() => listMetaShards(dir({ "consolidated.00.pth": "", "consolidated.02.pth": "" })), "META_BAD_SHARDS", /shard 01 is missing/);
    expectCode(() => listMetaShards(dir({ "consolidated.00.pth": "" }, ["consolidated.00"])), "META_BAD_SHARDS", /appears twice/);
  });

  test("consolidated.NN/ folders of consolidated-*.pth pieces are merged", () => {
    const d = dir({}, ["consolidated.00", "consolidated.01"]);
    writeFileSync(path.join(d, "consolidated.00", "consolidated-a.pth"), tiny("x", 1));
    writeFileSync(path.join(d, "consolidated.00", "consolidated-b.pth"), tiny("y", 2));
    writeFileSync(path.join(d, "consolidated.01", "consolidated-a.pth"), tiny("x", 3));
    writeFileSync(path.join(d, "consolidated.01", "consolidated-b.pth"), tiny("x", 4));
    const shards = listMetaShards(d);
    expect(shards).toEqual([path.join(d, "consolidated.00"), path.join(d, "consolidated.01")]);
    const s0 = openMetaShard(shards[0]!);
    expect(s0.names()).toEqual(["x", "y"]);
    expect(asF32(s0.get("y").bytes())).toEqual([2]);
    expectCode(() => s0.get("z"), "PTH_MISSING_TENSOR");
    s0.close();
    expectCode(() => openMetaShard(shards[1]!), "META_DUPLICATE_TENSOR", /"x"/);
    expectCode(() => openMetaShard(dir({}, [])), "META_NO_SHARDS", /pieces/);
  });
});

// ---- fuzzing the real file --------------------------------------------------------------------

describe("fuzz", () => {
  test("3000 random mutations of a real shard only ever throw TrtbError", () => {
    const bytes = new Uint8Array(Bun.mmap(SHARD(0))); // a private copy we may scribble on
    const len = bytes.length;
    const cd = new DataView(bytes.buffer).getUint32(len - 6, true); // central directory offset
    let seed = 0x5eed;
    const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) >>> 8) / (1 << 24);
    const codes = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const k = 1 + Math.floor(rnd() * 4);
      const saved: [number, number][] = [];
      for (let j = 0; j < k; j++) {
        const r = rnd();
        // Aim at structure: the pickle (first ~2 KB), the central directory and end records, anywhere.
        const at = r < 0.45 ? Math.floor(rnd() * 2100) : r < 0.9 ? cd + Math.floor(rnd() * (len - cd)) : Math.floor(rnd() * len);
        saved.push([at, bytes[at]!]);
        bytes[at] = rnd() < 0.5 ? Math.floor(rnd() * 256) : bytes[at]! ^ (1 << Math.floor(rnd() * 8));
      }
      let code = "OK";
      try {
        const ck = openTorchCheckpointBytes(bytes, "fuzz.pth");
        for (const n of ck.names()) ck.get(n).bytes();
      } catch (e) {
        if (!(e instanceof TrtbError)) throw e;
        code = e.code;
      }
      codes.set(code, (codes.get(code) ?? 0) + 1);
      for (const [at, v] of saved.reverse()) bytes[at] = v;
    }
    expect(codes.get("OK")).toBeGreaterThan(0);
    if (process.env.TRTB_FUZZ_REPORT) console.log(codes);
    expect(codes.size).toBeGreaterThan(4);
  });
});
