/**
 * Hugging Face model directories as one TensorSource.
 *
 * LAYOUTS, tried in this order:
 *   1. `model.safetensors.index.json` (sharded, what `save_pretrained` writes past its shard size):
 *        { "metadata": { "total_size": <bytes> },                 advisory, not checked
 *          "weight_map": { "<tensor name>": "model-00001-of-00003.safetensors", ... } }
 *      Every shard named must exist (HF_SHARD_MISSING) and hold the tensors mapped to it
 *      (HF_TENSOR_NOT_IN_SHARD). Shard names must stay inside the directory (no absolute paths, no
 *      `..`). Tensors a shard holds that the index does not list are not exposed (logged at debug).
 *      Names come in weight_map order.
 *   2. `model.safetensors` alone.
 *   3. Several `*.safetensors` with no index: the `model-NNNNN-of-NNNNN.safetensors` shards if
 *      there are any, else every `*.safetensors` file; names in (file name, offset) order and
 *      unique across files (HF_DUPLICATE_TENSOR).
 *   No safetensors at all is HF_NO_WEIGHTS (PyTorch `.bin` pickles are not read: they can run code
 *   on load; convert them to safetensors first).
 *
 * Codes: HF_NOT_DIR, HF_INDEX_JSON (unreadable, invalid or mis-shaped index, duplicate keys
 * included), HF_SHARD_MISSING, HF_TENSOR_NOT_IN_SHARD, HF_DUPLICATE_TENSOR, HF_NO_WEIGHTS,
 * HF_MISSING_TENSOR (get of an absent name), plus every ST_* code of the shards.
 */
import fs from "node:fs";
import nodePath from "node:path";
import { TrtbError } from "../errors.ts";
import { log } from "../log.ts";
import { readTextFile, trtbReadErrors } from "../util/safe-read.ts";
import type { TensorSource } from "../tensor.ts";
import {
  JsonStrictError,
  openSafetensors,
  parseJsonStrict,
  type OpenSafetensorsOptions,
  type SafetensorsFile,
  type SafetensorsTensor,
  type SafetensorsTensorInfo,
} from "./safetensors.ts";

export const HF_INDEX_FILE = "model.safetensors.index.json";
export const HF_SINGLE_FILE = "model.safetensors";
const SHARD_RE = /^model-\d+-of-\d+\.safetensors$/;

export interface HFCheckpoint extends TensorSource, Disposable {
  readonly dir: string;
  readonly layout: "index" | "single" | "files";
  /** The shard files, opened and validated, in file-name order. */
  readonly files: readonly SafetensorsFile[];
  /** The shard holding a tensor. Throws HF_MISSING_TENSOR when absent. */
  fileOf(name: string): SafetensorsFile;
  info(name: string): SafetensorsTensorInfo;
  get(name: string): SafetensorsTensor;
}

class HFCheckpointImpl implements HFCheckpoint {
  constructor(
    readonly dir: string,
    readonly layout: "index" | "single" | "files",
    readonly files: readonly SafetensorsFile[],
    private readonly where: Map<string, SafetensorsFile>,
  ) {}

  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  fileOf(name: string): SafetensorsFile {
    const f = this.where.get(name);
    if (!f) throw new TrtbError("HF_MISSING_TENSOR", `${this.dir}: no tensor ${JSON.stringify(name)} in the checkpoint (${this.where.size} tensors)`, { file: this.dir, tensor: name });
    return f;
  }

  info(name: string): SafetensorsTensorInfo {
    return this.fileOf(name).info(name);
  }

  get(name: string): SafetensorsTensor {
    return this.fileOf(name).get(name);
  }

