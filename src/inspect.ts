/**
 * `inspectPath`: open, validate and describe a safetensors file, a Hugging Face model directory
 * (index + shards, or model.safetensors, as one checkpoint) or a TRT-LLM checkpoint
 * (rank{N}.safetensors, per file): tensors (name, dtype, shape, bytes, offset) with totals. Reads
 * headers only, so it is instant on any size (`trtllm inspect`).
 */
import fs from "node:fs";
import nodePath from "node:path";
import type { DType } from "./dtype.ts";
import { TrtbError } from "./errors.ts";
import { openHFCheckpoint } from "./format/hf-checkpoint.ts";
import { openSafetensors, type SafetensorsFile } from "./format/safetensors.ts";

const RANK_RE = /^rank(\d+)\.safetensors$/;

export interface InspectTensorRow {
  name: string;
  file: string;
  dtype: DType;
  shape: readonly number[];
  bytes: number;
  offset: number;
}

export interface InspectTotals {
  tensors: number;
  bytes: number;
  byDtype: Record<string, number>;
}

export interface InspectFileReport {
  path: string;
  fileSize: number;
  headerLength: number;
  metadata: Record<string, string>;
  totals: InspectTotals;
}

export interface InspectReport {
  path: string;
  format: "safetensors" | "hf-checkpoint" | "trtllm-checkpoint";
  files: InspectFileReport[];
  tensors: InspectTensorRow[];
  totals: InspectTotals;
}

function totalsOf(rows: readonly InspectTensorRow[]): InspectTotals {
  const byDtype: Record<string, number> = {};
  let bytes = 0;
  for (const r of rows) {
    bytes += r.bytes;
    byDtype[r.dtype] = (byDtype[r.dtype] ?? 0) + r.bytes;
  }
  return { tensors: rows.length, bytes, byDtype };
}

function rowsOf(f: SafetensorsFile, names: readonly string[] = f.names()): InspectTensorRow[] {
  return names.map((n) => {
    const t = f.info(n);
    return { name: n, file: f.path, dtype: t.dtype, shape: t.shape, bytes: t.byteLength, offset: t.offset };
  });
}

function fileReport(f: SafetensorsFile): InspectFileReport {
  return { path: f.path, fileSize: f.fileSize, headerLength: f.headerLength, metadata: { ...f.metadata }, totals: totalsOf(rowsOf(f)) };
}

/** Open, validate and describe `target`. Closes everything it opened. */
export function inspectPath(target: string): InspectReport {
  let st: fs.Stats;
  try {
    st = fs.statSync(target);
  } catch (e) {
    throw new TrtbError("CLI_BAD_ARG", `${target}: ${(e as { code?: string }).code === "ENOENT" ? "no such file or directory" : (e as Error).message}`, { file: target });
  }
  if (!st.isDirectory()) {
    const f = openSafetensors(target);
    try {
      const tensors = rowsOf(f);
      return { path: target, format: "safetensors", files: [fileReport(f)], tensors, totals: totalsOf(tensors) };
    } finally {
      f.close();
    }
  }
  const ranks = fs
    .readdirSync(target)
    .map((e) => RANK_RE.exec(e))
    .filter((m): m is RegExpExecArray => m !== null)
    .sort((a, b) => Number(a[1]) - Number(b[1]))
    .map((m) => m[0]);
  if (ranks.length > 0) {
    const files: InspectFileReport[] = [];
    const tensors: InspectTensorRow[] = [];
    for (const r of ranks) {
      const f = openSafetensors(nodePath.join(target, r));
      try {
        files.push(fileReport(f));
        tensors.push(...rowsOf(f));
      } finally {
        f.close();
      }
    }
    return { path: target, format: "trtllm-checkpoint", files, tensors, totals: totalsOf(tensors) };
  }
  const ck = openHFCheckpoint(target);
  try {
    const tensors = ck.names().map((n) => rowsOf(ck.fileOf(n), [n])[0]!);
    return { path: target, format: "hf-checkpoint", files: ck.files.map(fileReport), tensors, totals: totalsOf(tensors) };
  } finally {
    ck.close();
  }
}
