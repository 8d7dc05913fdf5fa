/**
 * Hostile and careless input, by the classes: data loss (outputs on inputs), hangs (FIFOs,
 * devices, huge sizes), crashes (prototype keys, read-only outputs, empty inputs), silent garbage
 * (NaN/Inf, tied heads that differ, impossible head counts, extra layers, bad UTF-8), messages that
 * do not say where, and engine directories whose config is not their own. Every case asserts its
 * exact code, and every refused run leaves the source byte-identical.
 */
import { afterAll, describe, expect, spyOn, test } from "bun:test";
import { createHash } from "node:crypto";
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fakeBackend } from "../src/builder/backend.ts";
import { buildCheckpoint } from "../src/builder/checkpoint.ts";
import { convertCheckpoint } from "../src/convert.ts";
import { Engine } from "../src/engine/engine.ts";
import { openEngineFile } from "../src/engine/engine-file.ts";
import { SafetensorsWriter } from "../src/format/safetensors.ts";
import { log } from "../src/log.ts";
import { familyForCheckpoint, familyForHF } from "../src/models/registry.ts";
import { quantize } from "../src/quantize.ts";
import { loadCpuRunner } from "../src/runtime/index.ts";
import { capNewTokens, readInputIds, writeRunOutputs } from "../src/runtime/io.ts";
import { firstNonFiniteTS } from "../src/numeric.ts";
import { firstNonFinite } from "../src/tensor/finite.ts";
import { expectCode, expectCodeAsync, fixture, type RawTensor, readRaw, readRawDir, tempDir } from "./helpers.ts";

/** A hang is anything slower than this (the slowest refusal here takes milliseconds). */
const NO_HANG_MS = 3000;

const tmp = tempDir("trtb-hostile-");
afterAll(() => tmp[Symbol.dispose]());
let n = 0;
const fresh = (name = "d") => {
  const d = join(tmp.path, `${name}-${n++}`);
  mkdirSync(d, { recursive: true });
  return d;
};

/** sha256 of every file under `dir` (recursively), by relative path. */
function hashDir(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d).sort()) {
      const p = join(d, e);
      const st = statSync(p);
      if (st.isDirectory()) walk(p, `${rel}${e}/`);
      else if (st.isFile()) out[`${rel}${e}`] = createHash("sha256").update(readFileSync(p)).digest("hex");
    }
  };
  walk(dir, "");
  return out;
}

const LLAMA = fixture("llama");
const llamaConfig = () => JSON.parse(readFileSync(join(LLAMA, "config.json"), "utf8")) as Record<string, unknown>;

/** A one-file copy of the tiny Llama, with `edit` applied to its config and tensors. */
function tinyLlama(edit: { config?: (c: Record<string, unknown>) => void; tensors?: (t: Map<string, RawTensor>) => void } = {}): string {
  const dir = fresh("llama");
  const cfg = llamaConfig();
  edit.config?.(cfg);
  writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
  const tensors = readRawDir(LLAMA);
  edit.tensors?.(tensors);
  const w = SafetensorsWriter.create(join(dir, "model.safetensors"), [...tensors].map(([name, t]) => ({ name, dtype: t.dtype as "BF16", shape: t.shape })));
  for (const [name, t] of tensors) w.write(name, t.bytes);
  w.commit();
  return dir;
}

/** bf16 NaN at flat element `i` of a tensor's bytes. */
function poison(t: RawTensor, i: number, bits = 0x7fc0): void {
  new DataView(t.bytes.buffer, t.bytes.byteOffset).setUint16(i * 2, bits, true);
}

async function timed<T>(f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await f();
  } finally {
    expect(performance.now() - t0).toBeLessThan(NO_HANG_MS);
  }
}

