package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/internal/cpuload"
	"github.com/finetune-dev/finetune/internal/llama"
)

// Options configure an Engine.
type Options struct {
	// Base is the base model (GGUF); BaseName what requests call it
	// ("": the file's name without .gguf).
	Base     string
	BaseName string
	// Device is the ggml device ("": the CPU).
	Device string
	// Template, System and Stop are the base's chat template, default
	// system prompt and stop strings (see Entry).
	Template string
	System   string
	Stop     []string
	Adapters []Entry
	// Sequences is how many requests for one model are decoded together,
	// one sequence each of a shared context (0: 4).
	Sequences int
	// Context is the token positions of each sequence, prompt and answer
	// (0: 2048, at most the model's).
	Context int
	// MaxAdapters is how many adapters stay loaded; beyond it the least
	// recently used is unloaded (0: 4).
	MaxAdapters int
	// Queue is how many requests may wait for their turn; one more is
	// refused with 429 (0: 64).
	Queue int
	// Threads for decoding (0: every core, less what other work takes).
	Threads int
	Logger  *slog.Logger
}

// Engine answers requests for the base and its adapters from one loaded
// base model and one llama.cpp context. A single goroutine decodes: it
// takes the oldest waiting request, applies its model's adapter, and
// decodes it together with every other waiting request for the same model
// (up to Sequences, one sequence each), admitting more of them as
// sequences finish while no request for another model waits.
type Engine struct {
	opts     Options
	log      *slog.Logger
	m        *llama.Model
	models   map[string]*model
	names    []string // in the order listed
	started  time.Time
	maxPiece int

	// life is held (read) while a request is tokenized, and by Close
	// before it frees the model.
	life    sync.RWMutex
	mu      sync.Mutex
	waiting []*Stream
	active  int
	closed  bool
	wake    chan struct{}
	done    chan struct{}

	// Owned by the decoding goroutine.
	ctx     *llama.Context
	current *model // whose adapter the context has
	clock   uint64
	loaded  []*model
	decodes int

	stats Stats // under mu
}

// Stats count what the engine did.
type Stats struct {
	Waiting, Active int    // requests now
	Answered        uint64 // requests answered to their end
	Cancelled       uint64 // requests their client gave up
	Failed          uint64
	Refused         uint64 // 429s
	Decodes         uint64 // decode calls
	Together        int    // the most requests decoded in one call
	AdapterLoads    uint64
	AdapterUnloads  uint64
}

// Stats says what the engine is doing and has done.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.stats
	st.Waiting, st.Active = len(e.waiting), e.active
	return st
}

// model is an Entry as served.
type model struct {
	Entry
	render  *datasets.Renderer
	adapter *llama.Adapter // nil until first used (and after eviction)
	lastUse uint64
}

// ModelInfo describes a served model.
type ModelInfo struct {
	Name    string
	Adapter string // "" for the base
	From    string
	Loaded  bool
}

