import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Glob } from "bun";
import { DTYPE_SIZE, type DType } from "../../src/dtype.ts";
import { TrtbError } from "../../src/errors.ts";
import {
  JsonFloat,
  JsonStrictError,
  MAX_VIEW_BYTES,
  openSafetensors,
  parseJsonStrict,
  parseSafetensorsBytes,
  planSafetensors,
  SafetensorsWriter,
  serializeSafetensors,
  type JsonValue,
  writeBehindIdle,
} from "../../src/format/safetensors.ts";

const FIXTURES = path.resolve(import.meta.dir, "../../../shared/fixtures");
const enc = new TextEncoder();

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "trtb-st-"));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(n: number, r: () => number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

/** A file: u64 N | header bytes | `data` bytes of zeros (or given). N is the header's length. */
function file(header: string | Uint8Array, data: number | Uint8Array = 0): Uint8Array<ArrayBuffer> {
  const h = typeof header === "string" ? enc.encode(header) : header;
  const d = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof TrtbError) return e.code;
    throw e;
  }
  return "OK";
}

const parse = (b: Uint8Array) => parseSafetensorsBytes(b, "t.safetensors");
const t1 = (name = "a", dtype = "U8", shape = "[4]", offs = "[0,4]") => `"${name}":{"dtype":"${dtype}","shape":${shape},"data_offsets":${offs}}`;

// ---------------------------------------------------------------------------------------------

