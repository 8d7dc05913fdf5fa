/**
 * The npm route: pack the package the way a publish would (prepack stages prebuilt/), install the
 * tarball into an empty project, and run the bins through `bunx`. Also checks that the installed
 * package loads its prebuilt native library.
 *
 * The working tree is never touched: the package files are copied to a staging folder, and
 * prepack runs there with `--from <checkout>/build`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const root = path.resolve(import.meta.dir, "../..");
const pkg = (await Bun.file(path.join(root, "package.json")).json()) as { name: string; version: string; files: string[] };
const hasBuildBin = existsSync(path.join(root, "cli/trtllm-build.ts"));
const hasNative = existsSync(path.join(root, "build/libtrtb.so"));
if (!hasBuildBin) console.warn("test/cli/pack.test.ts: cli/trtllm-build.ts does not exist yet; `bunx trtllm-build --help` is skipped");

let work = "";
let app = "";
let tarball = "";

function sh(cmd: string[], cwd: string, env: Record<string, string> = {}) {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("TRTB_")) base[k] = v;
  const p = Bun.spawnSync({ cmd, cwd, env: { ...base, ...env }, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

function must(r: ReturnType<typeof sh>, what: string) {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

describe("npm package", () => {
  beforeAll(() => {
    work = mkdtempSync(path.join(tmpdir(), "trtb-pack-"));
    const stage = path.join(work, "stage");
    mkdirSync(stage);
    // Exactly what `files` ships, plus package.json; prebuilt/ is produced by prepack below.
    for (const f of pkg.files) {
      if (f === "prebuilt") continue;
      const src = path.join(root, f);
      if (existsSync(src)) cpSync(src, path.join(stage, f), { recursive: true });
    }
    cpSync(path.join(root, "package.json"), path.join(stage, "package.json"));
    const prepackArgs = hasNative ? ["--from", path.join(root, "build")] : ["--no-build"];
    must(sh([process.execPath, "scripts/prepack.ts", ...prepackArgs], stage), "prepack");
    must(sh([process.execPath, "pm", "pack", "--ignore-scripts", "--destination", work, "--quiet"], stage), "bun pm pack");
    tarball = path.join(work, readdirSync(work).find((f) => f.endsWith(".tgz"))!);

    app = path.join(work, "app");
    mkdirSync(app);
    writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "trtb-pack-test-app", private: true }));
    // Dependencies (citty, consola, zod) come from the local cache when it has them.
    must(sh([process.execPath, "add", "--prefer-offline", tarball], app), "bun add <tarball>");
  });

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test.skipIf(!hasNative)("the tarball ships prebuilt/<platform>-<arch>/libtrtb.so", () => {
    const r = must(sh(["tar", "-tzf", tarball], work), "tar -tzf");
    expect(r.stdout).toContain(`package/prebuilt/${process.platform}-${process.arch}/libtrtb.so`);
    expect(r.stdout).not.toContain("package/build/");
  });

  test("bunx trtllm --help", () => {
    const r = sh([process.execPath, "x", "trtllm", "--help"], app);
    if (r.code !== 0) console.error(r.stderr);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("inspect");
  });

  test.skipIf(!hasBuildBin)("bunx trtllm-build --help", () => {
    const r = sh([process.execPath, "x", "trtllm-build", "--help"], app);
    if (r.code !== 0) console.error(r.stderr);
    expect(r.code).toBe(0);
  });

  test.skipIf(!hasNative)("the installed package loads its prebuilt native library", () => {
    writeFileSync(
      path.join(app, "probe.ts"),
      `import { nativeLib } from "./node_modules/${pkg.name}/src/ffi/index.ts";
const n = nativeLib();
const dst = new Uint8Array(2);
n?.convert(new Uint8Array(new Float32Array([-2]).buffer), "F32", dst, "F16");
console.log(JSON.stringify({ path: n?.path ?? null, f16: dst[0] | (dst[1] << 8) }));
`,
    );
    const r = must(sh([process.execPath, "probe.ts"], app), "probe");
    const out = JSON.parse(r.stdout.trim());
    expect(out.path).toBe(path.join(app, "node_modules", pkg.name, "prebuilt", `${process.platform}-${process.arch}`, "libtrtb.so"));
    expect(out.f16).toBe(0xc000); // -2.0 in f16
  });
});
