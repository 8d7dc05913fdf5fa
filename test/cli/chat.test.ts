/**
 * `trtllm chat` in a child process: stdin lines become user turns rendered by the chat template,
 * replies are streamed to stdout (the first equals LLM.generate on the same chat); a model without
 * a chat template is refused with one message.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { convertCheckpoint, LLM } from "../../src/index.ts";
import { SHARED, tempDir } from "../helpers.ts";

const PYCODE = join(SHARED, "models/tiny-pycode");
const CLI = join(import.meta.dir, "../../cli/trtllm.ts");

describe("trtllm chat", () => {
  test("streams a reply per line with the chat template; no template → clear error", async () => {
    using d = tempDir();
    await convertCheckpoint({ modelDir: PYCODE, outputDir: d.path });
    const chat = (input: string) => Bun.spawnSync([process.execPath, CLI, "chat", "--checkpoint_dir", d.path, "--max_new_tokens", "12"], { stdin: Buffer.from(input) });
    const none = chat("hi\n");
    expect(none.exitCode).toBe(1);
    expect(none.stderr.toString()).toContain("no chat template");

    const cfgFile = join(d.path, "tokenizer_config.json");
    const cfg = JSON.parse(readFileSync(cfgFile, "utf8"));
    writeFileSync(cfgFile, JSON.stringify({ ...cfg, chat_template: "{% for m in messages %}# {{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}def {% endif %}" }));
    const r = chat("fibonacci\nsort a list\n");
    expect(r.exitCode).toBe(0);
    const lines = r.stdout.toString();
    using llm = await LLM.create({ model: d.path });
    const [first] = await llm.generate([[{ role: "user", content: "fibonacci" }]], { maxTokens: 12 });
    expect(lines.startsWith(`${first!.text}\n`)).toBe(true);
    expect(lines.split("\n").length).toBeGreaterThan(2);
  }, 60_000);
});
