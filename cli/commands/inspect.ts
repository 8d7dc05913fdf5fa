/**
 * `trtllm inspect <file|dir>`: validate safetensors headers and list tensors (name, dtype, shape,
 * bytes) with totals. Reads headers only, so it is instant on any size. A directory is either a
 * TRT-LLM checkpoint (rank{N}.safetensors, listed per file) or a Hugging Face model directory
 * (index + shards, or model.safetensors, listed as one checkpoint).
 */
import fs from "node:fs";
import nodePath from "node:path";
import { defineCommand } from "citty";
import type { DType } from "../../src/dtype.ts";
import { TrtbError } from "../../src/errors.ts";
import { openHFCheckpoint } from "../../src/format/hf-checkpoint.ts";
import { openSafetensors, type SafetensorsFile } from "../../src/format/safetensors.ts";
import { setLogLevel } from "../../src/log.ts";
import { commonArgs } from "./_shared.ts";

const RANK_RE = /^rank(\d+)\.safetensors$/;

interface TensorRow {
  name: string;
  file: string;
  dtype: DType;
  shape: readonly number[];
  bytes: number;
  offset: number;
}

interface Totals {
  tensors: number;
  bytes: number;
  byDtype: Record<string, number>;
}

interface FileReport {
  path: string;
  fileSize: number;
  headerLength: number;
  metadata: Record<string, string>;
  totals: Totals;
}

interface Report {
  path: string;
  format: "safetensors" | "hf-checkpoint" | "trtllm-checkpoint";
  files: FileReport[];
  tensors: TensorRow[];
  totals: Totals;
}

function totalsOf(rows: readonly TensorRow[]): Totals {
  const byDtype: Record<string, number> = {};
  let bytes = 0;
  for (const r of rows) {
    bytes += r.bytes;
    byDtype[r.dtype] = (byDtype[r.dtype] ?? 0) + r.bytes;
  }
  return { tensors: rows.length, bytes, byDtype };
}

function rowsOf(f: SafetensorsFile, names: readonly string[] = f.names()): TensorRow[] {
  return names.map((n) => {
    const t = f.info(n);
    return { name: n, file: f.path, dtype: t.dtype, shape: t.shape, bytes: t.byteLength, offset: t.offset };
  });
}

function fileReport(f: SafetensorsFile): FileReport {
  return { path: f.path, fileSize: f.fileSize, headerLength: f.headerLength, metadata: { ...f.metadata }, totals: totalsOf(rowsOf(f)) };
}

/** Open, validate and describe `target`. Closes everything it opened. */
export function inspectPath(target: string): Report {
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
    const files: FileReport[] = [];
    const tensors: TensorRow[] = [];
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

// ---------------------------------------------------------------------------------------------
// Text rendering

const int = (n: number): string => n.toLocaleString("en-US");

function human(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

function table(rows: readonly TensorRow[], withFile: boolean): string[] {
  const head = ["name", "dtype", "shape", "bytes", ...(withFile ? ["file"] : [])];
  const body = rows.map((r) => [r.name, r.dtype, `[${r.shape.join(", ")}]`, int(r.bytes), ...(withFile ? [nodePath.basename(r.file)] : [])]);
  const widths = head.map((h, c) => Math.max(h.length, ...body.map((b) => b[c]!.length)));
  const fmt = (cells: string[]): string =>
    cells.map((s, c) => (c === 3 ? s.padStart(widths[c]!) : c === cells.length - 1 ? s : s.padEnd(widths[c]!))).join("  ").trimEnd();
  return [fmt(head), ...body.map(fmt)];
}

function totalsLines(t: Totals, indent = ""): string[] {
  const lines = [`${indent}${int(t.tensors)} tensors, ${int(t.bytes)} bytes (${human(t.bytes)})`];
  const dts = Object.entries(t.byDtype).sort((a, b) => b[1] - a[1]);
  const w = Math.max(0, ...dts.map(([d]) => d.length));
  for (const [d, b] of dts) lines.push(`${indent}  ${d.padEnd(w)}  ${int(b).padStart(int(dts[0]![1]).length)} bytes (${human(b)})`);
  return lines;
}

function fileLine(f: FileReport): string {
  const md = Object.entries(f.metadata).map(([k, v]) => `${k}=${v}`).join(", ");
  return `${f.path}: ${int(f.fileSize)} bytes, header ${int(f.headerLength)} bytes${md ? `, metadata ${md}` : ""}`;
}

export function renderReport(r: Report): string {
  const out: string[] = [];
  if (r.format === "trtllm-checkpoint") {
    for (const f of r.files) {
      out.push(fileLine(f), ...table(r.tensors.filter((t) => t.file === f.path), false), ...totalsLines(f.totals), "");
    }
    out.push(`total over ${r.files.length} rank files:`, ...totalsLines(r.totals, "  "));
  } else {
    for (const f of r.files) out.push(fileLine(f));
    out.push(...table(r.tensors, r.files.length > 1), ...totalsLines(r.totals));
  }
  return out.join("\n");
}

export default defineCommand({
  meta: { name: "inspect", description: "Validate safetensors files and list their tensors: a file, a Hugging Face model directory, or a TRT-LLM checkpoint (rank{N}.safetensors)" },
  args: {
    path: { type: "positional", description: "A .safetensors file or a directory", required: true, valueHint: "file|dir" },
    json: { type: "boolean", description: "Print machine-readable JSON instead of a table", default: false },
    ...commonArgs,
  },
  run({ args }) {
    setLogLevel(args.verbose ? "debug" : args.log_level);
    const report = inspectPath(args.path);
    console.log(args.json ? JSON.stringify(report, null, 2) : renderReport(report));
  },
});
