/**
 * The text layer: tokenizer (tokenizer.json + tokenizer_config.json, chat templates), generation
 * config defaults, streaming detokenization with stop ids and stop strings, and the list of
 * tokenizer files that travel with checkpoints and engines.
 */
export {
  CHAT_TEMPLATE_JINJA,
  type ChatMessage,
  type ChatTemplateOptions,
  type DecodeOptions,
  type EncodeOptions,
  loadTokenizer,
  TOKENIZER_CONFIG_JSON,
  TOKENIZER_JSON,
  type Tokenizer,
} from "./tokenizer.ts";
export {
  GENERATION_CONFIG_FILE,
  type GenerationConfig,
  GenerationConfigSchema,
  parseGenerationConfig,
  readGenerationConfig,
  type SamplingDefaults,
  samplingDefaults,
} from "./generation-config.ts";
export {
  type DetokenizerOptions,
  type FinishReason,
  IncrementalDetokenizer,
  type StopMatch,
  StopStringMatcher,
  TextStream,
  type TextStreamOptions,
  type TextStreamStep,
} from "./detokenize.ts";
export { carryTokenizerFiles, checkTokenizerDir, copyTokenizerFiles, listTokenizerFiles, TOKENIZER_FILES } from "./files.ts";
