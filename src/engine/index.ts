/**
 * The engine contract, written by src/builder/ and read by src/runtime/gpu/: the engine directory
 * (`Engine`, config.json), the engine file, the plan, BuildConfig and the packed weight layouts.
 */
export {
  type BuildConfig, type BuildConfigInput, BuildConfigSchema, buildConfigToJSON, KV_CACHE_TYPES, PLUGIN_BOOL_FIELDS, PLUGIN_DTYPE_FIELDS,
  PLUGIN_DTYPES, type PluginConfig, PluginConfigSchema, parseBuildConfig, SPECULATIVE_DECODING_MODES,
} from "./build-config.ts";
export { Engine, type EngineConfig, readEngineConfig, writeEngineConfig } from "./engine.ts";
export { type EngineFile, type EngineTensor, openEngineFile } from "./engine-file.ts";
export type { EngineModelDesc, EnginePlan, PlanGemm, PlanTactic } from "./plan.ts";
