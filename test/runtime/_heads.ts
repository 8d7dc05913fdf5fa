/**
 * Synthetic checkpoints at every head size the CUDA backend builds (src/builder/build.ts
 * CUDA_HEAD_SIZES), for gpu-heads.test.ts (GPU engine vs the CPU runner) and gpu-emulated.test.ts
 * (the same orchestration on the CPU emulation). Tiny: hidden = heads × head size, 2 layers.
 */
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import { convertCheckpoint } from "../../src/convert.ts";
import { writeSyntheticLlama } from "../quant/_synthetic.ts";

export interface HeadCase {
  /** Test name: family, head size, GQA, rotary. */
  name: string;
  family: "llama" | "phi3";
  D: number;
  nH: number;
  nKV: number;
  /** Phi-3 partial_rotary_factor (rotary dim = D × factor). */
  rotary?: number;
}

export const HEAD_CASES: HeadCase[] = [
  { name: "llama D=32 (nH 4, nKV 2)", family: "llama", D: 32, nH: 4, nKV: 2 },
  { name: "llama D=64 (nH 4, nKV 2)", family: "llama", D: 64, nH: 4, nKV: 2 },
  { name: "llama D=80 (nH 4, nKV 1)", family: "llama", D: 80, nH: 4, nKV: 1 },
  { name: "llama D=96 (nH 4, nKV 4)", family: "llama", D: 96, nH: 4, nKV: 4 },
  { name: "llama D=128 (nH 4, nKV 2)", family: "llama", D: 128, nH: 4, nKV: 2 },
  { name: "llama D=256 (nH 2, nKV 1)", family: "llama", D: 256, nH: 2, nKV: 1 },
  // Phi-3-mini's attention shape (D 96, MHA, full rotary) and a Phi-2/StableLM-like partial rotary
  // (D 80, rotary dim 32)
  { name: "phi3 D=96 (nH 4, nKV 4)", family: "phi3", D: 96, nH: 4, nKV: 4, rotary: 1.0 },
  { name: "phi3 D=80 (nH 4, nKV 2, rotary dim 32)", family: "phi3", D: 80, nH: 4, nKV: 2, rotary: 0.4 },
];

export const HEAD_VOCAB = 512;

/** Writes the case's HF checkpoint under dir and converts it; returns the TRT-LLM checkpoint dir. */
export async function headCaseCheckpoint(c: HeadCase, dir: string): Promise<string> {
  const hf = join(dir, "hf");
  const ckpt = join(dir, "ckpt");
  mkdirSync(hf, { recursive: true });
  const H = c.nH * c.D;
  writeSyntheticLlama(hf, {
    V: HEAD_VOCAB, H, nH: c.nH, nKV: c.nKV, I: 2 * H, L: 2, seed: (c.family === "phi3" ? 1000 : 7) + c.D, family: c.family, partialRotaryFactor: c.rotary, fanInInit: true,
  });
  await convertCheckpoint({ modelDir: hf, outputDir: ckpt });
  return ckpt;
}

/** Prompts: one of 100 tokens (two 64-row prefill tiles, two 64-key tensor-core tiles), one of 7. */
export function headPrompts(): [number[], number[]] {
  const long = Array.from({ length: 100 }, (_, i) => (i * 37 + 11) % HEAD_VOCAB);
  return [long, long.slice(30, 37)];
}
