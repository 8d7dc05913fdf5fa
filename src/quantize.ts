/**
 * `quantize(hfDir, outDir, quantConfig, opts)`: a Hugging Face checkpoint → a quantized TRT-LLM
 * checkpoint, every rank, written like `convertCheckpoint` (config.json removed first and written
 * last, rank files fsynced and renamed into place). After upstream's
 * `PretrainedModel.quantize(hf_model_dir, output_dir, dtype, mapping, quant_config, device=…)`,
 * without calibration: the schemes here need none.
 */
import type { QuantConfig } from "./format/checkpoint-config.ts";
import { type ConvertOptions, type ConvertResult, convertCheckpoint } from "./convert.ts";
import type { ModelDType } from "./dtype.ts";
import { TrtbError } from "./errors.ts";
import type { Mapping } from "./mapping.ts";
import type { QuantDevice } from "./quant/backend.ts";

export interface QuantizeOptions {
  mapping?: Mapping;
  dtype?: ModelDType | "auto";
  /** Where the kernels run: "cpu" (libtrtb, threaded; the TS fallback without it) or "cuda". */
  device?: QuantDevice;
  useParallelEmbedding?: boolean;
  embeddingShardingDim?: 0 | 1;
  onProgress?: ConvertOptions["onProgress"];
  /** Copy the tokenizer files from here instead of `hfDir` (`false`: none); see ConvertOptions. */
  tokenizerDir?: string | false;
  /** Quantize weights holding NaN/Inf (with a warning) instead of refusing them (NUM_NONFINITE). */
  allowNonfinite?: boolean;
}

export async function quantize(hfDir: string, outDir: string, quantConfig: Partial<QuantConfig>, opts: QuantizeOptions = {}): Promise<ConvertResult> {
  if (!quantConfig.quant_algo) throw new TrtbError("QUANT_CONFIG", "quantize: quantConfig.quant_algo is required (W8A16, W4A16, W4A16_AWQ or FP8_PER_CHANNEL_PER_TOKEN)");
  return convertCheckpoint({
    modelDir: hfDir,
    outputDir: outDir,
    dtype: opts.dtype,
    mapping: opts.mapping,
    useParallelEmbedding: opts.useParallelEmbedding,
    embeddingShardingDim: opts.embeddingShardingDim,
    quantConfig,
    device: opts.device,
    onProgress: opts.onProgress,
    tokenizerDir: opts.tokenizerDir,
    allowNonfinite: opts.allowNonfinite,
  });
}