// New loads the base, checks every adapter against it and starts the
// decoding goroutine. Adapters load on first use.
func New(o Options) (*Engine, error) {
	if o.Sequences <= 0 {
		o.Sequences = 4
	}
	if o.MaxAdapters <= 0 {
		o.MaxAdapters = 4
	}
	if o.Queue <= 0 {
		o.Queue = 64
	}
	if o.Threads <= 0 {
		o.Threads = runtime.NumCPU()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.BaseName == "" {
		o.BaseName = strings.TrimSuffix(filepath.Base(o.Base), ".gguf")
	}
	var paths []string
	for _, a := range o.Adapters {
		paths = append(paths, a.Adapter)
	}
	base, err := llama.BaseFor(o.Base, paths)
	if err != nil {
		return nil, err
	}
	baseFile, err := llama.OpenGGUF(base)
	if err != nil {
		return nil, err
	}
	for _, a := range o.Adapters {
		af, err := llama.OpenGGUF(a.Adapter)
		if err != nil {
			return nil, fmt.Errorf("adapter %s (%s): %w", a.Name, a.From, err)
		}
		if _, err := llama.CheckAdapter(af, baseFile); err != nil {
			return nil, fmt.Errorf("adapter %s (%s): %w", a.Name, a.From, err)
		}
	}
	m, err := llama.LoadModel(base, llama.ModelOptions{Device: o.Device})
	if err != nil {
		return nil, err
	}
	e := &Engine{opts: o, log: o.Logger, m: m, models: map[string]*model{}, started: time.Now(),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	if o.Context <= 0 {
		o.Context = 2048
	}
	e.opts.Context = min(o.Context, m.ContextLength())
	renderers := map[string]*datasets.Renderer{}
	add := func(en Entry) error {
		if _, dup := e.models[en.Name]; dup {
			return fmt.Errorf("two models are named %q (%s and %s): name the adapter with NAME=REF", en.Name, e.models[en.Name].From, en.From)
		}
		r := renderers[en.Template]
		if r == nil {
			r, err = datasets.NewRenderer(m, datasets.RenderOptions{Template: en.Template})
			if err != nil {
				return fmt.Errorf("model %s (%s): %w", en.Name, en.From, err)
			}
			renderers[en.Template] = r
			e.maxPiece = max(e.maxPiece, r.MaxPieceBytes())
		}
		e.models[en.Name] = &model{Entry: en, render: r}
		e.names = append(e.names, en.Name)
		return nil
	}
	err = add(Entry{Name: o.BaseName, Base: base, Template: o.Template, System: o.System, Stop: o.Stop, From: "base " + o.Base})
	for _, a := range o.Adapters {
		if err == nil {
			err = add(a)
		}
	}
	if err == nil {
		e.ctx, err = llama.NewContext(m, llama.ContextOptions{Context: e.opts.Context, Sequences: o.Sequences, Threads: o.Threads, Batch: 512})
	}
	if err != nil {
		m.Close()
		return nil, err
	}
	e.log.Info("base loaded", "model", o.BaseName, "path", base, "context", e.opts.Context, "sequences", o.Sequences, "adapters", len(o.Adapters))
	go e.run()
	return e, nil
}

// Models lists the served models, the base first.
func (e *Engine) Models() []ModelInfo {
	out := make([]ModelInfo, 0, len(e.names))
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range e.names {
		m := e.models[n]
		out = append(out, ModelInfo{Name: n, Adapter: m.Adapter, From: m.From, Loaded: m.Adapter == "" || m.adapter != nil})
	}
	return out
}

// Started is when the engine was made.
func (e *Engine) Started() time.Time { return e.started }

// ContextSize is the token positions of one request, prompt and answer.
func (e *Engine) ContextSize() int { return e.opts.Context }

// Close stops taking requests, finishes every one already taken (waiting
// and decoding), then frees the context, the adapters and the model.
func (e *Engine) Close() {
	e.mu.Lock()
	already := e.closed
	e.closed = true
	e.mu.Unlock()
	e.signal()
	<-e.done
	if already {
		return
	}
	e.life.Lock()
	defer e.life.Unlock()
	e.ctx.Close()
	for _, m := range e.loaded {
		m.adapter.Close()
		m.adapter = nil
	}
	e.m.Close()
}

// Request is one completion request.
type Request struct {
	Model string
	// Messages are a chat, rendered with the model's chat template; Prompt
	// (when Messages is nil) is text continued as it is.
	Messages []datasets.Message
	Prompt   string
	// MaxTokens bounds the answer (0: until the context is full).
	MaxTokens   int
	Temperature float64
	TopP        float64
	Seed        uint32
	// Stop strings end the answer before the first of them, besides the
	// model's end-of-generation tokens and the model's own stop strings.
	Stop []string
}

// Result is a finished answer.
type Result struct {
	Text             string
	FinishReason     string // "stop" or "length"
	PromptTokens     int
	CompletionTokens int
}

// Stream is a request taken by the engine: its text arrives on Pieces,
// which is closed when the answer is complete; Result then holds it.
type Stream struct {
	ctx     context.Context
	model   *model
	req     Request
	prompt  []llama.Token
	room    int // most tokens to generate
	stop    []string
	pieces  chan string
	res     Result
	err     error
	queued  time.Time
	started time.Time
}

// Pieces delivers the answer's text as it is generated.
func (s *Stream) Pieces() <-chan string { return s.pieces }

// Result is the answer, once Pieces is closed.
func (s *Stream) Result() (Result, error) { return s.res, s.err }

// Error is a refused request, as the HTTP API reports it.
type Error struct {
	Status  int
	Type    string // "invalid_request_error", ...
	Code    string
	Param   string
	Message string
	// RetryAfter, with Status 429 or 503, is when to try again.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

func badRequest(param, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: param, Message: fmt.Sprintf(format, args...)}
}

// Submit renders and tokenizes req and queues it. The returned error is
// an *Error: an unknown model, a prompt too long for the context, a full
// queue, or a closed engine. Cancelling ctx stops the request's decoding.
func (e *Engine) Submit(ctx context.Context, req Request) (*Stream, error) {
	m := e.models[req.Model]
	if m == nil {
		return nil, &Error{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "model_not_found", Param: "model",
			Message: fmt.Sprintf("The model %q does not exist: this server serves %s (GET /v1/models lists them)", req.Model, strings.Join(e.names, ", "))}
	}
	closed := &Error{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "shutting_down", Message: "The server is shutting down.", RetryAfter: 5 * time.Second}
	e.life.RLock()
	defer e.life.RUnlock()
	// A full queue refuses before the prompt is tokenized (and again
	// after, below).
	if err := e.admissible(closed); err != nil {
		return nil, err
	}
	s := &Stream{ctx: ctx, model: m, req: req, queued: time.Now()}
	if err := e.tokenize(s); err != nil {
		return nil, err
	}
	s.room = e.opts.Context - len(s.prompt)
	if req.MaxTokens > 0 {
		if len(s.prompt)+req.MaxTokens > e.opts.Context {
			return nil, badRequest("max_tokens", "This model's maximum context length is %d tokens (serve --ctx). However, you requested %d tokens (%d in the prompt, %d in the completion). Please reduce the prompt or max_tokens.",
				e.opts.Context, len(s.prompt)+req.MaxTokens, len(s.prompt), req.MaxTokens)
		}
		s.room = req.MaxTokens
	}
	s.stop = slices.DeleteFunc(append(slices.Clone(m.Stop), req.Stop...), func(x string) bool { return x == "" })
	s.pieces = make(chan string, s.room+2) // one piece per token at most, and the rest: never blocks
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.admissibleLocked(closed); err != nil {
		return nil, err
	}
	e.waiting = append(e.waiting, s)
	e.signal()
	return s, nil
}

// admissible says why a request cannot be queued now: closed, or the
// queue is full (429).
func (e *Engine) admissible(closed *Error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.admissibleLocked(closed)
}

func (e *Engine) admissibleLocked(closed *Error) error {
	// Requests whose clients left hold no place in the queue.
	e.waiting = slices.DeleteFunc(e.waiting, func(s *Stream) bool {
		if s.ctx.Err() != nil {
			e.finish(s, "", s.ctx.Err())
			return true
		}
		return false
	})
	switch {
	case e.closed:
		return closed
	case len(e.waiting) >= e.opts.Queue:
		e.stats.Refused++
		return &Error{Status: http.StatusTooManyRequests, Type: "requests", Code: "rate_limit_exceeded", RetryAfter: time.Second,
			Message: fmt.Sprintf("The server is busy: %d requests are waiting (serve --queue %d) behind %d being answered. Retry after a second.", len(e.waiting), e.opts.Queue, e.active)}
	}
	return nil
}

// tokenize sets s.prompt: the chat rendered as training rendered it, or
// the text as generation tokenizes it.
func (e *Engine) tokenize(s *Stream) error {
	req, m := s.req, s.model
	// Text of n bytes is at least n/maxPiece tokens: a prompt that cannot
	// fit is refused before it is rendered.
	size := len(req.Prompt)
	for _, msg := range req.Messages {
		size += len(msg.Content)
	}
	param := "messages"
	if req.Messages == nil {
		param = "prompt"
	}
	tooLong := func(n int, atLeast string) error {
		return badRequest(param, "This model's maximum context length is %d tokens (serve --ctx), but the prompt has %s%d tokens. Please shorten the prompt.", e.opts.Context, atLeast, n)
	}
	if n := size / max(1, e.maxPiece); n >= e.opts.Context {
		return tooLong(n, "at least ")
	}
	var err error
	if req.Messages == nil {
		if req.Prompt == "" {
			return badRequest("prompt", "The prompt is empty.")
		}
		if s.prompt, err = e.m.Tokenize(req.Prompt, true, false); err != nil {
			return badRequest("prompt", "%v", err)
		}
	} else {
		msgs := req.Messages
		if len(msgs) == 0 {
			return badRequest("messages", "messages is empty: give at least one message.")
		}
		if m.System != "" && msgs[0].Role != "system" {
			msgs = append([]datasets.Message{{Role: "system", Content: m.System}}, msgs...)
		}
		msgs = append(slices.Clip(msgs), datasets.Message{Role: "assistant"})
		c, err := m.render.Case(datasets.Record{Messages: msgs, Source: "the request"})
		if err != nil {
			var re *datasets.RowError
			if errors.As(err, &re) {
				err = errors.New(re.Msg)
			}
			return badRequest("messages", "The model %s cannot render these messages: %v", m.Name, err)
		}
		s.prompt = c.PromptTokens
	}
	if len(s.prompt) == 0 {
		return badRequest("messages", "The prompt is empty.")
	}
	if len(s.prompt) >= e.opts.Context {
		return tooLong(len(s.prompt), "")
	}
	return nil
}

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// pop takes the oldest waiting request; for m only, when m is not nil:
// with anywhere the oldest for m, else only when it is the oldest of all,
// so that a model's requests join a running wave only while no other
// model waits. With wait it blocks until there is one, or the engine is
// closed with none left (nil).
func (e *Engine) pop(m *model, anywhere, wait bool) *Stream {
	for {
		e.mu.Lock()
		for i := 0; i < len(e.waiting); {
			s := e.waiting[i]
			if s.ctx.Err() != nil {
				e.waiting = slices.Delete(e.waiting, i, i+1)
				e.finish(s, "", s.ctx.Err())
				continue
			}
			if m != nil && s.model != m {
				if !anywhere {
					break
				}
				i++
				continue
			}
			e.waiting = slices.Delete(e.waiting, i, i+1)
			e.active++
			e.mu.Unlock()
			return s
		}
		closed := e.closed && len(e.waiting) == 0
		e.mu.Unlock()
		if !wait || closed {
			return nil
		}
		select {
		case <-e.wake:
		case <-time.After(time.Second): // cancelled waiting requests leave
		}
	}
}

// finish ends s (e.mu held). reason "" with err set fails it.
func (e *Engine) finish(s *Stream, reason string, err error) {
	s.res.FinishReason, s.err = reason, err
	switch {
	case err == nil:
		e.stats.Answered++
	case s.ctx.Err() != nil:
		e.stats.Cancelled++
	default:
		e.stats.Failed++
	}
	close(s.pieces)
}

func (e *Engine) run() {
	defer close(e.done)
	for {
		s := e.pop(nil, false, true)
		if s == nil {
			return
		}
		e.wave(s)
	}
}

// seq is a request being decoded in one sequence of the context.
type seq struct {
	s       *Stream
	id      int
	fed     int // prompt tokens decoded
	last    llama.Token
	pos     int
	sampler *llama.Sampler
	text    []byte
	sent    int // bytes of text sent
	n       int // tokens generated
	done    bool
}

// wave decodes first and every request for its model that can join it.
func (e *Engine) wave(first *Stream) {
	m := first.model
	slots := make([]*seq, e.opts.Sequences)
	release := func(q *seq, reason string, err error) {
		q.done = true
		if q.sampler != nil {
			q.sampler.Close()
		}
		slots[q.id] = nil
		e.ctx.RemoveSequence(q.id)
		if err == nil {
			q.flush(true)
			q.s.res.CompletionTokens = q.n
		}
		e.mu.Lock()
		e.active--
		e.finish(q.s, reason, err)
		e.mu.Unlock()
		e.log.Debug("request done", "model", m.Name, "prompt_tokens", len(q.s.prompt), "tokens", q.n, "finish", reason, "err", err,
			"queued", q.s.started.Sub(q.s.queued).Round(time.Millisecond), "took", time.Since(q.s.started).Round(time.Millisecond))
	}
	place := func(s *Stream) {
		for i := range slots {
			if slots[i] == nil {
				sp, err := llama.NewSampler(e.m, llama.SampleOptions{Temperature: float32(s.req.Temperature), TopP: float32(s.req.TopP), Seed: s.req.Seed})
				q := &seq{s: s, id: i, sampler: sp}
				slots[i] = q
				s.started = time.Now()
				s.res.PromptTokens = len(s.prompt)
				if err != nil {
					release(q, "", err)
				}
				return
			}
		}
	}
	if err := e.use(m); err != nil {
		e.log.Error("cannot apply adapter", "model", m.Name, "err", err)
		e.mu.Lock()
		e.active--
		e.finish(first, "", &Error{Status: http.StatusInternalServerError, Type: "server_error", Message: err.Error()})
		e.mu.Unlock()
		return
	}
	e.ctx.Reset()
	place(first)
	// The wave starts with every waiting request for m it can hold.
	for slices.Contains(slots, nil) {
		s := e.pop(m, true, false)
		if s == nil {
			break
		}
		place(s)
	}
	type pick struct {
		q *seq
		i int
	}
	batch := make([]llama.BatchToken, 0, e.ctx.BatchSize())
	var picks []pick
	for {
		for slices.Contains(slots, nil) {
			s := e.pop(m, false, false)
			if s == nil {
				break
			}
			place(s)
		}
		batch, picks = batch[:0], picks[:0]
		for _, q := range slots {
			if q != nil && q.fed == len(q.s.prompt) {
				batch = append(batch, llama.BatchToken{Token: q.last, Pos: q.pos, Seq: q.id, Logits: true})
				picks = append(picks, pick{q, len(batch) - 1})
				q.pos++
			}
		}
		for _, q := range slots {
			for q != nil && q.fed < len(q.s.prompt) && len(batch) < cap(batch) {
				last := q.fed == len(q.s.prompt)-1
				batch = append(batch, llama.BatchToken{Token: q.s.prompt[q.fed], Pos: q.fed, Seq: q.id, Logits: last})
				q.fed++
				if last {
					picks = append(picks, pick{q, len(batch) - 1})
					q.pos = q.fed
				}
			}
		}
		if len(batch) == 0 {
			return
		}
		if e.decodes%32 == 0 {
			e.ctx.SetThreads(cpuload.Threads(e.opts.Threads))
		}
		e.decodes++
		e.mu.Lock()
		e.stats.Decodes++
		e.stats.Together = max(e.stats.Together, len(picks))
		e.mu.Unlock()
		if err := e.ctx.Decode(batch); err != nil {
			e.log.Error("decode failed", "model", m.Name, "err", err)
			for _, q := range slots {
				if q != nil {
					release(q, "", &Error{Status: http.StatusInternalServerError, Type: "server_error", Message: err.Error()})
				}
			}
			e.ctx.Reset()
			return
		}
		for _, p := range picks {
			if reason := e.accept(p.q, p.q.sampler.Sample(e.ctx, p.i)); reason != "" {
				release(p.q, reason, nil)
			}
		}
		for _, q := range slots {
			if q != nil && q.s.ctx.Err() != nil {
				release(q, "", q.s.ctx.Err())
			}
		}
	}
}

// accept takes a sampled token: the reason the answer ends ("stop",
// "length"), or "" to go on.
func (e *Engine) accept(q *seq, tok llama.Token) string {
	if e.m.IsEndOfGeneration(tok) {
		return "stop"
	}
	q.n++
	q.last = tok
	q.text = append(q.text, e.m.Piece(tok, false)...)
	if cut := firstStop(q.text, q.s.stop); cut >= 0 {
		q.text = q.text[:cut]
		return "stop"
	}
	q.flush(false)
	if q.n >= q.s.room || q.pos >= e.opts.Context {
		return "length"
	}
	return ""
}

// flush sends the text that is final: all of it at the end, else all but
// an incomplete UTF-8 character and what may be the start of a stop
// string.
func (q *seq) flush(final bool) {
	end := len(q.text)
	if !final {
		end -= heldBack(q.text, q.s.stop)
		for end > q.sent && !utf8.Valid(q.text[q.sent:end]) {
			end--
		}
	}
	if end > q.sent {
		q.s.pieces <- strings.ToValidUTF8(string(q.text[q.sent:end]), "\uFFFD")
		q.s.res.Text += strings.ToValidUTF8(string(q.text[q.sent:end]), "\uFFFD")
		q.sent = end
	}
}

// firstStop is where the first stop string in text begins, or -1.
func firstStop(text []byte, stops []string) int {
	cut := -1
	for _, s := range stops {
		if i := strings.Index(string(text), s); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	return cut
}

// heldBack is the length of the longest end of text that begins a stop
// string: text that may yet turn out to be a stop.
func heldBack(text []byte, stops []string) int {
	n := 0
	for _, s := range stops {
		for k := min(len(s)-1, len(text)); k > n; k-- {
			if strings.HasSuffix(string(text), s[:k]) {
				n = k
				break
			}
		}
	}
	return n
}

// use applies m's adapter to the context (none for the base), loading it
// first and unloading the least recently used beyond MaxAdapters.
func (e *Engine) use(m *model) error {
	e.clock++
	m.lastUse = e.clock
	if e.current == m {
		return nil
	}
	if err := e.ctx.ClearAdapters(); err != nil {
		return err
	}
	e.current = nil
	if m.Adapter == "" {
		e.current = m
		return nil
	}
	if m.adapter == nil {
		for len(e.loaded) >= e.opts.MaxAdapters {
			lru := 0
			for i, l := range e.loaded {
				if l.lastUse < e.loaded[lru].lastUse {
					lru = i
				}
			}
			old := e.loaded[lru]
			e.mu.Lock()
			old.adapter.Close()
			old.adapter = nil
			e.stats.AdapterUnloads++
			e.mu.Unlock()
			e.loaded = slices.Delete(e.loaded, lru, lru+1)
			e.log.Info("adapter unloaded", "model", old.Name, "loaded", len(e.loaded), "max", e.opts.MaxAdapters)
		}
		start := time.Now()
		a, err := llama.LoadAdapter(e.m, m.Adapter)
		if err != nil {
			return fmt.Errorf("adapter %s (%s): %w", m.Name, m.From, err)
		}
		e.mu.Lock()
		m.adapter = a
		e.stats.AdapterLoads++
		e.mu.Unlock()
		e.loaded = append(e.loaded, m)
		e.log.Info("adapter loaded", "model", m.Name, "path", m.Adapter, "rank", a.Rank, "took", time.Since(start).Round(time.Millisecond), "loaded", len(e.loaded))
	}
	if err := e.ctx.SetAdapter(m.adapter, 1); err != nil {
		return err
	}
	e.current = m
	return nil
}
