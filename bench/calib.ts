/**
 * Calibrated quantization on tiny-pycode, CPU only: ppl and KL(bf16‖format) with evaluate() for every
 * calibrated format, and the calibration time. Data split of heldout-public.py.txt at the first line
 * break after half its characters: the first half calibrates, the second half evaluates (disjoint).
 *   bun bench/calib.ts [calibSeqs=16] [seqLen=128] [evalWindows=16] [window=128] [awqGrid=20]
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { calibrationStats, convertCheckpoint, evaluate, quantize } from "../src/index.ts";

const M = join(import.meta.dir, "../../shared/models/tiny-pycode");
const [seqs = 16, len = 128, windows = 16, window = 128, grid = 20] = process.argv.slice(2).map(Number);
const dir = mkdtempSync(join(tmpdir(), "trtb-calib-"));
try {
  const text = readFileSync(join(M, "heldout-public.py.txt"), "utf8");
  const cut = text.indexOf("\n", Math.floor(text.length / 2)) + 1;
  writeFileSync(join(dir, "calib.txt"), text.slice(0, cut));
  writeFileSync(join(dir, "eval.txt"), text.slice(cut));
  console.log(`calibration: chars [0, ${cut}) of heldout-public.py.txt; evaluation: chars [${cut}, ${text.length})`);
  await convertCheckpoint({ modelDir: M, outputDir: join(dir, "bf16") });
  const t0 = performance.now();
  const { stats } = await calibrationStats({ modelDir: M, dataset: join(dir, "calib.txt"), calibSize: seqs, calibMaxSeqLength: len, gram: true });
  console.log(`statistics pass (with XᵀX): ${stats.tokens} tokens in ${stats.seconds.toFixed(1)} s (wall incl. model load ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  const { stats: plain } = await calibrationStats({ modelDir: M, dataset: join(dir, "calib.txt"), calibSize: seqs, calibMaxSeqLength: len });
  console.log(`statistics pass (no XᵀX): ${plain.seconds.toFixed(1)} s`);
  const rows: [string, Record<string, unknown>, Record<string, unknown>][] = [
    ["bf16 → FP8 per tensor", { quant_algo: "FP8" }, {}],
    ["INT8 KV cache", { kv_cache_quant_algo: "INT8" }, {}],
    ["FP8 KV cache", { kv_cache_quant_algo: "FP8" }, {}],
    ["FP8 + FP8 KV", { quant_algo: "FP8", kv_cache_quant_algo: "FP8" }, {}],
    ["int4 RTN g128 (int4_awq_rtn)", { quant_algo: "W4A16_AWQ", group_size: 128 }, { rtn: true }],
    ["int4 AWQ g128 (search+clip)", { quant_algo: "W4A16_AWQ", group_size: 128 }, {}],
    ["int4 AWQ g128 (search, no clip)", { quant_algo: "W4A16_AWQ", group_size: 128 }, { awqClip: false }],
    ["int4 RTN g64", { quant_algo: "W4A16_AWQ", group_size: 64 }, { rtn: true }],
    ["int4 AWQ g64 (search+clip)", { quant_algo: "W4A16_AWQ", group_size: 64 }, {}],
    ["W8A8 no smoothing", { quant_algo: "W8A8_SQ_PER_CHANNEL" }, { noSmoothing: true }],
    ["W8A8 SmoothQuant α=0.5 (int8_sq)", { quant_algo: "W8A8_SQ_PER_CHANNEL", smoothquant_val: 0.5 }, {}],
    ["W4A8_AWQ g128", { quant_algo: "W4A8_AWQ", group_size: 128 }, {}],
  ];
  for (const [name, q, o] of rows) {
    const out = join(dir, "q");
    const t = performance.now();
    const { rtn, ...rest } = o as { rtn?: boolean };
    const r = await quantize(M, out, q, rtn ? {} : { calibStats: stats, awqGrid: grid, ...rest });
    const qs = (performance.now() - t) / 1000;
    const e = await evaluate({ model: out, reference: join(dir, "bf16"), data: join(dir, "eval.txt"), window, maxWindows: windows });
    console.log(`| ${name} | ${e.ppl.toFixed(4)} | ${(e.ppl - e.referencePpl!).toFixed(4)} | ${e.kl!.mean.toExponential(3)} | ${e.top1Agreement!.toFixed(4)} | ${qs.toFixed(1)} s (search ${r.calibration?.planSeconds.toFixed(1) ?? "-"} s) |`);
  }
  console.log(`reference bf16 ppl on the same windows printed per row as Δ; ${windows} windows × ${window} tokens`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
