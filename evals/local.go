package evals

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/finetune-dev/finetune/internal/cpuload"
	"github.com/finetune-dev/finetune/internal/filehash"
	"github.com/finetune-dev/finetune/internal/llama"
)

// AdapterSpec is a LoRA adapter applied to a local model.
type AdapterSpec struct {
	Path  string  `json:"path"`
	Scale float64 `json:"scale"` // 0: 1
}

// LocalOptions configure a model run in-process through llama.cpp.
type LocalOptions struct {
	Model string // GGUF file
	// Device is the ggml device the model runs on ("CUDA0"; "": the CPU).
	Device   string
	Adapters []AdapterSpec
	Settings Settings
	// Sequences is how many cases are decoded together, one sequence each
	// in every decode call (0: 8; 1 turns batching off).
	Sequences int
	// Threads for decoding (0: every core).
	Threads int
	// Template renders cases that come without PromptTokens and
	// RenderedPrompt: "" for the model's own chat template, or a llama.cpp
	// built-in name. Cases made by datasets carry their tokens and never
	// need it.
	Template string
	// Price is what serving the model costs per million tokens (a host's
	// hourly rate spread over its throughput), for the report's cost
	// columns; zero: not counted.
	Price Price
}

// Local is a GGUF model, optionally with LoRA adapters, answering in-process
// through llama.cpp. Cases are answered in waves of Sequences: their prompts
// are decoded together, then one token of every unfinished sequence per
// decode call, so one pass over the weights serves them all. Each sequence
// has its own sampler seeded with Settings.Seed, so a case's answer does not
// depend on which cases share its wave. Close it when done.
type Local struct {
	name     string
	opts     LocalOptions
	model    *llama.Model
	adapters []*llama.Adapter

	mu       sync.Mutex // one wave at a time
	ctx      *llama.Context
	identity string
}

// cpu serialises waves of all local contestants: two models decoding at
// once on the same cores only slow each other down (ggml's threads
// spin-wait).
var cpu sync.Mutex

// NewLocal loads the model and its adapters.
func NewLocal(name string, o LocalOptions) (*Local, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if o.Sequences <= 0 {
		o.Sequences = 8
	}
	if o.Threads <= 0 {
		o.Threads = runtime.NumCPU()
	}
	o.Settings = o.Settings.Local()
	var paths []string
	for _, a := range o.Adapters {
		paths = append(paths, a.Path)
	}
	model, err := llama.BaseFor(o.Model, paths)
	if err != nil {
		return nil, fmt.Errorf("contestant %s: %w", name, err)
	}
	m, err := llama.LoadModel(model, llama.ModelOptions{Device: o.Device})
	if err != nil {
		return nil, fmt.Errorf("contestant %s: %w", name, err)
	}
	l := &Local{name: name, opts: o, model: m}
	for i, a := range o.Adapters {
		ad, err := llama.LoadAdapter(m, a.Path)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("contestant %s: %w", name, err)
		}
		l.adapters = append(l.adapters, ad)
		if a.Scale == 0 {
			l.opts.Adapters[i].Scale = 1
		}
	}
	return l, nil
}

// Close frees the context, the adapters and the model.
func (l *Local) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx != nil {
		l.ctx.Close()
		l.ctx = nil
	}
	for _, a := range l.adapters {
		a.Close()
	}
	l.adapters = nil
	if l.model != nil {
		l.model.Close()
		l.model = nil
	}
}

// Name implements Contestant.
func (l *Local) Name() string { return l.name }

// Info implements Contestant. Its Identity holds the SHA-256 of the model
// and adapter files once Start has run.
func (l *Local) Info() Info {
	var ads []string
	for _, a := range l.opts.Adapters {
		ads = append(ads, fmt.Sprintf("%s (scale %g)", a.Path, a.Scale))
	}
	return Info{Kind: "local", Model: l.opts.Model, Adapters: ads, Settings: l.opts.Settings, Concurrency: 1, Price: l.opts.Price, Identity: l.identity}
}