describe("data loss: an output that is, contains or lies inside an input is refused before any write", () => {
  test("convert --output_dir = --model_dir, M/., M/sub, a parent of M, a symlink to M", async () => {
    const src = tinyLlama();
    const before = hashDir(src);
    const link = join(tmp.path, `link-${n++}`);
    symlinkSync(src, link);
    for (const out of [src, `${src}/.`, `${src}/../${src.split("/").pop()}`, join(src, "ckpt"), tmp.path, link])
      await expectCodeAsync(convertCheckpoint({ modelDir: src, outputDir: out }), "IO_OUTPUT_IS_INPUT", /--output_dir/);
    expect(hashDir(src)).toEqual(before);
    expect(existsSync(join(src, "ckpt"))).toBe(false);
  });

  test("quantize --output_dir = --model_dir", async () => {
    const src = tinyLlama();
    const before = hashDir(src);
    await expectCodeAsync(quantize(src, `${src}/.`, { quant_algo: "W4A16" }), "IO_OUTPUT_IS_INPUT");
    expect(hashDir(src)).toEqual(before);
  });

  test("trtllm-build --output_dir = --checkpoint_dir keeps the checkpoint's config.json", async () => {
    const ckpt = fresh("ckpt");
    await convertCheckpoint({ modelDir: LLAMA, outputDir: ckpt });
    const before = hashDir(ckpt);
    await expectCodeAsync(buildCheckpoint({ checkpointDir: ckpt, outputDir: ckpt, backend: fakeBackend() }), "IO_OUTPUT_IS_INPUT", /--checkpoint_dir/);
    await expectCodeAsync(buildCheckpoint({ checkpointDir: ckpt, outputDir: join(ckpt, "engine"), backend: fakeBackend() }), "IO_OUTPUT_IS_INPUT");
    expect(hashDir(ckpt)).toEqual(before);
  });

  test("a read-only output location is IO_READ_ONLY, not a raw EROFS", async () => {
    const ro = existsSync("/sys") ? "/sys/trtb-hostile-out" : null;
    if (ro) await expectCodeAsync(convertCheckpoint({ modelDir: LLAMA, outputDir: ro }), "IO_READ_ONLY");
    if (process.getuid?.() !== 0) {
      const d = fresh("ro");
      chmodSync(d, 0o555);
      await expectCodeAsync(convertCheckpoint({ modelDir: LLAMA, outputDir: join(d, "out") }), "IO_READ_ONLY");
      chmodSync(d, 0o755);
    }
  });
});

describe("hangs: special files and huge sizes fail at once", () => {
  const mkfifo = (p: string) => Bun.spawnSync(["mkfifo", p]).exitCode === 0;

  test("a FIFO as config.json, as the shard, as params.json", async () => {
    const a = fresh("fifo");
    cpSync(join(LLAMA, "model-00001-of-00003.safetensors"), join(a, "model.safetensors"));
    if (!mkfifo(join(a, "config.json"))) return;
    await timed(() => expectCodeAsync(convertCheckpoint({ modelDir: a, outputDir: fresh("o") }), "IO_NOT_FILE", /FIFO/));

    const b = fresh("fifo");
    cpSync(join(LLAMA, "config.json"), join(b, "config.json"));
    mkfifo(join(b, "model.safetensors"));
    await timed(() => expectCodeAsync(convertCheckpoint({ modelDir: b, outputDir: fresh("o") }), "ST_IO", /not a regular file/));

    const c = fresh("fifo");
    mkfifo(join(c, "params.json"));
    await timed(() => expectCodeAsync(convertCheckpoint({ metaCkptDir: c, outputDir: fresh("o") }), "IO_NOT_FILE"));
  });

  test("a FIFO as the engine file", async () => {
    const e = fresh("fifo-engine");
    if (!mkfifo(join(e, "rank0.engine"))) return;
    await timed(async () => expectCode(() => openEngineFile(join(e, "rank0.engine")), "IO_NOT_FILE", /not a regular file/));
  });

  test("an index (or an index entry) pointing at /dev/zero", async () => {
    if (!existsSync("/dev/zero")) return;
    const a = fresh("zero");
    for (const f of readdirSync(LLAMA)) if (f !== "model.safetensors.index.json") cpSync(join(LLAMA, f), join(a, f));
    symlinkSync("/dev/zero", join(a, "model.safetensors.index.json"));
    await timed(() => expectCodeAsync(convertCheckpoint({ modelDir: a, outputDir: fresh("o") }), "IO_NOT_FILE", /character device/));

    const b = fresh("zero");
    for (const f of readdirSync(LLAMA)) if (f !== "model-00003-of-00003.safetensors") cpSync(join(LLAMA, f), join(b, f));
    symlinkSync("/dev/zero", join(b, "model-00003-of-00003.safetensors"));
    await timed(() => expectCodeAsync(convertCheckpoint({ modelDir: b, outputDir: fresh("o") }), "ST_IO", /not a regular file/));
  });

  test("num_hidden_layers 1e9, vocab_size 1e12: refused by the schema before anything is sized", async () => {
    for (const [k, v] of [["num_hidden_layers", 1e9], ["vocab_size", 1e12], ["hidden_size", 2 ** 40], ["max_position_embeddings", 1e15]] as const) {
      const d = fresh("huge");
      writeFileSync(join(d, "config.json"), JSON.stringify({ ...llamaConfig(), [k]: v }));
      cpSync(join(LLAMA, "model-00001-of-00003.safetensors"), join(d, "model.safetensors"));
      await timed(() => expectCodeAsync(convertCheckpoint({ modelDir: d, outputDir: fresh("o") }), "HF_CONFIG_INVALID", new RegExp(k)));
    }
  });

  test("--max_new_tokens 1e9 in ids mode is capped at the model's positions", () => {
    const warn = spyOn(log, "warn").mockImplementation(Object.assign(() => {}, { raw: () => {} }));
    try {
      expect(capNewTokens(1e9, [[1, 2, 3]], 512, "max_position_embeddings")).toBe(509);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(capNewTokens(8, [[1, 2, 3]], 512, "max_position_embeddings")).toBe(8);
      expect(capNewTokens(1e9, [[1]], null, "max_position_embeddings")).toBe(2 ** 16);
    } finally {
      warn.mockRestore();
    }
    expectCode(() => capNewTokens(4, [new Array(512).fill(1)], 512, "max_position_embeddings"), "RUN_PROMPT_TOO_LONG");
  });
});

