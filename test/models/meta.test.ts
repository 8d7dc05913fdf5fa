import { describe, expect, test } from "bun:test";
import { metaToHFRotaryRows } from "../../src/models/llama/meta.ts";
import { LLaMAForCausalLM } from "../../src/models/llama/model.ts";
import { Mapping } from "../../src/mapping.ts";
import { fixture } from "../helpers.ts";

describe("Meta checkpoints", () => {
  test("rotary permutation: interleaved pairs → rotate-half, per head (spec §6)", () => {
    // One head of d=4: Meta rows are (x0, y0, x1, y1); HF rotate-half wants (x0, x1, y0, y1).
    expect(metaToHFRotaryRows(1, 4)).toEqual([0, 2, 1, 3]);
    expect(metaToHFRotaryRows(2, 4)).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
  });
  test("fromMetaCkpt merges the mp2 shards for any tp", async () => {
    for (const tp of [1, 2]) {
      using m = await LLaMAForCausalLM.fromMetaCkpt(fixture("llama-meta-mp2"), { mapping: new Mapping({ tpSize: tp }) });
      expect(m.config.dtype).toBe("bfloat16");
      expect(m.config.max_position_embeddings).toBe(2048);
      expect(m.config.intermediate_size).toBe(384);
      expect(m.weights.get("transformer.vocab_embedding.weight")!.shape).toEqual([256, 128]);
      expect(m.weights.get("transformer.layers.0.attention.qkv.weight")!.shape).toEqual([(6 / tp) * 64, 128]);
      expect(m.weights.get("lm_head.weight")!.shape).toEqual([256 / tp, 128]);
    }
  });
});