// Start digests the model and adapter files for the response cache.
func (l *Local) Start(ctx context.Context) error {
	if l.identity != "" {
		return nil
	}
	parts := []any{"local"}
	d, _, err := filehash.SHA256(l.opts.Model)
	if err != nil {
		return err
	}
	parts = append(parts, d)
	for _, a := range l.opts.Adapters {
		d, _, err := filehash.SHA256(a.Path)
		if err != nil {
			return err
		}
		parts = append(parts, d, a.Scale)
	}
	l.identity = identity(append(parts, l.opts.Settings, l.opts.Template)...)
	return nil
}

// BatchSize implements Batcher.
func (l *Local) BatchSize() int { return l.opts.Sequences }

// Answer implements Contestant.
func (l *Local) Answer(ctx context.Context, c Case) (Answer, error) {
	as, errs := l.AnswerBatch(ctx, []Case{c})
	return as[0], errs[0]
}

// AnswerBatch implements Batcher: cases are answered in waves of
// Sequences. An answer's latency is the time from the start of its wave to
// its last token.
func (l *Local) AnswerBatch(ctx context.Context, cases []Case) ([]Answer, []error) {
	answers := make([]Answer, len(cases))
	errs := make([]error, len(cases))
	for i := 0; i < len(cases); i += l.opts.Sequences {
		end := min(i+l.opts.Sequences, len(cases))
		l.wave(ctx, cases[i:end], answers[i:end], errs[i:end])
	}
	return answers, errs
}

// seqState is one sequence of a wave.
type seqState struct {
	idx     int // into the wave's cases
	prompt  []llama.Token
	pos     int // next position
	last    llama.Token
	sampler *llama.Sampler
	text    []byte
	tokens  []int32
	n       int // generated tokens
	done    bool
	reason  string    // FinishStop or FinishLength, once done
	end     time.Time // when the answer was complete
}

func (l *Local) wave(ctx context.Context, cases []Case, answers []Answer, errs []error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cpu.Lock()
	defer cpu.Unlock()
	if l.model == nil {
		for i := range errs {
			errs[i] = errors.New("contestant closed")
		}
		return
	}
	s := l.opts.Settings
	var seqs []*seqState
	longest := 0
	for i, c := range cases {
		toks, err := l.promptTokens(c)
		if err != nil {
			errs[i] = err
			continue
		}
		if len(toks) >= l.model.ContextLength() {
			errs[i] = fmt.Errorf("the prompt has %d tokens but the model's context holds %d", len(toks), l.model.ContextLength())
			continue
		}
		seqs = append(seqs, &seqState{idx: i, prompt: toks})
		longest = max(longest, len(toks))
	}
	if len(seqs) == 0 {
		return
	}
	if err := l.ensureContext(min(longest+s.MaxTokens, l.model.ContextLength())); err != nil {
		for _, q := range seqs {
			errs[q.idx] = err
		}
		return
	}
	// A decode that fails (or a cancelled ctx) fails the sequences still
	// running; those already done keep their answers.
	fail := func(err error) {
		for _, q := range seqs {
			if !q.done {
				errs[q.idx] = err
			}
		}
	}
	l.ctx.Reset()
	start := time.Now()
	defer func() {
		for _, q := range seqs {
			if q.done {
				text := strings.ToValidUTF8(string(q.text), "\uFFFD")
				if len(s.Choices) > 0 {
					// The grammar lets the answer start with a space
					// (see llama.SampleOptions.Choices): the choice
					// is what follows it.
					text = choiceText(text, s.Choices)
				}
				answers[q.idx] = Answer{
					Text:         text,
					Usage:        Usage{PromptTokens: len(q.prompt), CompletionTokens: q.n},
					Latency:      q.end.Sub(start),
					Tokens:       q.tokens,
					FinishReason: q.reason,
				}
			}
		}
	}()
	for _, q := range seqs {
		sp, err := llama.NewSampler(l.model, llama.SampleOptions{Temperature: float32(s.Temperature), TopP: float32(s.TopP), Seed: uint32(s.Seed), Choices: s.Choices})
		if err != nil {
			fail(err)
			return
		}
		q.sampler = sp
		defer q.sampler.Close()
	}

	// Prompts: every sequence's tokens in as few decode calls as the batch
	// size allows; a sequence's first token is sampled right after the
	// call that holds its last prompt token (the next call overwrites the
	// logits).
	type slot struct {
		q *seqState
		i int
	}
	batch := make([]llama.BatchToken, 0, l.ctx.BatchSize())
	var sample []slot
	decodes := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// llama.cpp's workers spin while they wait for each other: take
		// only the cores other work leaves free, looked at every 32
		// decode calls.
		if decodes%32 == 0 {
			l.ctx.SetThreads(cpuload.Threads(l.opts.Threads))
		}
		decodes++
		if err := l.ctx.Decode(batch); err != nil {
			return err
		}
		for _, sl := range sample {
			l.accept(sl.q, sl.q.sampler.Sample(l.ctx, sl.i))
		}
		batch, sample = batch[:0], sample[:0]
		return nil
	}
	for si, q := range seqs {
		for p, t := range q.prompt {
			if len(batch) == cap(batch) {
				if err := flush(); err != nil {
					fail(err)
					return
				}
			}
			isLast := p == len(q.prompt)-1
			batch = append(batch, llama.BatchToken{Token: t, Pos: p, Seq: si, Logits: isLast})
			if isLast {
				sample = append(sample, slot{q, len(batch) - 1})
			}
		}
		q.pos = len(q.prompt)
	}
	if err := flush(); err != nil {
		fail(err)
		return
	}
	// Generation: one token of every unfinished sequence per decode call.
	for {
		batch = batch[:0]
		sample = sample[:0]
		for si, q := range seqs {
			if q.done {
				continue
			}
			if q.pos >= l.ctx.Size() {
				l.finish(q, FinishLength) // the context is full
				continue
			}
			batch = append(batch, llama.BatchToken{Token: q.last, Pos: q.pos, Seq: si, Logits: true})
			sample = append(sample, slot{q, len(batch) - 1})
			q.pos++
		}
		if len(batch) == 0 {
			break
		}
		if err := flush(); err != nil {
			fail(err)
			return
		}
	}
}

