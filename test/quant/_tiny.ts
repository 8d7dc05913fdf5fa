/** tiny-pycode for the accuracy tests: its held-out text cut in half (calibration / evaluation). */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { calibrationStats } from "../../src/calib/index.ts";
import { convertCheckpoint } from "../../src/convert.ts";
import type { CalibStats } from "../../src/quant/calib-plan.ts";
import { SHARED } from "../helpers.ts";

export const TINY_PYCODE = join(SHARED, "models/tiny-pycode");

/**
 * Into `dir`: calib.txt (the first half of heldout-public.py.txt, cut at a line), eval.txt (the
 * rest) and the bf16 checkpoint; the statistics of 8 × 128 calibration tokens (`gram`: with XᵀX).
 */
export async function tinyPycodeHalves(dir: string, gram = false): Promise<{ stats: CalibStats; bf16: string; evalTxt: string }> {
  const text = readFileSync(join(TINY_PYCODE, "heldout-public.py.txt"), "utf8");
  const cut = text.indexOf("\n", Math.floor(text.length / 2)) + 1;
  const evalTxt = join(dir, "eval.txt");
  const bf16 = join(dir, "bf16");
  writeFileSync(join(dir, "calib.txt"), text.slice(0, cut));
  writeFileSync(evalTxt, text.slice(cut));
  await convertCheckpoint({ modelDir: TINY_PYCODE, outputDir: bf16 });
  const { stats } = await calibrationStats({ modelDir: TINY_PYCODE, dataset: join(dir, "calib.txt"), calibSize: 8, calibMaxSeqLength: 128, gram });
  return { stats, bf16, evalTxt };
}

/**
 * The small calibration of the layout tests: the first 20,000 characters of the held-out text as
 * `dir`/calib.txt and the statistics of 4 × 64 tokens (`gram`: with XᵀX), with the runner that took them.
 */
export async function tinyPycodeLayoutStats(dir: string, gram = false) {
  const text = readFileSync(join(TINY_PYCODE, "heldout-public.py.txt"), "utf8");
  writeFileSync(join(dir, "calib.txt"), text.slice(0, 20000));
  return calibrationStats({ modelDir: TINY_PYCODE, dataset: join(dir, "calib.txt"), calibSize: 4, calibMaxSeqLength: 64, gram });
}
