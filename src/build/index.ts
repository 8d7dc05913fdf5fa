/**
 * Engine building: `build(model, buildConfig)` → `Engine`; `engine.save(dir)`; `Engine.fromDir(dir,
 * rank)`; `buildCheckpoint()` for a whole checkpoint directory (the `trtllm-build` command).
 */
export { type Backend, cudaBackend, defaultBackend, fakeBackend } from "./backend.ts";
export { buildCheckpoint, type BuildCheckpointOptions, type BuildCheckpointResult, engineConfigFor, type RankResult } from "./checkpoint.ts";
export {
  type BuildConfig, type BuildConfigInput, BuildConfigSchema, buildConfigToJSON, KV_CACHE_TYPES, PLUGIN_BOOL_FIELDS, PLUGIN_DTYPE_FIELDS,
  type PluginConfig, PluginConfigSchema, parseBuildConfig, resolveBuildConfig, rotaryFactor,
} from "./config.ts";
export { build, type BuildOptions, Engine, type EngineConfig, readEngineConfig } from "./engine.ts";
export { type EngineFile, openEngineFile } from "./engine-file.ts";
export type { EngineModelDesc, EnginePlan, PlanGemm, PlanTactic } from "./plan.ts";
export { TimingCache } from "./tactics.ts";
