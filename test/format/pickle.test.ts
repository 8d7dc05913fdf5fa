// Restricted unpickler: values from real CPython pickles (hex below, made with `pickle.dumps`),
// then hostile programs built byte by byte, each rejected with its exact code.
import { describe, expect, test } from "bun:test";
import path from "node:path";
import { TrtbError } from "../../src/errors.ts";
import { isTuple, PyGlobal, unpickle, type PickleValue } from "../../src/format/pickle.ts";
import { loadTorchPickle, TORCH_GLOBALS, TorchTensorRef } from "../../src/format/pth.ts";
import { ZipArchive } from "../../src/format/zip.ts";
import { expectCode } from "../helpers.ts";

const SHARED = path.resolve(import.meta.dir, "../../../shared");
const FIXTURE = path.join(SHARED, "fixtures/hf-tiny/llama-meta-mp2/consolidated.00.pth");

// ---- assembling pickles -----------------------------------------------------------------------

type Part = number | string | Uint8Array | Part[];
/** Concatenate opcodes: numbers are bytes, strings are latin-1 text. */
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
const PROTO2 = [0x80, 2];
const GLOBAL = (m: string, n: string) => ["c", `${m}\n${n}\n`];
const BINUNICODE = (s: string) => {
  const b = new TextEncoder().encode(s);
  return ["X", u32(b.length), b];
};
const SHORT_BINUNICODE = (s: string) => [0x8c, s.length, s];
const STACK_GLOBAL = 0x93;
const REDUCE = "R";
const MARK = "(";
const TUPLE = "t";
const TUPLE1 = 0x85;
const EMPTY_TUPLE = ")";
const STOP = ".";
const hex = (s: string) => Uint8Array.from(s.match(/../g)!.map((h) => parseInt(h, 16)));


// ---- values -----------------------------------------------------------------------------------

