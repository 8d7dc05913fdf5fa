/**
 * `PretrainedModel`: one rank of a TRT-LLM model — its config, mapping and named weights — after
 * upstream's API (spec §4): `fromCheckpoint(dir, rank)`, `load(weights)`, `saveCheckpoint(dir)`.
 *
 * Weights are `LazyTensor`s: views into the mapped source plus the transforms that turn them into
 * this rank's tensors. Saving writes each one straight into the output file's mapping.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { configMapping, configToJSONText, type PretrainedConfig, parsePretrainedConfig } from "../../format/checkpoint-config.ts";
import { type DType, DTYPE_SIZE } from "../../dtype.ts";
import { TrtbError } from "../../errors.ts";
import { openSafetensors, SafetensorsWriter } from "../../format/safetensors.ts";
import { log } from "../../log.ts";
import type { Mapping } from "../../mapping.ts";
import type { ParamSpec, TensorSource, TensorView } from "../../tensor.ts";
import { openRankFile, readCheckpointConfig } from "../../format/checkpoint.ts";
import { checkedChunks, FiniteScan, withNonfinite } from "../../tensor/finite.ts";
import { type LazyTensor, lazy, withLeafCache } from "../../tensor/lazy.ts";
import { ensureDir, writeFileAtomic } from "../../util/fs.ts";

export type { ParamSpec };

/** Source views a tensor may be written from directly (more: it is assembled in a buffer first). */
const MAX_DIRECT_PARTS = 64;
/** Bytes scanned for NaN/Inf and then written at a time (fits the L2 cache of one core). */
const CHECK_CHUNK = 256 * 2 ** 10;


export interface SaveOptions {
  /** Write config.json too (upstream writes it from rank 0 only). Default true. */
  saveConfig?: boolean;
  /** Called after each tensor with bytes written so far and the rank's total. */
  onProgress?: (done: number, total: number, tensor: string) => void;
  /** Write tensors holding NaN/Inf (with a warning) instead of refusing them (NUM_NONFINITE). Default: the process setting. */
  allowNonfinite?: boolean;
}

export abstract class PretrainedModel {
  readonly weights = new Map<string, LazyTensor>();
  private readonly owned: TensorSource[] = [];

  constructor(readonly config: PretrainedConfig, readonly mapping: Mapping) {}

  /** The parameters this rank declares, derived from config and mapping (upstream's module tree). */
  abstract expectedParams(): ParamSpec[];

