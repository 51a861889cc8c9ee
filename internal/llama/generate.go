package llama

/*
#include <stdlib.h>
#include "capi.h"
*/
import "C"

import (
	"context"
	"encoding/binary"
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
	// grammar is the chain's grammar sampler, if any, and state the key
	// of its state in the model's cache: the grammar, then the tokens it
	// accepted.
	greedy  bool
	grammar *C.struct_llama_sampler
	model   *Model
	state   []byte
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
	s := &Sampler{c: chain, greedy: o.Temperature <= 0, grammar: grammar, model: m}
	if grammar != nil {
		s.state = append([]byte(ChoicesGrammar(o.Choices)), 0)
	}
	return s, nil
}

// Close frees the sampler.
func (s *Sampler) Close() {
	if s != nil && s.c != nil {
		C.llama_sampler_free(s.c)
		s.c = nil
	}
}

// Sample picks a token from the logits of the i-th token of ctx's last
// Decode call and records it in the sampler's history.
//
// A greedy pick is made here, without llama.cpp's sampler chain, which
// copies the whole vocabulary into a candidate list for every token (and
// with choices runs the grammar over every candidate, about 25 ms a token
// on SmolLM2's 49,152): the token with the highest logit, the first of
// equals, exactly as llama.cpp's greedy sampler picks it; with choices,
// among the tokens the grammar allows at this point, which the grammar
// says once per state (the text so far) and the model keeps for every
// sampler with the same choices. The grammar then accepts the token, as
// after the chain's own pick: the same tokens, the same state.
func (s *Sampler) Sample(ctx *Context, i int) Token {
	if s.greedy {
		if logits := ctx.Logits(i); logits != nil {
			best := -1
			if s.grammar == nil {
				best = 0
				for t, v := range logits {
					if v > logits[best] {
						best = t
					}
				}
			} else {
				for _, t := range s.allowedNow() {
					if best < 0 || logits[t] > logits[best] {
						best = int(t)
					}
				}
			}
			if best >= 0 {
				C.llama_sampler_accept(s.c, C.llama_token(best))
				s.note(Token(best))
				return Token(best)
			}
		}
	}
	tok := s.sampleChain(ctx, i)
	s.note(tok)
	return tok
}

// sampleChain picks the token through llama.cpp's sampler chain over the
// whole vocabulary.
func (s *Sampler) sampleChain(ctx *Context, i int) Token {
	return Token(C.llama_sampler_sample(s.c, ctx.c, C.int32_t(i)))
}

// note adds tok to the history that keys the grammar's state.
func (s *Sampler) note(tok Token) {
	if s.grammar != nil {
		s.state = binary.LittleEndian.AppendUint32(s.state, uint32(tok))
	}
}

// allowedNow are the tokens the grammar allows next, in token order:
// those whose logit it leaves as it is when run over the whole vocabulary
// (it sets the others' to -Inf). The grammar's state is what it has
// accepted, so the answer is kept by the model under the grammar and the
// tokens accepted so far.
func (s *Sampler) allowedNow() []Token {
	m := s.model
	m.allowedMu.Lock()
	defer m.allowedMu.Unlock()
	if got, ok := m.allowed[string(s.state)]; ok {
		return got
	}
	n := m.VocabSize()
	cand := (*C.struct_llama_token_data)(C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof(C.struct_llama_token_data{}))))
	defer C.free(unsafe.Pointer(cand))
	all := unsafe.Slice(cand, n)
	for t := range all {
		all[t] = C.struct_llama_token_data{id: C.llama_token(t)}
	}
	cur := C.struct_llama_token_data_array{data: cand, size: C.size_t(n), selected: -1, sorted: false}
	C.llama_sampler_apply(s.grammar, &cur)
	var allowed []Token
	for t := range all {
		if !math.IsInf(float64(all[t].logit), -1) {
			allowed = append(allowed, Token(all[t].id))
		}
	}
	if m.allowed == nil {
		m.allowed = map[string][]Token{}
	}
	m.allowed[string(s.state)] = allowed
	return allowed
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