describe("values", () => {
  test("a CPython protocol-4 pickle (FRAME, MEMOIZE, LONG1, sets, unicode)", () => {
    // pickle.dumps({'a': [1, 2.5, 'x', b'y', (True, None, False)], 'big': 2**70, 'neg': -5,
    //   'i4': 100000, 'nb': -(2**70), 's': {1}, 'fs': frozenset([2]), 'u': 'hé€', 't0': (),
    //   't4': (1, 2, 3, 4)}, protocol=4)
    const v = unpickle(
      hex(
        "80049592000000000000007d94288c0161945d94284b014740040000000000008c01789443017994884e898794658c03626967948a090000000000000000408c036e6567944afbffffff8c026934944aa08601008c026e62948a090000000000000000c08c0173948f94284b01908c02667394284b0291948c0175948c0668c3a9e282ac948c02743094298c02743494284b014b024b034b047494752e",
      ),
    ) as Map<string, PickleValue>;
    expect([...v.keys()]).toEqual(["a", "big", "neg", "i4", "nb", "s", "fs", "u", "t0", "t4"]);
    const a = v.get("a") as PickleValue[];
    expect(isTuple(a)).toBe(false);
    expect(a.slice(0, 4)).toEqual([1, 2.5, "x", new Uint8Array([0x79])]);
    expect(isTuple(a[4])).toBe(true);
    expect(a[4]).toEqual([true, null, false]);
    expect(v.get("big")).toBe(2n ** 70n);
    expect(v.get("nb")).toBe(-(2n ** 70n));
    expect(v.get("neg")).toBe(-5);
    expect(v.get("i4")).toBe(100000);
    expect(v.get("s")).toEqual(new Set([1]));
    expect(v.get("fs")).toEqual(new Set([2]));
    expect(v.get("u")).toBe("hé€");
    expect(v.get("t0")).toEqual([]);
    expect(v.get("t4")).toEqual([1, 2, 3, 4]);
  });

  test("memo references share objects (protocol 5 BINGET)", () => {
    // pickle.dumps(['ab', 'ab'], protocol=5): the second 'ab' is a memo reference
    expect(unpickle(hex("8005950c000000000000005d94288c026162946801652e"))).toEqual(["ab", "ab"]);
  });

  test("allow-listed globals: GLOBAL and STACK_GLOBAL, REDUCE calls the TS implementation", () => {
    // pickle.dumps(collections.OrderedDict([('k', 1)]), protocol=2)
    const od = hex("800263636f6c6c656374696f6e730a4f726465726564446963740a71002952710158010000006b71024b01732e");
    expect(unpickle(od, { globals: TORCH_GLOBALS })).toEqual(new Map([["k", 1]]));
    let calls = 0;
    const g = new PyGlobal("m", "f", (args) => {
      calls++;
      return [...args, "called"];
    });
    const v = unpickle(pk(0x80, 4, SHORT_BINUNICODE("m"), SHORT_BINUNICODE("f"), STACK_GLOBAL, "K", 7, TUPLE1, REDUCE, STOP), { globals: [g] });
    expect(v).toEqual([7, "called"]);
    expect(calls).toBe(1);
  });

  test("BINSTRING, BINBYTES, BINFLOAT, LONG4, DICT, LIST, POP, DUP, BUILD on a dict", () => {
    expect(unpickle(pk(PROTO2, "}", "}", "b", STOP))).toEqual(new Map());
    expect(unpickle(pk(PROTO2, "}", "N", "b", STOP))).toEqual(new Map());
    const l = unpickle(pk(PROTO2, MARK, "U", 2, "hi", "T", u32(1), "z", "B", u32(2), 1, 2, "G", [0x3f, 0xf8, 0, 0, 0, 0, 0, 0], 0x8b, u32(2), 0xff, 0x7f, "N", "0", "K", 1, "2", "l", STOP));
    expect(l).toEqual(["hi", "z", new Uint8Array([1, 2]), 1.5, 0x7fff, 1, 1]);
    expect(unpickle(pk(PROTO2, MARK, "K", 1, "K", 2, "d", STOP))).toEqual(new Map([[1, 2]]));
  });

  test("torch's fixture data.pkl loads to a dict of tensor records", () => {
    const pkl = ZipArchive.open(FIXTURE).read("consolidated.00/data.pkl");
    const sd = loadTorchPickle(pkl) as Map<string, TorchTensorRef>;
    expect(sd.size).toBe(21);
    const t = sd.get("tok_embeddings.weight")!;
    expect(t).toBeInstanceOf(TorchTensorRef);
    expect(t.shape).toEqual([256, 64]);
    expect(t.stride).toEqual([64, 1]);
    expect(t.dtype).toBe("BF16");
    expect(t.storage.key).toBe("0");
    expect(t.storage.numel).toBe(16384);
  });
});

// ---- hostile programs -------------------------------------------------------------------------

