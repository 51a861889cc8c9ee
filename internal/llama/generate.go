package llama

/*
#include <stdlib.h>
#include "capi.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// SampleOptions choose the next token. Temperature 0 is greedy decoding.
type SampleOptions struct {
	Temperature float32
	TopP        float32 // 0 or 1: off
	Seed        uint32
	// Choices, when given, restrict the generated text to exactly one of
	// them, then the end of generation (llama.cpp's grammar sampler, with
	// ChoicesGrammar). An optional single space may come first: the
	// tokenizers that mark a word's start with a space would otherwise
	// have to spell the first word in pieces.
	Choices []string
}

// Sampler picks tokens from logits (llama.cpp's sampler chain). Close it.
type Sampler struct {
	c *C.struct_llama_sampler
	// greedy: temperature 0, whose pick Sample makes in Go (see there);
	// grammar is the chain's grammar sampler, if any.
	greedy  bool
	grammar *C.struct_llama_sampler
	one     *C.struct_llama_token_data // one candidate for the grammar's check
	top     *C.struct_llama_token_data // grammarTries candidates, likewise
}

// ChoicesGrammar is the GBNF grammar whose sentences are the choices, each
// as a string literal (backslash, quote and control characters escaped),
// after an optional space.
func ChoicesGrammar(choices []string) string {
	var b strings.Builder
	b.WriteString(`root ::= " "? (`)
	for i, c := range choices {
		if i > 0 {
			b.WriteString(" | ")
		}
		b.WriteByte('"')
		for _, r := range c {
			switch {
			case r == '"' || r == '\\':
				b.WriteByte('\\')
				b.WriteRune(r)
			case r == '\n':
				b.WriteString(`\n`)
			case r == '\r':
				b.WriteString(`\r`)
			case r == '\t':
				b.WriteString(`\t`)
			case r < 0x20 || r == 0x7f:
				fmt.Fprintf(&b, `\x%02X`, r)
			default:
				b.WriteRune(r)
			}
		}
		b.WriteByte('"')
	}
	b.WriteString(")\n")
	return b.String()
}

// NewSampler builds a sampler for m's vocabulary: greedy at temperature
// 0, else top-p, temperature and a seeded random draw; with Choices, a
// grammar first that leaves only the tokens that continue one of them.
func NewSampler(m *Model, o SampleOptions) (*Sampler, error) {
	Init()
	var grammar *C.struct_llama_sampler
	if len(o.Choices) > 0 {
		for _, c := range o.Choices {
			if c == "" || strings.IndexByte(c, 0) >= 0 {
				return nil, fmt.Errorf("choices: %q cannot be an answer (empty, or holds a NUL)", c)
			}
		}
		if m == nil {
			return nil, errors.New("choices need the model's vocabulary")
		}
		gs, root := C.CString(ChoicesGrammar(o.Choices)), C.CString("root")
		defer C.free(unsafe.Pointer(gs))
		defer C.free(unsafe.Pointer(root))
		if grammar = C.llama_sampler_init_grammar(m.vocab, gs, root); grammar == nil {
			return nil, cError("choices: llama.cpp refused the grammar built from them")
		}
	}
	p := C.llama_sampler_chain_default_params()
	p.no_perf = true
	chain := C.llama_sampler_chain_init(p)
	if grammar != nil {
		C.llama_sampler_chain_add(chain, grammar)
	}
	if o.Temperature <= 0 {
		C.llama_sampler_chain_add(chain, C.llama_sampler_init_greedy())
	} else {
		if o.TopP > 0 && o.TopP < 1 {
			C.llama_sampler_chain_add(chain, C.llama_sampler_init_top_p(C.float(o.TopP), 1))
		}
		C.llama_sampler_chain_add(chain, C.llama_sampler_init_temp(C.float(o.Temperature)))
		C.llama_sampler_chain_add(chain, C.llama_sampler_init_dist(C.uint32_t(o.Seed)))
	}
	s := &Sampler{c: chain, greedy: o.Temperature <= 0, grammar: grammar}
	if grammar != nil {
		size := C.size_t(unsafe.Sizeof(C.struct_llama_token_data{}))
		s.one = (*C.struct_llama_token_data)(C.malloc(size))
		s.top = (*C.struct_llama_token_data)(C.malloc(size * grammarTries))
	}
	return s, nil
}

// Close frees the sampler.
func (s *Sampler) Close() {
	if s != nil && s.c != nil {
		C.llama_sampler_free(s.c)
		s.c = nil
		if s.one != nil {
			C.free(unsafe.Pointer(s.one))
			C.free(unsafe.Pointer(s.top))
			s.one, s.top = nil, nil
		}
	}
}

// Sample picks a token from the logits of the i-th token of ctx's last
// Decode call and records it in the sampler's history.
//
// A greedy pick is made here, without llama.cpp's sampler chain, which
// copies the whole vocabulary into a candidate list for every token (and
// with choices runs the grammar over every candidate): the token with the
// highest logit, the first of equals, exactly as llama.cpp's greedy
// sampler picks it. With choices, that token is asked of the grammar
// alone, and when it refuses, the next highest ones (bestAllowed); only
// when it refuses them all does the chain run, grammar first, over the
// whole vocabulary. Either way the grammar then accepts the
// token, as after the chain's own pick: the same tokens, the same state.
func (s *Sampler) Sample(ctx *Context, i int) Token {
	if s.greedy {
		if logits := ctx.Logits(i); logits != nil {
			best := 0
			for t, v := range logits {
				if v > logits[best] {
					best = t
				}
			}
			tok, ok := Token(best), s.grammar == nil || s.allows(Token(best), logits[best])
			if !ok {
				tok, ok = s.bestAllowed(logits)
			}
			if ok {
				C.llama_sampler_accept(s.c, C.llama_token(tok))
				return tok
			}
		}
	}
	return s.sampleChain(ctx, i)
}

// grammarTries is how many of the highest logits bestAllowed asks the
// grammar about before it leaves the pick to the chain.
const grammarTries = 128

// bestAllowed is the token the grammar and then the greedy sampler would
// pick: of the grammarTries highest logits, in the order of the logit and
// then of the token (the greedy sampler takes the first of equals), the
// first the grammar allows; ok is false when it allows none of them.
// Asking the grammar about a few tokens costs microseconds, running it
// over a vocabulary of 49,152 about 40 ms (SmolLM2).
func (s *Sampler) bestAllowed(logits []float32) (Token, bool) {
	top := make([]int, 0, grammarTries)
	for t, v := range logits {
		if len(top) == grammarTries && !(v > logits[top[len(top)-1]]) {
			continue
		}
		// After the last that is not lower: equals keep token order.
		at := len(top)
		for at > 0 && v > logits[top[at-1]] {
			at--
		}
		if len(top) < grammarTries {
			top = append(top, 0)
		}
		copy(top[at+1:], top[at:len(top)-1])
		top[at] = t
	}
	// One call of the grammar over them all: it leaves the logits of the
	// tokens it allows and sets the others' to -Inf.
	cand := unsafe.Slice(s.top, grammarTries)
	for k, t := range top {
		cand[k] = C.struct_llama_token_data{id: C.llama_token(t), logit: C.float(logits[t])}
	}
	cur := C.struct_llama_token_data_array{data: s.top, size: C.size_t(len(top)), selected: -1, sorted: false}
	C.llama_sampler_apply(s.grammar, &cur)
	for k := range top {
		if !math.IsInf(float64(cand[k].logit), -1) {
			return Token(cand[k].id), true
		}
	}
	return 0, false
}

// sampleChain picks the token through llama.cpp's sampler chain over the
// whole vocabulary.
func (s *Sampler) sampleChain(ctx *Context, i int) Token {
	return Token(C.llama_sampler_sample(s.c, ctx.c, C.int32_t(i)))
}

// allows reports whether the grammar lets tok come next.
func (s *Sampler) allows(tok Token, logit float32) bool {
	s.one.id, s.one.logit, s.one.p = C.llama_token(tok), C.float(logit), 0
	cur := C.struct_llama_token_data_array{data: s.one, size: 1, selected: -1, sorted: false}
	C.llama_sampler_apply(s.grammar, &cur)
	return !math.IsInf(float64(s.one.logit), -1)
}

// GenerateOptions control one generation.
type GenerateOptions struct {
	SampleOptions
	MaxTokens int // 0: until end of generation or a full context
}

// StopReason says why generation ended.
type StopReason string

// Why generation stopped.
const (
	StopEndOfGeneration StopReason = "end-of-generation"
	StopMaxTokens       StopReason = "max-tokens"
	StopContextFull     StopReason = "context-full"
	StopCancelled       StopReason = "cancelled"
)

// Stats describe a finished generation.
type Stats struct {
	PromptTokens    int
	GeneratedTokens int
	PromptTime      time.Duration
	GenerateTime    time.Duration
	Stop            StopReason
	Tokens          []Token // the generated tokens, end-of-generation token excluded
	// End is the end-of-generation token that stopped generation (Stop is
	// StopEndOfGeneration), else -1.
	End Token
}

// PromptTokensPerSecond is the prompt processing speed.
func (s Stats) PromptTokensPerSecond() float64 { return perSecond(s.PromptTokens, s.PromptTime) }

// TokensPerSecond is the generation speed.
func (s Stats) TokensPerSecond() float64 { return perSecond(s.GeneratedTokens, s.GenerateTime) }

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Generate decodes prompt in ctx (from an empty cache) and then samples
// tokens until the model ends its turn, MaxTokens are generated or the
// context is full. Each piece of text is passed to emit as soon as it forms
// complete UTF-8; emit may be nil. Text of control tokens is not emitted.
func Generate(cx context.Context, ctx *Context, prompt []Token, o GenerateOptions, emit func(string)) (Stats, error) {
	m := ctx.model
	st := Stats{PromptTokens: len(prompt), End: -1}
	if len(prompt) == 0 {
		return st, fmt.Errorf("generate: empty prompt")
	}
	if len(prompt) >= ctx.Size() {
		return st, fmt.Errorf("generate: the prompt has %d tokens but the context holds %d", len(prompt), ctx.Size())
	}
	ctx.Reset()
	sampler, err := NewSampler(m, o.SampleOptions)
	if err != nil {
		return st, err
	}
	defer sampler.Close()

	start := time.Now()
	batch := make([]BatchToken, 0, ctx.BatchSize())
	for i := 0; i < len(prompt); i += ctx.BatchSize() {
		batch = batch[:0]
		end := min(i+ctx.BatchSize(), len(prompt))
		for j := i; j < end; j++ {
			batch = append(batch, BatchToken{Token: prompt[j], Pos: j, Logits: j == len(prompt)-1})
		}
		if err := ctx.Decode(batch); err != nil {
			return st, err
		}
	}
	st.PromptTime = time.Since(start)

	start = time.Now()
	var pending []byte
	flush := func(final bool) {
		n := validPrefix(pending, final)
		if n > 0 && emit != nil {
			emit(string(pending[:n]))
		}
		pending = pending[n:]
	}
	pos, last := len(prompt), len(batch)-1
	for {
		if err := cx.Err(); err != nil {
			st.Stop = StopCancelled
			break
		}
		if o.MaxTokens > 0 && st.GeneratedTokens >= o.MaxTokens {
			st.Stop = StopMaxTokens
			break
		}
		if pos >= ctx.Size() {
			st.Stop = StopContextFull
			break
		}
		tok := sampler.Sample(ctx, last)
		if m.IsEndOfGeneration(tok) {
			st.Stop, st.End = StopEndOfGeneration, tok
			break
		}
		st.GeneratedTokens++
		st.Tokens = append(st.Tokens, tok)
		pending = append(pending, m.Piece(tok, false)...)
		flush(false)
		if err := ctx.Decode([]BatchToken{{Token: tok, Pos: pos, Logits: true}}); err != nil {
			return st, err
		}
		pos, last = pos+1, 0
	}
	flush(true)
	st.GenerateTime = time.Since(start)
	return st, nil
}

// validPrefix returns how many leading bytes of b can be printed: all of
// them except an incomplete UTF-8 sequence at the end (unless final, when
// everything goes out).
func validPrefix(b []byte, final bool) int {
	if final || utf8.Valid(b) {
		return len(b)
	}
	// Hold back at most the last 3 bytes if they start a sequence.
	for k := 1; k <= 3 && k <= len(b); k++ {
		i := len(b) - k
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}
