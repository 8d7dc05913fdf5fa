/**
 * Calibration (ModelOpt's `--calib_dataset / --calib_size / --calib_max_seq_length / --batch_size /
 * --seed`): data (data.ts) → one statistics pass on the CPU runner over the fp source (stats.ts,
 * source.ts) → the format's plan (plan.ts: none, the AWQ search, SmoothQuant) that the calibrated
 * schemes in src/quant/ store. `calibrationStats` is the expensive part and can be reused across
 * formats (`QuantizeOptions.calibStats`).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { ModelDType } from "../dtype.ts";
import { log } from "../log.ts";
import type { CalibStats } from "../quant/calib-plan.ts";
import type { CpuRunner } from "../runtime/cpu.ts";
import { loadTokenizer, TOKENIZER_JSON } from "../text/index.ts";
import { CALIB_RANDOM, type CalibDataOptions, readCalibData } from "./data.ts";
import { sourceRunner } from "./source.ts";
import { collectCalibStats } from "./stats.ts";

export { CALIB_DEFAULT_BATCH_SIZE, CALIB_DEFAULT_MAX_SEQ_LENGTH, CALIB_DEFAULT_SEED, CALIB_DEFAULT_SIZE, CALIB_RANDOM, type CalibData, type CalibDataOptions, readCalibData } from "./data.ts";
export { planCalibration, type PlanOptions, type SmoothingKind } from "./plan.ts";
export { AWQ_CLIP_RATIOS, AWQ_DEFAULT_GRID, awqSearch } from "./awq.ts";
export { collectCalibStats, statsHooks } from "./stats.ts";
export { AWQ_DEFAULT_BLOCK_TOKENS, AWQ_DEFAULT_JOINT_CLIP, AWQ_DEFAULT_LOSS, AWQ_DEFAULT_TARGET, type AwqLoss, awqSequentialPlan, type SequentialOptions } from "./sequential.ts";
export { sourceRunner } from "./source.ts";

export interface CalibrationOptions extends CalibDataOptions {
  modelDir: string;
  dtype?: ModelDType | "auto";
  /** Where tokenizer.json is (default modelDir). */
  tokenizerDir?: string;
  /** Collect XᵀX (needed by the AWQ search). */
  gram?: boolean;
  onProgress?: (done: number, total: number) => void;
  /** An already built runner over the source (skips the in-memory conversion). */
  runner?: CpuRunner;
}

/** Read the data and run the statistics pass over the fp source (`modelDir`). */
export async function calibrationStats(opts: CalibrationOptions): Promise<{ stats: CalibStats; runner: CpuRunner }> {
  const runner = opts.runner ?? (await sourceRunner({ modelDir: opts.modelDir }, opts.dtype ?? "auto"));
  const tokDir = opts.tokenizerDir ?? opts.modelDir;
  const tok = opts.dataset !== CALIB_RANDOM && existsSync(join(tokDir, TOKENIZER_JSON)) ? loadTokenizer(tokDir) : undefined;
  const data = readCalibData(opts, tok, runner.cfg.vocab_size);
  if (data.format === "random") log.warn(`calibrating on ${data.describe}`);
  else log.info(`calibration data: ${data.describe}`);
  const stats = collectCalibStats(runner, data, { gram: opts.gram, onProgress: opts.onProgress });
  log.info(`calibration statistics: ${stats.sequences} sequence(s), ${stats.tokens} tokens in ${stats.seconds.toFixed(1)} s on the CPU runner`);
  return { stats, runner };
}
