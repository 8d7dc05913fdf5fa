import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { TrtbError } from "../../src/errors.ts";
import { openHFCheckpoint } from "../../src/format/hf-checkpoint.ts";
import { serializeSafetensors } from "../../src/format/safetensors.ts";

const FIXTURES = path.resolve(import.meta.dir, "../../../shared/fixtures");
const LLAMA = path.join(FIXTURES, "hf-tiny/llama");

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "trtb-hf-"));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof TrtbError) return e.code;
    throw e;
  }
  return "OK";
}

function errOf(fn: () => unknown): TrtbError {
  try {
    fn();
  } catch (e) {
    if (e instanceof TrtbError) return e;
    throw e;
  }
  throw new Error("expected a TrtbError");
}

/** A safetensors file holding U8 [2] tensors with the given names. */
const shard = (...names: string[]) => serializeSafetensors(names.map((name) => ({ name, dtype: "U8" as const, shape: [2], data: new Uint8Array([1, 2]) })));

/** Make a model dir from { fileName: contents }. */
function modelDir(files: Record<string, string | Uint8Array | object>): string {
  const dir = fs.mkdtempSync(path.join(tmp, "m-"));
  for (const [name, v] of Object.entries(files))
    fs.writeFileSync(path.join(dir, name), typeof v === "string" || v instanceof Uint8Array ? v : JSON.stringify(v));
  return dir;
}

describe("sharded fixture (index + 3 shards)", () => {
  test("opens every shard, names in weight_map order, tensors where the index says", () => {
    const index = JSON.parse(fs.readFileSync(path.join(LLAMA, "model.safetensors.index.json"), "utf8"));
    using ck = openHFCheckpoint(LLAMA);
    expect(ck.layout).toBe("index");
    expect(ck.files.map((f) => path.basename(f.path))).toEqual([
      "model-00001-of-00003.safetensors",
      "model-00002-of-00003.safetensors",
      "model-00003-of-00003.safetensors",
    ]);
    expect(ck.names()).toEqual(Object.keys(index.weight_map));
    expect(ck.names().length).toBe(21);
    let total = 0;
    for (const n of ck.names()) {
      expect(path.basename(ck.fileOf(n).path)).toBe(index.weight_map[n]);
      const t = ck.get(n);
      expect(t.dtype).toBe("BF16");
      expect(t.bytes().length).toBe(t.byteLength);
      total += t.byteLength;
    }
    expect(total).toBe(index.metadata.total_size);
    expect(ck.get("model.embed_tokens.weight").shape).toEqual([256, 128]);
    expect(ck.has("nope")).toBe(false);
    expect(codeOf(() => ck.get("nope"))).toBe("HF_MISSING_TENSOR");
  });

  test("single model.safetensors", () => {
    using ck = openHFCheckpoint(path.join(FIXTURES, "hf-tiny/gemma"));
    expect(ck.layout).toBe("single");
    expect(ck.files.length).toBe(1);
    expect(ck.names().length).toBe(20);
  });

  test("the index does not need to list shards in order, and extra shard tensors are ignored", () => {
    const dir = modelDir({
      // A raw string: JSON.stringify would move the integer-like key "0" first.
      "model.safetensors.index.json": '{"metadata":{"total_size":1},"weight_map":{"z":"s2.safetensors","0":"s1.safetensors","a":"s1.safetensors"}}',
      "s1.safetensors": shard("a", "0", "unlisted"),
      "s2.safetensors": shard("z"),
    });
    using ck = openHFCheckpoint(dir);
    expect(ck.names()).toEqual(["z", "0", "a"]);
    expect(ck.has("unlisted")).toBe(false);
  });
});

describe("layouts without an index", () => {
  test("several files: names unique across files, in file order", () => {
    const dir = modelDir({ "b.safetensors": shard("y"), "a.safetensors": shard("x", "w") });
    using ck = openHFCheckpoint(dir);
    expect(ck.layout).toBe("files");
    expect(ck.names()).toEqual(["w", "x", "y"]);
  });

  test("model-*-of-* shards are preferred over stray safetensors", () => {
    const dir = modelDir({
      "model-00001-of-00002.safetensors": shard("a"),
      "model-00002-of-00002.safetensors": shard("b"),
      "adapter_model.safetensors": shard("a"),
    });
    using ck = openHFCheckpoint(dir);
    expect(ck.names()).toEqual(["a", "b"]);
  });
});

