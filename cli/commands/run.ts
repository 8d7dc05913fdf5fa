/**
 * `trtllm run`: text generation, or logits and generated ids (flag names after upstream's examples/run.py).
 *
 *   --checkpoint_dir  TRT-LLM checkpoint on the CPU (fp32 reference runner)
 *   --engine_dir      engine directory on the GPU (the CUDA runtime)
 *
 * Text: `--input_text` (repeatable: a batch) or `--input_file` .txt / .jsonl; the tokenizer comes
 * from the directory (convert and trtllm-build copy it there) or --tokenizer_dir. The text is taken
 * as given: `\n` in a shell argument stays a backslash and an n (use $'…' in bash for newlines).
 * Prints the prompt followed by its continuation (with --chat: the reply only).
 *
 * Ids: `--input_file x.safetensors` (input_ids [batch, seq]) → `--output_logits` safetensors with
 * logits f32 [batch, seq, vocab] and output_ids int32.
 *
 * Greedy unless --temperature / --top_k / --top_p is given (upstream's defaults top_k 1 and
 * temperature 1 are greedy too).
 */
import { writeFileSync } from "node:fs";
import { defineCommand } from "citty";
import {
  capNewTokens, type ChatMessage, checkFinite, type CompletionOutput, GpuModelRunner, guardOutput, LLM, loadCpuRunner, log, type Prompt, readInputIds, readPromptFile,
  type SamplingParams, setAllowNonfinite, setLogLevel, TrtbError, writeRunOutputs,
} from "../../src/index.ts";
import { commonArgs, intArg, nonfiniteArgs, optIntArg, repeatedArg } from "./_shared.ts";

function numArg(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new TrtbError("CLI_BAD_ARG", `--${name} must be a number, got ${JSON.stringify(v)}`);
  return n;
}

/** Text-mode defaults: upstream SamplingParams' max_tokens. */
const DEFAULT_TEXT_MAX_NEW = 32;

export const runArgs = {
  checkpoint_dir: { type: "string", description: "TRT-LLM checkpoint directory (config.json + rank{N}.safetensors); all ranks are merged; CPU", valueHint: "dir" },
  engine_dir: { type: "string", description: "Engine directory built by trtllm-build (config.json + rank0.engine); GPU", valueHint: "dir" },
  input_text: { type: "string", description: "Prompt text, taken as given (repeat the flag for a batch)", valueHint: "text" },
  input_file: { type: "string", description: ".safetensors with input_ids [batch, seq] (int32/int64); or .txt (one prompt per line) / .jsonl ({\"text\"} or {\"messages\"} per line)", valueHint: "file" },
  tokenizer_dir: { type: "string", description: "Directory with tokenizer.json (default: the checkpoint or engine directory)", valueHint: "dir" },
  chat: { type: "boolean", description: "Apply the tokenizer's chat template to each prompt (as a user message) and print only the reply", default: false },
  system: { type: "string", description: "With --chat: a system prompt", valueHint: "text" },
  streaming: { type: "boolean", description: "Print text as it is generated", default: false },
  stop: { type: "string", description: "Stop at this string (repeatable); the text ends just before it", valueHint: "text" },
  output_json: { type: "string", description: "Write [{prompt, text, token_ids, finish_reason, prompt_tokens, seconds}] here", valueHint: "file" },
  output_logits: { type: "string", description: "Ids mode: write logits f32 [batch, seq, vocab] (and output_ids when generating) to this safetensors file", valueHint: "file" },
  max_new_tokens: { type: "string", description: `Tokens to generate per prompt (text: default ${DEFAULT_TEXT_MAX_NEW}; ids: default 0, logits only); capped at max_seq_len`, valueHint: "N", alias: "max_output_len" },
  end_id: { type: "string", description: "Stop a row at this token id (text: besides the tokenizer's eos ids)", valueHint: "id" },
  pad_id: { type: "string", description: "Ids mode with --engine_dir: pad finished rows with this id", valueHint: "id" },
  temperature: { type: "string", description: "Sampling temperature (default: greedy)", valueHint: "T" },
  top_k: { type: "string", description: "Sample from the k most likely tokens (1: greedy)", valueHint: "k" },
  top_p: { type: "string", description: "Nucleus sampling threshold in (0, 1]", valueHint: "p" },
  random_seed: { type: "string", description: "Seed of the sampler (default 0)", valueHint: "seed", alias: "seed" },
  device: { type: "string", description: "With --engine_dir: CUDA device (default 0)", default: "0", valueHint: "N" },
  ...nonfiniteArgs,
  ...commonArgs,
} as const;

type RunArgs = { [K in keyof typeof runArgs]: (typeof runArgs)[K]["type"] extends "boolean" ? boolean : string | undefined };

