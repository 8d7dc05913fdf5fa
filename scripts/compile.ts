#!/usr/bin/env bun
/**
 * Build single-file executables with `bun build --compile`, embedding the native libraries.
 *
 *   bun scripts/compile.ts                      dist/trtllm (+ dist/trtllm-build when its entry exists)
 *   bun scripts/compile.ts --outdir out --target bun-linux-x64
 *   bun scripts/compile.ts --entry path/to/x.ts:name   compile another entry (repeatable; replaces the defaults)
 *   bun scripts/compile.ts --no-cuda            do not embed libtrtb_cuda.so / libtrtb_engine.so
 *   bun scripts/compile.ts --allow-missing-native   build even without libtrtb.so (TS fallback only)
 *
 * The libraries come from build/ (run `bun run build` first), else prebuilt/<platform>-<arch>/.
 * They are passed as extra entry points, which `--compile` embeds as files; at run time
 * src/ffi/lib.ts finds them in `Bun.embeddedFiles`, extracts each once into a content-addressed
 * cache folder and dlopens it from there. `--asset-naming=[name].[ext]` keeps their names plain.
 * libcuda (the driver) is never embedded: libtrtb_cuda links cudart statically and finds the
 * driver through the normal loader search.
 */
import { existsSync, mkdirSync, statSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

const root = path.resolve(import.meta.dir, "..");

export interface CompileOptions {
  outdir: string;
  /** [entry file, output name] pairs. */
  entries: [string, string][];
  target?: string;
  cuda: boolean;
  allowMissingNative: boolean;
}

/** Where the native libraries to embed live: build/ if it has libtrtb.so, else prebuilt/<plat>/. */
export function nativeLibDir(): string | null {
  for (const dir of [path.join(root, "build"), path.join(root, "prebuilt", `${process.platform}-${process.arch}`)])
    if (existsSync(path.join(dir, "libtrtb.so"))) return dir;
  return null;
}

export function defaultEntries(): [string, string][] {
  const list: [string, string][] = [[path.join(root, "cli/trtllm.ts"), "trtllm"]];
  const build = path.join(root, "cli/trtllm-build.ts");
  if (existsSync(build)) list.push([build, "trtllm-build"]);
  return list;
}

/** Compile every entry; returns the paths of the executables. Throws on failure. */
export function compile(opts: CompileOptions): string[] {
  const libDir = nativeLibDir();
  const libs: string[] = [];
  if (libDir) {
    libs.push(path.join(libDir, "libtrtb.so"));
    const cudaLib = path.join(libDir, "libtrtb_cuda.so");
    if (opts.cuda && existsSync(cudaLib)) libs.push(cudaLib);
    // The engine backend (build/run); it needs libcublasLt.so at run time, found by the loader.
    const engineLib = path.join(libDir, "libtrtb_engine.so");
    if (opts.cuda && existsSync(engineLib)) libs.push(engineLib);
  } else if (!opts.allowMissingNative) {
    throw new Error("libtrtb.so not found in build/ or prebuilt/: run `bun run build` first (or pass --allow-missing-native)");
  }
  mkdirSync(opts.outdir, { recursive: true });
  const outputs: string[] = [];
  for (const [entry, name] of opts.entries) {
    const outfile = path.join(opts.outdir, name);
    const cmd = [process.execPath, "build", "--compile", entry, ...libs, "--asset-naming=[name].[ext]", "--outfile", outfile];
    if (opts.target) cmd.push(`--target=${opts.target}`);
    const p = Bun.spawnSync({ cmd, cwd: root, stdout: "pipe", stderr: "pipe" });
    if (p.exitCode !== 0) throw new Error(`bun build --compile ${entry} failed (exit ${p.exitCode}):\n${p.stdout}${p.stderr}`);
    outputs.push(outfile);
  }
  return outputs;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      outdir: { type: "string", default: path.join(root, "dist") },
      entry: { type: "string", multiple: true },
      target: { type: "string" },
      "no-cuda": { type: "boolean", default: false },
      "allow-missing-native": { type: "boolean", default: false },
    },
  });
  const entries: [string, string][] = values.entry?.length
    ? values.entry.map((e) => {
        const i = e.lastIndexOf(":");
        const file = path.resolve(i > 0 ? e.slice(0, i) : e);
        return [file, i > 0 ? e.slice(i + 1) : path.basename(file).replace(/\.[cm]?[jt]s$/, "")];
      })
    : defaultEntries();
  try {
    const t0 = performance.now();
    const outs = compile({
      outdir: path.resolve(values.outdir!),
      entries,
      target: values.target,
      cuda: !values["no-cuda"],
      allowMissingNative: values["allow-missing-native"]!,
    });
    const libDir = nativeLibDir();
    console.log(`embedded native libraries from ${libDir ?? "(none)"}`);
    for (const o of outs) console.log(`${o}  ${(statSync(o).size / 2 ** 20).toFixed(1)} MiB`);
    console.log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } catch (e) {
    console.error((e as Error).message);
    process.exit(1);
  }
}
