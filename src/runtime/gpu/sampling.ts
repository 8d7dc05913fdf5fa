/**
 * Sampling parameters of the GPU runner: the caller's options checked into one row per sequence
 * (greedy unless told otherwise), and a row written into the pinned input block for the SAMPLE op
 * (trtb_engine.h) with the step it is drawn at.
 */
import { TrtbError } from "../../errors.ts";
import { writeSampleParams } from "../../ffi/engine.ts";

export interface SamplingOptions {
  /** ≤ 0: greedy. Default 1. */
  temperature?: number;
  /** 0: off, 1: greedy. Default 0. */
  topK?: number;
  /** (0, 1): nucleus sampling; otherwise off. Default 1. */
  topP?: number;
  /** Random seed (default 0): the same seed gives the same tokens. */
  seed?: number;
}

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
  const temperature = s.temperature ?? 1;
  const topK = s.topK ?? 0;
  const topP = s.topP ?? 1;
  const seed = s.seed ?? 0;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new TrtbError("RUN_BAD_INPUT", `temperature must be ≥ 0, got ${temperature}`);
  if (!(Number.isInteger(topK) && topK >= 0)) throw new TrtbError("RUN_BAD_INPUT", `topK must be a non-negative integer, got ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new TrtbError("RUN_BAD_INPUT", `topP must be in (0, 1], got ${topP}`);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new TrtbError("RUN_BAD_INPUT", `seed must be a non-negative integer, got ${seed}`);
  void row;
  return { temperature, topK, topP, seed };
}

/** Write `row`, drawn at decode step `step` (0: the prefill's token), at byte `offset` of `dv`. */
export function writeSampleRow(dv: DataView, offset: number, row: SampleRow, step: number): void {
  writeSampleParams(dv, offset, { ...row, step });
}
