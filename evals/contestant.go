package evals

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/finetune-dev/finetune/datasets"
)

// Case is one eval case, as datasets renders it: the prompt as chat
// messages (what Ollama and OpenAI contestants send), the same prompt
// rendered and tokenized exactly as training rendered it (what local
// contestants decode), the reference answer and an optional label.
type Case = datasets.Case

// Message is one chat turn.
type Message = datasets.Message

// Settings control generation. The zero value is greedy decoding
// (temperature 0) of at most 256 tokens.
type Settings struct {
	Temperature float64  `json:"temperature"`
	TopP        float64  `json:"top_p,omitempty"` // 0 or 1: off
	MaxTokens   int      `json:"max_tokens"`      // 0: 256
	Stop        []string `json:"stop,omitempty"`  // generation ends before the first of these
	Seed        int64    `json:"seed"`
	// Choices, when given, restrict a local contestant's answer to exactly
	// one of these strings (constrained decoding with llama.cpp's grammar
	// sampler); the choice is the whole answer, and MaxTokens is raised
	// to hold the longest (its length in bytes, plus one). API contestants
	// refuse them.
	Choices []string `json:"choices,omitempty"`
}

// DefaultMaxTokens is the answer length limit when Settings.MaxTokens is 0.
const DefaultMaxTokens = 256

// Local is s as a local contestant generates with it: the defaults
// filled in and, with choices, MaxTokens raised to hold the longest. The
// grammar bounds an answer: a choice's bytes and the optional space
// before it are the most tokens it can take, and a lower max_tokens would
// only cut choices off.
func (s Settings) Local() Settings {
	s = s.withDefaults()
	for _, c := range s.Choices {
		s.MaxTokens = max(s.MaxTokens, len(c)+1)
	}
	return s
}

func (s Settings) withDefaults() Settings {
	if s.MaxTokens <= 0 {
		s.MaxTokens = DefaultMaxTokens
	}
	return s
}

// Price is what a contestant costs, in dollars per million tokens.
type Price struct {
	InputPerMillion  float64 `json:"input_per_million"`
	OutputPerMillion float64 `json:"output_per_million"`
}

// Cost is the price of u.
func (p Price) Cost(u Usage) float64 {
	return (float64(u.PromptTokens)*p.InputPerMillion + float64(u.CompletionTokens)*p.OutputPerMillion) / 1e6
}

// Usage counts tokens.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

func (u *Usage) add(v Usage) {
	u.PromptTokens += v.PromptTokens
	u.CompletionTokens += v.CompletionTokens
}

// Answer is a contestant's answer to one case.
type Answer struct {
	Text    string
	Usage   Usage
	Latency time.Duration
	// Retries is how many failed attempts preceded this answer.
	Retries int
	// Tokens are the generated tokens, for in-process contestants (the end
	// of generation and stop strings excluded; nil from a cache or a
	// server).
	Tokens []int32
	// FinishReason is why the answer ended: FinishStop (the model ended
	// it, or a stop string), FinishLength (it hit MaxTokens or the
	// context), or "" when unknown (a server that did not say, an answer
	// cached before finetune kept it).
	FinishReason string
}

// Why an answer ended (Answer.FinishReason; OpenAI's finish_reason and
// Ollama's done_reason use the same words).
const (
	FinishStop   = "stop"
	FinishLength = "length"
)

// Info describes a contestant for reports and for the response cache.
type Info struct {
	Kind        string   `json:"kind"` // "local", "ollama", "openai", ...
	Model       string   `json:"model"`
	Endpoint    string   `json:"endpoint,omitempty"` // server URL; never holds a key
	Adapters    []string `json:"adapters,omitempty"`
	Settings    Settings `json:"settings"`
	Concurrency int      `json:"concurrency"` // cases in flight at once (at least 1)
	Price       Price    `json:"price"`
	// Retry is how patient Run is with an API contestant (nil: a
	// contestant that makes no requests); its Budget bounds the time Run
	// spends asking it.
	Retry *Retry `json:"retry,omitempty"`
	// Identity is what makes two contestants give the same answers (model
	// digest, adapter digests and scales, endpoint, settings). The response
	// cache is keyed by it and the prompt; "" turns caching off. It is
	// complete only after Start.
	Identity string `json:"-"`
}

// Contestant answers eval cases. Answer may be called concurrently, up to
// Info().Concurrency calls at a time.
type Contestant interface {
	// Name is how reports and gates refer to the contestant ("base",
	// "tuned", "gpt-4o"): letters, digits, '_' and '-'.
	Name() string
	Info() Info
	Answer(ctx context.Context, c Case) (Answer, error)
}

// Starter is implemented by contestants that must prepare before the first
// answer (load weights, check that a server has the model, digest files).
// Run calls Start once; an error fails that contestant only.
type Starter interface {
	Start(ctx context.Context) error
}

// Batcher is implemented by contestants that answer several cases faster
// together than one by one (a local model decoding several sequences per
// batch). Run hands them up to BatchSize cases at a time instead of calling
// Answer concurrently.
type Batcher interface {
	BatchSize() int
	// AnswerBatch answers cases; errs[i] is the error of case i.
	AnswerBatch(ctx context.Context, cases []Case) (answers []Answer, errs []error)
}

// Streamer is a Batcher that reports every answer as soon as it is
// complete. Run hands it every case it has to ask at once, so a contestant
// that decodes many cases together (a local model with continuous
// batching) keeps its batch full to the last case, and each answer is
// cached and shown as it comes.
type Streamer interface {
	Batcher
	// AnswerEach answers cases, calling done exactly once per case, one
	// call at a time, with its answer or its error. When ctx ends, the
	// cases not answered get its error.
	AnswerEach(ctx context.Context, cases []Case, done func(i int, a Answer, err error))
}

// identity hashes the parts that make a contestant's answers what they are.
func identity(parts ...any) string {
	b, err := json.Marshal(parts)
	if err != nil {
		panic(err) // only plain data is passed
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// FatalError marks an error that no retry and no other case can cure (a
// rejected API key, a model the server does not have): Run stops asking that
// contestant.
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return e.Err.Error() }
func (e *FatalError) Unwrap() error { return e.Err }

// errNoChoices is the error of an API contestant given Settings.Choices:
// constrained decoding needs the sampler, which only a local contestant
// has.
func errNoChoices(name string) error {
	return fmt.Errorf("contestant %s: choices (constrained decoding) work for local contestants only", name)
}
