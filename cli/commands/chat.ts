/**
 * `trtllm chat`: an interactive loop over stdin. Each line is a user message; the history goes
 * through the tokenizer's chat template and the reply is streamed. `--checkpoint_dir` runs on the
 * CPU reference runner, `--engine_dir` on the GPU. An empty line or end of input ends the chat;
 * `/reset` forgets the history. A model without a chat template is refused up front.
 */
import { createInterface } from "node:readline";
import { defineCommand } from "citty";
import { type ChatMessage, LLM, log, type SamplingParams, setLogLevel, TrtbError } from "../../src/index.ts";
import { commonArgs, intArg, optIntArg } from "./_shared.ts";

export default defineCommand({
  meta: { name: "chat", description: "Chat with a checkpoint (CPU) or an engine (GPU) over stdin, with the model's chat template, replies streamed" },
  args: {
    checkpoint_dir: { type: "string", description: "TRT-LLM checkpoint directory; CPU reference runner", valueHint: "dir" },
    engine_dir: { type: "string", description: "Engine directory built by trtllm-build; GPU", valueHint: "dir" },
    tokenizer_dir: { type: "string", description: "Directory with tokenizer.json (default: the checkpoint or engine directory)", valueHint: "dir" },
    system: { type: "string", description: "System prompt", valueHint: "text" },
    max_new_tokens: { type: "string", description: "Most tokens per reply (default 256; capped at max_seq_len)", default: "256", valueHint: "N" },
    temperature: { type: "string", description: "Sampling temperature (default: greedy)", valueHint: "T" },
    top_k: { type: "string", description: "Sample from the k most likely tokens", valueHint: "k" },
    top_p: { type: "string", description: "Nucleus sampling threshold in (0, 1]", valueHint: "p" },
    random_seed: { type: "string", description: "Seed of the sampler (default 0)", valueHint: "seed", alias: "seed" },
    ...commonArgs,
  },
  async run({ args }) {
    setLogLevel(args.verbose ? "debug" : args.log_level);
    if (!!args.engine_dir === !!args.checkpoint_dir) throw new TrtbError("CLI_BAD_ARG", "give one of --checkpoint_dir (CPU) and --engine_dir (GPU)");
    const num = (n: string, v: string | undefined) => {
      if (v === undefined) return undefined;
      if (!Number.isFinite(Number(v))) throw new TrtbError("CLI_BAD_ARG", `--${n} must be a number, got ${JSON.stringify(v)}`);
      return Number(v);
    };
    const params: SamplingParams = {
      maxTokens: intArg("max_new_tokens", args.max_new_tokens, 1), temperature: num("temperature", args.temperature), topK: optIntArg("top_k", args.top_k, 0),
      topP: num("top_p", args.top_p), seed: optIntArg("random_seed", args.random_seed, 0),
    };
    using llm = await LLM.create({ model: (args.engine_dir ?? args.checkpoint_dir)!, backend: args.engine_dir ? "gpu" : "cpu", tokenizer: args.tokenizer_dir });
    if (!llm.tokenizer.hasChatTemplate) throw new TrtbError("TOK_NO_CHAT_TEMPLATE", `${llm.tokenizer.dir}: no chat template (neither chat_template.jinja nor chat_template in tokenizer_config.json); use trtllm run --input_text for plain completion`);
    const system: ChatMessage[] = args.system ? [{ role: "system", content: args.system }] : [];
    let history: ChatMessage[] = [];
    const rl = createInterface({ input: process.stdin, terminal: false });
    const tty = process.stdin.isTTY;
    if (tty) process.stdout.write("> ");
    for await (const line of rl) {
      if (line.trim() === "") break;
      if (line.trim() === "/reset") {
        history = [];
        if (tty) process.stdout.write("(history cleared)\n> ");
        continue;
      }
      history.push({ role: "user", content: line });
      const it = llm.generateStream([...system, ...history], params);
      let r = await it.next();
      while (!r.done) {
        process.stdout.write(r.value);
        r = await it.next();
      }
      process.stdout.write("\n");
      history.push({ role: "assistant", content: r.value.text });
      log.debug(`${r.value.tokenIds.length} tokens, ${r.value.timing.tokensPerSecond.toFixed(1)} tok/s, ${r.value.finishReason}`);
      if (tty) process.stdout.write("> ");
    }
    rl.close();
  },
});
