// Package datasets turns the files users have into what training and
// evaluation consume, rendered exactly as the model sees it when served.
//
// Reading ([Open], [Reader]) streams JSON Lines, JSON arrays, CSV/TSV with a
// header row and Parquet (nested list-of-struct columns included, as Hugging
// Face datasets write them), gzip-compressed or not, from a file, a folder
// or a glob, one record at a time. Records in the OpenAI chat, ShareGPT,
// Alpaca, prompt/completion and plain-text formats are detected from each
// file's first record, or named, with any columns mapped to prompt,
// response, system and label ([ReadOptions]). A bad row is a [RowError] that
// names the file and line (Parquet: row and row group), the field and what
// was expected.
//
// Rendering ([Renderer]) goes through llama.cpp's own chat template code
// and tokenizer (internal/llama), the code that serves the tuned model: the
// context of every trained assistant answer is token for token the prompt
// generation renders and tokenizes for that turn, and the answer ends with
// the end-of-turn token that stops generation. Only answers are trained by
// default ([Example] weights), and a template whose turns would not stop
// generation is refused.
//
// [Scan] ties it together for a recipe's [Config]: eval split (a separate
// file, or a seeded share of the prompts), duplicate removal, a leakage
// check, the length rule (drop or truncate) and bad-row handling, and a
// [Report] for `finetune data inspect`.
//
// Packing ([Packer], [Pack]) fills context windows ([Window]) with whole
// examples, keeping each example's positions and sequence index for the
// trainer's block-diagonal attention mask. Packing is streaming: a trainer
// feeds a Packer from Scan and stores the windows, then visits them each
// epoch in [Shuffle]'s order, a permutation fixed by the seed and the epoch.
package datasets
