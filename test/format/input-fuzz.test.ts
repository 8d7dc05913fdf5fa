/**
 * Fuzz beside the safetensors fuzz: configs, index files, Meta params and run inputs, mutated at
 * random (seeded), only ever throw TrtbError — never a TypeError, a RangeError or a hang.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TrtbError } from "../../src/errors.ts";
import { openHFCheckpoint } from "../../src/format/hf-checkpoint.ts";
import { parseHFConfig, readHFConfig } from "../../src/format/hf-config.ts";
import { readMetaParams } from "../../src/format/pth.ts";
import { Mapping } from "../../src/mapping.ts";
import { familyForHF } from "../../src/models/registry.ts";
import { readInputIds } from "../../src/runtime/io.ts";
import { readPromptFile } from "../../src/runtime/prompts.ts";
import { fixture, tempDir } from "../helpers.ts";

/** Mutations per input kind (each a few ms). */
const ROUNDS = 300;

const tmp = tempDir("trtb-input-fuzz-");
afterAll(() => tmp[Symbol.dispose]());

/** xorshift32: reproducible. */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => ((s ^= s << 13), (s ^= s >>> 17), (s ^= s << 5), (s >>> 0) / 2 ** 32);
  return { next, int: (n: number) => Math.floor(next() * n), pick: <T>(a: readonly T[]): T => a[Math.floor(next() * a.length)]! };
}

const HOSTILE_VALUES: unknown[] = [
  null, true, false, 0, -1, 1e9, 1e308, -1e308, 0.5, 2 ** 53, "", "x", "constructor", "__proto__", [], [1, 2], {}, { a: 1 },
  "LlamaForCausalLM", ["constructor"], ["__proto__"], ["toString"], 3, 7, 64, 4096,
];

function mutateJson(r: ReturnType<typeof rng>, v: unknown, depth = 0): unknown {
  if (r.next() < 0.15 || depth > 3) return r.pick(HOSTILE_VALUES);
  if (Array.isArray(v)) return v.map((x) => (r.next() < 0.3 ? mutateJson(r, x, depth + 1) : x));
  if (v && typeof v === "object") {
    const o: Record<string, unknown> = { ...(v as Record<string, unknown>) };
    const keys = Object.keys(o);
    for (let k = 0; k < 1 + r.int(3); k++) {
      const op = r.int(4);
      const key = keys.length ? r.pick(keys) : "x";
      if (op === 0) delete o[key];
      else if (op === 1) o[key] = mutateJson(r, o[key], depth + 1);
      else if (op === 2) Object.defineProperty(o, r.pick(["__proto__", "constructor", "toString", key]), { value: r.pick(HOSTILE_VALUES), enumerable: true, configurable: true, writable: true });
      else o[key] = r.pick(HOSTILE_VALUES);
    }
    return o;
  }
  return r.pick(HOSTILE_VALUES);
}

function mutateBytes(r: ReturnType<typeof rng>, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(b);
  const op = r.int(3);
  if (op === 0) for (let k = 0; k < 1 + r.int(8); k++) out[r.int(out.length)] = r.int(256);
  if (op === 1) return out.subarray(0, r.int(out.length));
  if (op === 2) out[r.int(out.length)] = r.pick([0x80, 0xc0, 0xff, 0x00, 0x22, 0x7b, 0x7d]);
  return out;
}

async function onlyTrtbErrors(f: () => unknown): Promise<void> {
  try {
    await f();
  } catch (e) {
    if (!(e instanceof TrtbError)) throw new Error(`not a TrtbError: ${(e as Error)?.stack ?? e}`);
  }
}

