/**
 * A model's tokenizer, loaded from the files of its Hugging Face directory:
 *
 *   tokenizer.json           (required) vocabulary, merges, normalizer, pre-tokenizer, post-processor
 *   tokenizer_config.json    special tokens, add_bos_token / add_eos_token, chat_template,
 *                            clean_up_tokenization_spaces
 *   chat_template.jinja      the chat template; wins over tokenizer_config's (as in transformers)
 *   generation_config.json   eos id list, bos/pad ids (and sampling defaults, see generation-config.ts)
 *
 * Encoding and decoding are `@huggingface/tokenizers` (pure TypeScript); its ids equal the Rust
 * `tokenizers` reference on every case of `shared/models/tokenizer-refs.json`. Chat templates are
 * rendered with `@huggingface/jinja`.
 *
 * Special tokens follow transformers: `addSpecialTokens` runs the tokenizer.json post-processor,
 * then `add_bos_token` / `add_eos_token`, where tokenizer_config sets them, add the token the
 * post-processor does not add (or drop the one it adds, when set to false).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer as HFTokenizer } from "@huggingface/tokenizers";
import { TrtbError } from "../errors.ts";
import { type GenerationConfig, readGenerationConfig } from "./generation-config.ts";
import { isObject, readJsonFile } from "./json.ts";
import { readTextFile, trtbReadErrors } from "../util/safe-read.ts";

export interface EncodeOptions {
  /** Add the model's special tokens (BOS and the like) as transformers does. Default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave out special tokens (BOS, EOS, chat markers…). Default false, as in transformers. */
  skipSpecialTokens?: boolean;
  /** Apply transformers' `clean_up_tokenization_spaces` (" ." → "."…). Default: tokenizer_config's value, else false. */
  cleanUpTokenizationSpaces?: boolean;
}

/** One chat message; `content` may be null or a list of parts (multimodal templates), other keys pass to the template. */
export interface ChatMessage {
  role: string;
  content: string | null | unknown[];
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  /** End with the assistant header, ready for generation. Default false, as in transformers. */
  addGenerationPrompt?: boolean;
  /** A system prompt, put before `messages` as a `{role: "system"}` message. */
  system?: string;
  /** Tool (function) definitions, passed to the template as `tools`. */
  tools?: unknown[];
  /** Further template variables, e.g. `{ enable_thinking: false }` for Qwen3. */
  templateVars?: Record<string, unknown>;
}

export interface Tokenizer {
  /** The directory it was loaded from. */
  readonly dir: string;
  /** Number of token ids (added tokens included): valid ids are 0 … vocabSize-1. */
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  /** Ids that end generation: tokenizer_config's eos_token first, then generation_config's eos_token_id list. */
  readonly eosIds: readonly number[];
  readonly padId: number | undefined;
  readonly unkId: number | undefined;
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly padToken: string | undefined;
  readonly unkToken: string | undefined;
  /** Ids of all special tokens (skipped by `decode(…, {skipSpecialTokens: true})`). */
  readonly specialIds: ReadonlySet<number>;
  readonly cleanUpTokenizationSpaces: boolean;
  readonly hasChatTemplate: boolean;
  /** The chat template text in use (chat_template.jinja, else tokenizer_config's default one). */
  readonly chatTemplate: string | undefined;
  /** generation_config.json of the same directory, when present. */
  readonly generationConfig: GenerationConfig | undefined;

  encode(text: string, opts?: EncodeOptions): number[];
  /** `encode`, but a prompt that gives no ids at all (empty text, no BOS) is `TOK_EMPTY_PROMPT`. */
  encodePrompt(text: string, opts?: EncodeOptions): number[];
  decode(ids: ArrayLike<number>, opts?: DecodeOptions): string;
  idToToken(id: number): string | undefined;
  tokenToId(token: string): number | undefined;
  /** Render the chat template (`TOK_NO_CHAT_TEMPLATE` when there is none). */
  applyChatTemplate(messages: readonly ChatMessage[], opts?: ChatTemplateOptions): string;
  /** The rendered chat, encoded without adding special tokens again (the template writes them). */
  encodeChat(messages: readonly ChatMessage[], opts?: ChatTemplateOptions): number[];
}

export const TOKENIZER_JSON = "tokenizer.json";
export const TOKENIZER_CONFIG_JSON = "tokenizer_config.json";
export const CHAT_TEMPLATE_JINJA = "chat_template.jinja";

/** Template variables the jinja runtime declares itself; a `templateVars` key may not shadow them. */
const RESERVED_TEMPLATE_VARS = new Set(["true", "false", "none", "True", "False", "None", "range", "raise_exception", "strftime_now", "namespace"]);

