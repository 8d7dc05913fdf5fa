/**
 * The single-file binary: `scripts/compile.ts` builds `trtllm` with the native libraries embedded,
 * then we run it from a temp folder (no checkout around it) on a shared fixture.
 *
 * A second, tiny probe binary (same script, same embedding) calls into the native library, since
 * no `trtllm` command needs it yet. It checks what matters for embedded libraries: the library is
 * extracted once into the content-addressed cache and reused on the next launch, with no temp
 * copy per launch (oven-sh/bun#40076).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { compile, defaultEntries, nativeLibDir } from "../../scripts/compile.ts";

const root = path.resolve(import.meta.dir, "../..");
const shared = path.resolve(import.meta.dir, "../../../shared");
const fixture = path.join(shared, "fixtures/hf-tiny/qwen2/model.safetensors");
const libDir = nativeLibDir();
if (!existsSync(fixture)) console.warn(`test/cli/compiled.test.ts: ${fixture} not found; the inspect case is skipped`);
if (!libDir) console.warn("test/cli/compiled.test.ts: no libtrtb.so in build/ or prebuilt/ (run `bun run build`); skipping");

let work = "";
let trtllm = "";
let probe = "";

/** Every file under `dir`, relative, with size and mtime. */
function snapshot(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        const st = statSync(p);
        out.push(`${path.relative(dir, p)} ${st.size} ${st.mtimeMs}`);
      }
    }
  };
  walk(dir);
  return out.sort();
}

function run(bin: string, args: string[], env: Record<string, string> = {}) {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("TRTB_")) base[k] = v;
  const p = Bun.spawnSync({ cmd: [bin, ...args], cwd: work, env: { ...base, ...env }, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

describe.skipIf(!libDir)("compiled binary", () => {
  beforeAll(() => {
    work = mkdtempSync(path.join(tmpdir(), "trtb-compiled-"));
    const probeSrc = path.join(work, "probe.ts");
    writeFileSync(
      probeSrc,
      `import { cudaLib, nativeLib } from ${JSON.stringify(path.join(root, "src/ffi/index.ts"))};
const n = nativeLib();
if (!n) { console.log(JSON.stringify({ ok: false })); process.exit(3); }
const dst = new Uint8Array(2);
n.convert(new Uint8Array(new Float32Array([1.5]).buffer), "F32", dst, "BF16");
let cuda = "ok";
try { cudaLib(); } catch (e) { cuda = e.code; }
console.log(JSON.stringify({ ok: true, path: n.path, bf16: dst[0] | (dst[1] << 8), cuda }));
`,
    );
    const [bin] = compile({ outdir: path.join(work, "dist"), entries: [defaultEntries()[0]!], cuda: true, allowMissingNative: false });
    const [p] = compile({ outdir: path.join(work, "dist"), entries: [[probeSrc, "ffi-probe"]], cuda: true, allowMissingNative: false });
    trtllm = bin!;
    probe = p!;
  });

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test("trtllm --help", () => {
    const r = run(trtllm, ["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("inspect");
  });

  // The shared fixtures live outside the checkout (absent on machines that get the repo alone).
  test.skipIf(!existsSync(fixture))("trtllm inspect <fixture> lists tensors", () => {
    const r = run(trtllm, ["inspect", fixture]);
    if (r.code !== 0) console.error(r.stderr);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("model.embed_tokens.weight");
    expect(r.stdout).toContain("BF16");
  });

  test("the embedded libtrtb is extracted once to the cache and reused; no temp copy per launch", () => {
    const cache = path.join(work, "cache");
    const tmp = path.join(work, "tmp");
    rmSync(tmp, { recursive: true, force: true });
    Bun.spawnSync({ cmd: ["mkdir", "-p", tmp] });
    const env = { XDG_CACHE_HOME: cache, TMPDIR: tmp, TRTB_DEBUG_FFI: "1" };

    const first = run(probe, [], env);
    expect(first.code).toBe(0);
    const a = JSON.parse(first.stdout.trim());
    expect(a.ok).toBe(true);
    expect(a.bf16).toBe(0x3fc0); // 1.5 in bf16
    expect(a.path).toMatch(new RegExp(`^${cache}/trtllm-build/[0-9a-f]{16}/libtrtb\\.so$`));
    expect(first.stderr).toContain("extracted embedded copy");
    // The CUDA library is embedded too when it was built; here it must fail cleanly or work.
    expect(["ok", "CUDA_UNAVAILABLE", "CUDA_NO_DEVICE"]).toContain(a.cuda);
    console.log(`compiled probe: libtrtb from ${path.relative(work, a.path)}, cudaLib(): ${a.cuda}`);
    const afterFirst = snapshot(cache);
    expect(afterFirst.some((f) => f.includes("/libtrtb.so "))).toBe(true);

    const second = run(probe, [], env);
    expect(second.code).toBe(0);
    const b = JSON.parse(second.stdout.trim());
    expect(b.path).toBe(a.path);
    expect(second.stderr).toContain("reusing extracted copy");
    expect(second.stderr).not.toContain("extracted embedded copy");
    expect(snapshot(cache)).toEqual(afterFirst); // same files, same mtimes
    expect(snapshot(tmp).filter((f) => /\.so\b/.test(f))).toEqual([]); // Bun did not extract its own copies
  });

  test("a tampered cache file is replaced, not loaded", () => {
    const cache = path.join(work, "cache2");
    const env = { XDG_CACHE_HOME: cache };
    const a = JSON.parse(run(probe, [], env).stdout.trim());
    writeFileSync(a.path, "garbage");
    const r = run(probe, [], { ...env, TRTB_DEBUG_FFI: "1" });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("does not match the embedded copy");
    expect(JSON.parse(r.stdout.trim()).bf16).toBe(0x3fc0);
  });
});
