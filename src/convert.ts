/**
 * Whole-checkpoint conversion: every rank of a mapping, written atomically.
 *
 *   read config → resolve family → [quant config] → for each rank: map names, split, cast,
 *   [quantize] (lazy) → write rank file → config.json last
 *
 * The source is opened once and shared by all ranks; each output tensor is written straight into
 * its place in the output file, so memory stays at a few mapped windows whatever the model size.
 * `config.json` is removed first and written last: an interrupted run never looks complete.
 */
import { join } from "node:path";
import type { PretrainedConfig, QuantConfig } from "./config.ts";
import { configToJSONText } from "./config.ts";
import type { ModelDType } from "./dtype.ts";
import { openHFCheckpoint } from "./format/hf-checkpoint.ts";
import { readHFConfig } from "./format/hf-config.ts";
import { log } from "./log.ts";
import { Mapping } from "./mapping.ts";
import type { FromSourceOptions } from "./models/config-common.ts";
import { convertRank } from "./models/convert.ts";
import { DecoderModel } from "./models/decoder-model.ts";
import { familyForHF } from "./models/registry.ts";
import { applyQuantConfig } from "./quant/apply.ts";
import { type QuantBackend, type QuantDevice, quantBackend } from "./quant/backend.ts";
import { releaseQuantScratch } from "./quant/lazy.ts";
import type { TensorSource } from "./tensor.ts";
import { prepareCheckpointDir, writeFileAtomic } from "./util/fs.ts";

export interface ConvertOptions {
  /** Hugging Face model directory (safetensors). */
  modelDir?: string;
  /** Meta checkpoint directory (params.json + consolidated.NN.pth). */
  metaCkptDir?: string;
  outputDir: string;
  dtype?: ModelDType | "auto";
  tpSize?: number;
  ppSize?: number;
  useParallelEmbedding?: boolean;
  embeddingShardingDim?: 0 | 1;
  /** A full mapping (MoE tp/ep sizes); overrides tpSize/ppSize. */
  mapping?: Mapping;
  /** Quantize while converting (`quant_algo` picks the scheme; see src/quant/). */
  quantConfig?: Partial<QuantConfig>;
  /** Where quantization kernels run (default cpu). */
  device?: QuantDevice;
  /** Progress over all ranks: bytes written so far, total bytes, current rank. */
  onProgress?: (done: number, total: number, rank: number) => void;
}

export interface ConvertResult {
  config: PretrainedConfig;
  files: string[];
  bytes: number;
  seconds: number;
}

export interface OpenedSource {
  cfg: PretrainedConfig;
  src: TensorSource;
  label: string;
  family: import("./models/family.ts").Family;
}

/** Open a HF or Meta source and derive the checkpoint config for `mapping`. */
export async function openSource(opts: ConvertOptions, mapping: Mapping): Promise<OpenedSource> {
  const fopts: FromSourceOptions = {
    dtype: opts.dtype ?? "auto",
    mapping,
    useParallelEmbedding: opts.useParallelEmbedding,
    embeddingShardingDim: opts.embeddingShardingDim,
  };
  if (opts.metaCkptDir) {
    const meta = await import("./models/llama/meta.ts");
    return meta.openMetaSource(opts.metaCkptDir, fopts);
  }
  if (!opts.modelDir) throw new (await import("./errors.ts")).TrtbError("CLI_BAD_ARG", "give a model directory (--model_dir) or a Meta checkpoint (--meta_ckpt_dir)");
  const hf = await readHFConfig(opts.modelDir);
  const family = await familyForHF(hf.architectures[0]!);
  const cfg = family.configFromHF(hf, fopts);
  const src = openHFCheckpoint(opts.modelDir);
  return { cfg, src, label: opts.modelDir, family };
}

export async function convertCheckpoint(opts: ConvertOptions): Promise<ConvertResult> {
  const t0 = performance.now();
  const mapping = opts.mapping ?? new Mapping({ tpSize: opts.tpSize ?? 1, ppSize: opts.ppSize ?? 1 });
  const { cfg, src, label, family } = await openSource(opts, mapping);
  let backend: QuantBackend | undefined;
  try {
    if (opts.quantConfig?.quant_algo) {
      applyQuantConfig(cfg, opts.quantConfig);
      backend = quantBackend(opts.device ?? "cpu");
    }
    // Build every rank's plan first: table/shape errors surface before anything is written.
    const models = Array.from({ length: mapping.worldSize }, (_, r) => {
      const model = new DecoderModel(family, cfg, mapping.withRank(r));
      model.load(convertRank({ cfg, mapping: model.mapping, src, srcLabel: label, quantBackend: backend }, family.table(cfg, src)));
      return model;
    });
    const total = models.reduce((a, m) => a + m.totalBytes(), 0);
    prepareCheckpointDir(opts.outputDir);
    let before = 0;
    const files: string[] = [];
    for (const model of models) {
      const r = model.mapping.rank;
      model.saveCheckpoint(opts.outputDir, {
        saveConfig: false,
        onProgress: (done) => opts.onProgress?.(before + done, total, r),
      });
      before += model.totalBytes();
      files.push(join(opts.outputDir, model.rankFileName));
      log.debug(`rank ${r}: ${model.weights.size} tensors`);
    }
    writeFileAtomic(join(opts.outputDir, "config.json"), configToJSONText(cfg));
    files.unshift(join(opts.outputDir, "config.json"));
    return { config: cfg, files, bytes: total, seconds: (performance.now() - t0) / 1000 };
  } finally {
    backend?.close();
    releaseQuantScratch();
    src.close();
  }
}