describe("forbidden globals", () => {
  const cases: [string, Uint8Array][] = [
    // The classic: cos\nsystem\n(S'echo pwned'\ntR.
    ["os.system (protocol 0 payload)", pk(GLOBAL("os", "system"), MARK, "S'touch /tmp/trtb-pwned'\n", TUPLE, REDUCE, STOP)],
    ["os.system", pk(PROTO2, GLOBAL("os", "system"), BINUNICODE("touch /tmp/trtb-pwned"), TUPLE1, REDUCE, STOP)],
    ["posix.system", pk(PROTO2, GLOBAL("posix", "system"), BINUNICODE("id"), TUPLE1, REDUCE, STOP)],
    ["builtins.eval", pk(PROTO2, GLOBAL("builtins", "eval"), BINUNICODE("__import__('os').system('id')"), TUPLE1, REDUCE, STOP)],
    ["__builtin__.eval", pk(PROTO2, GLOBAL("__builtin__", "eval"), BINUNICODE("1"), TUPLE1, REDUCE, STOP)],
    ["builtins.getattr", pk(0x80, 4, SHORT_BINUNICODE("builtins"), SHORT_BINUNICODE("getattr"), STACK_GLOBAL, STOP)],
    ["builtins.__import__", pk(0x80, 4, SHORT_BINUNICODE("builtins"), SHORT_BINUNICODE("__import__"), STACK_GLOBAL, SHORT_BINUNICODE("os"), TUPLE1, REDUCE, STOP)],
    ["subprocess.Popen", pk(PROTO2, GLOBAL("subprocess", "Popen"), STOP)],
    ["builtins.bytearray", hex("80049523000000000000008c086275696c74696e73948c0962797465617272617994939443027a7a94859452942e")],
    ["torch.load", pk(PROTO2, GLOBAL("torch", "load"), STOP)],
    ["torch._utils._rebuild_device_tensor_from_numpy", pk(PROTO2, GLOBAL("torch._utils", "_rebuild_device_tensor_from_numpy"), STOP)],
    // JS object-model names must not resolve through prototypes.
    ["collections.__proto__", pk(PROTO2, GLOBAL("collections", "__proto__"), STOP)],
    ["collections.constructor", pk(PROTO2, GLOBAL("collections", "constructor"), STOP)],
    ["__proto__.OrderedDict", pk(PROTO2, GLOBAL("__proto__", "OrderedDict"), STOP)],
    // Name games: a module containing the allowed name must not match.
    ["collections.OrderedDict.fromkeys", pk(PROTO2, GLOBAL("collections.OrderedDict", "fromkeys"), STOP)],
  ];
  for (const [label, bytes] of cases) {
    test(label, () => {
      const e = expectCode(() => unpickle(bytes, { globals: TORCH_GLOBALS, source: "evil.pkl" }), "PICKLE_FORBIDDEN_GLOBAL");
      expect(e.message).toContain(JSON.stringify(label.replace(/ \(.*\)$/, "")));
      expect(e.message).toContain("evil.pkl");
      expect(e.details.file).toBe("evil.pkl");
    });
  }

  test("no side effects: the payload never ran", async () => {
    expect(await Bun.file("/tmp/trtb-pwned").exists()).toBe(false);
  });

  test("REDUCE of an allowed but non-callable global → PICKLE_FORBIDDEN_GLOBAL", () => {
    expectCode(() => unpickle(pk(PROTO2, GLOBAL("torch", "FloatStorage"), EMPTY_TUPLE, REDUCE, STOP), { globals: TORCH_GLOBALS }), "PICKLE_FORBIDDEN_GLOBAL", /torch\.FloatStorage.*not as a callable/);
  });

  test("no globals at all by default", () => {
    expectCode(() => unpickle(pk(PROTO2, GLOBAL("collections", "OrderedDict"), STOP)), "PICKLE_FORBIDDEN_GLOBAL");
  });
});

describe("forbidden opcodes", () => {
  const cases: [string, Uint8Array][] = [
    ["INST", pk(PROTO2, MARK, "i", "os\nsystem\n", STOP)],
    ["OBJ", pk(PROTO2, MARK, GLOBAL("collections", "OrderedDict"), "o", STOP)],
    ["NEWOBJ", pk(PROTO2, GLOBAL("collections", "OrderedDict"), EMPTY_TUPLE, 0x81, STOP)],
    ["NEWOBJ_EX", pk(0x80, 4, GLOBAL("collections", "OrderedDict"), EMPTY_TUPLE, "}", 0x92, STOP)],
    ["EXT1", pk(PROTO2, 0x82, 1, STOP)],
    ["EXT2", pk(PROTO2, 0x83, 1, 0, STOP)],
    ["EXT4", pk(PROTO2, 0x84, 1, 0, 0, 0, STOP)],
    ["PERSID", pk(PROTO2, "P", "x\n", STOP)],
    ["NEXT_BUFFER", pk(0x80, 5, 0x97, STOP)],
    ["READONLY_BUFFER", pk(0x80, 5, "N", 0x98, STOP)],
    ["INT", pk("I", "1\n", STOP)],
    ["BINPERSID", pk(PROTO2, "N", "Q", STOP)], // without a persistent loader
  ];
  for (const [name, bytes] of cases) {
    test(name, () => {
      expectCode(() => unpickle(bytes, { globals: TORCH_GLOBALS }), "PICKLE_FORBIDDEN_OPCODE", new RegExp(name === "BINPERSID" ? "BINPERSID" : `opcode ${name}`));
    });
  }

  test("BUILD on anything but a dict", () => {
    expectCode(() => unpickle(pk(PROTO2, "]", "}", "b", STOP)), "PICKLE_FORBIDDEN_OPCODE", /BUILD on list/);
    expectCode(() => unpickle(pk(PROTO2, "}", "]", "b", STOP)), "PICKLE_FORBIDDEN_OPCODE", /BUILD/);
  });
});

