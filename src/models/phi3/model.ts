/**
 * Phi-3 (mini/medium) → `Phi3ForCausalLM` (docs/families.md §3): the family and its class.
 *
 * Its `mlp.fc` holds [up_r; gate_r] per rank (one fused tensor, no `mlp.gate`).
 */
import type { PretrainedConfig } from "../../format/checkpoint-config.ts";
import type { Mapping } from "../../mapping.ts";
import type { FromSourceOptions } from "../common/config-common.ts";
import { type DecoderLayout, LLAMA_LAYOUT } from "../common/decoder.ts";
import { DecoderModel, fromCheckpoint, fromHuggingFace, withLmHeadSource } from "../common/decoder-model.ts";
import type { Family } from "../common/family.ts";
import { decoderSemantics } from "../common/semantics.ts";
import { phi3ConfigFromHF } from "./config.ts";
import { PHI3_TABLE } from "./weights.ts";

export const phi3Family: Family = {
  name: "phi3",
  hfArchitectures: ["Phi3ForCausalLM"],
  trtArchitectures: ["Phi3ForCausalLM"],
  configFromHF: phi3ConfigFromHF,
  table: (cfg, src) => withLmHeadSource(PHI3_TABLE, cfg, src, "model.embed_tokens.weight"),
  layout: (): DecoderLayout => ({ ...LLAMA_LAYOUT, mlp: "fused" }),
  semantics: (cfg) => ({ ...decoderSemantics(cfg), fusedGateUp: true }),
};

export class Phi3ForCausalLM extends DecoderModel {
  constructor(config: PretrainedConfig, mapping: Mapping) {
    super(phi3Family, config, mapping);
  }
  static fromHuggingFace(dir: string, opts: FromSourceOptions = {}): Promise<Phi3ForCausalLM> {
    return fromHuggingFace(phi3Family, dir, opts, (c, m) => new Phi3ForCausalLM(c, m));
  }
  static fromCheckpoint(dir: string, rank = 0): Promise<Phi3ForCausalLM> {
    return fromCheckpoint(dir, rank, (c, m) => new Phi3ForCausalLM(c, m));
  }
}