describe("crashes: prototype keys, empty inputs", () => {
  test('"architectures": ["constructor"] / ["__proto__"] / ["toString"] never reach Object.prototype', async () => {
    for (const arch of ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf"]) {
      await expectCodeAsync(familyForHF(arch), "CFG_UNSUPPORTED_ARCH");
      await expectCodeAsync(familyForCheckpoint(arch), "CFG_UNSUPPORTED_ARCH");
      const d = tinyLlama({ config: (c) => void (c.architectures = [arch]) });
      await expectCodeAsync(convertCheckpoint({ modelDir: d, outputDir: fresh("o") }), "CFG_UNSUPPORTED_ARCH");
    }
  });

  test("an empty [0, 0] input_ids is RUN_BAD_INPUT, and writeRunOutputs refuses nothing to write", () => {
    const f = join(fresh("ids"), "in.safetensors");
    const w = SafetensorsWriter.create(f, [{ name: "input_ids", dtype: "I32", shape: [0, 0] }]);
    w.write("input_ids", new Uint8Array(0));
    w.commit();
    expectCode(() => readInputIds(f), "RUN_BAD_INPUT", /empty/);
    expectCode(() => writeRunOutputs(join(fresh("o"), "out.safetensors"), { logits: { data: [], vocab: 8 } }), "RUN_BAD_INPUT");
  });
});