// Piece is the text of one token of the model's vocabulary.
func (l *Local) Piece(t int32) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.model == nil {
		return ""
	}
	return string(l.model.Piece(t, false))
}

// LogProbs returns the log-probabilities, over the vocabulary, of the
// token that follows c's prompt and then the tokens after (a prefix of an
// answer). Where two models' greedy answers part, they say how close the
// choice was in each.
func (l *Local) LogProbs(ctx context.Context, c Case, after []int32) ([]float64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cpu.Lock()
	defer cpu.Unlock()
	if l.model == nil {
		return nil, errors.New("contestant closed")
	}
	prompt, err := l.promptTokens(c)
	if err != nil {
		return nil, err
	}
	all := append(append(make([]llama.Token, 0, len(prompt)+len(after)), prompt...), after...)
	if len(all) >= l.model.ContextLength() {
		return nil, fmt.Errorf("%d tokens do not fit the model's context of %d", len(all), l.model.ContextLength())
	}
	if err := l.ensureContext(len(all) + 1); err != nil {
		return nil, err
	}
	l.ctx.Reset()
	var batch []llama.BatchToken
	for i := 0; i < len(all); i += l.ctx.BatchSize() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch = batch[:0]
		for j := i; j < min(i+l.ctx.BatchSize(), len(all)); j++ {
			batch = append(batch, llama.BatchToken{Token: all[j], Pos: j, Logits: j == len(all)-1})
		}
		if err := l.ctx.Decode(batch); err != nil {
			return nil, err
		}
	}
	logits := l.ctx.Logits(len(batch) - 1)
	if logits == nil {
		return nil, errors.New("llama.cpp gave no logits")
	}
	peak := math.Inf(-1)
	for _, v := range logits {
		peak = max(peak, float64(v))
	}
	sum := 0.0
	for _, v := range logits {
		sum += math.Exp(float64(v) - peak)
	}
	norm := peak + math.Log(sum)
	lp := make([]float64, len(logits))
	for i, v := range logits {
		lp[i] = float64(v) - norm
	}
	return lp, nil
}

