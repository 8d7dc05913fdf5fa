/**
 * What every model family provides, so the registry, the converter driver, the CLI and the runners
 * treat them alike.
 */
import type { PretrainedConfig } from "../../format/checkpoint-config.ts";
import type { HFConfig } from "../../format/hf-config.ts";
import type { Mapping } from "../../mapping.ts";
import type { TensorSource } from "../../tensor.ts";
import type { FamilyTable } from "./convert.ts";
import type { DecoderLayout } from "./decoder.ts";
import type { FromSourceOptions } from "./config-common.ts";
import type { ModelSemantics } from "./semantics.ts";

export interface Family {
  /** Short name (`llama`, `qwen`, `gemma`, …). */
  name: string;
  /** HF `architectures[0]` values this family converts. */
  hfArchitectures: readonly string[];
  /** TRT-LLM `architecture` values this family reads back from checkpoints. */
  trtArchitectures: readonly string[];
  configFromHF(hf: HFConfig, opts: FromSourceOptions): PretrainedConfig;
  /** The name table, resolved against the source (tied embeddings, optional tensors). */
  table(cfg: PretrainedConfig, src: TensorSource): FamilyTable;
  layout(cfg: PretrainedConfig): DecoderLayout;
  /** How a checkpoint of this family computes (read by the CPU runner and the engine builder). */
  semantics(cfg: PretrainedConfig): ModelSemantics;
  /** Families that read Meta checkpoints (params.json + consolidated.NN.pth): one HF-named source. */
  openMeta?(dir: string, opts: FromSourceOptions): Promise<{ cfg: PretrainedConfig; src: TensorSource; label: string }>;
}

export type { FromSourceOptions };
export type { Mapping };
export type { ModelSemantics };
