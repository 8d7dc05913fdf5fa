/**
 * The single error boundary of the CLI. `runCli` never calls `process.exit`: it returns the exit
 * code, so tests can call it in-process. Only the bin files (`trtllm.ts`, `trtllm-build.ts`) exit.
 *
 * - `--help`/`-h` anywhere prints the usage of the (sub)command and returns 0.
 * - A `TrtbError` prints its message alone (stack only with `--verbose`) and returns 1.
 * - A citty usage error (unknown command, missing required arg) prints usage + message, returns 2.
 * - Anything else is a bug: printed in full, returns 1.
 */
import { type CommandDef, renderUsage, runCommand } from "citty";
import { isTrtbError, log } from "../src/index.ts";

async function resolve<T>(v: T | Promise<T> | (() => T | Promise<T>)): Promise<T> {
  return typeof v === "function" ? await (v as () => T | Promise<T>)() : await v;
}

/** Walk sub-commands named in rawArgs, returning the innermost command and its parent. */
async function findSubCommand(cmd: CommandDef<any>, rawArgs: string[]): Promise<[CommandDef<any>, CommandDef<any> | undefined]> {
  let parent: CommandDef<any> | undefined;
  let cur = cmd;
  for (const a of rawArgs) {
    if (a.startsWith("-")) break;
    const subs = cur.subCommands ? await resolve(cur.subCommands) : undefined;
    const next = subs?.[a];
    if (!next) break;
    parent = cur;
    cur = await resolve(next);
  }
  return [cur, parent];
}

export async function runCli(cmd: CommandDef<any>, rawArgs: string[], out: (s: string) => void = (s) => console.log(s)): Promise<number> {
  const verbose = rawArgs.includes("--verbose");
  try {
    if (rawArgs.includes("--help") || rawArgs.includes("-h")) {
      const [sub, parent] = await findSubCommand(cmd, rawArgs);
      out(await renderUsage(sub, parent));
      return 0;
    }
    if (rawArgs.length === 1 && rawArgs[0] === "--version") {
      const meta = await resolve(cmd.meta);
      out(meta?.version ?? "unknown");
      return 0;
    }
    await runCommand(cmd, { rawArgs });
    return 0;
  } catch (e) {
    if (isTrtbError(e)) {
      log.error(verbose ? e : e.message);
      return 1;
    }
    const err = e as { name?: string; code?: string; message?: string };
    if (err?.name === "CLIError" || (typeof err?.code === "string" && err.code.startsWith("E_"))) {
      const [sub, parent] = await findSubCommand(cmd, rawArgs);
      out(await renderUsage(sub, parent));
      log.error(err.message ?? String(e));
      return 2;
    }
    log.error(e);
    return 1;
  }
}
