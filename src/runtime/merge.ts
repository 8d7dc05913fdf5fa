/**
 * Reassemble full (unsharded) fp32 weights from every rank of a TRT-LLM checkpoint: the inverse of
 * the split rules in `src/models/common/split.ts`. Used by the CPU reference runner, so it is written for
 * clarity; it holds the whole model in f32 (fine for the small models the oracle is meant for).
 */
import { headSize, numKvHeads, type PretrainedConfig } from "../format/checkpoint-config.ts";
import { TrtbError } from "../errors.ts";
import { Mapping } from "../mapping.ts";
import { openRankFile } from "../format/checkpoint.ts";
import { kvHeadsPerRank } from "../models/common/split.ts";
import { dequantizedSource } from "../quant/apply.ts";
import type { TensorSource } from "../tensor.ts";
import { checkFinite } from "../tensor/finite.ts";
import { chunk, concat, type LazyTensor, lazy, slice } from "../tensor/lazy.ts";

export interface F32Tensor {
  shape: number[];
  data: Float32Array;
}

export function materialize(t: LazyTensor, file?: string): F32Tensor {
  const bytes = new Uint8Array(t.numel * 4);
  t.writeInto(bytes, "F32");
  checkFinite(bytes, "F32", { tensor: t.name, file, shape: t.shape }); // NaN weights would run to all-NaN logits
  return { shape: [...t.shape], data: new Float32Array(bytes.buffer) };
}

/** Full-model weights by TRT-LLM name with global layer indices, e.g. `transformer.layers.7.attention.qkv.weight`. */
export type FullWeights = Map<string, F32Tensor>;

