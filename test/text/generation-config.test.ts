/**
 * src/text/generation-config.ts: eos as one id or a list, bos/pad, sampling defaults, validation
 * errors naming the file and field; tiny-pycode's file loads.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { parseGenerationConfig, readGenerationConfig, samplingDefaults } from "../../src/text/index.ts";
import { SHARED, expectCode, tempDir } from "../helpers.ts";

describe("generation_config.json", () => {
  test("tiny-pycode", () => {
    const gc = readGenerationConfig(join(SHARED, "models/tiny-pycode"))!;
    expect(gc).toMatchObject({ bosId: 1, eosIds: [2], padId: 0 });
    expect(gc.file).toBe(join(SHARED, "models/tiny-pycode/generation_config.json"));
    expect(gc.raw.transformers_version).toBe("5.17.0");
    expect(samplingDefaults(gc)).toEqual({ greedy: true, temperature: 1, topK: 50, topP: 1 });
  });

  test("Llama-3.1-Instruct style: eos list and sampling settings", () => {
    const gc = parseGenerationConfig({ bos_token_id: 128000, do_sample: true, eos_token_id: [128001, 128008, 128009], temperature: 0.6, top_p: 0.9, max_length: 4096 });
    expect(gc).toMatchObject({ bosId: 128000, eosIds: [128001, 128008, 128009], doSample: true, temperature: 0.6, topP: 0.9, maxLength: 4096 });
    expect(gc.padId).toBeUndefined();
    expect(samplingDefaults(gc)).toEqual({ greedy: false, temperature: 0.6, topK: 50, topP: 0.9 });
    expect(parseGenerationConfig({ eos_token_id: null, top_k: 20, max_new_tokens: 64 })).toMatchObject({ eosIds: [], topK: 20, maxNewTokens: 64 });
    expect(samplingDefaults()).toEqual({ greedy: true, temperature: 1, topK: 50, topP: 1 });
  });

  test("bad values name the file and field", () => {
    expectCode(() => parseGenerationConfig({ eos_token_id: [2, -1] }, "m/generation_config.json"), "GEN_CONFIG_INVALID", /m\/generation_config\.json: eos_token_id/);
    expectCode(() => parseGenerationConfig({ temperature: -0.5 }), "GEN_CONFIG_INVALID", /temperature/);
    expectCode(() => parseGenerationConfig({ top_p: 1.5 }), "GEN_CONFIG_INVALID", /top_p/);
    expectCode(() => parseGenerationConfig({ top_k: 2.5 }), "GEN_CONFIG_INVALID", /top_k/);
    expectCode(() => parseGenerationConfig({ do_sample: "yes" }), "GEN_CONFIG_INVALID", /do_sample/);
    expectCode(() => parseGenerationConfig([1]), "GEN_CONFIG_INVALID", /\(top level\)/);
  });

  test("missing file is undefined; malformed JSON is GEN_CONFIG_BAD_JSON", () => {
    using d = tempDir();
    expect(readGenerationConfig(d.path)).toBeUndefined();
    writeFileSync(join(d.path, "generation_config.json"), "{ eos_token_id: 2 }");
    expectCode(() => readGenerationConfig(d.path), "GEN_CONFIG_BAD_JSON", /generation_config\.json: not valid JSON/);
  });
});
