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
	"sync/atomic"
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
	// in every decode call (0: DefaultSequences; 1 turns batching off).
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

// DefaultSequences is how many cases a local contestant decodes together
// unless told otherwise: on SmolLM2-135M on 2 cores, 16 sequences decode
// 3-4 times as many tokens per second as one, and more gain little (see the
// README's performance section).
const DefaultSequences = 16

// minPrefix is the shortest prompt prefix common to a call's cases that is
// decoded once and copied to every sequence instead of decoded with each.
const minPrefix = 8

// Local is a GGUF model, optionally with LoRA adapters, answering in-process
// through llama.cpp with continuous batching: up to Sequences cases are
// decoded together, one token of every running sequence per decode call
// (one pass over the weights serves them all), and a finished sequence's
// slot is given to the next case at once. The prompt prefix that all of a
// call's cases share (a system prompt, the chat template's opening) is
// decoded once and copied to each sequence. Every sequence has a KV cache
// of its own (llama.ctx's Separate) and its own sampler seeded with
// Settings.Seed, so a case's answer does not depend on which cases share
// its decode calls: greedy answers are the ones each case gets decoded
// alone. Contestants on the same model file share the loaded weights.
// Close it when done.
type Local struct {
	name     string
	opts     LocalOptions
	model    *llama.Model
	adapters []*llama.Adapter

	mu       sync.Mutex // one call at a time
	ctx      *llama.Context
	identity string
	stats    LocalStats
}

// LocalStats say where a local contestant's time went, summed over its
// calls: prompts (prefill) against generated tokens, sampling, and how it
// shared the cores with other local contestants.
type LocalStats struct {
	Cases int
	// Wall is the time spent answering (AnswerEach calls).
	Wall time.Duration
	// PrefixTokens are the shared prompt prefixes, decoded once per call;
	// PrefixSaved the prompt tokens copied from them instead of decoded.
	PrefixTokens, PrefixSaved int
	// Prefill: decode calls of prompt tokens, their tokens and time.
	PrefillCalls, PrefillTokens int
	PrefillTime                 time.Duration
	// Steps: decode calls of one generated token per running sequence.
	Steps, StepTokens int
	StepTime          time.Duration
	// Sample is the time spent picking tokens and checking stop strings.
	Sample time.Duration
	// Threads is the sum over decode calls of their threads; Shared
	// counts the calls made while another local contestant decoded too.
	Threads, Shared int
	// Moves are sequences moved to a lower slot so that a decode call's
	// sequences stay consecutive (one pass over the weights).
	Moves int
}

// decoding counts the local contestants decoding right now: they share
// the cores, each with its part of the threads, and decode at the same
// time. Two contestants on 2 cores then decode with one thread each, side
// by side, instead of taking turns with two threads that wait for each
// other after every op of the graph (and spin while they wait, so a thread
// of the other contestant between them stalls both).
var decoding atomic.Int32

// threads is how many threads a contestant decodes with now: its share of
// the cores that other work leaves free, at most limit.
func threads(limit int) int {
	n := cpuload.Threads(limit)
	if share := runtime.NumCPU() / max(1, int(decoding.Load())); share < n {
		n = share
	}
	return max(1, n)
}

// loaded are the models the local contestants share, by file and device.
var loaded struct {
	sync.Mutex
	m map[[2]string]*sharedModel
}

type sharedModel struct {
	m    *llama.Model
	refs int
}

// loadModel loads path on device, or hands out the copy already loaded.
func loadModel(path, device string) (*llama.Model, error) {
	loaded.Lock()
	defer loaded.Unlock()
	key := [2]string{path, device}
	if sm := loaded.m[key]; sm != nil {
		sm.refs++
		return sm.m, nil
	}
	m, err := llama.LoadModel(path, llama.ModelOptions{Device: device})
	if err != nil {
		return nil, err
	}
	if loaded.m == nil {
		loaded.m = map[[2]string]*sharedModel{}
	}
	loaded.m[key] = &sharedModel{m: m, refs: 1}
	return m, nil
}

// releaseModel frees m once no contestant uses it.
func releaseModel(m *llama.Model) {
	loaded.Lock()
	defer loaded.Unlock()
	for key, sm := range loaded.m {
		if sm.m == m {
			if sm.refs--; sm.refs == 0 {
				m.Close()
				delete(loaded.m, key)
			}
			return
		}
	}
}