/** Sampling flags → SamplingParams fields (undefined: greedy). */
function samplingOf(args: RunArgs) {
  return {
    temperature: numArg("temperature", args.temperature),
    topK: optIntArg("top_k", args.top_k, 0),
    topP: numArg("top_p", args.top_p),
    seed: optIntArg("random_seed", args.random_seed, 0),
  };
}

export default defineCommand({
  meta: { name: "run", description: "Generate text (or logits and ids) with a TRT-LLM checkpoint on the CPU (fp32 reference runner) or an engine on the GPU" },
  args: runArgs,
  async run({ args: a, rawArgs }) {
    const args = a as unknown as RunArgs;
    setLogLevel(args.verbose ? "debug" : String(args.log_level));
    setAllowNonfinite(args.allow_nonfinite === true);
    if (args.engine_dir && args.checkpoint_dir) throw new TrtbError("CLI_BAD_ARG", "give only one of --checkpoint_dir (CPU) and --engine_dir (GPU)");
    if (!args.engine_dir && !args.checkpoint_dir) throw new TrtbError("CLI_BAD_ARG", "give --checkpoint_dir (CPU reference runner) or --engine_dir (GPU engine)");
    const texts = repeatedArg(rawArgs, "input_text");
    const file = args.input_file;
    if (texts.length && file) throw new TrtbError("CLI_BAD_ARG", "give only one of --input_text and --input_file");
    if (!texts.length && !file) throw new TrtbError("CLI_BAD_ARG", "give --input_text (text), or --input_file (.safetensors ids, .txt or .jsonl prompts)");
    // Output files are checked before the run: never an input, never on a read-only location.
    const inputs = [
      { path: (args.engine_dir ?? args.checkpoint_dir)!, what: args.engine_dir ? "--engine_dir" : "--checkpoint_dir" },
      file && { path: file, what: "--input_file" },
      args.tokenizer_dir && { path: args.tokenizer_dir, what: "--tokenizer_dir" },
    ];
    if (args.output_logits) guardOutput(args.output_logits, "--output_logits", inputs);
    if (args.output_json) guardOutput(args.output_json, "--output_json", inputs);
    if (file?.endsWith(".safetensors")) return runIds(args, file);
    return runText(args, rawArgs, texts.length ? texts.map((text) => ({ text })) : readPromptFile(file!));
  },
});

async function runText(args: RunArgs, rawArgs: string[], prompts: ({ text: string } | { messages: ChatMessage[] })[]): Promise<void> {
  if (args.output_logits) throw new TrtbError("CLI_BAD_ARG", "--output_logits takes an ids input (--input_file x.safetensors); for text use --output_json");
  if (args.system !== undefined && !args.chat) throw new TrtbError("CLI_BAD_ARG", "--system needs --chat");
  const maxTokens = args.max_new_tokens === undefined ? DEFAULT_TEXT_MAX_NEW : intArg("max_new_tokens", args.max_new_tokens, 1);
  const endId = optIntArg("end_id", args.end_id, 0);
  const params: SamplingParams = { maxTokens, ...samplingOf(args), stop: repeatedArg(rawArgs, "stop"), stopTokenIds: endId === undefined ? [] : [endId] };
  const model = (args.engine_dir ?? args.checkpoint_dir)!;
  using llm = await LLM.create({
    model, backend: args.engine_dir ? "gpu" : "cpu", tokenizer: args.tokenizer_dir, device: intArg("device", args.device, 0),
    runner: args.engine_dir ? { maxBatchSize: Math.max(1, Math.min(prompts.length, 64)) } : undefined,
  });
  const sys: ChatMessage[] = args.system !== undefined ? [{ role: "system", content: args.system }] : [];
  const inputs: Prompt[] = prompts.map((p) => ("messages" in p ? [...sys, ...p.messages] : args.chat ? [...sys, { role: "user", content: p.text }] : p.text));
  // What is printed before the continuation: the prompt, for plain text (completion style).
  const lead = (i: number) => (typeof inputs[i] === "string" ? (inputs[i] as string) : "");
  const write = (s: string) => void process.stdout.write(s);
  let outs: CompletionOutput[];
  if (args.streaming) {
    outs = [];
    for (let i = 0; i < inputs.length; i++) {
      if (inputs.length > 1) write(`[${i}] `);
      write(lead(i));
      const it = llm.generateStream(inputs[i]!, params);
      let r = await it.next();
      while (!r.done) {
        write(r.value);
        r = await it.next();
      }
      write("\n");
      outs.push(r.value);
    }
  } else {
    outs = await llm.generate(inputs, params);
    outs.forEach((o, i) => console.log(`${inputs.length > 1 ? `[${i}] ` : ""}${lead(i)}${o.text}`));
  }
  const n = outs.reduce((s, o) => s + o.tokenIds.length, 0);
  const secs = outs.reduce((s, o) => Math.max(s, o.timing.seconds), 0);
  log.info(`${llm.backend}: ${n} tokens for ${outs.length} prompt(s) (${outs.map((o) => o.finishReason).join(", ")}); ${(n / (args.streaming ? outs.reduce((s, o) => s + o.timing.seconds, 0) : secs) || 0).toFixed(1)} tok/s`);
  if (args.output_json) {
    const rows = outs.map((o, i) => ({
      prompt: inputs[i], text: o.text, token_ids: o.tokenIds, finish_reason: o.finishReason, ...(o.stopReason !== undefined ? { stop_reason: o.stopReason } : {}),
      prompt_tokens: o.promptTokens, seconds: o.timing.seconds, tokens_per_second: o.timing.tokensPerSecond,
    }));
    writeFileSync(args.output_json, `${JSON.stringify(rows, null, 2)}\n`);
    log.success(`wrote ${args.output_json}`);
  }
}

