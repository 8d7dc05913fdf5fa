/**
 * The model the statistics pass runs: the Hugging Face source converted in memory to one fp rank
 * (tp 1, pp 1, the model dtype, no quantization) and widened to f32 for the CPU runner — the same
 * values the unquantized checkpoint holds.
 */
import { type ConvertOptions, openSource } from "../convert.ts";
import type { ModelDType } from "../dtype.ts";
import { Mapping } from "../mapping.ts";
import { convertRank } from "../models/common/convert.ts";
import { CpuRunner } from "../runtime/cpu.ts";
import { type FullWeights, materialize } from "../runtime/merge.ts";

/** A CPU runner over the fp source (`modelDir` or `metaCkptDir`). */
export async function sourceRunner(src: Pick<ConvertOptions, "modelDir" | "metaCkptDir">, dtype: ModelDType | "auto" = "auto"): Promise<CpuRunner> {
  const mapping = new Mapping({});
  const o = await openSource({ ...src, outputDir: "", dtype }, mapping);
  try {
    const weights = convertRank({ cfg: o.cfg, mapping, src: o.src, srcLabel: o.label }, o.family.table(o.cfg, o.src));
    const full: FullWeights = new Map();
    for (const [n, t] of weights) full.set(n, materialize(t));
    return new CpuRunner(o.cfg, full, o.family.semantics(o.cfg));
  } finally {
    o.src.close();
  }
}
