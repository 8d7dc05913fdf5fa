/**
 * `trtllm serve` in a child process on loopback: it prints where it listens, answers a completion
 * (the text LLM.generate gives), and Ctrl-C (SIGINT) drains and exits 0. A bad flag is one message.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { LLM } from "../../src/index.ts";
import { SHARED } from "../helpers.ts";

const PYCODE = join(SHARED, "models/tiny-pycode");
const CLI = join(import.meta.dir, "../../cli/trtllm.ts");

describe("trtllm serve", () => {
  test("listens, serves a completion, SIGINT drains and exits 0", async () => {
    const p = Bun.spawn([process.execPath, CLI, "serve", PYCODE, "--backend", "cpu", "--port", "0", "--served_model_name", "pycode"], { stdout: "pipe", stderr: "pipe" });
    try {
      let out = "";
      const dec = new TextDecoder();
      let url: string | undefined;
      const pump = async (s: ReadableStream<Uint8Array>) => {
        for await (const b of s) out += dec.decode(b);
      };
      const pumps = [pump(p.stdout), pump(p.stderr)];
      for (let i = 0; i < 1200 && !url; i++) {
        url = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
        if (!url) await Bun.sleep(50);
      }
      expect(url).toBeDefined();
      const r = await fetch(`${url}/v1/completions`, { method: "POST", body: JSON.stringify({ model: "pycode", prompt: "def f(x):\n", max_tokens: 8, temperature: 0 }) });
      const j = (await r.json()) as any;
      using llm = await LLM.create({ model: PYCODE, backend: "cpu" });
      const [want] = await llm.generate("def f(x):\n", { maxTokens: 8 });
      expect(j.choices[0].text).toBe(want!.text);
      expect(j.model).toBe("pycode");
      p.kill("SIGINT");
      expect(await p.exited).toBe(0);
      await Promise.all(pumps);
      expect(out).toContain("draining");
    } finally {
      if (p.exitCode === null) p.kill("SIGKILL");
    }
  }, 120_000);

  test("a bad flag: one message, exit 1", () => {
    const r = Bun.spawnSync([process.execPath, CLI, "serve", PYCODE, "--port", "http"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toContain("--port must be an integer");
  });
});