describe("limits", () => {
  test("100k MARKs → PICKLE_TOO_DEEP", () => {
    expectCode(() => unpickle(pk(PROTO2, new Array(100_000).fill(0x28), STOP)), "PICKLE_TOO_DEEP", /MARK/);
  });
  test("100k nested TUPLE1 → PICKLE_TOO_DEEP", () => {
    expectCode(() => unpickle(pk(PROTO2, "N", new Array(100_000).fill(TUPLE1), STOP)), "PICKLE_TOO_DEEP", /nested/);
  });
  test("deeply nested lists built with APPEND → PICKLE_TOO_DEEP", () => {
    // [] ([] ([] … APPEND) APPEND) APPEND: each list is appended into the one below it.
    expectCode(() => unpickle(pk(PROTO2, new Array(5000).fill("]"), new Array(4999).fill("a"), STOP)), "PICKLE_TOO_DEEP");
  });
  test("nesting within the limit is fine; cycles through the memo do not loop", () => {
    expect(unpickle(pk(PROTO2, "N", new Array(500).fill(TUPLE1), STOP))).toBeDefined();
    const cyc = unpickle(pk(PROTO2, "]", "q", 0, "h", 0, "a", STOP)) as PickleValue[];
    expect(cyc[0]).toBe(cyc);
  });
  test("stack and memo caps", () => {
    expectCode(() => unpickle(pk(PROTO2, new Array(2000).fill("N"), STOP), { maxStack: 1000 }), "PICKLE_TOO_DEEP", /stack/);
    const puts = Array.from({ length: 200 }, (_, i) => ["q", i]);
    expectCode(() => unpickle(pk(PROTO2, "N", puts, STOP), { maxMemo: 100 }), "PICKLE_TOO_DEEP", /memo/);
  });
  test("lengths beyond the input → PICKLE_TRUNCATED", () => {
    expectCode(() => unpickle(pk(PROTO2, "X", u32(0x7fffffff), "abc", STOP)), "PICKLE_TRUNCATED");
    expectCode(() => unpickle(pk(0x80, 4, 0x8d, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], STOP)), "PICKLE_TRUNCATED");
    expectCode(() => unpickle(pk(0x80, 4, 0x95, [0xff, 0xff, 0, 0, 0, 0, 0, 0], "N", STOP)), "PICKLE_TRUNCATED", /FRAME/);
    expectCode(() => unpickle(pk(PROTO2, "c", "os")), "PICKLE_TRUNCATED", /newline/);
    expectCode(() => unpickle(pk(PROTO2, "N")), "PICKLE_TRUNCATED", /before STOP/);
    expectCode(() => unpickle(new Uint8Array(0)), "PICKLE_TRUNCATED");
  });
});

