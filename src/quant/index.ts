/**
 * Quantization without calibration (issue 5). One file per scheme, all behind `QuantScheme`
 * (scheme.ts):
 *
 *   int8-wo.ts      W8A16                      fp weights kept, trtllm-build quantizes (portable)
 *   int4-wo.ts      W4A16                      same, int4
 *   int4-awq.ts     W4A16_AWQ                  modelopt AWQ layout, round-to-nearest scales
 *   fp8-rowwise.ts  FP8_PER_CHANNEL_PER_TOKEN  e4m3 MLP weights, per-channel scales
 *
 * kernel.ts is the TypeScript reference of the shim's kernels (cshim/cpu/quant.c, cshim/common/quant.h,
 * cshim/cuda/quant.cu); backend.ts picks CPU, TS or CUDA; apply.ts wires schemes into
 * conversion, parameter lists and the CPU runner.
 */
export { applyQuantConfig, dequantizedSource, SCHEMES, schemeForAlgo, schemeForQformat } from "./apply.ts";
export { QFORMATS, type QFormatName, type QuantScheme } from "./scheme.ts";
export { cpuQuantBackend, cudaQuantBackend, quantBackend, type QuantBackend, type QuantDevice, tsQuantBackend } from "./backend.ts";
export { dequantizeTS, type QuantKernelParams, quantizeTS, quantSizes } from "./kernel.ts";
export { DEFAULT_EXCLUDE_MODULES, fnmatchCase } from "./modules.ts";
