/**
 * Prompt files for `trtllm run`: `.txt` (one prompt per line; blank lines skipped) and `.jsonl`
 * (one JSON object per line: `{"text": "…"}` or `{"messages": [{role, content}, …]}`). Errors name
 * the file and line (`RUN_BAD_INPUT`).
 */
import { readTextFile, trtbReadErrors } from "../util/safe-read.ts";
import { TrtbError } from "../errors.ts";
import type { ChatMessage } from "../text/tokenizer.ts";

/** A prompt file larger than this is refused before it is read. */
export const MAX_PROMPT_FILE_BYTES = 256 * 2 ** 20;

export type FilePrompt = { text: string } | { messages: ChatMessage[] };

export function readPromptFile(file: string): FilePrompt[] {
  if (!file.endsWith(".txt") && !file.endsWith(".jsonl"))
    throw new TrtbError("RUN_BAD_INPUT", `${file}: --input_file takes .safetensors (input_ids), .txt (one prompt per line) or .jsonl ({"text"} / {"messages"} per line)`, { file });
  let body: string;
  body = readTextFile(file, trtbReadErrors(file, { missing: "RUN_BAD_INPUT", json: "RUN_BAD_INPUT" }), MAX_PROMPT_FILE_BYTES);
  const lines = body.split(/\r?\n/);
  const out: FilePrompt[] = [];
  if (file.endsWith(".txt")) {
    for (const l of lines) if (l.trim() !== "") out.push({ text: l });
  } else {
    lines.forEach((l, i) => {
      if (l.trim() === "") return;
      let j: unknown;
      try {
        j = JSON.parse(l);
      } catch (e) {
        throw new TrtbError("RUN_BAD_INPUT", `${file}:${i + 1}: not valid JSON (${(e as Error).message})`, { file });
      }
      const o = j as { text?: unknown; messages?: unknown };
      if (o && typeof o === "object" && typeof o.text === "string") out.push({ text: o.text });
      else if (o && typeof o === "object" && Array.isArray(o.messages)) out.push({ messages: o.messages as ChatMessage[] });
      else throw new TrtbError("RUN_BAD_INPUT", `${file}:${i + 1}: expected {"text": "…"} or {"messages": [{"role", "content"}, …]}`, { file });
    });
  }
  if (out.length === 0) throw new TrtbError("RUN_BAD_INPUT", `${file}: no prompts in the file`, { file });
  return out;
}