/** Load the tokenizer of a Hugging Face model (or TRT-LLM checkpoint/engine) directory. */
export function loadTokenizer(dir: string): Tokenizer {
  const tokFile = join(dir, TOKENIZER_JSON);
  if (!existsSync(tokFile)) {
    const hint = existsSync(join(dir, "tokenizer.model")) ? " (only tokenizer.model is there: SentencePiece models need a tokenizer.json, e.g. saved by transformers)" : "";
    throw new TrtbError("TOK_MISSING_FILE", `${tokFile}: not found${hint}`, { file: tokFile });
  }
  const tokJson = readJsonFile(tokFile, true);
  if (!isObject(tokJson) || !isObject(tokJson.model) || !Array.isArray(tokJson.added_tokens ?? [])) {
    throw new TrtbError("TOK_INVALID", `${tokFile}: not a tokenizers file (needs an object with "model" and "added_tokens")`, { file: tokFile });
  }
  tokJson.added_tokens ??= [];

  const cfgFile = join(dir, TOKENIZER_CONFIG_JSON);
  const cfgJson = readJsonFile(cfgFile, false) ?? {};
  if (!isObject(cfgJson)) throw new TrtbError("TOK_INVALID", `${cfgFile}: must be a JSON object`, { file: cfgFile });

  let hf: HFTokenizer;
  try {
    hf = new HFTokenizer(tokJson, cfgJson);
  } catch (e) {
    throw new TrtbError("TOK_UNSUPPORTED", `${tokFile}: cannot build the tokenizer (${(e as Error).message})`, { file: tokFile, cause: e });
  }
  return new HFBackedTokenizer(dir, hf, cfgJson, cfgFile, readChatTemplate(dir, cfgJson, cfgFile), readGenerationConfig(dir));
}

/** The chat template: chat_template.jinja, else tokenizer_config's `chat_template` (a string, or a list of named ones). */
function readChatTemplate(dir: string, cfg: Record<string, unknown>, cfgFile: string): { default?: string; named: Map<string, string> } {
  const named = new Map<string, string>();
  const ct = cfg.chat_template;
  if (typeof ct === "string") named.set("default", ct);
  else if (Array.isArray(ct)) {
    for (const [i, t] of ct.entries()) {
      if (!isObject(t) || typeof t.name !== "string" || typeof t.template !== "string") {
        throw new TrtbError("TOK_INVALID", `${cfgFile}: chat_template[${i}]: expected {name, template} strings`, { file: cfgFile });
      }
      named.set(t.name, t.template);
    }
  } else if (ct != null) throw new TrtbError("TOK_INVALID", `${cfgFile}: chat_template: expected a string or a list of {name, template}`, { file: cfgFile });
  const jinja = join(dir, CHAT_TEMPLATE_JINJA);
  if (existsSync(jinja)) named.set("default", readTextFile(jinja, trtbReadErrors(jinja, { missing: "TOK_MISSING_FILE", json: "TOK_INVALID" })));
  return { default: named.get("default") ?? (named.size === 1 ? [...named.values()][0] : undefined), named };
}

/** A special token of tokenizer_config: a string, an AddedToken dict `{content, …}`, or null. */
function specialTokenText(cfg: Record<string, unknown>, field: string, cfgFile: string): string | undefined {
  const v = cfg[field];
  if (v == null) return undefined;
  if (typeof v === "string") return v;
  if (isObject(v) && typeof v.content === "string") return v.content;
  throw new TrtbError("TOK_INVALID", `${cfgFile}: ${field}: expected a string or {"content": …}`, { file: cfgFile });
}

class HFBackedTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosIds: readonly number[];
  readonly padId: number | undefined;
  readonly unkId: number | undefined;
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly padToken: string | undefined;
  readonly unkToken: string | undefined;
  readonly specialIds: ReadonlySet<number>;
  readonly cleanUpTokenizationSpaces: boolean;
  readonly chatTemplate: string | undefined;
  /** +1 add a BOS the post-processor does not, -1 drop the one it adds, 0 leave it. */
  private readonly bosFix: -1 | 0 | 1 = 0;
  private readonly eosFix: -1 | 0 | 1 = 0;
  private readonly templates: Map<string, string>;
  private readonly compiled = new Map<string, Template>();

  constructor(
    readonly dir: string,
    private readonly hf: HFTokenizer,
    cfg: Record<string, unknown>,
    cfgFile: string,
    chat: { default?: string; named: Map<string, string> },
    readonly generationConfig: GenerationConfig | undefined,
  ) {
    this.vocabSize = hf.model?.vocab.length ?? 0;
    const idOf = (field: string): [string | undefined, number | undefined] => {
      const text = specialTokenText(cfg, field, cfgFile);
      if (text === undefined) return [undefined, undefined];
      const id = hf.token_to_id(text);
      if (id === undefined) throw new TrtbError("TOK_UNKNOWN_SPECIAL", `${cfgFile}: ${field} ${JSON.stringify(text)} is not a token of ${join(dir, TOKENIZER_JSON)}`, { file: cfgFile });
      return [text, id];
    };
    [this.bosToken, this.bosId] = idOf("bos_token");
    let eosId: number | undefined;
    [this.eosToken, eosId] = idOf("eos_token");
    [this.padToken, this.padId] = idOf("pad_token");
    [this.unkToken, this.unkId] = idOf("unk_token");
    const extra = cfg.additional_special_tokens;
    const extraIds: number[] = [];
    if (extra != null) {
      if (!Array.isArray(extra)) throw new TrtbError("TOK_INVALID", `${cfgFile}: additional_special_tokens: expected a list`, { file: cfgFile });
      for (const [i, t] of extra.entries()) {
        const text = typeof t === "string" ? t : isObject(t) && typeof t.content === "string" ? t.content : undefined;
        if (text === undefined) throw new TrtbError("TOK_INVALID", `${cfgFile}: additional_special_tokens[${i}]: expected a string or {"content": …}`, { file: cfgFile });
        const id = hf.token_to_id(text);
        if (id === undefined) throw new TrtbError("TOK_UNKNOWN_SPECIAL", `${cfgFile}: additional_special_tokens[${i}] ${JSON.stringify(text)} is not a token of ${join(dir, TOKENIZER_JSON)}`, { file: cfgFile });
        extraIds.push(id);
      }
    }

    const gc = generationConfig;
    if (gc) {
      for (const [what, id] of [["bos_token_id", gc.bosId], ["pad_token_id", gc.padId], ...gc.eosIds.map((id) => ["eos_token_id", id] as const)] as const) {
        if (id !== undefined && id >= this.vocabSize) throw new TrtbError("TOK_BAD_ID", `${gc.file}: ${what} ${id} is outside the vocabulary (${this.vocabSize} tokens)`, { file: gc.file });
      }
      this.bosId ??= gc.bosId;
      this.padId ??= gc.padId;
      if (this.bosToken === undefined && this.bosId !== undefined) this.bosToken = hf.id_to_token(this.bosId);
      if (this.padToken === undefined && this.padId !== undefined) this.padToken = hf.id_to_token(this.padId);
    }
    const eos = [...(eosId === undefined ? [] : [eosId]), ...(gc?.eosIds ?? [])];
    this.eosIds = [...new Set(eos)];
    if (this.eosToken === undefined && this.eosIds[0] !== undefined) this.eosToken = hf.id_to_token(this.eosIds[0]);

    const special = new Set<number>();
    for (const [id, t] of hf.get_added_tokens_decoder()) if (t.special) special.add(id);
    for (const id of [this.bosId, this.padId, this.unkId, ...this.eosIds, ...extraIds]) if (id !== undefined) special.add(id);
    this.specialIds = special;

    const cleanUp = cfg.clean_up_tokenization_spaces;
    if (cleanUp != null && typeof cleanUp !== "boolean") throw new TrtbError("TOK_INVALID", `${cfgFile}: clean_up_tokenization_spaces: expected true or false`, { file: cfgFile });
    this.cleanUpTokenizationSpaces = cleanUp ?? false;

    // What the post-processor adds, found by encoding a probe both ways; then tokenizer_config's say.
    const probe = "a";
    const plain = hf.encode(probe, { add_special_tokens: false }).ids;
    const withSpecial = hf.encode(probe, { add_special_tokens: true }).ids;
    const ppAddsBos = this.bosId !== undefined && withSpecial[0] === this.bosId && plain[0] !== this.bosId;
    const ppAddsEos = eosId !== undefined && withSpecial.at(-1) === eosId && plain.at(-1) !== eosId;
    for (const field of ["add_bos_token", "add_eos_token"]) {
      if (cfg[field] != null && typeof cfg[field] !== "boolean") throw new TrtbError("TOK_INVALID", `${cfgFile}: ${field}: expected true or false`, { file: cfgFile });
    }
    if (cfg.add_bos_token === true && !ppAddsBos) {
      if (this.bosId === undefined) throw new TrtbError("TOK_UNKNOWN_SPECIAL", `${cfgFile}: add_bos_token is true but no bos_token is defined`, { file: cfgFile });
      this.bosFix = 1;
    } else if (cfg.add_bos_token === false && ppAddsBos) this.bosFix = -1;
    if (cfg.add_eos_token === true && !ppAddsEos) {
      if (eosId === undefined) throw new TrtbError("TOK_UNKNOWN_SPECIAL", `${cfgFile}: add_eos_token is true but no eos_token is defined`, { file: cfgFile });
      this.eosFix = 1;
    } else if (cfg.add_eos_token === false && ppAddsEos) this.eosFix = -1;
    this.eosForAdd = eosId;

    this.templates = chat.named;
    this.chatTemplate = chat.default;
  }

  private readonly eosForAdd: number | undefined;

  get hasChatTemplate(): boolean {
    return this.chatTemplate !== undefined;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== "string") throw new TrtbError("TOK_BAD_INPUT", `encode: expected a string, got ${typeof text}`);
    const add = opts.addSpecialTokens ?? true;
    const ids = this.hf.encode(text, { add_special_tokens: add }).ids;
    if (!add) return ids;
    if (this.bosFix === 1) ids.unshift(this.bosId!);
    else if (this.bosFix === -1 && ids[0] === this.bosId) ids.shift();
    if (this.eosFix === 1) ids.push(this.eosForAdd!);
    else if (this.eosFix === -1 && ids.at(-1) === this.eosForAdd) ids.pop();
    return ids;
  }

  encodePrompt(text: string, opts: EncodeOptions = {}): number[] {
    const ids = this.encode(text, opts);
    if (ids.length === 0) throw new TrtbError("TOK_EMPTY_PROMPT", "the prompt is empty: it encodes to no tokens (and this tokenizer adds no BOS)");
    return ids;
  }

  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const list = Array.from(ids);
    for (const [i, id] of list.entries()) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new TrtbError("TOK_BAD_ID", `decode: ids[${i}] = ${id} is not a token id (vocabulary of ${this.vocabSize} in ${join(this.dir, TOKENIZER_JSON)})`);
      }
    }
    if (list.length === 0) return "";
    const skip = opts.skipSpecialTokens ?? false;
    const kept = skip ? list.filter((id) => !this.specialIds.has(id)) : list;
    if (kept.length === 0) return "";
    return this.hf.decode(kept, { skip_special_tokens: skip, clean_up_tokenization_spaces: opts.cleanUpTokenizationSpaces ?? this.cleanUpTokenizationSpaces });
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatTemplateOptions = {}): string {
    const where = join(this.dir, CHAT_TEMPLATE_JINJA) + " / " + TOKENIZER_CONFIG_JSON;
    // A named "tool_use" template (tokenizer_config list form) is the one for calls with tools.
    const name = opts.tools && this.templates.has("tool_use") ? "tool_use" : "default";
    const source = name === "default" ? this.chatTemplate : this.templates.get(name);
    if (source === undefined) throw new TrtbError("TOK_NO_CHAT_TEMPLATE", `${this.dir}: no chat template (neither ${CHAT_TEMPLATE_JINJA} nor chat_template in ${TOKENIZER_CONFIG_JSON})`);
    if (!Array.isArray(messages)) throw new TrtbError("TOK_BAD_MESSAGE", "applyChatTemplate: messages must be a list of {role, content}");
    const all: ChatMessage[] = opts.system !== undefined ? [{ role: "system", content: opts.system }, ...messages] : [...messages];
    if (all.length === 0) throw new TrtbError("TOK_EMPTY_PROMPT", "applyChatTemplate: no messages");
    for (const [i, m] of all.entries()) {
      if (!isObject(m) || typeof m.role !== "string" || m.role === "") throw new TrtbError("TOK_BAD_MESSAGE", `messages[${i}]: needs a non-empty string "role"`);
      if (!(typeof m.content === "string" || m.content === null || Array.isArray(m.content))) throw new TrtbError("TOK_BAD_MESSAGE", `messages[${i}] (${m.role}): "content" must be a string, null or a list of parts`);
    }
    for (const k of Object.keys(opts.templateVars ?? {})) {
      if (RESERVED_TEMPLATE_VARS.has(k)) throw new TrtbError("TOK_BAD_INPUT", `templateVars: ${JSON.stringify(k)} is a name the template runtime defines itself`);
    }
    let template = this.compiled.get(name);
    if (!template) {
      try {
        template = new Template(source);
      } catch (e) {
        throw new TrtbError("TOK_TEMPLATE", `${where}: the chat template does not parse: ${(e as Error).message}`, { cause: e });
      }
      this.compiled.set(name, template);
    }
    const vars: Record<string, unknown> = {
      bos_token: this.bosToken ?? "",
      eos_token: this.eosToken ?? "",
      pad_token: this.padToken ?? null,
      unk_token: this.unkToken ?? null,
      tools: opts.tools ?? null,
      ...opts.templateVars,
      messages: all,
      add_generation_prompt: opts.addGenerationPrompt ?? false,
    };
    try {
      return template.render(vars);
    } catch (e) {
      // raise_exception(msg) in a template throws a plain Error(msg): the template refusing the conversation.
      throw new TrtbError("TOK_TEMPLATE", `chat template: ${(e as Error).message}`, { cause: e });
    }
  }

  encodeChat(messages: readonly ChatMessage[], opts: ChatTemplateOptions = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, opts), { addSpecialTokens: false });
  }
}
