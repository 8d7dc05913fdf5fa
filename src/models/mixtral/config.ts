/**
 * Mixtral config (`MixtralForCausalLM`, docs/families.md §4, spec §2.4): Llama's config with a
 * mixture-of-experts MLP.
 *
 * - Expert parallelism stores the contiguous block `Mapping.epExperts(E)`; `mapping` gains
 *   `moe_tp_size` / `moe_ep_size`.
 * - `hidden_act: "swiglu"`, `moe.normalization_mode: 1` (RENORMALIZE: softmax, top-k, renormalise).
 */
import type { PretrainedConfig } from "../../format/checkpoint-config.ts";
import { TrtbError } from "../../errors.ts";
import type { HFConfig } from "../../format/hf-config.ts";
import { checkSplits, type FromSourceOptions, mappingOf } from "../common/config-common.ts";
import { llamaConfigFromHF } from "../llama/config.ts";

export function mixtralConfigFromHF(hf: HFConfig, opts: FromSourceOptions = {}): PretrainedConfig {
  const arch = hf.architectures[0]!;
  const E = hf.num_local_experts;
  const k = hf.num_experts_per_tok;
  if (typeof E !== "number" || typeof k !== "number" || E < 1 || k < 1 || k > E)
    throw new TrtbError("CFG_INVALID", `${arch}: num_local_experts and num_experts_per_tok must be positive with top-k ≤ experts`);
  const mapping = mappingOf(opts);
  const cfg = llamaConfigFromHF({ ...hf, architectures: ["MixtralForCausalLM"] }, { ...opts, mapping });
  Object.assign(cfg, {
    hidden_act: "swiglu",
    moe: { num_experts: E, top_k: k, normalization_mode: 1 },
    mapping: mapping.toJSON(true),
  });
  if (E % mapping.moeEpSize !== 0)
    throw new TrtbError("CONV_TP", `${arch}: ${E} experts do not split over moe_ep_size ${mapping.moeEpSize}`);
  checkSplits(cfg, mapping);
  return cfg;
}
