/** A conversion killed half-way never leaves a complete-looking checkpoint, and a rerun works. */
import { expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { convertCheckpoint } from "../src/convert.ts";
import { fixture, tempDir } from "./helpers.ts";

test("SIGKILL after the first rank: no config.json; rerun completes and removes the stale temp files", async () => {
  using out = tempDir();
  // A child converts tp=2 pp=2 one rank after another (workers: 1) and kills itself (SIGKILL: no
  // exit handlers) once rank 1 has started.
  const script = `
    import { convertCheckpoint } from ${JSON.stringify(resolve(import.meta.dir, "../src/convert.ts"))};
    await convertCheckpoint({ modelDir: ${JSON.stringify(fixture("llama"))}, outputDir: ${JSON.stringify(out.path)}, tpSize: 2, ppSize: 2, workers: 1,
      onProgress: (done, total, rank) => { if (rank === 1) process.kill(process.pid, "SIGKILL"); } });
  `;
  const child = Bun.spawnSync([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
  expect(child.signalCode).toBe("SIGKILL");
  const left = readdirSync(out.path);
  expect(left).toContain("rank0.safetensors");
  expect(left).not.toContain("config.json");
  expect(left.some((f) => f.includes(".tmp-"))).toBe(true); // the half-written rank 1

  await convertCheckpoint({ modelDir: fixture("llama"), outputDir: out.path, tpSize: 2, ppSize: 2 });
  const after = readdirSync(out.path).sort();
  expect(after).toEqual(["config.json", "generation_config.json", "rank0.safetensors", "rank1.safetensors", "rank2.safetensors", "rank3.safetensors"]);
  expect(existsSync(join(out.path, "config.json"))).toBe(true);
});

test("SIGKILL while ranks are written in parallel: no config.json; rerun completes", async () => {
  using out = tempDir();
  // Two worker threads write ranks {0, 2} and {1, 3}; the child kills itself at the first progress report.
  const script = `
    import { convertCheckpoint } from ${JSON.stringify(resolve(import.meta.dir, "../src/convert.ts"))};
    await convertCheckpoint({ modelDir: ${JSON.stringify(fixture("llama"))}, outputDir: ${JSON.stringify(out.path)}, tpSize: 2, ppSize: 2, workers: 2,
      onProgress: () => process.kill(process.pid, "SIGKILL") });
  `;
  const child = Bun.spawnSync([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
  expect(child.signalCode).toBe("SIGKILL");
  expect(readdirSync(out.path)).not.toContain("config.json");

  await convertCheckpoint({ modelDir: fixture("llama"), outputDir: out.path, tpSize: 2, ppSize: 2 });
  const after = readdirSync(out.path).sort();
  expect(after).toEqual(["config.json", "generation_config.json", "rank0.safetensors", "rank1.safetensors", "rank2.safetensors", "rank3.safetensors"]);
});