// accept records a sampled token: the end of the answer (end-of-generation
// token, a stop string: FinishStop; MaxTokens: FinishLength) or one more
// token to decode.
func (l *Local) accept(q *seqState, tok llama.Token) {
	s := l.opts.Settings
	if l.model.IsEndOfGeneration(tok) {
		l.finish(q, FinishStop)
		return
	}
	q.n++
	q.tokens = append(q.tokens, int32(tok))
	q.text = append(q.text, l.model.Piece(tok, false)...)
	q.last = tok
	if len(s.Stop) > 0 {
		text := string(q.text)
		cut := -1
		for _, stop := range s.Stop {
			if i := strings.Index(text, stop); i >= 0 && stop != "" && (cut < 0 || i < cut) {
				cut = i
			}
		}
		if cut >= 0 {
			q.text = q.text[:cut]
			l.finish(q, FinishStop)
			return
		}
	}
	if len(s.Choices) > 0 && chosen(choiceText(string(q.text), s.Choices), s.Choices) {
		l.finish(q, FinishStop) // the grammar allows nothing but the end now
		return
	}
	if q.n >= s.MaxTokens {
		l.finish(q, FinishLength)
	}
}

// choiceText is a constrained answer without the space the grammar
// allows before a choice, unless the choice itself starts with it.
func choiceText(text string, choices []string) string {
	if slices.Contains(choices, text) {
		return text
	}
	return strings.TrimPrefix(text, " ")
}

// chosen reports whether text is one of the choices and the start of no
// other: an answer that can only end.
func chosen(text string, choices []string) bool {
	found := false
	for _, c := range choices {
		switch {
		case c == text:
			found = true
		case strings.HasPrefix(c, text):
			return false
		}
	}
	return found
}

// finish marks q done, for reason.
func (l *Local) finish(q *seqState, reason string) {
	q.done = true
	q.reason = reason
	q.end = time.Now()
}

// promptTokens are the tokens decoded for c: PromptTokens as datasets made
// them, else RenderedPrompt tokenized, else Prompt rendered with the
// model's chat template (or Template).
func (l *Local) promptTokens(c Case) ([]llama.Token, error) {
	if len(c.PromptTokens) > 0 {
		n := l.model.VocabSize()
		for _, t := range c.PromptTokens {
			if t < 0 || int(t) >= n {
				return nil, fmt.Errorf("prompt token %d is outside the vocabulary of %s (%d tokens): the case was rendered for another model", t, l.opts.Model, n)
			}
		}
		return c.PromptTokens, nil
	}
	text := c.RenderedPrompt
	if text == "" {
		if len(c.Prompt) == 0 {
			return nil, errors.New("the case has no prompt")
		}
		msgs := make([]llama.Message, len(c.Prompt))
		for i, m := range c.Prompt {
			msgs[i] = llama.Message{Role: m.Role, Content: m.Content}
		}
		var err error
		if text, err = l.model.ApplyChatTemplate(l.opts.Template, msgs, true); err != nil {
			return nil, err
		}
	}
	toks, err := l.model.Tokenize(text, true, true)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, errors.New("the prompt is empty")
	}
	return toks, nil
}

// ensureContext makes sure the context holds n positions per sequence,
// growing it in steps of 256 (a context is sized for the longest wave yet,
// not for the model's full context length: its KV cache would be Sequences
// times that).
func (l *Local) ensureContext(n int) error {
	if l.ctx != nil && l.ctx.Size() >= n {
		return nil
	}
	n = min((n+255)/256*256, l.model.ContextLength())
	if l.ctx != nil {
		l.ctx.Close()
		l.ctx = nil
	}
	ctx, err := llama.NewContext(l.model, llama.ContextOptions{Context: n, Sequences: l.opts.Sequences, Threads: l.opts.Threads, Batch: 512})
	if err != nil {
		return err
	}
	for i, a := range l.adapters {
		if err := ctx.SetAdapter(a, float32(l.opts.Adapters[i].Scale)); err != nil {
			ctx.Close()
			return err
		}
	}
	l.ctx = ctx
	return nil
}