describe("malformed → PICKLE_BAD", () => {
  const cases: [string, Uint8Array, RegExp][] = [
    ["unknown opcode", pk(PROTO2, 0xff, STOP), /unknown opcode 0xff/],
    ["protocol 6", pk(0x80, 6, "N", STOP), /protocol 6/],
    ["stack underflow", pk(PROTO2, TUPLE1, STOP), /empty stack/],
    ["TUPLE without MARK", pk(PROTO2, "N", TUPLE, STOP), /without a MARK/],
    ["odd SETITEMS", pk(PROTO2, "}", MARK, "N", "u", STOP), /odd/],
    ["SETITEM on a list", pk(PROTO2, "]", "N", "N", "s", STOP), /not a dict/],
    ["APPEND on a tuple", pk(PROTO2, EMPTY_TUPLE, "N", "a", STOP), /not a list/],
    ["invalid UTF-8", pk(PROTO2, "X", u32(2), 0xc3, 0x28, STOP), /UTF-8/],
    ["BINGET of an unknown key", pk(PROTO2, "h", 5, STOP), /memo key 5/],
    ["trailing bytes", pk(PROTO2, "N", STOP, "N"), /trailing/],
    ["leftover stack", pk(PROTO2, "N", "N", STOP), /extra values/],
    ["unclosed MARK", pk(PROTO2, MARK, "N", STOP), /unclosed MARK/],
    ["STACK_GLOBAL of non-strings", pk(0x80, 4, "K", 1, "K", 2, STACK_GLOBAL, STOP), /two strings/],
    ["REDUCE of a non-global", pk(PROTO2, BINUNICODE("os.system"), EMPTY_TUPLE, REDUCE, STOP), /not an allowed callable/],
    ["huge LONG4", pk(PROTO2, 0x8b, u32(1000), new Array(1000).fill(1), STOP), /too large/],
    ["overlong GLOBAL line", pk(PROTO2, "c", "a".repeat(1000), "\n", "b\n", STOP), /longer/],
  ];
  for (const [label, bytes, msg] of cases) test(label, () => void expectCode(() => unpickle(bytes, { globals: TORCH_GLOBALS }), "PICKLE_BAD", msg));

  test("bad arguments to an allowed callable carry the callable and position", () => {
    const bytes = pk(PROTO2, GLOBAL("torch._utils", "_rebuild_tensor_v2"), "K", 1, TUPLE1, REDUCE, STOP);
    expectCode(() => unpickle(bytes, { globals: TORCH_GLOBALS, source: "x.pkl" }), "PTH_BAD_TENSOR", /x\.pkl @ \d+: torch\._utils\._rebuild_tensor_v2: .*takes 6 or 7 arguments/);
  });
});

describe("fuzz", () => {
  const base = ZipArchive.open(FIXTURE).read("consolidated.00/data.pkl").slice();
  let seed = 0xdecafbad;
  const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) >>> 8) / (1 << 24);
  const run = (b: Uint8Array): string => {
    try {
      loadTorchPickle(b, "fuzz.pkl");
      return "OK";
    } catch (e) {
      if (e instanceof TrtbError) return e.code;
      throw e;
    }
  };

  test("every prefix of the fixture pickle fails cleanly", () => {
    for (let n = 0; n < base.length; n++) expect(run(base.subarray(0, n))).not.toBe("OK");
  });

  test("4000 random mutations of the fixture pickle only ever throw TrtbError", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 4000; i++) {
      const b = base.slice();
      const k = 1 + Math.floor(rnd() * 6);
      for (let j = 0; j < k; j++) {
        const at = Math.floor(rnd() * b.length);
        const r = rnd();
        if (r < 0.6) b[at] = Math.floor(rnd() * 256);
        else if (r < 0.8) b[at] = b[at]! ^ (1 << Math.floor(rnd() * 8));
        else b.copyWithin(at, Math.floor(rnd() * b.length), Math.floor(rnd() * b.length));
      }
      seen.add(run(b));
    }
    expect(seen.size).toBeGreaterThan(3);
  });

  test("2000 random byte strings only ever throw TrtbError", () => {
    for (let i = 0; i < 2000; i++) {
      const b = new Uint8Array(2 + Math.floor(rnd() * 200));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rnd() * 256);
      if (rnd() < 0.5) b.set([0x80, 2]);
      run(b);
    }
  });
});