describe("fuzz: inputs other than safetensors only ever throw TrtbError", () => {
  test("config.json: mutated values (schema, family config, bounds) and mutated bytes", async () => {
    const base = JSON.parse(readFileSync(join(fixture("llama"), "config.json"), "utf8"));
    const text = new TextEncoder().encode(JSON.stringify(base));
    const r = rng(1);
    const dir = join(tmp.path, "cfg");
    cpSync(fixture("llama"), dir, { recursive: true });
    let accepted = 0;
    for (let i = 0; i < ROUNDS; i++) {
      await onlyTrtbErrors(async () => {
        const hf = parseHFConfig(mutateJson(r, base));
        const fam = await familyForHF(hf.architectures[0]!);
        fam.configFromHF(hf, { mapping: new Mapping({ tpSize: r.pick([1, 2, 3]) }) });
        accepted++;
      });
      writeFileSync(join(dir, "config.json"), mutateBytes(r, text));
      await onlyTrtbErrors(() => readHFConfig(dir));
    }
    expect(accepted).toBeGreaterThan(0); // some mutations stay valid: the fuzz reaches the family code
  });

  test("model.safetensors.index.json: mutated structure and bytes", async () => {
    const src = fixture("llama");
    const dir = join(tmp.path, "idx");
    cpSync(src, dir, { recursive: true });
    const base = JSON.parse(readFileSync(join(src, "model.safetensors.index.json"), "utf8"));
    const bytes = readFileSync(join(src, "model.safetensors.index.json"));
    const shards = readdirSync(src).filter((f) => f.endsWith(".safetensors") && f.startsWith("model-"));
    const r = rng(2);
    for (let i = 0; i < ROUNDS; i++) {
      let body: Uint8Array | string;
      if (r.next() < 0.5) body = mutateBytes(r, bytes);
      else {
        const j = structuredClone(base);
        const names = Object.keys(j.weight_map);
        const t = r.pick(names);
        j.weight_map[t] = r.pick([...shards, "../config.json", "/dev/zero", "", "nope.safetensors", "config.json", 7, null, "a\u0000b"]);
        if (r.next() < 0.2) j.weight_map = r.pick(HOSTILE_VALUES);
        body = JSON.stringify(r.next() < 0.3 ? mutateJson(r, j) : j);
      }
      writeFileSync(join(dir, "model.safetensors.index.json"), body);
      await onlyTrtbErrors(() => openHFCheckpoint(dir).close());
    }
  });

  test("params.json of a Meta checkpoint", async () => {
    const src = fixture("llama-meta-mp2");
    const dir = join(tmp.path, "meta");
    cpSync(src, dir, { recursive: true });
    const base = JSON.parse(readFileSync(join(src, "params.json"), "utf8"));
    const bytes = readFileSync(join(src, "params.json"));
    const r = rng(3);
    for (let i = 0; i < ROUNDS; i++) {
      writeFileSync(join(dir, "params.json"), r.next() < 0.5 ? mutateBytes(r, bytes) : JSON.stringify(mutateJson(r, base)));
      await onlyTrtbErrors(() => readMetaParams(dir));
    }
  });

  test("run inputs: input_ids files of random shape, dtype and bytes; prompt files of random bytes", async () => {
    const r = rng(4);
    const f = join(tmp.path, "ids.safetensors");
    for (let i = 0; i < ROUNDS; i++) {
      const dtype = r.pick(["I32", "I64", "F32", "U8", "BF16"]);
      const shape = r.pick([[1, 4], [0, 0], [2, 0], [3], [1, 2, 2], [2, 3]]);
      const es = dtype === "I64" ? 8 : dtype === "U8" ? 1 : dtype === "BF16" ? 2 : 4;
      const data = new Uint8Array(shape.reduce((a, b) => a * b, 1) * es).map(() => r.int(256));
      const header = JSON.stringify({ [r.next() < 0.9 ? "input_ids" : "ids"]: { dtype, shape, data_offsets: [0, data.length] } });
      const hb = new TextEncoder().encode(header);
      const file = new Uint8Array(8 + hb.length + data.length);
      new DataView(file.buffer).setBigUint64(0, BigInt(hb.length), true);
      file.set(hb, 8);
      file.set(data, 8 + hb.length);
      writeFileSync(f, r.next() < 0.3 ? mutateBytes(r, file) : file);
      await onlyTrtbErrors(() => readInputIds(f));
    }
    for (const ext of [".txt", ".jsonl"]) {
      const p = join(tmp.path, `prompts${ext}`);
      for (let i = 0; i < ROUNDS / 3; i++) {
        writeFileSync(p, mutateBytes(r, new TextEncoder().encode(`{"text": "def f():"}\n{"messages": [{"role": "user", "content": "hi"}]}\n`)));
        await onlyTrtbErrors(() => readPromptFile(p));
      }
    }
  });
});