describe("silent garbage: refused or warned, naming the tensor", () => {
  test("a NaN weight: NUM_NONFINITE with the tensor and index (direct copy and cast); --allow_nonfinite writes it with a warning", async () => {
    const d = tinyLlama({ tensors: (t) => poison(t.get("model.layers.1.mlp.down_proj.weight")!, 384 + 5) });
    const before = hashDir(d);
    const out = fresh("o");
    // bf16 → bf16 is a direct copy of the mapped bytes; bf16 → f16 goes through the cast.
    for (const dtype of ["bfloat16", "float16"] as const)
      await expectCodeAsync(convertCheckpoint({ modelDir: d, outputDir: out, dtype }), "NUM_NONFINITE", /transformer\.layers\.1\.mlp\.proj\.weight.*index \[1, 5\]/);
    expect(existsSync(join(out, "config.json"))).toBe(false);
    const warn = spyOn(log, "warn").mockImplementation(Object.assign(() => {}, { raw: () => {} }));
    try {
      await convertCheckpoint({ modelDir: d, outputDir: out, allowNonfinite: true });
      expect(warn.mock.calls.some((c) => /mlp\.proj\.weight.*non-finite/.test(String(c[0])))).toBe(true);
    } finally {
      warn.mockRestore();
    }
    // …and the CPU runner refuses that checkpoint instead of running to all-NaN logits.
    await expectCodeAsync(loadCpuRunner(out), "NUM_NONFINITE");
    expect(hashDir(d)).toEqual(before);
  });

  test("Inf, and a NaN hidden by int4 quantization", async () => {
    const d = tinyLlama({ tensors: (t) => poison(t.get("model.layers.0.self_attn.q_proj.weight")!, 7, 0xff80) });
    await expectCodeAsync(quantize(d, fresh("o"), { quant_algo: "W4A16" }), "NUM_NONFINITE", /q_proj|qkv/);
    await expectCodeAsync(quantize(d, fresh("o"), { quant_algo: "W4A16_AWQ", group_size: 64 }), "NUM_NONFINITE");
    await expectCodeAsync(convertCheckpoint({ modelDir: d, outputDir: fresh("o") }), "NUM_NONFINITE", /-?Inf|non-finite/);
  });

  test("tie_word_embeddings true with a different lm_head: a warning naming both, and the embedding is used (as transformers)", async () => {
    const d = tinyLlama({ config: (c) => void (c.tie_word_embeddings = true) });
    const out = fresh("o");
    const warn = spyOn(log, "warn").mockImplementation(Object.assign(() => {}, { raw: () => {} }));
    try {
      await convertCheckpoint({ modelDir: d, outputDir: out });
      expect(warn.mock.calls.some((c) => /lm_head\.weight differs from model\.embed_tokens\.weight/.test(String(c[0])))).toBe(true);
    } finally {
      warn.mockRestore();
    }
    const rank0 = readRaw(join(out, "rank0.safetensors"));
    expect(rank0.get("lm_head.weight")!.bytes).toEqual(rank0.get("transformer.vocab_embedding.weight")!.bytes);
  });

  test("4 heads with 3 KV heads; hidden not divisible by heads without head_dim", async () => {
    const a = tinyLlama({ config: (c) => Object.assign(c, { num_attention_heads: 4, num_key_value_heads: 3, head_dim: 32 }) });
    await expectCodeAsync(convertCheckpoint({ modelDir: a, outputDir: fresh("o") }), "HF_CONFIG_INVALID", /num_key_value_heads: 3 KV heads do not divide 4/);
    const b = tinyLlama({ config: (c) => Object.assign(c, { num_attention_heads: 3, num_key_value_heads: 1, head_dim: null }) });
    await expectCodeAsync(convertCheckpoint({ modelDir: b, outputDir: fresh("o") }), "HF_CONFIG_INVALID", /hidden_size/);
  });

  test("model.layers.2.* beyond num_hidden_layers 2 is refused, not dropped", async () => {
    const d = tinyLlama({ tensors: (t) => void t.set("model.layers.2.input_layernorm.weight", t.get("model.layers.0.input_layernorm.weight")!) });
    await expectCodeAsync(convertCheckpoint({ modelDir: d, outputDir: fresh("o") }), "CFG_INVALID", /model\.layers\.2\.input_layernorm\.weight/);
  });

  test("invalid UTF-8 in config.json is HF_CONFIG_JSON, not U+FFFD", async () => {
    const d = tinyLlama();
    const text = readFileSync(join(d, "config.json"), "utf8").replace('"llama"', '"ll\u0000ma"');
    const bytes = Buffer.from(text);
    bytes[bytes.indexOf(0)] = 0xff;
    writeFileSync(join(d, "config.json"), bytes);
    await expectCodeAsync(convertCheckpoint({ modelDir: d, outputDir: fresh("o") }), "HF_CONFIG_JSON", /not valid UTF-8.*offset \d+/);
  });
});

