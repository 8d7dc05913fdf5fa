/** `trtllm run`: logits and greedy tokens from a TRT-LLM checkpoint with the CPU reference runner. */
import { defineCommand } from "citty";
import { TrtbError } from "../../src/errors.ts";
import { log, setLogLevel } from "../../src/log.ts";
import { loadCpuRunner } from "../../src/runtime/index.ts";
import { readInputIds, writeRunOutputs } from "../../src/runtime/io.ts";
import { commonArgs, intArg } from "./_shared.ts";

export default defineCommand({
  meta: { name: "run", description: "Run a TRT-LLM checkpoint on the CPU (fp32 reference runner): logits and greedy generation" },
  args: {
    checkpoint_dir: { type: "string", description: "TRT-LLM checkpoint directory (config.json + rank{N}.safetensors); all ranks are merged", valueHint: "dir" },
    engine_dir: { type: "string", description: "Engine directory (GPU runtime; not available in this build)", valueHint: "dir" },
    input_file: { type: "string", description: "safetensors file with input_ids (int32 or int64) of shape [batch, seq]", required: true, valueHint: "file" },
    output_logits: { type: "string", description: "Write logits f32 [batch, seq, vocab] (and output_ids when generating) to this safetensors file", valueHint: "file" },
    max_new_tokens: { type: "string", description: "Generate this many tokens greedily after each input row; prints them and writes output_ids", default: "0", valueHint: "N" },
    end_id: { type: "string", description: "Stop a row early at this token id", valueHint: "id" },
    ...commonArgs,
  },
  async run({ args }) {
    setLogLevel(args.verbose ? "debug" : args.log_level);
    if (args.engine_dir) throw new TrtbError("CLI_BAD_ARG", "--engine_dir needs the GPU runtime, which this build does not include yet; use --checkpoint_dir for the CPU runner");
    if (!args.checkpoint_dir) throw new TrtbError("CLI_BAD_ARG", "--checkpoint_dir is required");
    const maxNew = intArg("max_new_tokens", args.max_new_tokens, 0);
    const endId = args.end_id === undefined ? undefined : intArg("end_id", args.end_id, 0);
    const ids = readInputIds(args.input_file);
    const runner = await loadCpuRunner(args.checkpoint_dir);
    const logits = ids.map((row) => runner.forward(row));
    let outputIds: number[][] | undefined;
    if (maxNew > 0) {
      outputIds = ids.map((row) => runner.greedy(row, maxNew, endId));
      outputIds.forEach((row, b) => console.log(`[${b}] ${row.slice(ids[b]!.length).join(" ")}`));
    }
    if (args.output_logits) {
      writeRunOutputs(args.output_logits, { logits: { data: logits, vocab: runner.cfg.vocab_size }, outputIds });
      log.success(`wrote ${args.output_logits}`);
    } else if (maxNew === 0) {
      log.info(`computed logits for ${ids.length}×${ids[0]?.length ?? 0} tokens; pass --output_logits to save them`);
    }
  },
});
