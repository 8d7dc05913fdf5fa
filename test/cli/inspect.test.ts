import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, spyOn, test, type Mock } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { runCli } from "../../cli/_main.ts";
import { main } from "../../cli/trtllm.ts";
import { SafetensorsWriter } from "../../src/format/safetensors.ts";
import { log } from "../../src/log.ts";

const FIXTURES = path.resolve(import.meta.dir, "../../../shared/fixtures");

let tmp: string;
let stdout: Mock<(...a: unknown[]) => void>;
let errors: Mock<typeof log.error>;
let level: number;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "trtb-inspect-"));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});
beforeEach(() => {
  level = log.level;
  stdout = spyOn(console, "log").mockImplementation(() => {});
  errors = spyOn(log, "error").mockImplementation(Object.assign(() => {}, { raw: () => {} }));
});
afterEach(() => {
  stdout.mockRestore();
  errors.mockRestore();
  log.level = level; // the command sets the process-wide level from its flags
});

const printed = () => stdout.mock.calls.map((c) => c.join(" ")).join("\n");
const logged = () => errors.mock.calls.map((c) => String(c[0] instanceof Error ? c[0].message : c[0])).join("\n");
const inspect = (...args: string[]) => runCli(main, ["inspect", ...args, "--log_level", "warn"]);

describe("trtllm inspect", () => {
  test("a file: table and totals", async () => {
    expect(await inspect(path.join(FIXTURES, "hf-tiny/gemma/model.safetensors"))).toBe(0);
    const out = printed();
    expect(out).toContain("model.embed_tokens.weight");
    expect(out).toMatch(/model\.embed_tokens\.weight\s+BF16\s+\[256, 128\]\s+65,536/);
    expect(out).toContain("20 tensors, 853,248 bytes");
    expect(out).toContain("metadata format=pt");
    expect(errors).not.toHaveBeenCalled();
  });

  test("an HF directory: all shards as one checkpoint, with a file column", async () => {
    expect(await inspect(path.join(FIXTURES, "hf-tiny/llama"))).toBe(0);
    const out = printed();
    for (const s of ["model-00001-of-00003.safetensors", "model-00003-of-00003.safetensors", "lm_head.weight", "model.norm.weight"]) expect(out).toContain(s);
    expect(out).toContain("21 tensors, 918,784 bytes");
  });

  test("--json", async () => {
    expect(await inspect(path.join(FIXTURES, "hf-tiny/llama"), "--json")).toBe(0);
    const r = JSON.parse(printed());
    expect(r.format).toBe("hf-checkpoint");
    expect(r.files.length).toBe(3);
    expect(r.tensors.length).toBe(21);
    expect(r.totals).toEqual({ tensors: 21, bytes: 918784, byDtype: { BF16: 918784 } });
    expect(r.tensors[0]).toMatchObject({ name: "lm_head.weight", dtype: "BF16", shape: [256, 128], bytes: 65536 });
  });

  test("a TRT-LLM checkpoint directory: per rank file, then the total", async () => {
    const dir = path.join(tmp, "ckpt");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "config.json"), "{}");
    for (const rank of [0, 1, 10]) {
      const w = SafetensorsWriter.create(path.join(dir, `rank${rank}.safetensors`), [
        { name: "transformer.vocab_embedding.weight", dtype: "F16", shape: [8, 4] },
        { name: "lm_head.weight", dtype: "F32", shape: [8, 4] },
      ]);
      w.write("transformer.vocab_embedding.weight", new Uint8Array(64));
      w.write("lm_head.weight", new Uint8Array(128));
      w.commit();
    }
    expect(await inspect(dir, "--json")).toBe(0);
    const r = JSON.parse(printed());
    expect(r.format).toBe("trtllm-checkpoint");
    expect(r.files.map((f: { path: string }) => path.basename(f.path))).toEqual(["rank0.safetensors", "rank1.safetensors", "rank10.safetensors"]);
    expect(r.totals).toEqual({ tensors: 6, bytes: 576, byDtype: { F32: 384, F16: 192 } });
    stdout.mockClear();
    expect(await inspect(dir)).toBe(0);
    const out = printed();
    expect(out.indexOf("rank0.safetensors")).toBeLessThan(out.indexOf("rank1.safetensors"));
    expect(out).toContain("total over 3 rank files:");
  });

  test("a bad file: exit 1, one clear message, no stack", async () => {
    const bad = path.join(tmp, "bad.safetensors");
    const body = new TextEncoder().encode('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}');
    const buf = new Uint8Array(8 + body.length + 4);
    new DataView(buf.buffer).setBigUint64(0, BigInt(body.length), true);
    buf.set(body, 8);
    fs.writeFileSync(bad, buf);
    expect(await inspect(bad)).toBe(1);
    expect(errors).toHaveBeenCalledTimes(1);
    expect(typeof errors.mock.calls[0]![0]).toBe("string");
    expect(logged()).toContain(bad);
    expect(logged()).toContain('tensor "a"');
    expect(logged()).toContain("needs 8");
    expect(stdout).not.toHaveBeenCalled();
  });

  test("--verbose passes the error itself (with its stack) to the logger", async () => {
    const bad = path.join(tmp, "tiny.safetensors");
    fs.writeFileSync(bad, "abc");
    expect(await inspect(bad, "--verbose")).toBe(1);
    expect(errors.mock.calls[0]![0]).toBeInstanceOf(Error);
    expect(logged()).toContain("not a safetensors file");
  });

  test("a missing path and a directory without weights", async () => {
    expect(await inspect(path.join(tmp, "absent"))).toBe(1);
    expect(logged()).toContain("no such file or directory");
    errors.mockClear();
    const empty = path.join(tmp, "empty");
    fs.mkdirSync(empty);
    expect(await inspect(empty)).toBe(1);
    expect(logged()).toContain("no *.safetensors weights");
  });
});