  close(): void {
    for (const f of this.files) f.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Open every shard of a Hugging Face model directory, validating headers and the index. */
export function openHFCheckpoint(dir: string, opts: OpenSafetensorsOptions = {}): HFCheckpoint {
  let entries: string[];
  try {
    if (!fs.statSync(dir).isDirectory()) throw new Error("not a directory");
    entries = fs.readdirSync(dir).sort();
  } catch (e) {
    throw new TrtbError("HF_NOT_DIR", `${dir}: not a readable directory (${(e as { code?: string }).code ?? (e as Error).message})`, { file: dir, cause: e });
  }

  const opened: SafetensorsFile[] = [];
  const open = (name: string): SafetensorsFile => {
    const f = openSafetensors(nodePath.join(dir, name), opts);
    opened.push(f);
    return f;
  };
  try {
    if (entries.includes(HF_INDEX_FILE)) return fromIndex(dir, open, opened);
    if (entries.includes(HF_SINGLE_FILE)) {
      const f = open(HF_SINGLE_FILE);
      return new HFCheckpointImpl(dir, "single", opened, new Map(f.names().map((n) => [n, f])));
    }
    const all = entries.filter((e) => e.endsWith(".safetensors") && fs.statSync(nodePath.join(dir, e)).isFile());
    if (all.length === 0) {
      const bins = entries.filter((e) => e.endsWith(".bin") || e.endsWith(".pt") || e.endsWith(".pth"));
      throw new TrtbError(
        "HF_NO_WEIGHTS",
        `${dir}: no *.safetensors weights found${bins.length > 0 ? ` (found ${bins.slice(0, 3).join(", ")}${bins.length > 3 ? ", …" : ""})` : ""}. ` +
          "PyTorch .bin/.pt pickles are not supported because loading them can run code; convert them to safetensors first " +
          "(e.g. load with transformers and save_pretrained(dir, safe_serialization=True)).",
        { file: dir },
      );
    }
    const shards = all.filter((e) => SHARD_RE.test(e));
    const chosen = shards.length > 0 ? shards : all;
    if (shards.length > 0 && shards.length < all.length)
      log.debug(`${dir}: no ${HF_INDEX_FILE}; reading ${shards.length} model-*-of-* shards and ignoring ${all.filter((e) => !SHARD_RE.test(e)).join(", ")}`);
    const where = new Map<string, SafetensorsFile>();
    for (const name of chosen) {
      const f = open(name);
      for (const t of f.names()) {
        const prev = where.get(t);
        if (prev)
          throw new TrtbError("HF_DUPLICATE_TENSOR", `${dir}: tensor ${JSON.stringify(t)} is in both ${nodePath.basename(prev.path)} and ${name}; without ${HF_INDEX_FILE} it is ambiguous`, { file: f.path, tensor: t });
        where.set(t, f);
      }
    }
    return new HFCheckpointImpl(dir, "files", opened, where);
  } catch (e) {
    for (const f of opened) f.close();
    throw e;
  }
}

function fromIndex(dir: string, open: (name: string) => SafetensorsFile, opened: SafetensorsFile[]): HFCheckpoint {
  const indexPath = nodePath.join(dir, HF_INDEX_FILE);
  const bad = (msg: string, cause?: unknown): TrtbError => new TrtbError("HF_INDEX_JSON", `${indexPath}: ${msg}`, { file: indexPath, cause });
  let root;
  try {
    const text = readTextFile(indexPath, trtbReadErrors(indexPath, { missing: "HF_INDEX_JSON", json: "HF_INDEX_JSON" }));
    root = parseJsonStrict(text);
  } catch (e) {
    if (e instanceof JsonStrictError) throw bad(e.kind === "duplicate" ? `duplicate key ${JSON.stringify(e.key)}${e.path.length ? ` in ${e.path.join(".")}` : ""}` : `not valid JSON: ${e.message}`, e);
    if (e instanceof TrtbError) throw e;
    throw bad(`cannot read: ${(e as { code?: string }).code ?? (e as Error).message}`, e);
  }
  const weightMap = root instanceof Map ? root.get("weight_map") : undefined;
  if (!(weightMap instanceof Map)) throw bad(`must be an object with a "weight_map" object of tensor name → shard file`);

  const shardOf = new Map<string, string>();
  for (const [tensor, shard] of weightMap) {
    if (typeof shard !== "string" || shard === "") throw bad(`weight_map[${JSON.stringify(tensor)}] must be a file name`);
    const norm = nodePath.normalize(shard);
    if (nodePath.isAbsolute(shard) || norm.split(/[\\/]/).includes("..") || shard.includes("\0"))
      throw bad(`weight_map[${JSON.stringify(tensor)}] = ${JSON.stringify(shard)} points outside the model directory`);
    shardOf.set(tensor, norm);
  }

  const files = new Map<string, SafetensorsFile>();
  for (const shard of new Set([...shardOf.values()].sort())) {
    const p = nodePath.join(dir, shard);
    if (!fs.existsSync(p)) {
      const users = [...shardOf].filter(([, s]) => s === shard).length;
      throw new TrtbError("HF_SHARD_MISSING", `${dir}: shard ${shard} is listed in ${HF_INDEX_FILE} (for ${users} tensors) but does not exist (incomplete download?)`, { file: p });
    }
    files.set(shard, open(shard));
  }

  const where = new Map<string, SafetensorsFile>();
  for (const [tensor, shard] of shardOf) {
    const f = files.get(shard)!;
    if (!f.has(tensor))
      throw new TrtbError("HF_TENSOR_NOT_IN_SHARD", `${dir}: ${HF_INDEX_FILE} puts tensor ${JSON.stringify(tensor)} in ${shard}, which does not hold it`, { file: f.path, tensor });
    where.set(tensor, f);
  }
  for (const f of files.values()) {
    const extra = f.names().filter((n) => !where.has(n));
    if (extra.length > 0) log.debug(`${f.path}: ${extra.length} tensors not in ${HF_INDEX_FILE} are ignored (${extra.slice(0, 3).join(", ")}${extra.length > 3 ? ", …" : ""})`);
  }
  return new HFCheckpointImpl(dir, "index", opened, where);
}