describe("error codes", () => {
  test("HF_NOT_DIR", () => {
    expect(codeOf(() => openHFCheckpoint(path.join(tmp, "absent")))).toBe("HF_NOT_DIR");
    expect(codeOf(() => openHFCheckpoint(path.join(LLAMA, "config.json")))).toBe("HF_NOT_DIR");
  });

  test("HF_NO_WEIGHTS, pointing at .bin pickles", () => {
    expect(codeOf(() => openHFCheckpoint(modelDir({ "config.json": "{}" })))).toBe("HF_NO_WEIGHTS");
    const e = errOf(() => openHFCheckpoint(modelDir({ "config.json": "{}", "pytorch_model.bin": "x" })));
    expect(e.code).toBe("HF_NO_WEIGHTS");
    expect(e.message).toContain("pytorch_model.bin");
    expect(e.message).toContain("not supported");
    expect(e.message).toContain("convert");
  });

  test("HF_INDEX_JSON", () => {
    const bad = (index: string | object) => codeOf(() => openHFCheckpoint(modelDir({ "model.safetensors.index.json": index, "s.safetensors": shard("a") })));
    expect(bad("{not json")).toBe("HF_INDEX_JSON");
    expect(bad(new Uint8Array([0x7b, 0xff, 0x7d]) as unknown as string)).toBe("HF_INDEX_JSON");
    expect(bad({ metadata: {} })).toBe("HF_INDEX_JSON");
    expect(bad({ weight_map: [] })).toBe("HF_INDEX_JSON");
    expect(bad({ weight_map: { a: 3 } })).toBe("HF_INDEX_JSON");
    expect(bad('{"weight_map":{"a":"s.safetensors","a":"s.safetensors"}}')).toBe("HF_INDEX_JSON");
    expect(bad({ weight_map: { a: "../s.safetensors" } })).toBe("HF_INDEX_JSON");
    expect(bad({ weight_map: { a: "/etc/passwd" } })).toBe("HF_INDEX_JSON");
    expect(bad({ weight_map: { a: "s.safetensors" } })).toBe("OK");
  });

  test("HF_SHARD_MISSING", () => {
    const dir = modelDir({ "model.safetensors.index.json": { weight_map: { a: "s1.safetensors", b: "s2.safetensors" } }, "s1.safetensors": shard("a") });
    const e = errOf(() => openHFCheckpoint(dir));
    expect(e.code).toBe("HF_SHARD_MISSING");
    expect(e.message).toContain("s2.safetensors");
  });

  test("HF_TENSOR_NOT_IN_SHARD", () => {
    const dir = modelDir({ "model.safetensors.index.json": { weight_map: { a: "s1.safetensors", b: "s1.safetensors" } }, "s1.safetensors": shard("a"), "s2.safetensors": shard("b") });
    const e = errOf(() => openHFCheckpoint(dir));
    expect(e.code).toBe("HF_TENSOR_NOT_IN_SHARD");
    expect(e.details.tensor).toBe("b");
  });

  test("HF_DUPLICATE_TENSOR", () => {
    const e = errOf(() => openHFCheckpoint(modelDir({ "a.safetensors": shard("x"), "b.safetensors": shard("x") })));
    expect(e.code).toBe("HF_DUPLICATE_TENSOR");
    expect(e.message).toContain("a.safetensors");
    expect(e.message).toContain("b.safetensors");
  });

  test("a corrupt shard reports its ST_ code and file", () => {
    const dir = modelDir({ "model.safetensors.index.json": { weight_map: { a: "s1.safetensors" } }, "s1.safetensors": new Uint8Array(4) });
    const e = errOf(() => openHFCheckpoint(dir));
    expect(e.code).toBe("ST_TOO_SMALL");
    expect(e.details.file).toBe(path.join(dir, "s1.safetensors"));
  });
});
