/**
 * Mapping: how a model is spread over ranks (TensorRT-LLM `Mapping`, spec §1.3, §2.7–2.8).
 *
 *   tp_rank = rank % tp,  pp_rank = rank // tp          (TP innermost; cp_size is fixed to 1 here)
 *   moe_ep_rank = tp_rank % moe_ep,  moe_tp_rank = tp_rank // moe_ep
 *   pp_layers(L) = numpy.array_split(range(L), pp)[pp_rank]   (first L % pp stages get one more layer)
 *
 * Serialised with the safe minimal key set: world_size, tp_size, pp_size (+ moe_tp_size,
 * moe_ep_size for MoE models). `rank` is never written.
 */
import { check, TrtbError } from "./errors.ts";

export interface MappingOptions {
  tpSize?: number;
  ppSize?: number;
  rank?: number;
  gpusPerNode?: number;
  moeTpSize?: number;
  moeEpSize?: number;
}

export interface MappingJson {
  world_size: number;
  tp_size: number;
  pp_size: number;
  moe_tp_size?: number;
  moe_ep_size?: number;
  [extra: string]: unknown;
}

function posInt(v: number, what: string): number {
  check(Number.isInteger(v) && v >= 1, "CFG_MAPPING", `mapping: ${what} must be a positive integer, got ${v}`);
  return v;
}

export class Mapping {
  readonly tpSize: number;
  readonly ppSize: number;
  readonly worldSize: number;
  readonly rank: number;
  readonly gpusPerNode: number;
  readonly moeTpSize: number;
  readonly moeEpSize: number;

  constructor(opts: MappingOptions = {}) {
    this.tpSize = posInt(opts.tpSize ?? 1, "tp_size");
    this.ppSize = posInt(opts.ppSize ?? 1, "pp_size");
    this.worldSize = this.tpSize * this.ppSize;
    this.rank = opts.rank ?? 0;
    check(Number.isInteger(this.rank) && this.rank >= 0 && this.rank < this.worldSize, "CFG_MAPPING",
      `mapping: rank ${this.rank} is outside world size ${this.worldSize}`);
    this.gpusPerNode = posInt(opts.gpusPerNode ?? 8, "gpus_per_node");
    // -1/undefined means derive: all of TP goes to MoE tensor parallelism.
    let moeTp = opts.moeTpSize ?? -1;
    let moeEp = opts.moeEpSize ?? -1;
    if (moeTp === -1 && moeEp === -1) { moeTp = this.tpSize; moeEp = 1; }
    else if (moeTp === -1) moeTp = Math.floor(this.tpSize / moeEp);
    else if (moeEp === -1) moeEp = Math.floor(this.tpSize / moeTp);
    check(moeTp * moeEp === this.tpSize, "CFG_MAPPING",
      `mapping: moe_tp_size (${moeTp}) × moe_ep_size (${moeEp}) must equal tp_size (${this.tpSize})`);
    this.moeTpSize = moeTp;
    this.moeEpSize = moeEp;
  }

  get tpRank(): number { return this.rank % this.tpSize; }
  get ppRank(): number { return Math.floor(this.rank / this.tpSize); }
  get moeEpRank(): number { return this.tpRank % this.moeEpSize; }
  get moeTpRank(): number { return Math.floor(this.tpRank / this.moeEpSize); }
  isFirstPpRank(): boolean { return this.ppRank === 0; }
  isLastPpRank(): boolean { return this.ppRank === this.ppSize - 1; }

  /** The same mapping seen from another rank. */
  withRank(rank: number): Mapping {
    return new Mapping({ tpSize: this.tpSize, ppSize: this.ppSize, rank, gpusPerNode: this.gpusPerNode, moeTpSize: this.moeTpSize, moeEpSize: this.moeEpSize });
  }

  /** Global layer indices held by this rank's pipeline stage. */
  ppLayers(numLayers: number): number[] {
    return Mapping.stageLayers(numLayers, this.ppSize, this.ppRank);
  }

  static stageLayers(numLayers: number, ppSize: number, ppRank: number): number[] {
    if (ppSize > numLayers)
      throw new TrtbError("CFG_MAPPING", `pp_size ${ppSize} is larger than the number of layers (${numLayers})`);
    const base = Math.floor(numLayers / ppSize);
    const extra = numLayers % ppSize;
    const start = ppRank * base + Math.min(ppRank, extra);
    const count = base + (ppRank < extra ? 1 : 0);
    return Array.from({ length: count }, (_, i) => start + i);
  }

  /** Experts held by this rank under expert parallelism (contiguous block). */
  epExperts(numExperts: number): number[] {
    check(numExperts % this.moeEpSize === 0, "CFG_MAPPING", `number of experts ${numExperts} is not divisible by moe_ep_size ${this.moeEpSize}`);
    const per = numExperts / this.moeEpSize;
    return Array.from({ length: per }, (_, i) => this.moeEpRank * per + i);
  }

  toJSON(withMoe = false): MappingJson {
    const j: MappingJson = { world_size: this.worldSize, tp_size: this.tpSize, pp_size: this.ppSize };
    if (withMoe) { j.moe_tp_size = this.moeTpSize; j.moe_ep_size = this.moeEpSize; }
    return j;
  }

  static fromJSON(j: Partial<MappingJson> | undefined, rank = 0): Mapping {
    const m = new Mapping({
      tpSize: j?.tp_size ?? 1, ppSize: j?.pp_size ?? 1, rank,
      gpusPerNode: typeof j?.gpus_per_node === "number" ? j.gpus_per_node : 8,
      moeTpSize: j?.moe_tp_size ?? -1, moeEpSize: j?.moe_ep_size ?? -1,
    });
    const cp = typeof j?.cp_size === "number" ? j.cp_size : 1;
    check(cp === 1, "CFG_MAPPING", `mapping: cp_size ${cp} (context parallelism) is not supported`);
    if (j?.world_size !== undefined)
      check(j.world_size === m.worldSize, "CFG_MAPPING", `mapping: world_size ${j.world_size} ≠ tp_size × pp_size = ${m.worldSize}`);
    return m;
  }
}
