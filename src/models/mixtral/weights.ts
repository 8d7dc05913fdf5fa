/**
 * Mixtral name table: Llama's attention rows plus the experts (docs/families.md §4, spec §2.4).
 *
 * - `mlp.router.weight` = `block_sparse_moe.gate.weight`, stored **float32** [E, H], replicated.
 * - `mlp.fc.weight` [E_local, 2·I/moe_tp, H] stacks, per expert, [w3_r; w1_r] = [up; gate]
 *   (swiglu activates the second half); `mlp.proj.weight` [E_local, H, I/moe_tp] stacks w2.
 */
import type { FamilyTable } from "../common/convert.ts";
import { LLAMA_TABLE } from "../llama/weights.ts";

export const MIXTRAL_TABLE: FamilyTable = {
  ...LLAMA_TABLE,
  layer: [
    ...LLAMA_TABLE.layer.filter((r) => !r.trt.includes(".mlp.")),
    { trt: "transformer.layers.{i}.mlp.router.weight", src: "model.layers.{L}.block_sparse_moe.gate.weight", split: "replicate", dtype: "F32" },
    {
      trt: "transformer.layers.{i}.mlp.fc.weight",
      src: ["model.layers.{L}.block_sparse_moe.experts.{E}.w3.weight", "model.layers.{L}.block_sparse_moe.experts.{E}.w1.weight"],
      split: "moe_fc",
    },
    { trt: "transformer.layers.{i}.mlp.proj.weight", src: "model.layers.{L}.block_sparse_moe.experts.{E}.w2.weight", split: "moe_proj" },
  ],
};
