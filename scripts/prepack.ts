#!/usr/bin/env bun
/**
 * Put the native libraries into `prebuilt/<platform>-<arch>/` so that `bun pm pack` / `npm pack`
 * ship them (package.json `files` lists `prebuilt`). Meant to run as the `prepack` script.
 *
 *   bun scripts/prepack.ts                 copy from build/, building it first if it is missing
 *   bun scripts/prepack.ts --from <dir>    copy from another folder of built libraries
 *   bun scripts/prepack.ts --no-build      never run cmake; ship no library if none is built
 *
 * How the library reaches users (`bunx trtllm-build`, `bun add trtllm-build`): the tarball carries
 * prebuilt/linux-x64/libtrtb.so (plain C, needs only glibc) and, when it was built,
 * libtrtb_cuda.so (static cudart, needs only the NVIDIA driver). src/ffi/lib.ts loads them from
 * there. Anywhere they do not load (another platform or arch, no prebuilt in the tarball),
 * `nativeLib()` returns null and callers use the TypeScript implementation, which gives the same
 * bits, only slower. Other platforms get prebuilt libraries by running this on a machine of that
 * platform before publishing; each adds its own prebuilt/<platform>-<arch>/ folder.
 */
import { copyFileSync, existsSync, mkdirSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

const root = path.resolve(import.meta.dir, "..");
const LIBS = ["libtrtb.so", "libtrtb_cuda.so"] as const;

export function prebuiltDir(base = root): string {
  return path.join(base, "prebuilt", `${process.platform}-${process.arch}`);
}

/** Build the native libraries with CMake into `<root>/build`. Returns false when cmake is missing or fails. */
function cmakeBuild(): boolean {
  if (!Bun.which("cmake")) {
    console.warn("prepack: cmake not found; cannot build the native libraries");
    return false;
  }
  for (const args of [["-S", ".", "-B", "build", "-DCMAKE_BUILD_TYPE=Release"], ["--build", "build", "-j"]]) {
    const p = Bun.spawnSync({ cmd: ["cmake", ...args], cwd: root, stdout: "inherit", stderr: "inherit" });
    if (p.exitCode !== 0) {
      console.warn(`prepack: cmake ${args.join(" ")} failed (exit ${p.exitCode})`);
      return false;
    }
  }
  return true;
}

/** Replace prebuilt/<platform>-<arch>/ with the libraries found in `from`; returns the files copied. */
export function stagePrebuilt(from: string, base = root): string[] {
  const dest = prebuiltDir(base);
  rmSync(dest, { recursive: true, force: true }); // never ship a stale library from an earlier pack
  const copied: string[] = [];
  for (const lib of LIBS) {
    const src = path.join(from, lib);
    if (!existsSync(src)) continue;
    mkdirSync(dest, { recursive: true });
    copyFileSync(src, path.join(dest, lib));
    copied.push(path.join(dest, lib));
  }
  return copied;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { from: { type: "string" }, "no-build": { type: "boolean", default: false } },
  });
  const from = path.resolve(values.from ?? path.join(root, "build"));
  if (!existsSync(path.join(from, "libtrtb.so")) && !values.from && !values["no-build"]) cmakeBuild();
  const copied = stagePrebuilt(from);
  if (copied.length === 0) {
    console.warn(`prepack: no native library in ${from}; the package will use the TypeScript fallback on every platform`);
  } else {
    for (const f of copied) console.log(`prepack: ${path.relative(root, f)} (${(statSync(f).size / 1024).toFixed(0)} KiB)`);
    if (!copied.some((f) => f.endsWith("libtrtb_cuda.so")))
      console.log("prepack: libtrtb_cuda.so was not built (no CUDA toolkit); the package ships CPU support only");
  }
}
