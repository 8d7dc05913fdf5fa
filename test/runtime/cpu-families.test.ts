/** Every fixture family (and the Meta checkpoint) through convert → CPU runner vs transformers. */
import { describe, test } from "bun:test";
import { convertCheckpoint } from "../../src/convert.ts";
import { loadCpuRunner } from "../../src/runtime/index.ts";
import { fixture, tempDir } from "../helpers.ts";
import { checkAgainstReference } from "./reference.ts";

const FAMILIES = ["qwen2", "qwen3", "gemma", "gemma2", "phi3", "mixtral", "llama-meta-mp2"];

describe("CPU runner vs transformers reference (all families)", () => {
  for (const name of FAMILIES) {
    for (const [tp, pp] of [[1, 1], [2, 1], [1, 2], [2, 2]] as const) {
      test(`${name} tp=${tp} pp=${pp}`, async () => {
        using out = tempDir();
        const src = name.endsWith("-meta-mp2") ? { metaCkptDir: fixture(name) } : { modelDir: fixture(name) };
        await convertCheckpoint({ ...src, outputDir: out.path, tpSize: tp, ppSize: pp });
        checkAgainstReference(await loadCpuRunner(out.path), name);
      });
    }
  }
});
