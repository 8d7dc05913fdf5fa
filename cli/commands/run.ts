/**
 * `trtllm run`: logits and generated tokens.
 *
 *   --checkpoint_dir  TRT-LLM checkpoint on the CPU (fp32 reference runner; greedy only)
 *   --engine_dir      engine directory on the GPU (the CUDA runtime; greedy or sampled)
 *
 * Both take the same --input_file / --output_logits / --max_new_tokens / --end_id and write the
 * same safetensors output (logits f32 [batch, seq, vocab], output_ids int32).
 */
import { defineCommand } from "citty";
import { GpuModelRunner, loadCpuRunner, log, readInputIds, setLogLevel, TrtbError, writeRunOutputs } from "../../src/index.ts";
import { commonArgs, intArg } from "./_shared.ts";

function numArg(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new TrtbError("CLI_BAD_ARG", `--${name} must be a number, got ${JSON.stringify(v)}`);
  return n;
}

export default defineCommand({
  meta: { name: "run", description: "Run a TRT-LLM checkpoint on the CPU (fp32 reference runner) or an engine on the GPU: logits and generation" },
  args: {
    checkpoint_dir: { type: "string", description: "TRT-LLM checkpoint directory (config.json + rank{N}.safetensors); all ranks are merged; CPU", valueHint: "dir" },
    engine_dir: { type: "string", description: "Engine directory built by trtllm-build (config.json + rank0.engine); GPU", valueHint: "dir" },
    input_file: { type: "string", description: "safetensors file with input_ids (int32 or int64) of shape [batch, seq]", required: true, valueHint: "file" },
    output_logits: { type: "string", description: "Write logits f32 [batch, seq, vocab] (and output_ids when generating) to this safetensors file", valueHint: "file" },
    max_new_tokens: { type: "string", description: "Generate this many tokens after each input row; prints them and writes output_ids", default: "0", valueHint: "N" },
    end_id: { type: "string", description: "Stop a row early at this token id", valueHint: "id" },
    pad_id: { type: "string", description: "With --engine_dir: pad finished rows with this id", valueHint: "id" },
    temperature: { type: "string", description: "With --engine_dir: sampling temperature (default: greedy)", valueHint: "T" },
    top_k: { type: "string", description: "With --engine_dir: sample from the k most likely tokens", valueHint: "k" },
    top_p: { type: "string", description: "With --engine_dir: nucleus sampling threshold in (0, 1]", valueHint: "p" },
    random_seed: { type: "string", description: "With --engine_dir: seed of the sampler (default 0)", valueHint: "seed" },
    device: { type: "string", description: "With --engine_dir: CUDA device (default 0)", default: "0", valueHint: "N" },
    ...commonArgs,
  },
  async run({ args }) {
    setLogLevel(args.verbose ? "debug" : args.log_level);
    if (args.engine_dir && args.checkpoint_dir) throw new TrtbError("CLI_BAD_ARG", "give only one of --checkpoint_dir (CPU) and --engine_dir (GPU)");
    if (!args.engine_dir && !args.checkpoint_dir) throw new TrtbError("CLI_BAD_ARG", "give --checkpoint_dir (CPU reference runner) or --engine_dir (GPU engine)");
    const maxNew = intArg("max_new_tokens", args.max_new_tokens, 0);
    const endId = args.end_id === undefined ? undefined : intArg("end_id", args.end_id, 0);
    const sampled = args.temperature !== undefined || args.top_k !== undefined || args.top_p !== undefined || args.random_seed !== undefined;
    if (!args.engine_dir && (sampled || args.pad_id !== undefined))
      throw new TrtbError("CLI_BAD_ARG", "--temperature/--top_k/--top_p/--random_seed/--pad_id need --engine_dir (the CPU runner is greedy)");
    const ids = readInputIds(args.input_file);

    let logits: Float32Array[];
    let vocab: number;
    let outputIds: number[][] | undefined;
    if (args.engine_dir) {
      const runner = await GpuModelRunner.fromDir(args.engine_dir, { device: intArg("device", args.device, 0), maxBatchSize: Math.max(1, ids.length) });
      try {
        vocab = runner.vocabSize;
        logits = runner.forwardLogits(ids);
        if (maxNew > 0) {
          const sampling = sampled
            ? { temperature: numArg("temperature", args.temperature), topK: args.top_k === undefined ? undefined : intArg("top_k", args.top_k, 0), topP: numArg("top_p", args.top_p), seed: args.random_seed === undefined ? undefined : intArg("random_seed", args.random_seed, 0) }
            : "greedy" as const;
          const res = runner.generate(ids, { maxNewTokens: maxNew, endId, padId: args.pad_id === undefined ? undefined : intArg("pad_id", args.pad_id, 0), sampling });
          outputIds = res.outputIds;
          log.info(`decode: ${res.decodeSteps} steps in ${res.decodeMs.toFixed(1)} ms (${((res.decodeSteps * ids.length) / (res.decodeMs / 1000) || 0).toFixed(1)} tok/s), prefill ${res.prefillMs.toFixed(1)} ms`);
        }
      } finally {
        runner.destroy();
      }
    } else {
      const runner = await loadCpuRunner(args.checkpoint_dir!);
      vocab = runner.cfg.vocab_size;
      logits = ids.map((row) => runner.forward(row));
      if (maxNew > 0) outputIds = ids.map((row) => runner.greedy(row, maxNew, endId));
    }
    if (outputIds) outputIds.forEach((row, b) => console.log(`[${b}] ${row.slice(ids[b]!.length).join(" ")}`));
    if (args.output_logits) {
      writeRunOutputs(args.output_logits, { logits: { data: logits, vocab }, outputIds });
      log.success(`wrote ${args.output_logits}`);
    } else if (maxNew === 0) {
      log.info(`computed logits for ${ids.length}×${ids[0]?.length ?? 0} tokens; pass --output_logits to save them`);
    }
  },
});
