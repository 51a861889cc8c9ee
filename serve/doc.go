// Package serve answers OpenAI's HTTP API (chat completions, completions,
// models) from one base model loaded once and any number of LoRA adapters
// over it: a run folder's, a sweep's trials', an adapter file's or a
// published run's. A request's "model" picks the base or an adapter.
// Prompts are rendered and tokenized as training rendered them
// (datasets.Renderer, the run's chat template and system prompt), and
// answers are decoded through internal/llama as eval decodes them: greedy
// unless a temperature is given, ending at the model's end-of-generation
// tokens or a stop string.
package serve
