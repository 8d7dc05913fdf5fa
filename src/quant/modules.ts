/**
 * Which modules a scheme may quantize, and `exclude_modules` matching (spec §1.4).
 *
 * Candidates are the decoder linears: `transformer.layers.{i}.attention.{qkv,dense}` and
 * `transformer.layers.{i}.mlp.{fc,gate,proj}` (MoE experts are the 3-D `mlp.fc` / `mlp.proj`).
 * lm_head, embeddings, norms and the MoE router are never quantized.
 *
 * `exclude_modules` entries are Python `fnmatch.fnmatchcase` patterns (`*` also crosses dots). Upstream
 * matches them in two places: the model side against module names of the rank's model
 * (`transformer.layers.0.mlp.fc`, layer indices local to the pipeline stage), and the build-time
 * weight-only quantizer (`weight_only_quantize_dict`) against weight names (`….mlp.fc.weight`). A module
 * is excluded here when a pattern matches either, and every pattern a user gives is also written with
 * `.weight` appended, so both upstream matchers agree with what we wrote.
 */
import { TrtbError } from "../errors.ts";

/** Upstream's default exclusions when `exclude_modules` is null (quantize_layers, 1.x; same idea in 0.1x). */
export const DEFAULT_EXCLUDE_MODULES = [
  "*lm_head", "*router", "*vocab_embedding", "*position_embedding", "*block_embedding", "*shared_expert_gate",
] as const;

export type LinearKind = "qkv" | "dense" | "fc" | "gate" | "proj";

/** One quantizable linear of a rank. */
export interface LinearInfo {
  /** Module name as upstream names it in the rank's model (local layer index). */
  module: string;
  /** Local and global decoder layer index. */
  localLayer: number;
  layer: number;
  kind: LinearKind;
  /** Per-rank fp weight shape: [out, in], or [experts, out, in] for MoE experts. */
  shape: readonly number[];
  /** Row-parallel (dense, proj): the in dim is split over TP. */
  rowParallel: boolean;
}

const LINEAR_WEIGHT = /^(transformer\.layers\.(\d+)\.(?:attention\.(qkv|dense)|mlp\.(fc|gate|proj)))\.weight$/;

/** The linear a weight name belongs to, or null. `globalLayer` maps a local index to a global one. */
export function linearOfWeight(name: string, shape: readonly number[], globalLayer: (local: number) => number): LinearInfo | null {
  const m = LINEAR_WEIGHT.exec(name);
  if (!m) return null;
  const kind = (m[3] ?? m[4]) as LinearKind;
  const localLayer = Number(m[2]);
  return { module: m[1]!, localLayer, layer: globalLayer(localLayer), kind, shape, rowParallel: kind === "dense" || kind === "proj" };
}

/** fnmatch.fnmatchcase: `*`, `?`, `[seq]`, `[!seq]`; everything else literal. */
export function fnmatchCase(name: string, pattern: string): boolean {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*") re += "[\\s\\S]*";
    else if (c === "?") re += "[\\s\\S]";
    else if (c === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end < 0) {
        re += "\\[";
        continue;
      }
      let body = pattern.slice(i + 1, end);
      const neg = body.startsWith("!");
      if (neg) body = body.slice(1);
      re += `[${neg ? "^" : ""}${body.replace(/\\/g, "\\\\").replace(/\^/g, "\\^")}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\/]/g, "\\$&");
  }
  return new RegExp(`^${re}$`).test(name);
}

export function isExcluded(module: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => fnmatchCase(module, p) || fnmatchCase(`${module}.weight`, p));
}

/**
 * The `exclude_modules` list to write: upstream's defaults (writing any list replaces them
 * upstream, so they must be spelled out), the scheme's own, and the user's patterns each also with
 * `.weight` appended. Sorted and de-duplicated.
 */
export function excludeList(user: readonly string[] | null | undefined, scheme: readonly string[] = []): string[] {
  for (const p of user ?? [])
    if (typeof p !== "string" || p.length === 0) throw new TrtbError("QUANT_CONFIG", `exclude_modules entries must be non-empty strings, got ${JSON.stringify(p)}`);
  const all = new Set<string>([...DEFAULT_EXCLUDE_MODULES, ...scheme]);
  for (const p of user ?? []) {
    all.add(p);
    if (!p.endsWith(".weight") && !p.endsWith("*")) all.add(`${p}.weight`);
  }
  return [...all].sort();
}
