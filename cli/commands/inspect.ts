/**
 * `trtllm inspect <file|dir>`: validate safetensors headers and list tensors (name, dtype, shape,
 * bytes) with totals, as a table or JSON. The report is the library's `inspectPath` (src/inspect.ts).
 */
import nodePath from "node:path";
import { defineCommand } from "citty";
import { type InspectFileReport as FileReport, type InspectReport as Report, type InspectTensorRow as TensorRow, type InspectTotals as Totals, inspectPath, setLogLevel } from "../../src/index.ts";
import { commonArgs } from "./_shared.ts";

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
