/**
 * Qwen name table: Hugging Face → TRT-LLM (docs/families.md §1). Llama's rows, except:
 *
 * - No model in the family has an o_proj bias, so `attention.dense.bias` never exists.
 * - Qwen3's per-head q/k RMSNorm: `attention.q_layernorm.weight` / `attention.k_layernorm.weight`
 *   ([head_size], replicated, no +1), as upstream 1.x names them.
 */
import type { FamilyTable, NameRow } from "../common/convert.ts";
import { LLAMA_TABLE } from "../llama/weights.ts";
import { isQwen3 } from "./config.ts";

/** Llama's rows minus the o_proj bias, plus Qwen3's q/k norms. */
export const QWEN_TABLE: FamilyTable = {
  ...LLAMA_TABLE,
  layer: [
    ...LLAMA_TABLE.layer.filter((r) => !r.trt.endsWith("attention.dense.bias")),
    { trt: "transformer.layers.{i}.attention.q_layernorm.weight", src: "model.layers.{L}.self_attn.q_norm.weight", split: "replicate", when: isQwen3, note: "qwen3" },
    { trt: "transformer.layers.{i}.attention.k_layernorm.weight", src: "model.layers.{L}.self_attn.k_norm.weight", split: "replicate", when: isQwen3, note: "qwen3" },
  ] satisfies NameRow[],
};
