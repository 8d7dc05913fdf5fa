/** Arg fragments and flag parsers shared by the commands. Spread the fragments into a command's `args`. */
import type { ArgsDef } from "citty";
import { TrtbError } from "../../src/index.ts";

export const commonArgs = {
  verbose: { type: "boolean", description: "Print stack traces and debug logs on failure", default: false },
  log_level: {
    type: "string",
    description: "Log level: error, warning, info, verbose, debug",
    default: "info",
    valueHint: "level",
  },
} as const satisfies ArgsDef;

export const nonfiniteArgs = {
  allow_nonfinite: {
    type: "boolean",
    description: "Keep weights that hold NaN or Inf (each reported as a warning naming the tensor) instead of refusing them",
    default: false,
  },
} as const satisfies ArgsDef;

export const parallelArgs = {
  tp_size: { type: "string", description: "Tensor-parallel size: number of ranks each layer is split over", default: "1", valueHint: "N" },
  pp_size: { type: "string", description: "Pipeline-parallel size: number of stages the layers are split into", default: "1", valueHint: "N" },
} as const satisfies ArgsDef;

export const dtypeArg = {
  dtype: {
    type: "enum",
    options: ["auto", "float16", "bfloat16", "float32"],
    description: "Data type of non-quantized weights; auto follows the source (float32 becomes float16)",
    default: "auto",
  },
} as const satisfies ArgsDef;

/** Parse a positive integer flag or throw a CLI error naming the flag. */
export function intArg(name: string, v: string | undefined, min = 1): number {
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n) || n < min)
    throw new TrtbError("CLI_BAD_ARG", `--${name} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  return n;
}

/** An optional integer flag (undefined when not given) or a CLI error naming the flag. */
export function optIntArg(name: string, v: string | boolean | undefined, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== "string" || !Number.isInteger(n) || n < min) throw new TrtbError("CLI_BAD_ARG", `--${name} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  return n;
}

/** An optional flag restricted to `options` (undefined when not given) or a CLI error naming the flag. */
export function oneOfArg<T extends string>(name: string, v: string | boolean | undefined, options: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || !(options as readonly string[]).includes(v))
    throw new TrtbError("CLI_BAD_ARG", `--${name} must be one of ${options.join(", ")}, got ${JSON.stringify(v)}`);
  return v as T;
}

/**
 * Every value of a repeatable flag, in order (`--name v` and `--name=v`; citty keeps only the
 * last one). `names` are the flag and its aliases.
 */
export function repeatedArg(rawArgs: readonly string[], ...names: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const a = rawArgs[i]!;
    for (const n of names) {
      if (a === `--${n}` && i + 1 < rawArgs.length) {
        out.push(rawArgs[++i]!);
        break;
      }
      if (a.startsWith(`--${n}=`)) {
        out.push(a.slice(n.length + 3));
        break;
      }
    }
  }
  return out;
}
