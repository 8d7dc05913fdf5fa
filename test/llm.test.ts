/**
 * `LLM` end to end on tiny-pycode: on the CPU reference runner (from the HF dir and from a
 * checkpoint), greedy ids equal transformers' (reference.safetensors, TRAINING.json samples),
 * streaming deltas add up to the generated text, stop strings / ids end generation, limits cap or
 * refuse with exact codes; and the GPU path (build → engine cache → runner) on the CPU emulation of
 * the engine library with the fake build backend: a second create is a cache hit.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { copyFileSync, cpSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fakeBackend } from "../src/builder/backend.ts";
import { buildCheckpoint, convertCheckpoint, detectModelKind, LLM } from "../src/index.ts";
import { log } from "../src/log.ts";
import { expectCodeAsync, asI32, readRaw, SHARED, tempDir } from "./helpers.ts";
import { EMU_INFO, EmuContext } from "./runtime/_emu.ts";

const PYCODE = join(SHARED, "models/tiny-pycode");
const SAMPLES = JSON.parse(readFileSync(join(PYCODE, "TRAINING.json"), "utf8")).samples as Record<string, string>;

/** tiny-pycode with a smaller max_position_embeddings (weights and tokenizer linked). */
function shortModel(dir: string, positions: number): string {
  const cfg = JSON.parse(readFileSync(join(PYCODE, "config.json"), "utf8"));
  cfg.max_position_embeddings = positions;
  writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
  for (const f of ["model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]) symlinkSync(join(PYCODE, f), join(dir, f));
  return dir;
}

let warnings: string[] = [];
const savedWarn = log.warn;
beforeEach(() => {
  warnings = [];
  log.warn = Object.assign((m: unknown) => void warnings.push(String(m)), { raw: () => {} }) as typeof log.warn;
});
afterEach(() => {
  log.warn = savedWarn;
});

describe("LLM on the CPU reference runner", () => {
  test("HF dir: TRAINING.json's greedy samples, text and ids; generateStream deltas concatenate to the text", async () => {
    using llm = await LLM.create({ model: PYCODE, backend: "cpu" });
    expect(llm.backend).toBe("cpu");
    expect(llm.modelKind).toBe("hf");
    const prompts = Object.keys(SAMPLES);
    const outs = await llm.generate(prompts, { maxTokens: 60 });
    outs.forEach((o, i) => {
      const want = SAMPLES[prompts[i]!]!;
      expect(prompts[i]! + o.text).toBe(want);
      expect(o.promptTokenIds).toEqual(llm.tokenizer.encode(prompts[i]!));
      expect([...o.promptTokenIds, ...o.tokenIds]).toEqual(llm.tokenizer.encode(want));
      expect(o.finishReason).toBe("length");
      expect(o.timing.tokensPerSecond).toBeGreaterThan(0);
    });
    const deltas: string[] = [];
    const it = llm.generateStream(prompts[0]!, { maxTokens: 60 });
    let r = await it.next();
    while (!r.done) {
      deltas.push(r.value);
      r = await it.next();
    }
    expect(deltas.length).toBeGreaterThan(10);
    expect(deltas.join("")).toBe(outs[0]!.text);
    expect(r.value.tokenIds).toEqual(outs[0]!.tokenIds);
  });

  test("checkpoint dir: greedy ids equal reference.safetensors' greedy_ids", async () => {
    using d = tempDir();
    await convertCheckpoint({ modelDir: PYCODE, outputDir: d.path });
    expect(detectModelKind(d.path)).toBe("checkpoint");
    using llm = await LLM.create({ model: d.path });
    const ref = readRaw(join(PYCODE, "reference.safetensors"));
    const row0 = Array.from(asI32(ref.get("input_ids")!)).slice(0, 64);
    // The reference window has no BOS: pass its ids as they are.
    const [o] = await llm.generate({ promptTokenIds: row0 }, { maxTokens: 32 });
    expect([...row0, ...o!.tokenIds]).toEqual(Array.from(asI32(ref.get("greedy_ids")!)));
  });

  test("stop strings, stop ids, ignoreEos; sampling is seeded", async () => {
    using llm = await LLM.create({ model: PYCODE, backend: "cpu" });
    const p = "import numpy as np\n\n\nclass ";
    const [full] = await llm.generate(p, { maxTokens: 60 });
    const [s] = await llm.generate(p, { maxTokens: 60, stop: ['"""'] });
    expect(s!.finishReason).toBe("stop");
    expect(s!.stopReason).toBe('"""');
    expect(s!.text).toBe(full!.text.slice(0, full!.text.indexOf('"""')));
    const id = full!.tokenIds[5]!;
    const [t] = await llm.generate(p, { maxTokens: 60, stopTokenIds: [id] });
    expect(t!.tokenIds).toEqual(full!.tokenIds.slice(0, full!.tokenIds.indexOf(id) + 1));
    expect(t!.stopReason).toBe(id);
    const a = await llm.generate([p, p], { maxTokens: 12, temperature: 0.9, topK: 40, seed: 5 });
    const b = await llm.generate(p, { maxTokens: 12, temperature: 0.9, topK: 40, seed: 5 });
    expect(a[0]!.tokenIds).toEqual(b[0]!.tokenIds);
    expect(a[1]!.tokenIds).toEqual(b[0]!.tokenIds);
  });

  test("limits and bad input: exact codes", async () => {
    using d = tempDir();
    using llm = await LLM.create({ model: shortModel(d.path, 16), backend: "cpu" });
    const [o] = await llm.generate("def f(x):", { maxTokens: 60 });
    expect(o!.promptTokens + o!.tokenIds.length).toBe(16);
    expect(o!.finishReason).toBe("length");
    expect(warnings.join("\n")).toMatch(/max_tokens 60 capped at \d+/);
    await expectCodeAsync(llm.generate("x = 1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9 + 10"), "RUN_PROMPT_TOO_LONG", /max_position_embeddings 16/);
    await expectCodeAsync(llm.generate(""), "TOK_EMPTY_PROMPT");
    await expectCodeAsync(llm.generate([[{ role: "user", content: "hi" }]]), "TOK_NO_CHAT_TEMPLATE");
    await expectCodeAsync(llm.generate("x", { maxTokens: 0 }), "LLM_BAD_OPTION", /maxTokens/);
    await expectCodeAsync(LLM.create({ model: join(d.path, "nope") }), "LLM_UNKNOWN_MODEL");
    using bare = tempDir();
    for (const f of ["config.json", "model.safetensors"]) copyFileSync(join(PYCODE, f), join(bare.path, f));
    await expectCodeAsync(LLM.create({ model: bare.path, backend: "cpu" }), "TOK_MISSING_FILE", /tokenizer_dir/);
    llm.dispose();
    await expectCodeAsync(llm.generate("x"), "LLM_DISPOSED");
  });
});

describe("LLM on the GPU path (CPU emulation of the engine library, fake build backend)", () => {
  test("HF dir → engine built and cached; the second create loads it; greedy equals the CPU runner's (exact numerics)", async () => {
    using cache = tempDir();
    const opts = {
      model: PYCODE, backend: "gpu" as const, cacheDir: cache.path, buildBackend: fakeBackend(),
      buildConfig: { max_batch_size: 2, max_num_tokens: 64, max_seq_len: 128 },
    };
    const runner = () => ({ context: { ctx: new EmuContext(), info: EMU_INFO }, maxKvTokens: 256, numerics: "exact" as const });
    const p = "def fibonacci(n):\n";
    using cpu = await LLM.create({ model: PYCODE, backend: "cpu" });
    const [want] = await cpu.generate(p, { maxTokens: 6 });
    {
      using llm = await LLM.create({ ...opts, runner: runner() });
      expect(llm.backend).toBe("gpu");
      expect(llm.cacheHit).toBe(false);
      expect(readdirSync(llm.engineDir!).sort()).toEqual(["config.json", "generation_config.json", "rank0.engine", "tokenizer.json", "tokenizer_config.json"]);
      expect(llm.maxInputLen).toBe(128 - 1);
      const [o] = await llm.generate(p, { maxTokens: 6 });
      expect(o!.tokenIds).toEqual(want!.tokenIds);
    }
    using again = await LLM.create({ ...opts, runner: runner() });
    expect(again.cacheHit).toBe(true);
    expect(readdirSync(cache.path)).toHaveLength(1);
    const [o] = await again.generate(p, { maxTokens: 6 });
    expect(o!.text).toBe(want!.text);
    // Another build config is another entry.
    using other = await LLM.create({ ...opts, buildConfig: { ...opts.buildConfig, max_seq_len: 96 }, runner: runner() });
    expect(other.cacheHit).toBe(false);
    expect(readdirSync(cache.path)).toHaveLength(2);
    await expectCodeAsync(LLM.create({ model: other.engineDir!, backend: "cpu" }), "LLM_BACKEND");
  }, 120_000);

  test("convert → trtllm-build → engine dir copied alone elsewhere: text from the engine dir only", async () => {
    using d = tempDir();
    const ckpt = join(d.path, "ckpt");
    const eng = join(d.path, "engine");
    await convertCheckpoint({ modelDir: PYCODE, outputDir: ckpt });
    await buildCheckpoint({ checkpointDir: ckpt, outputDir: eng, backend: fakeBackend(), buildConfig: { max_batch_size: 2, max_num_tokens: 64, max_seq_len: 64 } });
    const moved = join(d.path, "elsewhere", "engine");
    cpSync(eng, moved, { recursive: true });
    rmSync(ckpt, { recursive: true });
    rmSync(eng, { recursive: true });
    expect(detectModelKind(moved)).toBe("engine");
    using llm = await LLM.create({ model: moved, runner: { context: { ctx: new EmuContext(), info: EMU_INFO }, maxKvTokens: 128, numerics: "exact" } });
    expect(llm.backend).toBe("gpu");
    const p = Object.keys(SAMPLES)[1]!;
    const [o] = await llm.generate(p, { maxTokens: 5 });
    expect(SAMPLES[p]!.startsWith(p + o!.text)).toBe(true);
    expect(o!.tokenIds).toHaveLength(5);
    await expectCodeAsync(llm.generate("x = 1 " + "+ 1 ".repeat(70)), "RUN_PROMPT_TOO_LONG", /max_input_len 63/);
  }, 120_000);
});
