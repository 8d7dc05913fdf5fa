/** Runtime entry points: the CPU reference runner over a TRT-LLM checkpoint directory. */
import { readCheckpointConfig } from "../format/checkpoint.ts";
import { familyForCheckpoint } from "../models/registry.ts";
import { CpuRunner } from "./cpu.ts";
import { mergeCheckpoint } from "./merge.ts";
import { quantSimHooks } from "./quant-sim.ts";

export { CpuRunner, type CpuRunnerHooks } from "./cpu.ts";

/**
 * Load every rank of a checkpoint, merged to fp32, into a CPU runner; activation / KV-cache
 * quantization the checkpoint declares is simulated (quant-sim.ts).
 */
export async function loadCpuRunner(checkpointDir: string): Promise<CpuRunner> {
  const cfg = await readCheckpointConfig(checkpointDir);
  const semantics = (await familyForCheckpoint(cfg.architecture)).semantics(cfg); // refuses unknown architectures up front
  const w = mergeCheckpoint(checkpointDir, cfg, semantics.fusedGateUp);
  return new CpuRunner(cfg, w, semantics, quantSimHooks(cfg, w));
}
