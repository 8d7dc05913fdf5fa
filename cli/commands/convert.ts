/** `trtllm convert`: Hugging Face or Meta checkpoint → TRT-LLM checkpoint (flag names as upstream's convert_checkpoint.py). */
import { defineCommand } from "citty";
import { convertCheckpoint, log, type QuantConfig, setLogLevel, TrtbError } from "../../src/index.ts";
import { commonArgs, dtypeArg, intArg, nonfiniteArgs, parallelArgs } from "./_shared.ts";
import { progressBar } from "./_progress.ts";

export default defineCommand({
  meta: { name: "convert", description: "Convert a Hugging Face (safetensors) or Meta (consolidated.NN.pth) checkpoint into a TensorRT-LLM checkpoint: config.json + rank{N}.safetensors" },
  args: {
    model_dir: { type: "string", description: "Hugging Face model directory (config.json + *.safetensors, sharded or not)", valueHint: "dir" },
    meta_ckpt_dir: { type: "string", description: "Meta checkpoint directory (params.json + consolidated.NN.pth)", valueHint: "dir" },
    output_dir: { type: "string", description: "Where to write config.json and rank{N}.safetensors (created; an existing checkpoint there is replaced)", default: "tllm_checkpoint", valueHint: "dir" },
    ...dtypeArg,
    ...parallelArgs,
    workers: { type: "string", description: "Ranks converted at once, each in its own worker thread (capped at the number of ranks); auto: one per CPU core for a plain conversion, 1 when quantizing", default: "auto", valueHint: "N|auto" },
    use_parallel_embedding: { type: "boolean", description: "Shard the embedding table over tensor-parallel ranks", default: false },
    embedding_sharding_dim: { type: "enum", options: ["0", "1"], description: "With --use_parallel_embedding: 0 splits the vocab dim, 1 the hidden dim", default: "0" },
    use_weight_only: { type: "boolean", description: "Weight-only quantization (W8A16/W4A16). Writes the portable form: fp weights + quant_algo, quantized by trtllm-build for the GPU it builds on", default: false },
    weight_only_precision: { type: "enum", options: ["int8", "int4"], description: "With --use_weight_only: int8 (W8A16) or int4 (W4A16)", default: "int8" },
    use_fp8_rowwise: { type: "boolean", description: "FP8 rowwise (FP8_PER_CHANNEL_PER_TOKEN): e4m3 MLP weights with per-channel scales, clamp_val [-1200, 1200]", default: false },
    use_meta_fp8_rowwise_recipe: { type: "boolean", description: "With --use_fp8_rowwise: keep the first and last decoder layers unquantized", default: false },
    tokenizer_dir: { type: "string", description: "Copy the tokenizer files (tokenizer.json, tokenizer_config.json, generation_config.json, tokenizer.model, …) from here into the checkpoint (default: the model directory)", valueHint: "dir" },
    ...nonfiniteArgs,
    ...commonArgs,
  },
  async run({ args }) {
    setLogLevel(args.verbose ? "debug" : args.log_level);
    if (!args.model_dir && !args.meta_ckpt_dir) throw new TrtbError("CLI_BAD_ARG", "give --model_dir (Hugging Face) or --meta_ckpt_dir (Meta)");
    if (args.model_dir && args.meta_ckpt_dir) throw new TrtbError("CLI_BAD_ARG", "give only one of --model_dir and --meta_ckpt_dir");
    const tp = intArg("tp_size", args.tp_size);
    const pp = intArg("pp_size", args.pp_size);
    const workers = args.workers === "auto" ? undefined : intArg("workers", args.workers);
    if (args.use_weight_only && args.use_fp8_rowwise) throw new TrtbError("CLI_BAD_ARG", "give only one of --use_weight_only and --use_fp8_rowwise");
    const quantConfig: Partial<QuantConfig> | undefined = args.use_weight_only
      ? { quant_algo: args.weight_only_precision === "int4" ? "W4A16" : "W8A16" }
      : args.use_fp8_rowwise ? { quant_algo: "FP8_PER_CHANNEL_PER_TOKEN", use_meta_recipe: args.use_meta_fp8_rowwise_recipe } : undefined;
    const bar = progressBar("converting");
    const res = await convertCheckpoint({
      modelDir: args.model_dir,
      metaCkptDir: args.meta_ckpt_dir,
      outputDir: args.output_dir,
      dtype: args.dtype as "auto",
      tpSize: tp,
      ppSize: pp,
      useParallelEmbedding: args.use_parallel_embedding,
      embeddingShardingDim: Number(args.embedding_sharding_dim) as 0 | 1,
      quantConfig,
      workers,
      tokenizerDir: args.tokenizer_dir,
      allowNonfinite: args.allow_nonfinite,
      onProgress: (done, total, rank) => bar.update(done, total, `rank ${rank}`),
    });
    bar.done();
    const mb = res.bytes / 1e6;
    log.success(`wrote ${res.files.length - 1} rank file(s) + config.json${res.tokenizerFiles.length ? " + tokenizer" : ""} to ${args.output_dir}: ${mb.toFixed(1)} MB in ${res.seconds.toFixed(2)} s (${(mb / res.seconds).toFixed(0)} MB/s)`);
  },
});
