/**
 * trtllm-build: the library. Everything the CLI does is reachable from here (cli/ imports nothing
 * else).
 *
 *   read → normalise config → map names → transform (split, fuse, cast) → [quantize] → write → build
 */
export { TrtbError, isTrtbError } from "./errors.ts";
export type { DType, ModelDType } from "./dtype.ts";
export { Mapping } from "./mapping.ts";
export {
  type PretrainedConfig, type QuantConfig, type QuantAlgo, QUANT_ALGOS,
  parsePretrainedConfig, defaultQuantConfig, configMapping,
} from "./format/checkpoint-config.ts";
export type { TensorView, TensorSource } from "./tensor.ts";
export { openSafetensors, SafetensorsWriter } from "./format/safetensors.ts";
export { openHFCheckpoint } from "./format/hf-checkpoint.ts";
export { openTorchCheckpoint } from "./format/pth.ts";
export { PretrainedModel } from "./models/common/model.ts";
export { readCheckpointConfig } from "./format/checkpoint.ts";
export { DecoderModel } from "./models/common/decoder-model.ts";
export { LLaMAForCausalLM } from "./models/llama/model.ts";
export { QWenForCausalLM } from "./models/qwen/model.ts";
export { GemmaForCausalLM } from "./models/gemma/model.ts";
export { Phi3ForCausalLM } from "./models/phi3/model.ts";
export { MixtralForCausalLM } from "./models/mixtral/model.ts";
export { supportedHFArchitectures } from "./models/registry.ts";
export { convertCheckpoint, type ConvertOptions } from "./convert.ts";
export { quantize, type QuantizeOptions, type QuantizeResult } from "./quantize.ts";
export {
  CALIB_DEFAULT_BATCH_SIZE, CALIB_DEFAULT_MAX_SEQ_LENGTH, CALIB_DEFAULT_SEED, CALIB_DEFAULT_SIZE, CALIB_RANDOM, calibrationStats, type CalibrationOptions,
  planCalibration, readCalibData,
} from "./calib/index.ts";
export { CALIBRATED_QFORMATS, QFORMAT_ALGO } from "./quant/scheme.ts";
export type { CalibPlan, CalibStats } from "./quant/calib-plan.ts";
export { CpuRunner, loadCpuRunner } from "./runtime/index.ts";
export { capNewTokens, readInputIds, writeRunOutputs } from "./runtime/io.ts";
export { guardOutput, type GuardInput } from "./util/output-guard.ts";
export { checkFinite, firstNonFinite, setAllowNonfinite } from "./tensor/finite.ts";
export { type FilePrompt, readPromptFile } from "./runtime/prompts.ts";
export { log, setLogLevel } from "./log.ts";
export {
  build, buildCheckpoint, buildCheckpointInWorkers, type BuildCheckpointOptions, type BuildCheckpointResult, defaultBackend, engineConfigFor,
  type RankResult, resolveBuildConfig, TimingCache, workerShare, workerTimingCache,
} from "./builder/index.ts";
export {
  Engine, type BuildConfig, type BuildConfigInput, parseBuildConfig, PLUGIN_BOOL_FIELDS, PLUGIN_DTYPE_FIELDS, PLUGIN_DTYPES,
  readEngineConfig, SPECULATIVE_DECODING_MODES, writeEngineConfig,
} from "./engine/index.ts";
export { type DecodeRow, GpuModelRunner, type GenerateOptions, type PrefillPiece, type RunnerOptions, type StepOutput } from "./runtime/gpu/index.ts";
export { CpuKvCache } from "./runtime/cpu.ts";
export { argmax, Sampler, type SamplingOptions } from "./runtime/sampling.ts";
export {
  type CompletionOutput, defaultEngineCacheDir, detectModelKind, engineCacheKey, type GenerateHooks, gpuAvailable, LLM, type LLMOptions, type ModelKind,
  type Prompt, type SamplingParams,
} from "./llm.ts";
export {
  carryTokenizerFiles, type ChatMessage, copyTokenizerFiles, loadTokenizer, readGenerationConfig, TextStream, type Tokenizer, TOKENIZER_FILES,
} from "./text/index.ts";
export { QFORMATS, type QFormatName, schemeForQformat } from "./quant/index.ts";
export { cudaLib, nativeLib } from "./ffi/index.ts";
export {
  inspectPath, type InspectFileReport, type InspectReport, type InspectTensorRow, type InspectTotals,
} from "./inspect.ts";
export {
  evaluate, EVAL_DEFAULT_WINDOW, type EvalBos, type EvalConvention, type EvalDivergence, type EvalOptions, type EvalResult, writeEvalJson,
} from "./eval.ts";
export {
  CpuStepBackend, GpuStepBackend, OpenAIServer, Scheduler, serve, type ScheduledRequest, type SchedulerStats, type ServeOptions, type StepBackend,
} from "./serve/index.ts";
