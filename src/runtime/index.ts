/** Runtime entry points: the CPU reference runner over a TRT-LLM checkpoint directory. */
import { readCheckpointConfig } from "../format/checkpoint.ts";
import { familyForCheckpoint } from "../models/registry.ts";
import { CpuRunner } from "./cpu.ts";
import { mergeCheckpoint } from "./merge.ts";

export { CpuRunner } from "./cpu.ts";

/** Load every rank of a checkpoint, merged to fp32, into a CPU runner. */
export async function loadCpuRunner(checkpointDir: string): Promise<CpuRunner> {
  const cfg = await readCheckpointConfig(checkpointDir);
  const semantics = (await familyForCheckpoint(cfg.architecture)).semantics(cfg); // refuses unknown architectures up front
  return new CpuRunner(cfg, mergeCheckpoint(checkpointDir, cfg, semantics.fusedGateUp), semantics);
}