async function runIds(args: RunArgs, file: string): Promise<void> {
  for (const f of ["chat", "streaming"] as const) if (args[f]) throw new TrtbError("CLI_BAD_ARG", `--${f} needs text input (--input_text, or --input_file .txt / .jsonl)`);
  if (args.output_json) throw new TrtbError("CLI_BAD_ARG", "--output_json needs text input; for ids use --output_logits");
  const maxNew = args.max_new_tokens === undefined ? 0 : intArg("max_new_tokens", args.max_new_tokens, 0);
  const endId = optIntArg("end_id", args.end_id, 0);
  const s = samplingOf(args);
  const sampled = s.temperature !== undefined || s.topK !== undefined || s.topP !== undefined || s.seed !== undefined;
  const sampling = sampled ? s : ("greedy" as const);
  if (!args.engine_dir && args.pad_id !== undefined) throw new TrtbError("CLI_BAD_ARG", "--pad_id needs --engine_dir");
  const ids = readInputIds(file);
  let newTokens = maxNew;

  let logits: Float32Array[];
  let vocab: number;
  let outputIds: number[][] | undefined;
  if (args.engine_dir) {
    const runner = await GpuModelRunner.fromDir(args.engine_dir, { device: intArg("device", args.device, 0), maxBatchSize: Math.max(1, ids.length) });
    try {
      vocab = runner.vocabSize;
      if (maxNew > 0) newTokens = capNewTokens(maxNew, ids, runner.maxSeqLen, "the engine's max_seq_len");
      logits = runner.forwardLogits(ids);
      if (newTokens > 0) {
        const res = runner.generate(ids, { maxNewTokens: newTokens, endId, padId: optIntArg("pad_id", args.pad_id, 0), sampling });
        outputIds = res.outputIds;
        log.info(`decode: ${res.decodeSteps} steps in ${res.decodeMs.toFixed(1)} ms (${((res.decodeSteps * ids.length) / (res.decodeMs / 1000) || 0).toFixed(1)} tok/s), prefill ${res.prefillMs.toFixed(1)} ms`);
      }
    } finally {
      runner.destroy();
    }
  } else {
    const runner = await loadCpuRunner(args.checkpoint_dir!);
    vocab = runner.cfg.vocab_size;
    if (maxNew > 0) newTokens = capNewTokens(maxNew, ids, runner.cfg.max_position_embeddings, "the model's max_position_embeddings");
    logits = ids.map((row) => runner.forward(row));
    if (newTokens > 0) {
      outputIds = ids.map((row) => {
        const seq = [...row];
        for (const tok of runner.generateIds(row, { maxNewTokens: newTokens, sampling })) {
          seq.push(tok);
          if (tok === endId) break;
        }
        return seq;
      });
    }
  }
  // All-NaN logits are garbage, not a result: refused unless --allow_nonfinite (then a warning).
  logits.forEach((row, b) => checkFinite(new Uint8Array(row.buffer, row.byteOffset, row.byteLength), "F32", { tensor: `logits of prompt ${b}`, shape: [row.length / vocab, vocab] }));
  if (outputIds) outputIds.forEach((row, b) => console.log(`[${b}] ${row.slice(ids[b]!.length).join(" ")}`));
  if (args.output_logits) {
    writeRunOutputs(args.output_logits, { logits: { data: logits, vocab }, outputIds });
    log.success(`wrote ${args.output_logits}`);
  } else if (maxNew === 0) {
    log.info(`computed logits for ${ids.length}×${ids[0]?.length ?? 0} tokens; pass --output_logits to save them`);
  }
}
