/**
 * Library resolution (src/ffi/lib.ts): env overrides, the debug trace, clean failures. Each case
 * runs in a fresh `bun` process because the loaded library is cached per process.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ABI_VERSION, CPU_SYMBOLS } from "../../src/ffi/symbols.ts";

const root = path.resolve(import.meta.dir, "../..");
const ffi = path.join(root, "src/ffi/index.ts");
const built = Bun.file(path.join(root, "build/libtrtb.so")).size > 0;
const builtCuda = Bun.file(path.join(root, "build/libtrtb_cuda.so")).size > 0;

/** Run `code` (which may use `ffi`, the module namespace) in a child bun; return its output. */
function run(code: string, env: Record<string, string | undefined> = {}) {
  const full = `const ffi = await import(${JSON.stringify(ffi)});\n${code}`;
  const merged: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...env })) if (v !== undefined) merged[k] = v;
  const p = Bun.spawnSync({ cmd: [process.execPath, "-e", full], env: merged, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

const tryCode = (expr: string) =>
  `try { ${expr}; console.log("OK"); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;

describe("library resolution", () => {
  test("TRTB_LIB pointing nowhere: nativeLib() is null, requireNative() lists the candidate", () => {
    const r = run(`console.log(ffi.nativeLib() === null); ${tryCode("ffi.requireNative()")}`, {
      TRTB_LIB: "/nonexistent/libtrtb.so",
      TRTB_DEBUG_FFI: undefined,
    });
    expect(r.code).toBe(0);
    const [isNull, json] = r.stdout.trim().split("\n");
    expect(isNull).toBe("true");
    const err = JSON.parse(json!);
    expect(err.code).toBe("NATIVE_NOT_FOUND");
    expect(err.message).toContain("[env] /nonexistent/libtrtb.so: not found");
    expect(err.message).toContain("TRTB_LIB is set");
    // an explicit path that fails warns even without TRTB_DEBUG_FFI
    expect(r.stderr).toContain("warning: native library libtrtb.so");
  });

  test("TRTB_LIB pointing at a file that is not a library: dlopen failure is reported", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "trtb-loader-"));
    try {
      const bogus = path.join(dir, "libtrtb.so");
      writeFileSync(bogus, "not an ELF file");
      const r = run(tryCode("ffi.requireNative()"), { TRTB_LIB: bogus });
      const err = JSON.parse(r.stdout.trim());
      expect(err.code).toBe("NATIVE_NOT_FOUND");
      expect(err.message).toContain(`[env] ${bogus}: dlopen failed`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test.skipIf(!built)("TRTB_DEBUG_FFI=1 traces the candidates; a checkout's build/ wins", () => {
    const r = run(`console.log(ffi.nativeLib()?.path)`, { TRTB_LIB: undefined, TRTB_DEBUG_FFI: "1" });
    expect(r.stdout.trim()).toBe(path.join(root, "build/libtrtb.so"));
    expect(r.stderr).toContain(`[trtb:ffi] libtrtb.so: [build] ${path.join(root, "build/libtrtb.so")}: loaded`);
  });

  test("TRTB_DEBUG_FFI=1 lists every candidate that failed, and nativeLib() says null", () => {
    const r = run(`console.log(ffi.nativeLib())`, { TRTB_LIB: "/nonexistent/x.so", TRTB_DEBUG_FFI: "1" });
    expect(r.stdout.trim()).toBe("null");
    expect(r.stderr).toContain("[trtb:ffi] libtrtb.so: [env] /nonexistent/x.so: not found");
  });

  test.skipIf(!built)("TRTB_LIB selects an explicit copy", () => {
    const r = run(`console.log(ffi.requireNative().path)`, { TRTB_LIB: path.join(root, "build/libtrtb.so") });
    expect(r.stdout.trim()).toBe(path.join(root, "build/libtrtb.so"));
  });

  test.skipIf(!built || !Bun.which("cc"))("a library with another ABI version is skipped with the reason", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "trtb-abi-"));
    try {
      const c = path.join(dir, "fake.c");
      const so = path.join(dir, "libtrtb.so");
      const stubs = Object.keys(CPU_SYMBOLS).filter((s) => s !== "trtb_abi_version");
      writeFileSync(c, `unsigned trtb_abi_version(void) { return 999; }\n${stubs.map((s) => `int ${s}(void) { return 0; }`).join("\n")}\n`);
      const cc = Bun.spawnSync({ cmd: ["cc", "-shared", "-fPIC", "-o", so, c], stderr: "pipe" });
      expect(cc.exitCode).toBe(0);
      const r = run(tryCode("ffi.requireNative()"), { TRTB_LIB: so });
      const err = JSON.parse(r.stdout.trim());
      expect(err.code).toBe("NATIVE_NOT_FOUND");
      expect(err.message).toContain(`[env] ${so}: ABI version 999, expected ${ABI_VERSION}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("TRTB_CUDA_LIB pointing nowhere: cudaLib() throws CUDA_UNAVAILABLE naming it", () => {
    const r = run(tryCode("ffi.cudaLib()"), { TRTB_CUDA_LIB: "/nonexistent/libtrtb_cuda.so" });
    const err = JSON.parse(r.stdout.trim());
    expect(err.code).toBe("CUDA_UNAVAILABLE");
    expect(err.message).toContain("[env] /nonexistent/libtrtb_cuda.so: not found");
  });

  test.skipIf(!builtCuda)("cudaLib() either works or fails with a clean code (never crashes)", () => {
    const r = run(`${tryCode("const c = ffi.cudaLib(); if (c.deviceCount() < 1) throw new Error('count')")}`, { TRTB_CUDA_LIB: undefined });
    expect(r.code).toBe(0);
    const out = r.stdout.trim();
    if (out !== "OK") {
      const err = JSON.parse(out);
      expect(["CUDA_UNAVAILABLE", "CUDA_NO_DEVICE"]).toContain(err.code);
      expect(err.message.length).toBeGreaterThan(20);
    }
  });
});