/** `fusedGateUp`: the family's `mlp.fc` holds [up_r; gate_r] per rank (ModelSemantics). */
export function mergeCheckpoint(dir: string, cfg: PretrainedConfig, fusedGateUp: boolean): FullWeights {
  const m = Mapping.fromJSON(cfg.mapping);
  const tp = m.tpSize;
  const files: TensorSource[] = [];
  try {
    // Quantized ranks are seen through their dequantized (engine-equivalent) F32 weights, per rank:
    // scales of row-parallel layers differ between ranks.
    for (let r = 0; r < m.worldSize; r++) files.push(dequantizedSource(openRankFile(dir, r), cfg, m.withRank(r)));
    const out: FullWeights = new Map();
    const get = (rank: number, name: string): LazyTensor => {
      const f = files[rank]!;
      if (!f.has(name)) throw new TrtbError("CKPT_MISSING_TENSOR", `${dir}/rank${rank}.safetensors: missing tensor ${name}`, { tensor: name });
      return lazy(f.get(name));
    };
    const ranksOfStage = (pp: number) => Array.from({ length: tp }, (_, r) => pp * tp + r);
    const nH = cfg.num_attention_heads;
    const nKV = numKvHeads(cfg);
    const d = headSize(cfg);
    const kvpr = kvHeadsPerRank(nKV, tp);
    // With duplicated KV heads, ranks r with r % (tp/nKV) == 0 hold each head once.
    const kvOwners = nKV >= tp ? [...Array(tp).keys()] : [...Array(tp).keys()].filter((r) => r % (tp / nKV) === 0);

    const mergeOne = (stageRanks: number[], local: string, global: string) => {
      const parts = stageRanks.map((r) => get(r, local));
      const suffix = local.replace(/^transformer\.layers\.\d+\./, "");
      let t: LazyTensor;
      if (suffix === "attention.qkv.weight" || suffix === "attention.qkv.bias") {
        const qRows = (nH / tp) * d;
        const kvRows = kvpr * d;
        const q = concat(parts.map((p) => slice(p, 0, 0, qRows)), 0, global);
        const k = concat(kvOwners.map((r) => slice(parts[r]!, 0, qRows, kvRows)), 0, global);
        const v = concat(kvOwners.map((r) => slice(parts[r]!, 0, qRows + kvRows, kvRows)), 0, global);
        t = concat([q, k, v], 0, global);
      } else if (/^(attention\.dense|mlp\.proj)\.weight$/.test(suffix) && parts[0]!.shape.length === 2) {
        t = concat(parts, 1, global);
      } else if (/^(attention\.dense|mlp\.proj)\.prequant_scaling_factor$/.test(suffix)) {
        t = concat(parts, 0, global); // row-parallel: each rank holds its input slice
      } else if (/^(attention\.dense|mlp\.proj)\.smoother$/.test(suffix)) {
        t = concat(parts, 1, global); // legacy SmoothQuant [1, in_local]
      } else if (suffix === "mlp.fc.weight" && parts[0]!.shape.length === 3) {
        t = mergeMoeFc(parts, m, global);
      } else if (suffix === "mlp.proj.weight" && parts[0]!.shape.length === 3) {
        t = mergeMoeProj(parts, m, global);
      } else if (/^mlp\.(fc|gate)\.(weight|bias)$/.test(suffix)) {
        t = fusedGateUp && suffix.startsWith("mlp.fc.")
          ? concat([concat(parts.map((p) => chunk(p, 0, 2, 0)), 0, global), concat(parts.map((p) => chunk(p, 0, 2, 1)), 0, global)], 0, global)
          : concat(parts, 0, global);
      } else if (suffix === "lm_head.weight") {
        t = slice(concat(parts, 0, global), 0, 0, cfg.vocab_size, global);
      } else if (suffix === "transformer.vocab_embedding.weight") {
        if (cfg.use_parallel_embedding && tp > 1) {
          const dim = cfg.embedding_sharding_dim;
          const full = concat(parts, dim, global);
          t = dim === 0 ? slice(full, 0, 0, cfg.vocab_size, global) : full;
        } else t = parts[0]!;
      } else {
        t = parts[0]!; // replicated: norms, row-layer biases, router
      }
      out.set(global, materialize(t, dir));
    };

    for (let pp = 0; pp < m.ppSize; pp++) {
      const stage = ranksOfStage(pp);
      const layers = Mapping.stageLayers(cfg.num_hidden_layers, m.ppSize, pp);
      const names = files[stage[0]!]!.names();
      for (const n of names) {
        const lm = /^transformer\.layers\.(\d+)\.(.*)$/.exec(n);
        if (lm) mergeOne(stage, n, `transformer.layers.${layers[Number(lm[1])]}.${lm[2]}`);
        else mergeOne(stage, n, n);
      }
    }
    return out;
  } finally {
    for (const f of files) f.close();
  }
}

/** MoE fc [E_local, 2·I_local, H] per rank, [w3_r; w1_r] per expert → [E, 2I, H] as [w3; w1]. */
function mergeMoeFc(parts: LazyTensor[], m: Mapping, name: string): LazyTensor {
  const byEp: LazyTensor[] = [];
  for (let ep = 0; ep < m.moeEpSize; ep++) {
    const tpParts = Array.from({ length: m.moeTpSize }, (_, t) => parts[t * m.moeEpSize + ep]!);
    const up = concat(tpParts.map((p) => chunk(p, 1, 2, 0)), 1, name);
    const gate = concat(tpParts.map((p) => chunk(p, 1, 2, 1)), 1, name);
    byEp.push(concat([up, gate], 1, name));
  }
  return concat(byEp, 0, name);
}

/** MoE proj [E_local, H, I_local] per rank → [E, H, I]. */
function mergeMoeProj(parts: LazyTensor[], m: Mapping, name: string): LazyTensor {
  const byEp: LazyTensor[] = [];
  for (let ep = 0; ep < m.moeEpSize; ep++) {
    const tpParts = Array.from({ length: m.moeTpSize }, (_, t) => parts[t * m.moeEpSize + ep]!);
    byEp.push(concat(tpParts, 2, name));
  }
  return concat(byEp, 0, name);
}
