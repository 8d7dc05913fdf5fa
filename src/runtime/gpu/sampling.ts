/**
 * Sampling parameters of the GPU runner: the caller's options checked into one row per sequence
 * (greedy unless told otherwise), and a row written into the pinned input block for the SAMPLE op
 * (trtb_engine.h) with the step it is drawn at.
 */
import { writeSampleParams } from "../../ffi/engine.ts";
import { checkSampling, type SamplingOptions } from "../sampling.ts";

export type { SamplingOptions };

/** One sequence's sampling parameters. */
export interface SampleRow {
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
}

/** Greedy sampling row. */
export const GREEDY: SampleRow = { temperature: 0, topK: 1, topP: 1, seed: 0 };

/** The sampling row of batch row `row` (`row` is not read: every row gets the same parameters). */
export function samplingRow(s: "greedy" | SamplingOptions | undefined, row: number): SampleRow {
  if (s === undefined || s === "greedy") return GREEDY;
  void row;
  return checkSampling(s);
}

/** Write `row`, drawn at decode step `step` (0: the prefill's token), at byte `offset` of `dv`. */
export function writeSampleRow(dv: DataView, offset: number, row: SampleRow, step: number): void {
  writeSampleParams(dv, offset, { ...row, step });
}
