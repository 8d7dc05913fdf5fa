/** The GPU runtime of engines built by `trtllm-build` (CUDA backend). */
export {
  type DecodeRow, type GenerateOptions, type GenerateResult, GpuModelRunner, type PrefillPiece, type RunnerOptions, type SamplingOptions, type StepOutput,
} from "./runner.ts";
