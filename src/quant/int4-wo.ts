/**
 * W4A16 (`--qformat int4_wo`, `convert --use_weight_only --weight_only_precision int4`): int4
 * weights, fp16/bf16 activations, one scale per output channel (divisor 8, q in [-8, 7]),
 * quantized by trtllm-build from the fp weights this checkpoint keeps. Details: weight-only.ts.
 */
import { weightOnlyScheme } from "./weight-only.ts";

export const int4WeightOnly = weightOnlyScheme({
  algo: "W4A16", qformat: "int4_wo", bits: 4,
  summary: "int4 weight-only, per-channel (fp weights kept; trtllm-build quantizes)",
});
