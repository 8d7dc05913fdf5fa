/** Shared oracle check: runner logits and greedy ids vs a fixture's reference.safetensors. */
import { expect } from "bun:test";
import { join } from "node:path";
import type { CpuRunner } from "../../src/runtime/cpu.ts";
import { asF32, asI32, fixture, readRaw, relMaxErr } from "../helpers.ts";

/** max|Δ| / max|ref| allowed for fp32 math on bf16-stored weights (issue acceptance: 1e-3). */
export const LOGITS_REL_TOL = 1e-3;

export function checkAgainstReference(runner: CpuRunner, name: string): { err: number } {
  const ref = readRaw(join(fixture(name), "reference.safetensors"));
  const ids = asI32(ref.get("input_ids")!);
  const [B, S] = ref.get("input_ids")!.shape as [number, number];
  const logits = asF32(ref.get("logits")!);
  const V = ref.get("logits")!.shape[2]!;
  let worst = 0;
  for (let b = 0; b < B; b++) {
    const row = Array.from(ids.subarray(b * S, (b + 1) * S));
    const got = runner.forward(row);
    const err = relMaxErr(got, logits.subarray(b * S * V, (b + 1) * S * V));
    worst = Math.max(worst, err);
  }
  expect(worst).toBeLessThanOrEqual(LOGITS_REL_TOL);
  const greedy = Array.from(asI32(ref.get("greedy_ids")!));
  const prompt = Array.from(ids.subarray(0, S));
  expect(runner.greedy(prompt, greedy.length - S)).toEqual(greedy);
  return { err: worst };
}
