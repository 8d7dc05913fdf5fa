/**
 * A TRT-LLM checkpoint directory (spec §1): `config.json` (the `PretrainedConfig` of
 * checkpoint-config.ts) and one `rank{N}.safetensors` per rank of its mapping. Writing is
 * `PretrainedModel.saveCheckpoint` (src/models/common/model.ts) and the converter (src/convert.ts).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type PretrainedConfig, parsePretrainedConfig } from "./checkpoint-config.ts";
import { TrtbError } from "../errors.ts";
import { openSafetensors } from "./safetensors.ts";
import { readJsonFileSafe } from "../util/safe-read.ts";
import type { TensorSource } from "../tensor.ts";

/** Read and validate `<dir>/config.json` of a TRT-LLM checkpoint. */
export async function readCheckpointConfig(dir: string): Promise<PretrainedConfig> {
  const file = join(dir, "config.json");
  const json = readJsonFileSafe(file, { missing: "CKPT_NO_CONFIG", json: "CKPT_CONFIG_JSON" }, `is ${dir} a TRT-LLM checkpoint directory?`);
  return parsePretrainedConfig(json, file);
}

/** Open `rank{N}.safetensors` of a checkpoint (validated), checking it exists. */
export function openRankFile(dir: string, rank: number): TensorSource {
  const file = join(dir, `rank${rank}.safetensors`);
  if (!existsSync(file)) throw new TrtbError("CKPT_MISSING_RANK", `${file}: not found (config.json declares rank ${rank})`, { file });
  return openSafetensors(file);
}