describe("messages say where", () => {
  test("an I32 q_proj names the tensor and its file", async () => {
    const d = tinyLlama({ tensors: (t) => void (t.get("model.layers.0.self_attn.q_proj.weight")!.dtype = "I32", t.get("model.layers.0.self_attn.q_proj.weight")!.shape = [128, 64]) });
    await expectCodeAsync(convertCheckpoint({ modelDir: d, outputDir: fresh("o") }), "CONV_DTYPE", /model\.safetensors: tensor model\.layers\.0\.self_attn\.q_proj\.weight is I32/);
  });

  test("a Meta dim not divisible by n_heads names params.json", async () => {
    const d = fresh("meta");
    for (const f of readdirSync(fixture("llama-meta-mp2"))) cpSync(join(fixture("llama-meta-mp2"), f), join(d, f));
    const before = hashDir(d);
    writeFileSync(join(d, "params.json"), JSON.stringify({ dim: 128, n_layers: 2, n_heads: 3, n_kv_heads: 3, vocab_size: 256, norm_eps: 1e-5 }));
    await expectCodeAsync(convertCheckpoint({ metaCkptDir: d, outputDir: fresh("o") }), "META_BAD_PARAMS", /params\.json: dim 128 is not divisible by n_heads 3/);
    writeFileSync(join(d, "params.json"), JSON.stringify({ dim: 128, n_layers: 1e9, n_heads: 2, vocab_size: 256, norm_eps: 1e-5 }));
    await timed(() => expectCodeAsync(convertCheckpoint({ metaCkptDir: d, outputDir: fresh("o") }), "META_BAD_PARAMS", /n_layers/));
    writeFileSync(join(d, "params.json"), JSON.stringify({ dim: 128, n_layers: 1, n_heads: 2, vocab_size: 256, norm_eps: 1e-5 }));
    await expectCodeAsync(convertCheckpoint({ metaCkptDir: d, outputDir: fresh("o") }), "CFG_INVALID", /layers\.1\..*beyond n_layers 1/);
    delete before["params.json"];
    const after = hashDir(d);
    delete after["params.json"];
    expect(after).toEqual(before);
  });
});

describe("engine directories: config.json must belong to the engine", () => {
  test("a config claiming another dtype, head count, mapping or limits is ENGINE_CONFIG", async () => {
    const ckpt = fresh("ckpt");
    await convertCheckpoint({ modelDir: LLAMA, outputDir: ckpt });
    const eng = fresh("engine");
    await buildCheckpoint({ checkpointDir: ckpt, outputDir: eng, backend: fakeBackend(), buildConfig: { max_num_tokens: 32 } });
    await Engine.fromDir(eng); // as built: fine
    const good = readFileSync(join(eng, "config.json"), "utf8");
    const edits: [string, (c: { pretrained_config: Record<string, unknown>; build_config: Record<string, unknown> }) => void][] = [
      ["dtype", (c) => void (c.pretrained_config.dtype = c.pretrained_config.dtype === "float16" ? "bfloat16" : "float16")],
      ["num_attention_heads", (c) => void (c.pretrained_config.num_attention_heads = 4)],
      ["hidden_size", (c) => void (c.pretrained_config.hidden_size = 256)],
      ["max_batch_size", (c) => void (c.build_config.max_batch_size = 999)],
      ["mapping", (c) => void Object.assign(c.pretrained_config.mapping as object, { tp_size: 2, world_size: 2 })],
    ];
    for (const [field, edit] of edits) {
      const c = JSON.parse(good);
      edit(c);
      writeFileSync(join(eng, "config.json"), JSON.stringify(c));
      await expectCodeAsync(Engine.fromDir(eng), "ENGINE_CONFIG", new RegExp(field));
    }
  });
});

describe("the NaN scan itself", () => {
  test("native and TypeScript agree on the first bad index for every float dtype", () => {
    const cases: [string, number, number][] = [["F32", 4, 0x7f800000], ["F16", 2, 0x7c00], ["BF16", 2, 0x7f80]];
    for (const [dtype, es, inf] of cases) {
      const count = 200_000; // above the native threshold and the thread grain
      const b = new Uint8Array(count * es);
      expect(firstNonFinite(b, dtype as "F32")).toBe(-1);
      const dv = new DataView(b.buffer);
      const put = (i: number) => (es === 4 ? dv.setUint32(i * 4, inf, true) : dv.setUint16(i * 2, inf, true));
      put(150_001);
      put(123_457);
      expect(firstNonFinite(b, dtype as "F32")).toBe(123_457);
      expect(firstNonFiniteTS(b, dtype as "F32")).toBe(123_457);
      expect(firstNonFinite(b.subarray(0, 1000 * es), dtype as "F32")).toBe(-1);
    }
    expect(firstNonFinite(new Uint8Array([0, 0x7f, 0xff]), "F8_E4M3")).toBe(1);
    expect(firstNonFinite(new Uint8Array(4096).fill(0xff), "I8")).toBe(-1);
  });
});
