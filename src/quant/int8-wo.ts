/**
 * W8A16 (`--qformat int8_wo`, `convert --use_weight_only --weight_only_precision int8`): int8
 * weights, fp16/bf16 activations, one scale per output channel, quantized by trtllm-build from the
 * fp weights this checkpoint keeps. Details and upstream rules: weight-only.ts.
 *
 * Error budget (test/quant/schemes.test.ts): every simulated weight within stored_scale/2 of w
 * (+ one model-dtype rounding of the scale, times 128); logits budget in test/quant/accuracy.test.ts.
 */
import { weightOnlyScheme } from "./weight-only.ts";

export const int8WeightOnly = weightOnlyScheme({
  algo: "W8A16", qformat: "int8_wo", bits: 8,
  summary: "int8 weight-only, per-channel (fp weights kept; trtllm-build quantizes)",
});
