/**
 * Streaming text out of generated ids.
 *
 * `IncrementalDetokenizer` (vLLM's prefix-window scheme): each step decodes a short window of ids
 * twice — up to the last emitted position and up to the newest id — and emits the difference, but
 * only once the decoded text does not end in U+FFFD. A character split over several ids (Llama-3
 * needs 3 byte-level ids for some emoji, SentencePiece byte fallback up to 4 `<0x..>` ids) is held
 * back until complete, so a stream never carries a broken UTF-8 character. Decoding a window (not
 * one id alone) keeps the spaces SentencePiece decoders strip at the start of a text.
 *
 * `StopStringMatcher` holds back text that could be the start of a stop string and cuts the
 * stream at the first stop string, also when it spans several pushes (token boundaries).
 *
 * `TextStream` puts both together with stop ids (eos): push ids, get the new text and whether
 * generation is finished.
 */
import { TrtbError } from "../errors.ts";
import type { Tokenizer } from "./tokenizer.ts";

const REPLACEMENT = "\uFFFD";
/** Prompt ids kept as decoding context in front of the first generated id (vLLM uses 5). */
const PROMPT_CONTEXT = 5;
/** A character needs at most 4 ids (4 bytes); past this many held ids, text is emitted even if it ends in U+FFFD. */
const MAX_HELD_IDS = 6;

export interface DetokenizerOptions {
  /** Leave special tokens out of the text. Default true. */
  skipSpecialTokens?: boolean;
  /** The prompt's ids: the last few are decoding context (never emitted), so the first word keeps its leading space. */
  promptIds?: ArrayLike<number>;
}

export class IncrementalDetokenizer {
  private readonly ids: number[] = [];
  /** Start of the decoding window. */
  private prefixOffset: number;
  /** End of what has been emitted. */
  private readOffset: number;
  private readonly skip: boolean;
  private emitted = "";

  constructor(
    private readonly tokenizer: Tokenizer,
    opts: DetokenizerOptions = {},
  ) {
    this.skip = opts.skipSpecialTokens ?? true;
    const prompt = opts.promptIds ? Array.from(opts.promptIds) : [];
    const context = prompt.slice(Math.max(0, prompt.length - PROMPT_CONTEXT));
    this.ids.push(...context);
    this.prefixOffset = 0;
    this.readOffset = context.length;
  }

  /** Everything emitted so far. */
  get text(): string {
    return this.emitted;
  }

  /** Add one id or several; returns the text that became complete (possibly ""). */
  push(id: number | ArrayLike<number>): string {
    if (typeof id === "number") this.ids.push(id);
    else this.ids.push(...Array.from(id));
    return this.step(false);
  }

  /** End of stream: emit what is still held back (an incomplete character becomes U+FFFD). */
  flush(): string {
    return this.step(true);
  }

  private step(force: boolean): string {
    if (this.readOffset >= this.ids.length) return "";
    const decode = (ids: number[]) => this.tokenizer.decode(ids, { skipSpecialTokens: this.skip, cleanUpTokenizationSpaces: false });
    const prefix = decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = decode(this.ids.slice(this.prefixOffset));
    const held = this.ids.length - this.readOffset;
    if (full.length > prefix.length && (force || held > MAX_HELD_IDS || !full.endsWith(REPLACEMENT))) {
      // The window's text normally extends the prefix's; when a decoder rewrites it (rare), emit from the first difference.
      let common = prefix.length;
      if (!full.startsWith(prefix)) {
        common = 0;
        while (common < prefix.length && full.charCodeAt(common) === prefix.charCodeAt(common)) common++;
      }
      const out = full.slice(common);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      this.emitted += out;
      return out;
    }
    // Ids that decode to nothing (skipped special tokens): nothing to hold.
    if (force || full.length <= prefix.length) this.readOffset = this.ids.length;
    return "";
  }
}

export interface StopMatch {
  /** Text safe to show now. */
  text: string;
  /** A stop string was found: `text` ends just before it (or after it, with includeStop); nothing follows. */
  stopped: boolean;
  /** The stop string found. */
  stop?: string;
}

export class StopStringMatcher {
  private held = "";
  private done = false;
  private readonly stops: string[];
  private readonly maxLen: number;

