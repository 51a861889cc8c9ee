// Package evals runs one eval suite against every contestant and reports,
// side by side, what fine-tuning bought.
//
// A [Suite] is a list of cases ([Case], made by datasets.Renderer.Case: the
// prompt as rendered for chat, a reference answer, an optional label) and
// the [Metric]s to score them with. A [Contestant] answers cases: the base
// and the tuned model in-process through llama.cpp ([NewLocal], continuous
// batching of many sequences per decode), a model on an Ollama server ([NewOllama]) or any
// OpenAI-compatible API ([NewOpenAI]), each with its own generation
// [Settings] (temperature 0 by default), concurrency limit and prices.
//
// [Run] asks every contestant every case, concurrently, retrying rate limits
// (429 with Retry-After), server errors, timeouts and dropped connections
// with exponential backoff and jitter, and keeps every answer in an on-disk
// cache keyed by what the contestant is (kind, model, endpoint, weights
// digest, settings) and the prompt, so an interrupted or repeated run never
// pays twice. It then scores the answers (exact match, contains, regex,
// token F1, ROUGE-L, label accuracy with macro-F1 and confusion matrix, JSON
// validity, and LLM judges: rubric scores and position-balanced pairwise
// preference), and compares every contestant with the base contestant with
// paired bootstrap 95% confidence intervals and wins, ties and losses.
// Each contestant's status says what happened: ok (every case answered),
// partial or failed, with why; scores and comparisons say over how many
// cases, and the others' results stand.
//
// [WriteReports] writes results.json (every case, answer, score, usage and
// latency), report.md and report.html (one self-contained file: headline
// table, SVG charts, every case side by side, filterable). [ParseGate] reads
// a CI gate such as "tuned.accuracy - base.accuracy >= 0.05".
//
// API keys are read from the environment variable a contestant names and
// are removed, wherever a server echoes them, from every answer, error, log
// line, result, report and cache file.
package evals