// NewLocal loads the model (or shares it with the local contestants that
// already did) and its adapters.
func NewLocal(name string, o LocalOptions) (*Local, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if o.Sequences <= 0 {
		o.Sequences = DefaultSequences
	}
	if o.Threads <= 0 {
		o.Threads = runtime.NumCPU()
	}
	o.Settings = o.Settings.Local()
	var paths []string
	for _, a := range o.Adapters {
		paths = append(paths, a.Path)
	}
	o.Adapters = slices.Clone(o.Adapters)
	model, err := llama.BaseFor(o.Model, paths)
	if err != nil {
		return nil, fmt.Errorf("contestant %s: %w", name, err)
	}
	m, err := loadModel(model, o.Device)
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

// Close frees the context and the adapters, and the model once no other
// contestant shares it.
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
		releaseModel(l.model)
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

// Stats are where the contestant's time went so far.
func (l *Local) Stats() LocalStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// BatchSize implements Batcher.
func (l *Local) BatchSize() int { return l.opts.Sequences }

// Answer implements Contestant.
func (l *Local) Answer(ctx context.Context, c Case) (Answer, error) {
	as, errs := l.AnswerBatch(ctx, []Case{c})
	return as[0], errs[0]
}

// AnswerBatch implements Batcher (see AnswerEach).
func (l *Local) AnswerBatch(ctx context.Context, cases []Case) ([]Answer, []error) {
	answers := make([]Answer, len(cases))
	errs := make([]error, len(cases))
	l.AnswerEach(ctx, cases, func(i int, a Answer, err error) { answers[i], errs[i] = a, err })
	return answers, errs
}

// seqState is one case being decoded in a slot of the context.
type seqState struct {
	idx     int // into the call's cases
	slot    int // the sequence id in the context
	prompt  []llama.Token
	fed     int // prompt tokens in the KV cache (the shared prefix included)
	pos     int // next position
	last    llama.Token
	sampler *llama.Sampler
	text    []byte
	tokens  []int32
	n       int // generated tokens
	done    bool
	reason  string    // FinishStop or FinishLength, once done
	start   time.Time // when its prompt began decoding
	end     time.Time // when the answer was complete
}

// AnswerEach implements Streamer: the cases are decoded with continuous
// batching (see Local), and each is reported as soon as its answer is
// complete. An answer's latency is the time from the start of its prompt's
// decoding to its last token.
func (l *Local) AnswerEach(ctx context.Context, cases []Case, done func(i int, a Answer, err error)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	began := time.Now()
	defer func() { l.stats.Wall += time.Since(began) }()
	if l.model == nil {
		for i := range cases {
			done(i, Answer{}, errors.New("contestant closed"))
		}
		return
	}
	s := l.opts.Settings
	var queue []*seqState
	longest := 0
	for i, c := range cases {
		toks, err := l.promptTokens(c)
		if err == nil && len(toks) >= l.model.ContextLength() {
			err = fmt.Errorf("the prompt has %d tokens but the model's context holds %d", len(toks), l.model.ContextLength())
		}
		if err != nil {
			done(i, Answer{}, err)
			continue
		}
		queue = append(queue, &seqState{idx: i, prompt: toks})
		longest = max(longest, len(toks))
	}
	if len(queue) == 0 {
		return
	}
	l.stats.Cases += len(queue)
	if err := l.ensureContext(min(longest+s.MaxTokens, l.model.ContextLength())); err != nil {
		for _, q := range queue {
			done(q.idx, Answer{}, err)
		}
		return
	}
	decoding.Add(1)
	defer decoding.Add(-1)
	d := &decoder{l: l, ctx: ctx, done: done, queue: queue, slots: make([]*seqState, l.opts.Sequences)}
	defer d.close()
	if err := d.run(); err != nil {
		d.fail(err)
	}
}

// decoder is one AnswerEach call's continuous batching.
type decoder struct {
	l      *Local
	ctx    context.Context
	done   func(int, Answer, error)
	queue  []*seqState // cases not started, in order
	slots  []*seqState // the running sequence of each slot, or nil
	prefix int         // tokens of the shared prefix, held by sequence len(slots)
	calls  int
	// sharing is how many contestants were decoding when threads was
	// set.
	sharing int32
	threads int
}

// run decodes every case of the queue.
func (d *decoder) run() error {
	l := d.l
	l.ctx.Reset()
	if err := d.sharePrefix(); err != nil {
		return err
	}
	for {
		if err := d.admit(); err != nil {
			return err
		}
		d.compact()
		var batch []llama.BatchToken
		var running []*seqState
		for _, q := range d.slots {
			if q == nil {
				continue
			}
			if q.pos >= l.ctx.Size() {
				d.finish(q, FinishLength) // the context is full
				continue
			}
			batch = append(batch, llama.BatchToken{Token: q.last, Pos: q.pos, Seq: q.slot, Logits: true})
			running = append(running, q)
			q.pos++
		}
		if len(batch) == 0 {
			if len(d.queue) == 0 {
				return nil
			}
			continue
		}
		t, err := d.decode(batch)
		if err != nil {
			return err
		}
		l.stats.Steps++
		l.stats.StepTokens += len(batch)
		l.stats.StepTime += t
		st := time.Now()
		for k, q := range running {
			d.accept(q, q.sampler.Sample(l.ctx, k))
		}
		l.stats.Sample += time.Since(st)
	}
}

// sharePrefix decodes the prompt prefix that every queued case shares, when
// it is long enough to be worth it, into the sequence after the slots'
// (every case keeps at least its last prompt token to decode itself, whose
// logits give its first token).
func (d *decoder) sharePrefix() error {
	if len(d.queue) < 2 {
		return nil
	}
	p := d.queue[0].prompt
	n := len(p) - 1
	for _, q := range d.queue[1:] {
		n = min(n, len(q.prompt)-1)
		for i := 0; i < n; i++ {
			if q.prompt[i] != p[i] {
				n = i
				break
			}
		}
	}
	if n < minPrefix {
		return nil
	}
	seq := len(d.slots)
	for lo := 0; lo < n; lo += d.l.ctx.BatchSize() {
		var batch []llama.BatchToken
		for i := lo; i < min(n, lo+d.l.ctx.BatchSize()); i++ {
			batch = append(batch, llama.BatchToken{Token: p[i], Pos: i, Seq: seq})
		}
		t, err := d.decode(batch)
		if err != nil {
			return err
		}
		d.l.stats.PrefillCalls++
		d.l.stats.PrefillTokens += len(batch)
		d.l.stats.PrefillTime += t
	}
	d.prefix = n
	d.l.stats.PrefixTokens += n
	return nil
}

// admit starts queued cases in the free slots, lowest first, and decodes
// their prompts (after the shared prefix); a sequence's first token is
// sampled right after the call that holds its last prompt token.
func (d *decoder) admit() error {
	l := d.l
	var fresh []*seqState
	for slot := range d.slots {
		if d.slots[slot] != nil || len(d.queue) == 0 {
			continue
		}
		q := d.queue[0]
		d.queue = d.queue[1:]
		q.slot, q.start = slot, time.Now()
		d.slots[slot] = q
		sp, err := llama.NewSampler(l.model, llama.SampleOptions{Temperature: float32(l.opts.Settings.Temperature), TopP: float32(l.opts.Settings.TopP),
			Seed: uint32(l.opts.Settings.Seed), Choices: l.opts.Settings.Choices})
		if err != nil {
			return err
		}
		q.sampler = sp
		if d.prefix > 0 {
			if err := l.ctx.CopySequence(len(d.slots), slot); err != nil {
				return err
			}
			q.fed = d.prefix
			l.stats.PrefixSaved += d.prefix
		} else if err := l.ctx.RemoveSequence(slot); err != nil {
			return err
		}
		fresh = append(fresh, q)
	}
	// One sequence per call: with a KV cache per sequence, llama.cpp
	// splits a call into passes that take as many tokens from each of its
	// sequences, so prompts of different lengths in one call would cost
	// many small passes over the weights instead of one.
	for _, q := range fresh {
		var batch []llama.BatchToken
		for q.fed < len(q.prompt) {
			batch = batch[:0]
			for ; q.fed < len(q.prompt) && len(batch) < l.ctx.BatchSize(); q.fed++ {
				batch = append(batch, llama.BatchToken{Token: q.prompt[q.fed], Pos: q.fed, Seq: q.slot, Logits: q.fed == len(q.prompt)-1})
			}
			t, err := d.decode(batch)
			if err != nil {
				return err
			}
			l.stats.PrefillCalls++
			l.stats.PrefillTokens += len(batch)
			l.stats.PrefillTime += t
		}
		q.pos = len(q.prompt)
		st := time.Now()
		d.accept(q, q.sampler.Sample(l.ctx, len(batch)-1))
		l.stats.Sample += time.Since(st)
	}
	return nil
}

// compact moves running sequences down into free slots below them once no
// case waits for a slot, so that a decode call's sequences stay consecutive
// and llama.cpp computes it in one pass over the weights.
func (d *decoder) compact() {
	if len(d.queue) > 0 {
		return
	}
	for {
		lo := slices.Index(d.slots, nil)
		hi := len(d.slots) - 1
		for hi >= 0 && d.slots[hi] == nil {
			hi--
		}
		if lo < 0 || hi < lo {
			return
		}
		q := d.slots[hi]
		if d.l.ctx.CopySequence(hi, lo) != nil || d.l.ctx.RemoveSequence(hi) != nil {
			return
		}
		d.slots[lo], d.slots[hi], q.slot = q, nil, lo
		d.l.stats.Moves++
	}
}

// decode runs one decode call under the CPU lock and returns its time
// (the wait for the lock excluded).
func (d *decoder) decode(batch []llama.BatchToken) (time.Duration, error) {
	if err := d.ctx.Err(); err != nil {
		return 0, err
	}
	st := time.Now()
	// llama.cpp's workers spin while they wait for each other: take only
	// this contestant's share of the cores other work leaves free, looked
	// at every 32 decode calls and whenever another contestant starts or
	// stops decoding.
	if n := decoding.Load(); d.calls%32 == 0 || n != d.sharing {
		d.sharing = n
		d.threads = threads(d.l.opts.Threads)
		d.l.ctx.SetThreads(d.threads)
	}
	d.calls++
	d.l.stats.Threads += d.threads
	if d.sharing > 1 {
		d.l.stats.Shared++
	}
	err := d.l.ctx.Decode(batch)
	return time.Since(st), err
}

// accept records a sampled token (see Local.accept) and reports the
// answer once it is complete, freeing its slot.
func (d *decoder) accept(q *seqState, tok llama.Token) {
	d.l.accept(q, tok)
	if q.done {
		d.report(q)
	}
}

// finish ends q for reason and reports it.
func (d *decoder) finish(q *seqState, reason string) {
	d.l.finish(q, reason)
	d.report(q)
}

// report hands q's answer to done and frees its slot.
func (d *decoder) report(q *seqState) {
	s := d.l.opts.Settings
	text := strings.ToValidUTF8(string(q.text), "\uFFFD")
	if len(s.Choices) > 0 {
		// The grammar lets the answer start with a space (see
		// llama.SampleOptions.Choices): the choice is what follows it.
		text = choiceText(text, s.Choices)
	}
	d.done(q.idx, Answer{
		Text:         text,
		Usage:        Usage{PromptTokens: len(q.prompt), CompletionTokens: q.n},
		Latency:      q.end.Sub(q.start),
		Tokens:       q.tokens,
		FinishReason: q.reason,
	}, nil)
	d.release(q)
}

// release frees q's slot and sampler.
func (d *decoder) release(q *seqState) {
	if d.slots[q.slot] == q {
		d.slots[q.slot] = nil
		d.l.ctx.RemoveSequence(q.slot)
	}
	q.sampler.Close()
}

// fail reports err for every case not answered: the running ones and the
// queued ones.
func (d *decoder) fail(err error) {
	for _, q := range d.slots {
		if q != nil {
			d.done(q.idx, Answer{}, err)
			d.release(q)
		}
	}
	for _, q := range d.queue {
		d.done(q.idx, Answer{}, err)
	}
	d.queue = nil
}

// close frees what a failed call left.
func (d *decoder) close() {
	for _, q := range d.slots {
		if q != nil {
			q.sampler.Close()
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
	if l.model == nil {
		return nil, errors.New("contestant closed")
	}
	decoding.Add(1)
	defer decoding.Add(-1)
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
	l.ctx.SetThreads(threads(l.opts.Threads))
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
// growing it in steps of 256 (a context is sized for the longest call yet,
// not for the model's full context length: its KV cache would be Sequences
// times that). It holds a KV cache per sequence (llama.Context's
// Separate) and one more sequence for the shared prompt prefix.
func (l *Local) ensureContext(n int) error {
	if l.ctx != nil && l.ctx.Size() >= n {
		return nil
	}
	n = min((n+255)/256*256, l.model.ContextLength())
	if l.ctx != nil {
		l.ctx.Close()
		l.ctx = nil
	}
	ctx, err := llama.NewContext(l.model, llama.ContextOptions{Context: n, Sequences: l.opts.Sequences + 1, Separate: true, Threads: l.opts.Threads, Batch: 512})
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