describe("validation: one malformed file per code", () => {
  const cases: [code: string, why: string, bytes: () => Uint8Array][] = [
    ["ST_TOO_SMALL", "7 bytes", () => new Uint8Array(7)],
    ["ST_TOO_SMALL", "empty", () => new Uint8Array(0)],
    ["ST_HEADER_TOO_LARGE", "0xff in the high length bytes", () => new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0xff, ...enc.encode("{}      ")])],
    ["ST_HEADER_TOO_LARGE", "N = 100,000,001", () => { const b = file("{}"); new DataView(b.buffer).setBigUint64(0, 100_000_001n, true); return b; }],
    ["ST_HEADER_OUT_OF_BOUNDS", "N past the end", () => { const b = file("{}"); new DataView(b.buffer).setBigUint64(0, 3n, true); return b; }],
    ["ST_HEADER_UTF8", "invalid UTF-8", () => file(new Uint8Array([0x7b, 0xff, 0x7d]))],
    ["ST_HEADER_UTF8", "truncated multibyte", () => file(new Uint8Array([0x7b, 0x7d, 0xe2, 0x82]))],
    ["ST_HEADER_NOT_OBJECT", "array", () => file("[]")],
    ["ST_HEADER_NOT_OBJECT", "leading space", () => file(" {}")],
    ["ST_HEADER_NOT_OBJECT", "UTF-8 BOM", () => file(new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d]))],
    ["ST_HEADER_NOT_OBJECT", "N = 0", () => file("")],
    ["ST_HEADER_JSON", "unterminated", () => file("{")],
    ["ST_HEADER_JSON", "missing value", () => file('{"a":}')],
    ["ST_HEADER_JSON", "trailing garbage", () => file("{} x")],
    ["ST_HEADER_JSON", "trailing NUL padding", () => file("{}\0\0")],
    ["ST_HEADER_JSON", "trailing comma", () => file(`{${t1()},}`, 4)],
    ["ST_HEADER_JSON", "lone surrogate escape", () => file('{"\\ud800":1}')],
    ["ST_HEADER_JSON", "nesting > 128", () => file(`{"__metadata__":${"[".repeat(200)}${"]".repeat(200)}}`)],
    ["ST_DUPLICATE_KEY", "tensor named twice", () => file(`{${t1()},${t1()}}`, 4)],
    ["ST_DUPLICATE_KEY", "escaped duplicate", () => file(`{${t1("a")},${t1("\\u0061")}}`, 4)],
    ["ST_DUPLICATE_KEY", "field twice in an entry", () => file(`{"a":{"dtype":"U8","dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, 4)],
    ["ST_DUPLICATE_KEY", "key twice in __metadata__", () => file(`{"__metadata__":{"k":"1","k":"2"}}`)],
    ["ST_BAD_ENTRY", "entry is a number", () => file('{"a":1}')],
    ["ST_BAD_ENTRY", "entry is an array", () => file('{"a":[]}')],
    ["ST_BAD_ENTRY", "missing data_offsets", () => file('{"a":{"dtype":"U8","shape":[4]}}', 4)],
    ["ST_BAD_ENTRY", "extra field", () => file('{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4],"x":1}}', 4)],
    ["ST_BAD_ENTRY", "dtype not a string", () => file(`{${t1("a", "U8").replace('"U8"', "8")}}`, 4)],
    ["ST_BAD_ENTRY", "shape not an array", () => file(`{${t1("a", "U8", "4")}}`, 4)],
    ["ST_BAD_ENTRY", "three offsets", () => file(`{${t1("a", "U8", "[4]", "[0,4,4]")}}`, 4)],
    ["ST_BAD_ENTRY", "offsets an object", () => file(`{${t1("a", "U8", "[4]", "{}")}}`, 4)],
    ["ST_BAD_METADATA", "__metadata__ an array", () => file('{"__metadata__":[]}')],
    ["ST_BAD_METADATA", "number value", () => file('{"__metadata__":{"k":1}}')],
    ["ST_BAD_METADATA", "nested object", () => file('{"__metadata__":{"k":{}}}')],
    ["ST_UNKNOWN_DTYPE", "F4", () => file(`{${t1("a", "F4")}}`, 4)],
    ["ST_UNKNOWN_DTYPE", "lower case", () => file(`{${t1("a", "bf16", "[2]")}}`, 4)],
    ["ST_BAD_SHAPE", "negative", () => file(`{${t1("a", "U8", "[-1]")}}`, 4)],
    ["ST_BAD_SHAPE", "fraction", () => file(`{${t1("a", "U8", "[1.5]")}}`, 4)],
    ["ST_BAD_SHAPE", "float literal 4.0", () => file(`{${t1("a", "U8", "[4.0]")}}`, 4)],
    ["ST_BAD_SHAPE", "exponent 4e0", () => file(`{${t1("a", "U8", "[4e0]")}}`, 4)],
    ["ST_BAD_SHAPE", "-0", () => file(`{${t1("a", "U8", "[-0]", "[0,0]")}}`)],
    ["ST_BAD_SHAPE", "string dim", () => file(`{${t1("a", "U8", '["4"]')}}`, 4)],
    ["ST_BAD_SHAPE", "null dim", () => file(`{${t1("a", "U8", "[null]")}}`, 4)],
    ["ST_BAD_OFFSETS", "negative offset", () => file(`{${t1("a", "U8", "[4]", "[-1,3]")}}`, 4)],
    ["ST_BAD_OFFSETS", "float offset", () => file(`{${t1("a", "U8", "[4]", "[0,4.0]")}}`, 4)],
    ["ST_BAD_OFFSETS", "end before begin", () => file(`{${t1("a", "U8", "[4]", "[0,4]")},${t1("b", "U8", "[0]", "[4,2]")}}`, 4)],
    ["ST_SIZE_OVERFLOW", "2^90 elements", () => file(`{${t1("a", "U8", "[1073741824,1073741824,1073741824]", "[0,4]")}}`, 4)],
    ["ST_SIZE_OVERFLOW", "overflow before a 0 dim", () => file(`{${t1("a", "U8", "[1073741824,1073741824,1073741824,0]", "[0,0]")}}`)],
    ["ST_SIZE_OVERFLOW", "elements fit, bytes do not", () => file(`{${t1("a", "F64", "[4503599627370496]", "[0,8]")}}`, 8)],
    ["ST_SIZE_OVERFLOW", "dim above 2^64", () => file(`{${t1("a", "U8", "[36893488147419103232]", "[0,4]")}}`, 4)],
    ["ST_SIZE_OVERFLOW", "offset above 2^53", () => file(`{${t1("a", "U8", "[4]", "[0,9007199254740993]")}}`, 4)],
    ["ST_SIZE_MISMATCH", "F32 [2] in 4 bytes", () => file(`{${t1("a", "F32", "[2]", "[0,4]")}}`, 4)],
    ["ST_SIZE_MISMATCH", "scalar with no bytes", () => file(`{${t1("a", "F32", "[]", "[0,0]")}}`)],
    ["ST_GAP", "first tensor not at 0", () => file(`{${t1("a", "U8", "[4]", "[4,8]")}}`, 8)],
    ["ST_GAP", "hole between tensors", () => file(`{${t1("a", "U8", "[4]", "[0,4]")},${t1("b", "U8", "[4]", "[6,10]")}}`, 10)],
    ["ST_OVERLAP", "partial overlap", () => file(`{${t1("a", "U8", "[4]", "[0,4]")},${t1("b", "U8", "[4]", "[2,6]")}}`, 6)],
    ["ST_OVERLAP", "same region twice (DoS)", () => file(`{${t1("a", "U8", "[4]", "[0,4]")},${t1("b", "U8", "[4]", "[0,4]")}}`, 4)],
    ["ST_FILE_LENGTH", "trailing bytes", () => file(`{${t1()}}`, 5)],
    ["ST_FILE_LENGTH", "truncated data", () => file(`{${t1()}}`, 3)],
    ["ST_FILE_LENGTH", "data without tensors", () => file("{}", 1)],
  ];
  for (const [code, why, bytes] of cases) {
    test(`${code}: ${why}`, () => {
      expect(codeOf(() => parse(bytes()))).toBe(code);
    });
  }

  test("errors name the file and the tensor", () => {
    try {
      parse(file(`{${t1("w.q", "F32", "[2]", "[0,4]")}}`, 4));
      throw new Error("no error");
    } catch (e) {
      const err = e as TrtbError;
      expect(err.code).toBe("ST_SIZE_MISMATCH");
      expect(err.details).toEqual({ file: "t.safetensors", tensor: "w.q" });
      expect(err.message).toContain("t.safetensors");
      expect(err.message).toContain('"w.q"');
    }
  });

  test("ST_MISSING_TENSOR, ST_BAD_RANGE, ST_CLOSED", () => {
    const f = parse(file(`{${t1()}}`, 4));
    expect(codeOf(() => f.get("nope"))).toBe("ST_MISSING_TENSOR");
    expect(codeOf(() => f.info("nope"))).toBe("ST_MISSING_TENSOR");
    expect(codeOf(() => f.range("a", 2, 5))).toBe("ST_BAD_RANGE");
    expect(codeOf(() => f.range("a", 3, 2))).toBe("ST_BAD_RANGE");
    f.close();
    expect(codeOf(() => f.get("a"))).toBe("ST_CLOSED");
  });

  test("ST_IO: missing file, directory", () => {
    expect(codeOf(() => openSafetensors(path.join(tmp, "absent.safetensors")))).toBe("ST_IO");
    expect(codeOf(() => openSafetensors(tmp))).toBe("ST_IO");
  });

  test("the same checks run on files on disk", () => {
    const p = path.join(tmp, "bad.safetensors");
    fs.writeFileSync(p, file(`{${t1()}}`, 5));
    expect(codeOf(() => openSafetensors(p))).toBe("ST_FILE_LENGTH");
    fs.writeFileSync(p, new Uint8Array(3));
    expect(codeOf(() => openSafetensors(p))).toBe("ST_TOO_SMALL");
  });
});

describe("validation: valid edge cases", () => {
  test("empty file, padded and unpadded headers, trailing whitespace", () => {
    expect(parse(file("{}")).names()).toEqual([]);
    expect(parse(file("{}      ")).names()).toEqual([]);
    expect(parse(file("{} \n\t\r")).names()).toEqual([]);
  });

  test("rank-0 scalar, empty tensors sharing an offset, header out of offset order", () => {
    const f = parse(file(`{${t1("z", "F32", "[]", "[4,8]")},${t1("e", "U8", "[0,5]", "[0,0]")},${t1("e2", "U8", "[0]", "[0,0]")},${t1("a", "U8", "[4]", "[0,4]")}}`, 8));
    expect(f.names()).toEqual(["e", "e2", "a", "z"]);
    expect(f.get("z").bytes().length).toBe(4);
    expect(f.get("e").bytes().length).toBe(0);
    expect(f.info("z")).toEqual({ name: "z", dtype: "F32", shape: [], byteLength: 4, offset: f.dataOffset + 4 });
  });

  test("metadata, odd names (__proto__, integer-like, unicode) keep header order", () => {
    const f = parse(file(`{"__metadata__":{"format":"pt","__proto__":"x"},${t1("__proto__", "U8", "[1]", "[0,1]")},${t1("10", "U8", "[1]", "[1,2]")},${t1("é🙂", "U8", "[1]", "[2,3]")}}`, 3));
    expect(f.metadata).toEqual(Object.fromEntries([["format", "pt"], ["__proto__", "x"]]));
    expect(f.names()).toEqual(["__proto__", "10", "é🙂"]);
    expect(f.has("__proto__")).toBe(true);
    expect(f.has("constructor")).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------

describe("fuzz: mutated files only ever throw TrtbError", () => {
  const r = rng(0x5afe);
  const base = serializeSafetensors(
    [
      { name: "w.bf16", dtype: "BF16", shape: [3, 5], data: randomBytes(30, r) },
      { name: "w.f32", dtype: "F32", shape: [2, 2], data: randomBytes(16, r) },
      { name: "w.i64", dtype: "I64", shape: [2], data: randomBytes(16, r) },
      { name: "scalar", dtype: "F16", shape: [], data: randomBytes(2, r) },
      { name: "empty", dtype: "U8", shape: [0, 7], data: new Uint8Array(0) },
      { name: "q8", dtype: "F8_E4M3", shape: [9], data: randomBytes(9, r) },
    ],
    { format: "pt", note: "fuzz" },
  );
  const n0 = Number(new DataView(base.buffer).getBigUint64(0, true));
  const header0 = new TextDecoder().decode(base.subarray(8, 8 + n0));
  const data0 = base.subarray(8 + n0);
  const TOKENS = ["{", "}", "[", "]", '"', ",", ":", "-", "0", "9", "1e9", ".5", "\\", "\\u0000", " ", "null", "true", "__metadata__", "dtype", "shape", "data_offsets", "F32", "BF16", "F4", "18446744073709551616", "é"];

  function mutate(): Uint8Array {
    const kind = (r() * 7) | 0;
    const b = base.slice();
    switch (kind) {
      case 0: { // byte flips, mostly in the header
        const k = 1 + ((r() * 4) | 0);
        for (let j = 0; j < k; j++) {
          const at = r() < 0.8 ? 8 + ((r() * n0) | 0) : (r() * b.length) | 0;
          b[at] = (r() * 256) | 0;
        }
        return b;
      }
      case 1: return b.subarray(0, (r() * b.length) | 0); // truncation
      case 2: { // append junk
        const out = new Uint8Array(b.length + 1 + ((r() * 16) | 0));
        out.set(b);
        out.set(randomBytes(out.length - b.length, r), b.length);
        return out;
      }
      case 3: { // random length prefix
        const v = r() < 0.5 ? BigInt((r() * (b.length + 64)) | 0) : BigInt.asUintN(64, BigInt((r() * 2 ** 53) | 0) << BigInt((r() * 12) | 0));
        new DataView(b.buffer).setBigUint64(0, v, true);
        return b;
      }
      default: { // header text edits, with N kept consistent so validation goes deeper
        let h = header0;
        const edits = 1 + ((r() * 3) | 0);
        for (let j = 0; j < edits; j++) {
          const at = (r() * h.length) | 0;
          const op = (r() * 4) | 0;
          const tok = TOKENS[(r() * TOKENS.length) | 0]!;
          if (op === 0) h = h.slice(0, at) + h.slice(at + 1 + ((r() * 8) | 0)); // delete
          else if (op === 1) h = h.slice(0, at) + tok + h.slice(at); // insert
          else if (op === 2) h = h.slice(0, at) + tok + h.slice(at + tok.length); // overwrite
          else h = h.replace(/\d+/g, (m) => (r() < 0.15 ? String(Number(m) + ((r() * 5) | 0) - 2) : m)); // nudge numbers
        }
        const extra = (r() * 3) | 0; // sometimes fix the data length to match a nudged header
        return file(h, extra === 0 ? data0 : new Uint8Array(Math.max(0, data0.length + ((r() * 9) | 0) - 4)));
      }
    }
  }

  test("12,000 mutations", () => {
    const seen = new Map<string, number>();
    for (let it = 0; it < 12_000; it++) {
      const m = mutate();
      let code = "OK";
      try {
        const f = parse(m);
        for (const t of f.infos()) expect(f.get(t.name).bytes().length).toBe(t.byteLength);
      } catch (e) {
        if (!(e instanceof TrtbError)) throw new Error(`iteration ${it}: non-TrtbError ${e}`);
        expect(e.code).toStartWith("ST_");
        code = e.code;
      }
      seen.set(code, (seen.get(code) ?? 0) + 1);
    }
    if (process.env.FUZZ_STATS) console.log(Object.fromEntries(seen));
    // The mutations reach deep into validation, not only the first checks.
    for (const c of ["OK", "ST_TOO_SMALL", "ST_HEADER_TOO_LARGE", "ST_HEADER_OUT_OF_BOUNDS", "ST_HEADER_JSON", "ST_FILE_LENGTH", "ST_SIZE_MISMATCH", "ST_BAD_ENTRY", "ST_UNKNOWN_DTYPE"])
      expect(seen.get(c) ?? 0).toBeGreaterThan(0);
    expect(seen.size).toBeGreaterThanOrEqual(12);
  });
});

describe("fuzz: random bytes only ever throw TrtbError", () => {
  test("3,000 random buffers with plausible length prefixes", () => {
    const r = rng(99);
    for (let it = 0; it < 3000; it++) {
      const b = randomBytes((r() * 256) | 0, r);
      if (b.length >= 8 && r() < 0.7) {
        new DataView(b.buffer).setBigUint64(0, BigInt((r() * (b.length - 7)) | 0), true);
        if (r() < 0.5 && b.length > 8) b[8] = 0x7b;
      }
      try {
        parse(b);
      } catch (e) {
        if (!(e instanceof TrtbError)) throw new Error(`iteration ${it}: non-TrtbError ${e}`);
      }
    }
  });
});

describe("strict JSON parser agrees with JSON.parse", () => {
  /** Convert our value to what JSON.parse would give (floats/bigints as numbers). */
  function plain(v: JsonValue): unknown {
    if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, plain(x)]));
    if (Array.isArray(v)) return v.map(plain);
    if (v instanceof JsonFloat) return v.value;
    if (typeof v === "bigint") return Number(v);
    return v;
  }
  test("5,000 mutated documents", () => {
    const r = rng(42);
    const doc = '{"a":[1,-2,3.5e-3,{"b":null}],"c":"x\\"y\\u00e9\\ud83d\\ude00","d":true,"e":false,"f":{},"g":[],"h":0}';
    const chars = '{}[]",:\\-+.0123456789eEabnrtuflsx \n';
    for (let it = 0; it < 5000; it++) {
      let s = doc;
      for (let k = 0; k < 1 + ((r() * 3) | 0); k++) {
        const at = (r() * s.length) | 0;
        const c = chars[(r() * chars.length) | 0]!;
        s = r() < 0.5 ? s.slice(0, at) + c + s.slice(at + 1) : r() < 0.5 ? s.slice(0, at) + c + s.slice(at) : s.slice(0, at) + s.slice(at + 1);
      }
      let mine: unknown;
      let mineErr: JsonStrictError | undefined;
      try {
        mine = plain(parseJsonStrict(s));
      } catch (e) {
        if (!(e instanceof JsonStrictError)) throw e;
        mineErr = e;
      }
      let theirs: unknown;
      let theirsOk = true;
      try {
        theirs = JSON.parse(s);
      } catch {
        theirsOk = false;
      }
      if (mineErr) {
        // We may be stricter (duplicates, lone surrogates), never looser.
        if (theirsOk) expect(mineErr.kind === "duplicate" || /surrogate/.test(mineErr.message)).toBe(true);
      } else {
        expect(theirsOk).toBe(true);
        expect(mine).toEqual(theirs);
      }
    }
  });

  test("integers stay integers, floats do not", () => {
    const v = parseJsonStrict("[0, -3, 9007199254740991, 9007199254740993, 2.0, 1e3]") as JsonValue[];
    expect(v.slice(0, 3)).toEqual([0, -3, 9007199254740991]);
    expect(v[3]).toBe(9007199254740993n);
    expect(v[4]).toBeInstanceOf(JsonFloat);
    expect(v[5]).toBeInstanceOf(JsonFloat);
  });
});

// ---------------------------------------------------------------------------------------------

describe("writer", () => {
  const DTYPES_RT: DType[] = ["BF16", "F16", "F32", "I8", "U8", "I32", "I64", "F8_E4M3", "F8_E5M2"];

  test("planner matches the reference writer's bytes", () => {
    // huggingface/safetensors tensor.rs test_serialization / test_empty / forced alignment.
    const f32 = new Uint8Array(new Float32Array([0, 1, 2, 3, 4, 5]).buffer);
    const one = serializeSafetensors([{ name: "attn.0", dtype: "F32", shape: [1, 2, 3], data: f32 }]);
    const json = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
    expect(json.length).toBe(64);
    expect(one).toEqual(file(json, f32));
    const aligned = serializeSafetensors([{ name: "attn0", dtype: "F32", shape: [1, 1, 2, 3], data: f32 }]);
    expect(aligned).toEqual(file('{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       ', f32));
    expect(serializeSafetensors([])).toEqual(file("{}      "));
    expect(serializeSafetensors([], { framework: "pt" })).toEqual(file('{"__metadata__":{"framework":"pt"}}     '));
  });

  test("planner sorts by dtype alignment then name as UTF-8 bytes", () => {
    const plan = planSafetensors([
      { name: "b", dtype: "U8", shape: [1] },
      { name: "a", dtype: "U8", shape: [1] },
      { name: "\u{1F600}", dtype: "F32", shape: [1] },
      { name: "\uFFFD", dtype: "F32", shape: [1] },
      { name: "x", dtype: "I64", shape: [1] },
      { name: "y", dtype: "F64", shape: [1] },
    ]);
    expect(plan.tensors.map((t) => t.name)).toEqual(["x", "y", "\uFFFD", "\u{1F600}", "a", "b"]);
    expect(plan.dataOffset % 8).toBe(0);
  });

  test("round trip: BF16 F16 F32 I8 U8 I32 I64 F8_E4M3 F8_E5M2, scalars, empty tensors", () => {
    const r = rng(7);
    const tensors = DTYPES_RT.flatMap((dtype, i) => [
      { name: `t${i}.${dtype}`, dtype, shape: [3 + i, 5], data: randomBytes((3 + i) * 5 * DTYPE_SIZE[dtype], r) },
      { name: `s${i}.${dtype}`, dtype, shape: [] as number[], data: randomBytes(DTYPE_SIZE[dtype], r) },
    ]);
    tensors.push({ name: "empty", dtype: "BF16", shape: [0, 4], data: new Uint8Array(0) });
    const p = path.join(tmp, "rt.safetensors");
    const w = SafetensorsWriter.create(p, tensors, { metadata: { format: "pt" } });
    tensors.forEach((t, i) => (i % 2 === 0 ? w.write(t.name, t.data) : w.writeWith(t.name, (dst) => dst.set(t.data))));
    w.commit();
    expect(fs.readdirSync(tmp).filter((n) => n.includes(".tmp-"))).toEqual([]);
    // Byte-identical to the in-memory serializer, and to what the reference writer would produce.
    expect(new Uint8Array(fs.readFileSync(p))).toEqual(serializeSafetensors(tensors, { format: "pt" }));
    for (const access of ["auto", "read"] as const) {
      using f = openSafetensors(p, { access });
      expect(f.access).toBe(access === "auto" ? "mmap" : "read");
      expect(f.metadata).toEqual({ format: "pt" });
      for (const t of tensors) {
        const v = f.get(t.name);
        expect(v.dtype).toBe(t.dtype);
        expect(v.shape).toEqual(t.shape);
        const b = v.bytes();
        expect(b).toEqual(t.data);
        expect(b.byteOffset % DTYPE_SIZE[t.dtype]).toBe(0); // typed views can be made in place
      }
    }
  });

  test("writer errors", () => {
    const p = path.join(tmp, "werr.safetensors");
    const specs = [{ name: "a", dtype: "F32" as const, shape: [2] }, { name: "b", dtype: "U8" as const, shape: [3] }];
    const w = SafetensorsWriter.create(p, specs);
    expect(codeOf(() => w.write("zz", new Uint8Array(1)))).toBe("ST_WRITE_UNKNOWN");
    expect(codeOf(() => w.write("a", new Uint8Array(4)))).toBe("ST_WRITE_SIZE");
    w.write("a", new Uint8Array(8));
    expect(codeOf(() => w.write("a", new Uint8Array(8)))).toBe("ST_WRITE_TWICE");
    expect(codeOf(() => w.writeWith("a", () => {}))).toBe("ST_WRITE_TWICE");
    expect(codeOf(() => w.commit())).toBe("ST_WRITE_INCOMPLETE");
    expect(fs.existsSync(p)).toBe(false);
    w.write("b", new Uint8Array(3));
    w.commit();
    expect(codeOf(() => w.write("b", new Uint8Array(3)))).toBe("ST_WRITE_CLOSED");
    expect(codeOf(() => w.commit())).toBe("ST_WRITE_CLOSED");

    expect(codeOf(() => SafetensorsWriter.create(p, [...specs, specs[0]!]))).toBe("ST_DUPLICATE_KEY");
    expect(codeOf(() => SafetensorsWriter.create(p, [{ name: "x", dtype: "F4" as DType, shape: [2] }]))).toBe("ST_UNKNOWN_DTYPE");
    expect(codeOf(() => SafetensorsWriter.create(p, [{ name: "x", dtype: "U8", shape: [-1] }]))).toBe("ST_BAD_SHAPE");
    expect(codeOf(() => SafetensorsWriter.create(p, [{ name: "x", dtype: "U8", shape: [1.5] }]))).toBe("ST_BAD_SHAPE");
    expect(codeOf(() => SafetensorsWriter.create(p, [{ name: "__metadata__", dtype: "U8", shape: [1] }]))).toBe("ST_BAD_ENTRY");
    expect(codeOf(() => SafetensorsWriter.create(p, specs, { metadata: { k: 1 as unknown as string } }))).toBe("ST_BAD_METADATA");
    expect(codeOf(() => SafetensorsWriter.create(p, [{ name: "x", dtype: "U8", shape: [2 ** 32 + 1] }]))).toBe("ST_TENSOR_TOO_LARGE");
    expect(codeOf(() => SafetensorsWriter.create(p, [{ name: "x", dtype: "F64", shape: [2 ** 40, 2 ** 40] }]))).toBe("ST_SIZE_OVERFLOW");
    // 40,000 × 4 GiB: more than any disk here has free.
    const huge = Array.from({ length: 40_000 }, (_, i) => ({ name: `t${i}`, dtype: "U8" as const, shape: [2 ** 32] }));
    expect(codeOf(() => SafetensorsWriter.create(p, huge))).toBe("ST_NO_SPACE");
    expect(codeOf(() => SafetensorsWriter.create(path.join(tmp, "no/such/dir/x.safetensors"), specs))).toBe("ST_IO");
    expect(fs.readdirSync(tmp).filter((n) => n.includes(".tmp-"))).toEqual([]);
  });
});

describe("streamed writes", () => {
  test("writeStream: pieces of any size land back to back; the file equals the in-memory serializer's", async () => {
    const r = rng(7);
    const tensors = [
      { name: "a", dtype: "BF16" as const, shape: [300, 70], data: randomBytes(300 * 70 * 2, r) },
      { name: "b", dtype: "F32" as const, shape: [17], data: randomBytes(17 * 4, r) },
      { name: "c", dtype: "U8" as const, shape: [0], data: new Uint8Array(0) },
    ];
    const p = path.join(tmp, "stream.safetensors");
    // writeBehind every 4 KiB: several background syncs run while the tensors are written.
    const w = SafetensorsWriter.create(p, tensors, { writeBehind: 4096 });
    for (const t of tensors) {
      w.writeStream(t.name, (write) => {
        for (let o = 0, k = 1; o < t.data.length; o += k, k = k * 3 + 1) write(t.data.subarray(o, Math.min(o + k, t.data.length)));
      });
    }
    w.commit();
    await writeBehindIdle();
    expect(new Uint8Array(fs.readFileSync(p))).toEqual(serializeSafetensors(tensors));
    expect(fs.readdirSync(tmp).filter((n) => n.includes(".tmp-"))).toEqual([]);
  });

  test("writeStream errors: too many or too few bytes, or a throwing fill, leave the tensor unwritten", async () => {
    const p = path.join(tmp, "stream-err.safetensors");
    const specs = [{ name: "a", dtype: "F32" as const, shape: [4] }];
    const w = SafetensorsWriter.create(p, specs, { writeBehind: false });
    expect(codeOf(() => w.writeStream("a", (write) => write(new Uint8Array(20))))).toBe("ST_WRITE_SIZE");
    expect(codeOf(() => w.writeStream("a", (write) => write(new Uint8Array(12))))).toBe("ST_WRITE_SIZE");
    expect(() => w.writeStream("a", () => { throw new Error("producer failed"); })).toThrow("producer failed");
    expect(w.pending()).toEqual(["a"]);
    expect(codeOf(() => w.writeStream("zz", () => {}))).toBe("ST_WRITE_UNKNOWN");
    w.writeStream("a", (write) => { write(new Uint8Array(8).fill(1)); write(new Uint8Array(8).fill(2)); });
    expect(codeOf(() => w.writeStream("a", () => {}))).toBe("ST_WRITE_TWICE");
    w.commit();
    await writeBehindIdle();
    const f = openSafetensors(p);
    expect([...f.get("a").bytes()]).toEqual([...new Array(8).fill(1), ...new Array(8).fill(2)]);
  });
});

describe("atomic writes", () => {
  const specs = [{ name: "x", dtype: "F32" as const, shape: [1024] }];
  const filled = (v: number) => (dst: Uint8Array) => new Float32Array(dst.buffer, dst.byteOffset, dst.length / 4).fill(v);
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(tmp, "atomic-"));
  });

  test("abort leaves no file", () => {
    const p = path.join(dir, "a.safetensors");
    const w = SafetensorsWriter.create(p, specs);
    expect(fs.existsSync(w.tempPath)).toBe(true);
    expect(path.basename(w.tempPath)).toMatch(/^\.a\.safetensors\.tmp-\d+-[a-z0-9]+$/);
    w.writeWith("x", filled(1));
    w.abort();
    w.abort();
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test("a failed or uncommitted write leaves nothing at the target", () => {
    const p = path.join(dir, "b.safetensors");
    {
      using w = SafetensorsWriter.create(p, specs);
      expect(() => w.writeWith("x", () => { throw new Error("producer failed"); })).toThrow("producer failed");
      expect(w.pending()).toEqual(["x"]);
      expect(codeOf(() => w.commit())).toBe("ST_WRITE_INCOMPLETE");
      expect(fs.existsSync(p)).toBe(false);
    } // disposed: aborted
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test("commit over a mapped file: old views and the old reader keep the old bytes", () => {
    const p = path.join(dir, "c.safetensors");
    const w1 = SafetensorsWriter.create(p, specs);
    w1.writeWith("x", filled(1));
    w1.commit();
    const old = openSafetensors(p);
    const oldRead = openSafetensors(p, { access: "read" });
    const view = old.get("x").bytes();
    const f32 = (b: Uint8Array) => new Float32Array(b.buffer, b.byteOffset, b.length / 4);

    const w2 = SafetensorsWriter.create(p, specs);
    w2.writeWith("x", filled(2));
    expect(f32(openSafetensors(p).get("x").bytes())[0]).toBe(1); // not visible before commit
    w2.commit();

    expect(f32(view).every((v) => v === 1)).toBe(true); // the live mapping is intact
    expect(f32(old.range("x", 0, 4096)).every((v) => v === 1)).toBe(true); // new maps of the old reader: old inode
    expect(f32(oldRead.get("x").bytes()).every((v) => v === 1)).toBe(true);
    using fresh = openSafetensors(p);
    expect(f32(fresh.get("x").bytes()).every((v) => v === 2)).toBe(true);
    old.close();
    oldRead.close();
    expect(f32(view)[1023]).toBe(1); // views outlive close()
    expect(fs.readdirSync(dir)).toEqual(["c.safetensors"]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("files past 4 GiB (sparse, no real disk use)", () => {
  const GiB = 2 ** 30;

  test("hand-built: a 5 GiB tensor, then a tensor beyond 4 GiB", () => {
    const p = path.join(tmp, "sparse.safetensors");
    const huge = 5 * GiB;
    const header = enc.encode(`{${t1("huge", "U8", `[${huge}]`, `[0,${huge}]`)},${t1("tail", "F32", "[4]", `[${huge},${huge + 16}]`)}}`);
    const fd = fs.openSync(p, "w");
    const start = 8 + header.length;
    try {
      const prefix = new Uint8Array(8);
      new DataView(prefix.buffer).setBigUint64(0, BigInt(header.length), true);
      fs.writeSync(fd, prefix, 0, 8, 0);
      fs.writeSync(fd, header, 0, header.length, 8);
      fs.ftruncateSync(fd, start + huge + 16);
      const tail = new Float32Array([1.5, -2, 3.25, 1e30]);
      fs.writeSync(fd, new Uint8Array(tail.buffer), 0, 16, start + huge);
      fs.writeSync(fd, enc.encode("MARKER!!"), 0, 8, start + 4.5 * GiB);
    } finally {
      fs.closeSync(fd);
    }
    expect(fs.statSync(p).blocks * 512).toBeLessThan(1 << 20);
    for (const access of ["auto", "read"] as const) {
      using f = openSafetensors(p, { access });
      expect(f.fileSize).toBe(start + huge + 16);
      expect(f.info("tail").offset).toBe(start + huge);
      const b = f.get("tail").bytes();
      expect([...new Float32Array(b.slice().buffer)]).toEqual([1.5, -2, 3.25, new Float32Array([1e30])[0]!]);
      expect(codeOf(() => f.get("huge").bytes())).toBe("ST_TENSOR_TOO_LARGE");
      expect(new TextDecoder().decode(f.range("huge", 4.5 * GiB, 4.5 * GiB + 8))).toBe("MARKER!!");
      expect(f.range("huge", huge - 4, huge)).toEqual(new Uint8Array(4));
    }
    expect(MAX_VIEW_BYTES).toBe(4 * GiB);
    fs.rmSync(p);
  });

  test("writer + reader: 6 GiB file, tensors straddling map windows", () => {
    const p = path.join(tmp, "sparse-w.safetensors");
    const specs = [
      { name: "a", dtype: "U8" as const, shape: [2 * GiB] },
      { name: "b", dtype: "U8" as const, shape: [2 * GiB] },
      { name: "c", dtype: "U8" as const, shape: [2 * GiB] },
      { name: "z", dtype: "F32" as const, shape: [4] },
    ];
    const w = SafetensorsWriter.create(p, specs);
    // F32 sorts first: z at the start; U8 a, b, c after. Touch one page at the end of each.
    w.write("z", new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer));
    for (const n of ["a", "b", "c"]) w.writeWith(n, (dst) => { dst[dst.length - 1] = n.charCodeAt(0); });
    w.commit();
    expect(fs.statSync(p).blocks * 512).toBeLessThan(1 << 20);
    using f = openSafetensors(p);
    expect(f.names()).toEqual(["z", "a", "b", "c"]);
    expect(f.info("c").offset).toBeGreaterThan(4 * GiB);
    const c = f.get("c").bytes();
    expect(c.length).toBe(2 * GiB);
    expect(c[c.length - 1]).toBe(0x63);
    expect(c[0]).toBe(0);
    expect(f.range("b", 2 * GiB - 1, 2 * GiB)[0]).toBe(0x62);
    expect([...new Float32Array(f.get("z").bytes().slice().buffer)]).toEqual([1, 2, 3, 4]);
    fs.rmSync(p);
  });
});

describe("read-only files", () => {
  // Bun.mmap opens files read-write, so a file we may not write cannot be mapped: "auto" must fall
  // back to positioned reads. Root bypasses permissions, so run the check as nobody.
  const canDrop = process.getuid?.() === 0 && fs.existsSync("/usr/bin/setpriv");
  test.skipIf(!canDrop)("auto falls back to reads when mapping is refused", () => {
    const dir = fs.mkdtempSync(path.join(tmp, "ro-"));
    fs.chmodSync(tmp, 0o755);
    fs.chmodSync(dir, 0o755);
    const p = path.join(dir, "ro.safetensors");
    fs.writeFileSync(p, serializeSafetensors([{ name: "x", dtype: "U8", shape: [3], data: new Uint8Array([7, 8, 9]) }]));
    fs.chmodSync(p, 0o444);
    const script = `const m = await import(${JSON.stringify(path.resolve(import.meta.dir, "../../src/format/safetensors.ts"))});
      const f = m.openSafetensors(${JSON.stringify(p)}); console.log(f.access, [...f.get("x").bytes()].join(","));`;
    const res = Bun.spawnSync(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "-e", script]);
    expect(res.stderr.toString()).toBe("");
    expect(res.stdout.toString().trim()).toBe("read 7,8,9");
  });
});

describe("shared fixtures", () => {
  const files = [...new Glob("**/*.safetensors").scanSync({ cwd: FIXTURES, absolute: true })].sort();

  test("fixtures are present", () => {
    expect(files.length).toBeGreaterThanOrEqual(10);
  });

  for (const p of files) {
    test(`${path.relative(FIXTURES, p)}: validates, maps, and its header is what our planner writes`, () => {
      using f = openSafetensors(p);
      let sum = 0;
      for (const t of f.infos()) {
        const b = f.get(t.name).bytes();
        expect(b.length).toBe(t.byteLength);
        expect(b.byteOffset % DTYPE_SIZE[t.dtype]).toBe(0);
        sum += t.byteLength;
      }
      expect(f.dataOffset + sum).toBe(fs.statSync(p).size);
      const plan = planSafetensors(f.infos(), Object.keys(f.metadata).length > 0 ? f.metadata : undefined);
      expect(plan.header).toEqual(new Uint8Array(fs.readFileSync(p).subarray(0, f.dataOffset)));
      expect(parseSafetensorsBytes(new Uint8Array(fs.readFileSync(p))).names()).toEqual(f.names());
    });
  }
});
