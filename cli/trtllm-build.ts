#!/usr/bin/env bun
/** `trtllm-build`: the engine builder's bin (the command is cli/commands/build.ts). */
import { runCli } from "./_main.ts";
import { main } from "./commands/build.ts";

if (import.meta.main) process.exit(await runCli(main, process.argv.slice(2)));