  constructor(
    stops: readonly string[],
    private readonly opts: { includeStop?: boolean } = {},
  ) {
    for (const [i, s] of stops.entries()) {
      if (typeof s !== "string" || s.length === 0) throw new TrtbError("TOK_BAD_STOP", `stop strings[${i}]: must be a non-empty string`);
    }
    this.stops = [...new Set(stops)];
    this.maxLen = Math.max(0, ...this.stops.map((s) => s.length));
  }

  get stopped(): boolean {
    return this.done;
  }

  /** Add text; returns what can be shown: text that cannot be part of a stop string, cut at a stop string. */
  push(text: string): StopMatch {
    if (this.done) return { text: "", stopped: true };
    const buf = this.held + text;
    // The earliest stop string wins; at one position, the longest.
    let at = -1;
    let stop = "";
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (at < 0 || i < at || (i === at && s.length > stop.length))) {
        at = i;
        stop = s;
      }
    }
    if (at >= 0) {
      this.done = true;
      this.held = "";
      return { text: buf.slice(0, this.opts.includeStop ? at + stop.length : at), stopped: true, stop };
    }
    // Hold the longest tail that is a proper prefix of some stop string.
    let keep = 0;
    for (let k = Math.min(this.maxLen - 1, buf.length); k > 0; k--) {
      const tail = buf.slice(buf.length - k);
      if (this.stops.some((s) => s.startsWith(tail))) {
        keep = k;
        break;
      }
    }
    this.held = buf.slice(buf.length - keep);
    return { text: buf.slice(0, buf.length - keep), stopped: false };
  }

  /** End of stream without a stop string: release the held text. */
  flush(): string {
    if (this.done) return "";
    const out = this.held;
    this.held = "";
    return out;
  }
}

export type FinishReason = "stop_id" | "stop_string";

export interface TextStreamOptions extends DetokenizerOptions {
  /** Ids that end generation; default the tokenizer's `eosIds`. Their text is not emitted. */
  stopIds?: readonly number[];
  stopStrings?: readonly string[];
  /** Keep the stop string at the end of the text. Default false. */
  includeStopString?: boolean;
}

export interface TextStreamStep {
  /** New text to show. */
  text: string;
  /** Generation is finished (a stop id or stop string was seen); further pushes are ignored. */
  done: boolean;
  finishReason?: FinishReason;
  /** The stop id or stop string that finished it. */
  stop?: number | string;
}

/** Generated ids in, safe text out: incremental detokenization, stop ids and stop strings. */
export class TextStream {
  private readonly detok: IncrementalDetokenizer;
  private readonly matcher: StopStringMatcher;
  private readonly stopIds: ReadonlySet<number>;
  private out = "";
  private finished: TextStreamStep | undefined;

  constructor(tokenizer: Tokenizer, opts: TextStreamOptions = {}) {
    this.detok = new IncrementalDetokenizer(tokenizer, opts);
    this.matcher = new StopStringMatcher(opts.stopStrings ?? [], { includeStop: opts.includeStopString ?? false });
    this.stopIds = new Set(opts.stopIds ?? tokenizer.eosIds);
  }

  /** All text emitted so far. */
  get text(): string {
    return this.out;
  }

  get done(): boolean {
    return this.finished !== undefined;
  }

  get finishReason(): FinishReason | undefined {
    return this.finished?.finishReason;
  }

  push(id: number): TextStreamStep {
    if (this.finished) return { text: "", done: true };
    if (this.stopIds.has(id)) {
      const tail = this.matcher.push(this.detok.flush());
      const text = tail.stopped ? tail.text : tail.text + this.matcher.flush();
      return this.finish(text, tail.stopped ? { finishReason: "stop_string", stop: tail.stop! } : { finishReason: "stop_id", stop: id });
    }
    const m = this.matcher.push(this.detok.push(id));
    if (m.stopped) return this.finish(m.text, { finishReason: "stop_string", stop: m.stop! });
    this.out += m.text;
    return { text: m.text, done: false };
  }

  /** End of generation without a stop (length limit): the text still held back. */
  flush(): string {
    if (this.finished) return "";
    const m = this.matcher.push(this.detok.flush());
    const text = m.stopped ? m.text : m.text + this.matcher.flush();
    this.out += text;
    return text;
  }

  private finish(text: string, why: { finishReason: FinishReason; stop: number | string }): TextStreamStep {
    this.out += text;
    this.finished = { text, done: true, ...why };
    return this.finished;
  }
}