  /**
   * Load weights for this rank. Missing → CKPT_MISSING_TENSOR, wrong shape → CKPT_SHAPE_MISMATCH
   * (both shapes in the message), wrong dtype → CKPT_DTYPE_MISMATCH, extra → warning.
   */
  load(weights: Map<string, TensorView> | Record<string, TensorView>): void {
    const given = weights instanceof Map ? weights : new Map(Object.entries(weights));
    const expected = this.expectedParams();
    const names = new Set(expected.map((p) => p.name));
    for (const p of expected) {
      const t = given.get(p.name);
      if (!t) throw new TrtbError("CKPT_MISSING_TENSOR", `rank ${this.mapping.rank}: missing tensor ${p.name} (shape [${p.shape}])`, { tensor: p.name });
      if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i]))
        throw new TrtbError("CKPT_SHAPE_MISMATCH", `rank ${this.mapping.rank}: ${p.name} has shape [${t.shape}], expected [${p.shape}]`, { tensor: p.name });
      if (p.dtype && t.dtype !== p.dtype)
        throw new TrtbError("CKPT_DTYPE_MISMATCH", `rank ${this.mapping.rank}: ${p.name} is ${t.dtype}, expected ${p.dtype}`, { tensor: p.name });
    }
    for (const name of given.keys()) if (!names.has(name)) log.warn(`rank ${this.mapping.rank}: ignoring unexpected tensor ${name}`);
    this.weights.clear();
    for (const p of expected) this.weights.set(p.name, lazy(given.get(p.name)!));
  }

  /** Keep `src` open as long as the model lives; `close()` releases it. */
  adoptSource(src: TensorSource): void {
    this.owned.push(src);
  }

  close(): void {
    for (const s of this.owned.splice(0)) s.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  get rankFileName(): string {
    return `rank${this.mapping.rank}.safetensors`;
  }

  /** Bytes this rank's file will hold. */
  totalBytes(): number {
    let n = 0;
    for (const t of this.weights.values()) n += t.numel * DTYPE_SIZE[t.dtype];
    return n;
  }

  /** Write `rank{N}.safetensors` (temp file + rename) and, unless disabled, `config.json`. */
  saveCheckpoint(dir: string, opts: SaveOptions = {}): void {
    withNonfinite(opts.allowNonfinite, () => this.#save(dir, opts));
  }

  #save(dir: string, opts: SaveOptions): void {
    ensureDir(dir);
    const specs = [...this.weights.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] }));
    const writer = SafetensorsWriter.create(join(dir, this.rankFileName), specs);
    const total = this.totalBytes();
    let done = 0;
    // A tensor that is a few views of the mapped source (a leaf, a row slice, a fused qkv of row
    // slices) is written straight from them. One that is assembled from views (column slices,
    // casts, padding) is built a chunk at a time in a small buffer that stays in cache; computed
    // tensors (quantized weights) are built whole in one reused scratch buffer. Every tensor is
    // scanned for NaN/Inf a chunk at a time, just before the chunk is written (the write then copies
    // bytes the scan brought into cache): garbage is refused, never copied on. Positioned writes
    // from these buffers are cheaper than faulting in pages of a destination map.
    let scratch = new Uint8Array(0);
    let chunk = new Uint8Array(0);
    try {
      withLeafCache(() => {
        for (const t of this.weights.values()) {
          const scan = new FiniteScan(t.dtype, { tensor: t.name, shape: t.shape });
          const parts = t.directParts(MAX_DIRECT_PARTS);
          if (parts) {
            writer.writeStream(t.name, (write) => checkedChunks(parts, scan, CHECK_CHUNK, write));
          } else if (t.streamable()) {
            const es = DTYPE_SIZE[t.dtype];
            const per = Math.max(1, Math.floor(CHECK_CHUNK / es));
            if (chunk.byteLength < per * es) chunk = new Uint8Array(per * es);
            writer.writeStream(t.name, (write) => {
              for (let s = 0; s < t.numel; s += per) {
                const n = Math.min(per, t.numel - s);
                const buf = chunk.subarray(0, n * es);
                t.writeRange(buf, t.dtype, s, n);
                scan.next(buf);
                write(buf);
              }
            });
          } else {
            if (scratch.byteLength < t.byteLength) scratch = new Uint8Array(t.byteLength);
            const buf = scratch.subarray(0, t.byteLength);
            t.writeInto(buf);
            writer.writeStream(t.name, (write) => checkedChunks([buf], scan, CHECK_CHUNK, write));
          }
          done += t.byteLength;
          opts.onProgress?.(done, total, t.name);
        }
      });
      writer.commit();
    } catch (e) {
      writer.abort();
      throw e;
    }
    if (opts.saveConfig ?? true) writeFileAtomic(join(dir, "config.json"), configToJSONText(this.config));
  }
}

/** Generic `fromCheckpoint`: the caller supplies the family's constructor. */
export async function loadCheckpointRank<M extends PretrainedModel>(
  dir: string,
  rank: number,
  make: (cfg: PretrainedConfig, mapping: Mapping) => M,
): Promise<M> {
  const cfg = await readCheckpointConfig(dir);
  const mapping = configMapping(cfg, rank);
  const model = make(cfg, mapping);
  const src = openRankFile(dir, rank);
  const weights = new Map<string, TensorView>();
  for (const n of src.names()) weights.set(n, src.get(n));
  try {
    model.load(weights);
  } catch (e) {
    src.close();
    throw e;
  }
  model.adoptSource(src);
  return model;
}
