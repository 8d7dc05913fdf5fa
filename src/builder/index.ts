/**
 * Engine building: `build(model, buildConfig)` → `Engine` (src/engine/ holds what an engine is),
 * and `buildCheckpoint()` for a whole checkpoint directory (the `trtllm-build` command).
 */
export { type Backend, cudaBackend, defaultBackend, fakeBackend } from "./backend.ts";
export { build, type BuildOptions, checkBuildable } from "./build.ts";
export { buildCheckpoint, type BuildCheckpointOptions, type BuildCheckpointResult, engineConfigFor, type RankResult } from "./checkpoint.ts";
export { resolveBuildConfig, rotaryFactor } from "./config.ts";
export { TimingCache } from "./tactics.ts";
export { buildCheckpointInWorkers, timingCachePath, type WorkerBuildOptions, workerShare, workerTimingCache } from "./workers.ts";
