/** The GPU runtime of engines built by `trtllm-build` (CUDA backend). */
export { type GenerateOptions, type GenerateResult, GpuModelRunner, type RunnerOptions, type SamplingOptions } from "./runner.ts";
