/** The OpenAI-compatible server (`trtllm serve`): HTTP front end, in-flight scheduler, step backends, metrics. */
export { type BackendSeq, type CpuBackendOptions, CpuStepBackend, type DecodeItem, GpuStepBackend, type PrefillChunk, type StepBackend, type StepToken } from "./backend.ts";
export { Histogram, ServerMetrics } from "./metrics.ts";
export { errorBody, httpStatus, parseBody, type ParsedRequest, parseRequest, tokenLogprobs } from "./protocol.ts";
export { type FinishReason, type RequestHandle, type ScheduledRequest, Scheduler, type SchedulerStats, type StepEvent } from "./scheduler.ts";
export { OpenAIServer, serve, type ServeOptions } from "./server.ts";
