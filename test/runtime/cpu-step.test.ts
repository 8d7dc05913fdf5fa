/**
 * The CPU runner's KV-cache step API and sampler: incremental steps give exactly the logits of one
 * full forward pass, greedy generation equals transformers' greedy ids on tiny-pycode, and the
 * sampler is deterministic per seed, greedy at top_k 1 / temperature 0, and bounded by top_k.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { convertCheckpoint, loadCpuRunner } from "../../src/index.ts";
import { argmax, Sampler } from "../../src/runtime/sampling.ts";
import { asI32, expectCode, fixture, readRaw, SHARED, tempDir } from "../helpers.ts";

const PYCODE = join(SHARED, "models/tiny-pycode");

describe("CpuRunner.step", () => {
  test("prefill + one-token steps reproduce forward() bit for bit (gemma2: sliding window, soft-caps)", async () => {
    for (const name of ["llama", "gemma2"]) {
      using d = tempDir();
      await convertCheckpoint({ modelDir: fixture(name), outputDir: d.path });
      const r = await loadCpuRunner(d.path);
      const ids = [1, 5, 17, 33, 2, 9, 41, 7, 12, 3];
      const full = r.forward(ids);
      const V = r.cfg.vocab_size;
      const cache = r.newCache();
      const first = r.step(ids.slice(0, 4), cache, { allLogits: true });
      expect(Array.from(first)).toEqual(Array.from(full.subarray(0, 4 * V)));
      for (let s = 4; s < ids.length; s++) expect(Array.from(r.step([ids[s]!], cache))).toEqual(Array.from(full.subarray(s * V, (s + 1) * V)));
      expect(cache.length).toBe(ids.length);
      expectCode(() => r.step([], cache), "RUN_BAD_INPUT");
    }
  });

  test("tiny-pycode: greedy ids equal reference.safetensors' greedy_ids (transformers)", async () => {
    using d = tempDir();
    await convertCheckpoint({ modelDir: PYCODE, outputDir: d.path });
    const r = await loadCpuRunner(d.path);
    const ref = readRaw(join(PYCODE, "reference.safetensors"));
    const ids = Array.from(asI32(ref.get("input_ids")!)).slice(0, 64);
    expect(r.greedy(ids, 32)).toEqual(Array.from(asI32(ref.get("greedy_ids")!)));
  });
});

describe("Sampler", () => {
  const logits = Float32Array.from({ length: 50 }, (_, i) => Math.sin(i * 1.7) * 3);
  test("greedy, temperature 0 and top_k 1 are argmax; the same seed gives the same draws", () => {
    const best = argmax(logits);
    for (const s of ["greedy", undefined, { temperature: 0 }, { topK: 1, temperature: 2 }] as const) expect(new Sampler(s).sample(logits)).toBe(best);
    const draw = (seed: number) => { const s = new Sampler({ temperature: 1, seed }); return Array.from({ length: 20 }, () => s.sample(logits)); };
    expect(draw(7)).toEqual(draw(7));
    expect(draw(7)).not.toEqual(draw(8));
  });

  test("top_k and top_p keep draws among the most likely ids; bad values are RUN_BAD_INPUT", () => {
    const top3 = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!).slice(0, 3);
    const s = new Sampler({ topK: 3, seed: 1 });
    for (let i = 0; i < 100; i++) expect(top3).toContain(s.sample(logits));
    const nucleus = new Sampler({ topP: 1e-6, seed: 1 });
    for (let i = 0; i < 10; i++) expect(nucleus.sample(logits)).toBe(top3[0]!);
    expectCode(() => new Sampler({ topP: 0 }), "RUN_BAD_INPUT", /topP/);
    expectCode(() => new Sampler({ temperature: -1 }), "RUN_BAD_INPUT", /temperature/);
  });
});
