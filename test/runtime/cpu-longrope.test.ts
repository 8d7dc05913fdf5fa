/**
 * Phi-3 LongRoPE (test/fixtures/phi3-longrope: original_max_position_embeddings 64) through convert →
 * CPU runner vs transformers: a 40-token forward (short factors), a 100-token forward (long factors
 * for every position) and greedy decoding of a 56-token prompt across the switch at 64.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { convertCheckpoint } from "../../src/convert.ts";
import { parsePretrainedConfig } from "../../src/format/checkpoint-config.ts";
import { readFileSync } from "node:fs";
import { longRopeMscale } from "../../src/models/common/rope.ts";
import { loadCpuRunner } from "../../src/runtime/index.ts";
import { asF32, asI32, readRaw, relMaxErr, tempDir } from "../helpers.ts";
import { LOGITS_REL_TOL } from "./reference.ts";

const DIR = join(import.meta.dir, "../fixtures/phi3-longrope");
const ref = readRaw(join(DIR, "reference.safetensors"));
const ids = (k: string) => Array.from(asI32(ref.get(k)!));

describe("Phi-3 LongRoPE", () => {
  for (const [tp, pp] of [[1, 1], [2, 1], [1, 2]] as const)
    test(`convert → CPU runner matches transformers (short, long, greedy across the switch) tp=${tp} pp=${pp}`, async () => {
      using out = tempDir();
      await convertCheckpoint({ modelDir: DIR, outputDir: out.path, tpSize: tp, ppSize: pp });
      const cfg = parsePretrainedConfig(JSON.parse(readFileSync(join(out.path, "config.json"), "utf8")));
      expect(cfg.position_embedding_type).toBe("long_rope");
      expect(cfg.original_max_position_embeddings).toBe(64);
      expect((cfg.longrope_scaling_long_factors as number[]).length).toBe(32);
      const r = await loadCpuRunner(out.path);
      expect(r.settings.longRope!.mscale).toBeCloseTo(1.1547, 4);
      expect(relMaxErr(r.forward(ids("short_ids")), asF32(ref.get("short_logits")!))).toBeLessThanOrEqual(LOGITS_REL_TOL);
      expect(relMaxErr(r.forward(ids("long_ids")), asF32(ref.get("long_logits")!))).toBeLessThanOrEqual(LOGITS_REL_TOL);
      const greedy = ids("greedy_cached_ids");
      expect(r.greedy(greedy.slice(0, 56), greedy.length - 56)).toEqual(greedy);
    });

  test("one forward past the switch uses the long table for every position; steps keep the cached rotation", async () => {
    using out = tempDir();
    await convertCheckpoint({ modelDir: DIR, outputDir: out.path });
    const r = await loadCpuRunner(out.path);
    const seq = ids("long_ids").slice(0, 70);
    const V = r.cfg.vocab_size;
    const full = r.forward(seq);
    const cache = r.newCache();
    const head = r.step(seq.slice(0, 60), cache, { allLogits: true });
    const tail = r.step(seq.slice(60), cache, { allLogits: true });
    expect(cache.length).toBe(70);
    // 60 ≤ 64: the first step's logits are the short table's, unlike the 70-token forward's
    expect(relMaxErr(head, r.forward(seq.slice(0, 60)))).toBe(0);
    expect(relMaxErr(head, full.subarray(0, 60 * V))).toBeGreaterThan(LOGITS_REL_TOL);
    expect(relMaxErr(tail, full.subarray(60 * V))).toBeGreaterThan(LOGITS_REL_TOL);
  });

  test("the attention factor: sqrt(1 + ln(s)/ln(original)), 1 without extension", () => {
    expect(longRopeMscale(131072, 4096)).toBeCloseTo(Math.sqrt(1 + Math.log(32) / Math.log(4096)), 12);
    expect(longRopeMscale(4096, 4096)).toBe(1);
  });
});
