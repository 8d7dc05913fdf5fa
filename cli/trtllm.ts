#!/usr/bin/env bun
/**
 * `trtllm`: the toolkit's command table. Commands are imported lazily so startup only pays for the
 * one that runs. All logic lives in `src/`; commands parse flags, call the library, print results.
 */
import { defineCommand } from "citty";
import pkg from "../package.json" with { type: "json" };
import { runCli } from "./_main.ts";

export const main = defineCommand({
  meta: { name: "trtllm", version: pkg.version, description: "Convert, quantize, build and run LLM checkpoints (TensorRT-LLM format)" },
  subCommands: {
    inspect: () => import("./commands/inspect.ts").then((m) => m.default),
    convert: () => import("./commands/convert.ts").then((m) => m.default),
    quantize: () => import("./commands/quantize.ts").then((m) => m.default),
    run: () => import("./commands/run.ts").then((m) => m.default),
    eval: () => import("./commands/eval.ts").then((m) => m.default),
    chat: () => import("./commands/chat.ts").then((m) => m.default),
    serve: () => import("./commands/serve.ts").then((m) => m.default),
    doctor: () => import("./commands/doctor.ts").then((m) => m.default),
  },
});

if (import.meta.main) process.exit(await runCli(main, process.argv.slice(2)));
