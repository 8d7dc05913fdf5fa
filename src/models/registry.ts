/**
 * Families by architecture name. Hugging Face `architectures[0]` picks the converter; the
 * checkpoint's `architecture` picks the reader. Families load lazily.
 */
import { TrtbError } from "../errors.ts";
import type { Family } from "./common/family.ts";

type Loader = () => Promise<Family>;

const llama: Loader = () => import("./llama/model.ts").then((m) => m.llamaFamily);
const qwen: Loader = () => import("./qwen/model.ts").then((m) => m.qwenFamily);
const gemma: Loader = () => import("./gemma/model.ts").then((m) => m.gemmaFamily);
const phi3: Loader = () => import("./phi3/model.ts").then((m) => m.phi3Family);
const mixtral: Loader = () => import("./mixtral/model.ts").then((m) => m.mixtralFamily);

/** HF architecture → family. Add a row per supported architecture. */
const HF_ARCHITECTURES: Record<string, Loader> = {
  LlamaForCausalLM: llama,
  MistralForCausalLM: llama,
  MixtralForCausalLM: mixtral,
  Qwen2ForCausalLM: qwen,
  Qwen3ForCausalLM: qwen,
  GemmaForCausalLM: gemma,
  Gemma2ForCausalLM: gemma,
  Phi3ForCausalLM: phi3,
};

/** TRT-LLM checkpoint architecture → family. */
const TRT_ARCHITECTURES: Record<string, Loader> = {
  ...HF_ARCHITECTURES,
  LLaMAForCausalLM: llama,
  QWenForCausalLM: qwen,
};

export function supportedHFArchitectures(): string[] {
  return Object.keys(HF_ARCHITECTURES).sort();
}

/** A table row by own key only: "constructor", "__proto__", "toString" never reach Object.prototype. */
function own(table: Record<string, Loader>, arch: unknown): Loader | undefined {
  return typeof arch === "string" && Object.hasOwn(table, arch) ? table[arch] : undefined;
}

export async function familyForHF(arch: string): Promise<Family> {
  const l = own(HF_ARCHITECTURES, arch);
  if (!l) throw new TrtbError("CFG_UNSUPPORTED_ARCH", `architecture ${JSON.stringify(arch)} is not supported; supported: ${supportedHFArchitectures().join(", ")}`);
  return l();
}

/** The family that reads Meta checkpoints (Llama). */
export async function familyForMeta(): Promise<Family> {
  return llama();
}

export async function familyForCheckpoint(arch: string): Promise<Family> {
  const l = own(TRT_ARCHITECTURES, arch);
  if (!l) throw new TrtbError("CFG_UNSUPPORTED_ARCH", `checkpoint architecture ${JSON.stringify(arch)} is not supported; supported: ${Object.keys(TRT_ARCHITECTURES).sort().join(", ")}`);
  return l();
}
