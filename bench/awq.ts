/**
 * AWQ int4 g128 variants against round-to-nearest on tiny-pycode, CPU only (the goal: AWQ's
 * ppl increase over bf16 at most half RTN's). Same split as bench/calib.ts: heldout-public.py.txt up
 * to the first line break after half its characters calibrates (the .txt path `trtllm quantize
 * --qformat int4_awq --calib_dataset` reads), the rest evaluates (evaluate(), KL(bf16‖format)).
 *   bun bench/awq.ts [calibSeqs=16] [seqLen=128] [evalWindows=16] [window=128] [variants=all, comma-separated]
 * Variants: rtn, onepass, seq-linear, default (= seq-block-joint), seq-block (no joint clip), seq-block-joint, seq-block-noclip, seq-block-fp, seq-block-same.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { calibrationStats, convertCheckpoint, evaluate, quantize } from "../src/index.ts";
import type { QuantizeOptions } from "../src/quantize.ts";

const M = join(import.meta.dir, "../../shared/models/tiny-pycode");
const args = process.argv.slice(2);
const [seqs = 16, len = 128, windows = 16, window = 128] = args.slice(0, 4).map(Number);
const VARIANTS: Record<string, QuantizeOptions | null> = {
  rtn: null,
  onepass: { awqMode: "onepass" },
  "seq-linear": { awqMode: "sequential", awqLoss: "linear" },
  default: {},
  "seq-block": { awqMode: "sequential", awqLoss: "block", awqJointClip: false },
  "seq-block-joint": { awqMode: "sequential", awqLoss: "block", awqJointClip: true },
  "seq-block-noclip": { awqMode: "sequential", awqLoss: "block", awqClip: false },
  "seq-block-fp": { awqMode: "sequential", awqLoss: "block", awqJointClip: false, awqTarget: "fp-model" },
  "seq-block-same": { awqMode: "sequential", awqLoss: "block", awqJointClip: false, awqTarget: "same-input" },
};
const pick = args[4] ? args[4].split(",") : Object.keys(VARIANTS);
const dir = mkdtempSync(join(tmpdir(), "trtb-awq-"));
try {
  const text = readFileSync(join(M, "heldout-public.py.txt"), "utf8");
  const cut = text.indexOf("\n", Math.floor(text.length / 2)) + 1;
  writeFileSync(join(dir, "calib.txt"), text.slice(0, cut));
  writeFileSync(join(dir, "eval.txt"), text.slice(cut));
  await convertCheckpoint({ modelDir: M, outputDir: join(dir, "bf16") });
  const { stats } = await calibrationStats({ modelDir: M, dataset: join(dir, "calib.txt"), calibSize: seqs, calibMaxSeqLength: len, gram: true });
  console.log(`calibration: ${stats.describe} (${stats.tokens} tokens, one-pass statistics with XᵀX ${stats.seconds.toFixed(1)} s); eval ${windows} windows × ${window}`);
  let rtnInc: number | undefined;
  console.log("| variant | ppl | Δppl | Δ/RTN | KL mean | top-1 | quantize s (search s) |");
  for (const name of pick) {
    const o = VARIANTS[name];
    if (o === undefined) throw new Error(`unknown variant ${name}`);
    const out = join(dir, "q");
    const t = performance.now();
    const r = await quantize(M, out, { quant_algo: "W4A16_AWQ", group_size: 128 }, o === null ? {} : { calibStats: stats, ...o });
    const qs = (performance.now() - t) / 1000;
    const e = await evaluate({ model: out, reference: join(dir, "bf16"), data: join(dir, "eval.txt"), window, maxWindows: windows });
    const inc = e.ppl - e.referencePpl!;
    if (name === "rtn") {
      rtnInc = inc;
      console.log(`bf16 ppl ${e.referencePpl!.toFixed(4)}`);
    }
    const ratio = rtnInc !== undefined ? (inc / rtnInc).toFixed(3) : "-";
    console.log(`| ${name} | ${e.ppl.toFixed(4)} | ${inc >= 0 ? "+" : ""}${inc.toFixed(4)} | ${ratio} | ${e.kl!.mean.toExponential(3)} | ${e.top1Agreement!.toFixed(4)} | ${qs.toFixed(1)} (${r.calibration?.planSeconds.toFixed(1) ?? "-"}) |`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
