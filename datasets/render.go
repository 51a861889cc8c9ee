package datasets

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/finetune-dev/finetune/internal/llama"
)

// Example is one training example: tokens and a 0/1 loss weight per token.
// Weights[i] says whether token i is a prediction target (the loss at
// position i-1 predicting token i); Weights[0] is always 0.
type Example struct {
	Tokens  []int32
	Weights []float32
	Source  string // "file:line"
}

// Trained is the number of tokens the example trains on.
func (e *Example) Trained() int {
	n := 0
	for _, w := range e.Weights {
		if w > 0 {
			n++
		}
	}
	return n
}

// Case is one eval case: a conversation up to its last assistant turn, and
// that turn as the reference answer.
type Case struct {
	Prompt []Message
	// RenderedPrompt is Prompt rendered by the chat template with the
	// header of the assistant's turn, exactly as generation renders it
	// (with template "none", the prompt text itself).
	RenderedPrompt string
	// PromptTokens is RenderedPrompt tokenized as generation tokenizes it.
	PromptTokens []int32
	Reference    string
	Label        string
	Source       string
	// Pair is, for a preference pair, its chosen and rejected answers
	// rendered as training renders them (Reference is the chosen one).
	Pair *CasePair `json:",omitempty"`
}

// CasePair is a preference pair's two sides, as RenderPair renders them.
type CasePair struct {
	Chosen, Rejected Example
	RejectedText     string
}

// ErrNoCase is returned by Case for a plain-text record, which has no
// prompt and reference.
var ErrNoCase = errors.New("a plain-text record makes no eval case")

// TemplateNone trains conversations of one user and one assistant turn as
// plain text: the prompt, then the completion and EOS, with no chat
// template; what `finetune generate` without --chat serves.
const TemplateNone = "none"

// RenderOptions say how records become tokens.
type RenderOptions struct {
	// Template is the chat template: "" for the model's own, a llama.cpp
	// built-in name (chatml, llama2, llama3, mistral-v7, ...) or template
	// text, or TemplateNone.
	Template string
	// TrainOnInputs trains on every token, prompts included, not only on
	// the assistant's turns. Masked turns stay masked.
	TrainOnInputs bool
}

// Renderer turns records into examples and eval cases with a model's
// tokenizer and chat template, through llama.cpp: the same code that
// renders and tokenizes the prompt when the tuned model is served.
type Renderer struct {
	m     *llama.Model
	opts  RenderOptions
	tmpl  string // the template handed to llama.cpp; "" with TemplateNone
	about string
	// noTemplate is the error of a conversation when the model has no chat
	// template and none is named: plain text renders without one.
	noTemplate error

	pieceOnce sync.Once
	maxPiece  int
}

// MaxPieceBytes is the most bytes one token of the vocabulary spells
// (special tokens included): text of n bytes is at least n/MaxPieceBytes
// tokens.
func (r *Renderer) MaxPieceBytes() int {
	r.pieceOnce.Do(func() {
		r.maxPiece = 1
		for t := range r.m.VocabSize() {
			r.maxPiece = max(r.maxPiece, len(r.m.Piece(llama.Token(t), true)), len(r.m.TokenText(llama.Token(t))))
		}
	})
	return r.maxPiece
}

// NewRenderer checks that the template renders a conversation the way
// generation continues it, and that its assistant turns end with a token
// that stops generation: a model trained on turns without one would not
// stop when served. A model without a chat template renders plain text;
// a conversation is then an error that says to name a template.
func NewRenderer(m *llama.Model, opts RenderOptions) (*Renderer, error) {
	r := &Renderer{m: m, opts: opts}
	switch {
	case opts.Template == TemplateNone:
		if m.EOS() < 0 {
			return nil, fmt.Errorf("%s: the model has no EOS token to end completions with", m.Path)
		}
		r.about = "none (prompt and completion as plain text)"
		return r, nil
	case opts.Template != "":
		r.tmpl = opts.Template
		r.about = opts.Template
		if len(opts.Template) > 40 || strings.ContainsAny(opts.Template, "{\n") {
			r.about = fmt.Sprintf("given template text (%d bytes)", len(opts.Template))
		} else if !slices.Contains(llama.BuiltinTemplates(), opts.Template) {
			return nil, fmt.Errorf("unknown chat template %q: name one of llama.cpp's built-in templates (%s) or %q", opts.Template, strings.Join(llama.BuiltinTemplates(), ", "), TemplateNone)
		} else {
			r.about += " (built-in)"
		}
	default:
		r.tmpl = m.ChatTemplate()
		if r.tmpl == "" {
			r.noTemplate = fmt.Errorf("%s: the model has no chat template; name one of llama.cpp's built-in templates (chatml, llama2, llama3, mistral-v7, ...) or %q to train prompt and completion as plain text", m.Path, TemplateNone)
			r.about = "none (the model has none; plain text needs none)"
			return r, nil
		}
		r.about = fmt.Sprintf("the model's (%d bytes)", len(r.tmpl))
	}
	probe := Record{Messages: []Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello"}}, Source: "a test conversation"}
	if _, err := r.Render(probe); err != nil {
		var re *RowError
		if errors.As(err, &re) {
			err = errors.New(re.Msg)
		}
		return nil, fmt.Errorf("%s: chat template %s: %w", m.Path, r.about, err)
	}
	return r, nil
}

// Template describes the chat template in use.
func (r *Renderer) Template() string { return r.about }

// Model is the model whose tokenizer and template the renderer uses.
func (r *Renderer) Model() *llama.Model { return r.m }

// Render turns a record into training examples: almost always one.
//
// A conversation is rendered turn by turn with llama.cpp's template code:
// the context before each assistant turn is exactly the token sequence
// generation would use as its prompt (the conversation so far rendered with
// the assistant header, tokenized with BOS and special tokens), followed by
// the assistant's answer and the end-of-turn token that makes generation
// stop. Only the answers and their end-of-turn tokens are trained unless
// TrainOnInputs. When a later turn's prompt does not begin with the tokens
// of the turns before it (an answer that tokenizes differently in context),
// the conversation is split there into one more example, so that every
// trained token sees exactly the context serving gives it.
//
// Plain text is tokenized with BOS (as the model adds it) and ends with
// EOS; every token but the first is trained.
func (r *Renderer) Render(rec Record) ([]Example, error) {
	if rec.Rejected != nil {
		c, rj, err := r.RenderPair(rec)
		if err != nil {
			return nil, err
		}
		return []Example{c, rj}, nil
	}
	return r.render(rec, r.opts.TrainOnInputs)
}

// RenderPair renders a preference pair: its chosen and its rejected
// conversation, each exactly as Render renders a conversation, with only
// the answers after the prompt weighted (whatever TrainOnInputs says):
// those are the tokens whose log-probabilities preference tuning compares.
func (r *Renderer) RenderPair(rec Record) (chosen, rejected Example, err error) {
	if rec.Rejected == nil {
		return chosen, rejected, r.rowErr(rec, "", "not a preference pair")
	}
	side := func(name string, msgs []Message) (Example, error) {
		one := rec
		one.Messages, one.Rejected = msgs, nil
		exs, err := r.render(one, false)
		if err != nil {
			var re *RowError
			if errors.As(err, &re) && re.Field == "" {
				re.Field = name
			}
			return Example{}, err
		}
		if len(exs) != 1 {
			return Example{}, r.rowErr(rec, name, fmt.Sprintf("the answer's turns tokenize differently in context, so the conversation renders as %d examples: a preference pair must render as one", len(exs)))
		}
		return exs[0], nil
	}
	if chosen, err = side("chosen", rec.Messages); err != nil {
		return chosen, rejected, err
	}
	rejected, err = side("rejected", rec.Rejected)
	return chosen, rejected, err
}

func (r *Renderer) render(rec Record, trainInputs bool) ([]Example, error) {
	if rec.Messages == nil {
		tokens, err := r.m.Tokenize(rec.Text, true, false)
		if err != nil {
			return nil, r.rowErr(rec, "", err.Error())
		}
		if eos := r.m.EOS(); eos >= 0 {
			tokens = append(tokens, eos)
		}
		ex := Example{Tokens: tokens, Weights: make([]float32, len(tokens)), Source: rec.Source}
		for i := 1; i < len(tokens); i++ {
			ex.Weights[i] = 1
		}
		return []Example{ex}, nil
	}
	if r.noTemplate != nil {
		return nil, r.noTemplate
	}
	if r.tmpl == "" {
		return r.renderPlain(rec, trainInputs)
	}
	var out []Example
	ex := Example{Source: rec.Source}
	lm := make([]llama.Message, len(rec.Messages))
	for i, m := range rec.Messages {
		lm[i] = llama.Message{Role: m.Role, Content: m.Content}
	}
	turn := 0
	for k, msg := range rec.Messages {
		if msg.Role != "assistant" {
			continue
		}
		turn++
		prompt, err := llama.ApplyTemplate(r.tmpl, lm[:k], true)
		if err != nil {
			return nil, r.rowErr(rec, "", err.Error())
		}
		full, err := llama.ApplyTemplate(r.tmpl, lm[:k+1], false)
		if err != nil {
			return nil, r.rowErr(rec, "", err.Error())
		}
		if !strings.HasPrefix(full, prompt) {
			return nil, r.rowErr(rec, "", fmt.Sprintf("the template renders assistant turn %d differently from the prompt generation continues (prompt %q, with the turn %q): training would not match serving", turn, clip(prompt), clip(full)))
		}
		pt, err := r.m.Tokenize(prompt, true, true)
		if err != nil {
			return nil, r.rowErr(rec, "", err.Error())
		}
		lcp := commonPrefix(pt, ex.Tokens)
		if lcp < len(ex.Tokens) {
			// The earlier turns tokenize differently inside this turn's
			// prompt: what came before is one example, this turn starts
			// the next.
			if ex.Trained() > 0 {
				out = append(out, ex)
			}
			ex = Example{Source: rec.Source}
		}
		for i := len(ex.Tokens); i < len(pt); i++ {
			w := float32(0)
			if trainInputs && i >= lcp && i > 0 {
				w = 1
			}
			ex.Tokens = append(ex.Tokens, pt[i])
			ex.Weights = append(ex.Weights, w)
		}
		answer, err := r.continuation(prompt, full, pt, true)
		if err != nil {
			return nil, r.rowErr(rec, "", fmt.Sprintf("assistant turn %d: %v", turn, err))
		}
		end := -1
		for i, t := range answer {
			if r.m.IsEndOfGeneration(t) {
				if end >= 0 {
					return nil, r.rowErr(rec, "", fmt.Sprintf("assistant turn %d holds the end-of-generation token %q inside its text: generation would stop there", turn, r.m.TokenText(answer[end])))
				}
				end = i
			}
		}
		if end < 0 {
			return nil, r.rowErr(rec, "", fmt.Sprintf("the template ends the assistant's turn with %q, which holds no end-of-generation token of this model (%s): a model trained on it would not stop", full[len(prompt):], r.eogTokens()))
		}
		w := float32(1)
		if msg.Mask {
			w = 0
		}
		for _, t := range answer[:end+1] {
			ex.Tokens = append(ex.Tokens, t)
			ex.Weights = append(ex.Weights, w)
		}
	}
	if len(ex.Weights) > 0 {
		ex.Weights[0] = 0
	}
	return append(out, ex), nil
}

// renderPlain renders a prompt and completion without a chat template.
func (r *Renderer) renderPlain(rec Record, trainInputs bool) ([]Example, error) {
	msgs := rec.Messages
	if len(msgs) != 2 || msgs[0].Role != "user" {
		return nil, r.rowErr(rec, "", fmt.Sprintf("without a chat template (template %q) a record must be one prompt and one completion, not a conversation of %d turns with roles %s", TemplateNone, len(msgs), rolesOf(msgs)))
	}
	prompt, full := msgs[0].Content, msgs[0].Content+msgs[1].Content
	pt, err := r.m.Tokenize(prompt, true, false)
	if err != nil {
		return nil, r.rowErr(rec, "", err.Error())
	}
	answer, err := r.continuation(prompt, full, pt, false)
	if err != nil {
		return nil, r.rowErr(rec, "", "completion: "+err.Error())
	}
	ex := Example{Tokens: append(slices.Clip(pt), append(answer, r.m.EOS())...), Source: rec.Source}
	ex.Weights = make([]float32, len(ex.Tokens))
	for i := 1; i < len(ex.Weights); i++ {
		if i >= len(pt) || trainInputs {
			ex.Weights[i] = 1
		}
		if i >= len(pt) && msgs[1].Mask {
			ex.Weights[i] = 0
		}
	}
	return []Example{ex}, nil
}

// continuation returns the tokens of full after prompt, given the prompt's
// tokens pt: the tokens full has after pt when tokenizing full begins with
// pt (nearly always), and otherwise, when the prompt's last characters and
// the answer's first ones merge into one token, the answer tokenized on its
// own, checked to spell the answer exactly.
func (r *Renderer) continuation(prompt, full string, pt []int32, special bool) ([]int32, error) {
	ft, err := r.m.Tokenize(full, true, special)
	if err != nil {
		return nil, err
	}
	if commonPrefix(ft, pt) == len(pt) {
		return ft[len(pt):], nil
	}
	answer := full[len(prompt):]
	// Tokenized on its own, a SentencePiece vocabulary puts a space in
	// front of the answer; behind a sentinel it does not.
	for _, sentinel := range []string{"\n", " ", "."} {
		st, err := r.m.Tokenize(sentinel+answer, false, special)
		if err != nil {
			return nil, err
		}
		var spelled []byte
		for j, t := range st {
			spelled = append(spelled, r.m.Piece(t, special)...)
			if s := string(spelled); s == sentinel || s == " "+sentinel {
				if rest := st[j+1:]; r.spells(rest, answer) {
					return rest, nil
				}
				break
			} else if len(s) > len(sentinel)+1 {
				break
			}
		}
	}
	return nil, fmt.Errorf("cannot tokenize the answer %q as a continuation of the prompt", clip(answer))
}

// spells reports whether tokens spell text, up to the first
// end-of-generation token (what follows it is not generated).
func (r *Renderer) spells(tokens []int32, text string) bool {
	var b []byte
	for _, t := range tokens {
		b = append(b, r.m.Piece(t, true)...)
		if r.m.IsEndOfGeneration(t) {
			return strings.HasPrefix(text, string(b))
		}
	}
	return string(b) == text
}

// Case makes the eval case of a conversation: its turns before the last
// assistant turn, rendered for generation, with the last turn as the
// reference. A plain-text record gives ErrNoCase.
func (r *Renderer) Case(rec Record) (Case, error) {
	if rec.Messages == nil {
		return Case{}, ErrNoCase
	}
	if r.noTemplate != nil {
		return Case{}, r.noTemplate
	}
	n := len(rec.Messages) - 1
	if rec.Rejected != nil {
		n = rec.PromptTurns // a pair's case: its prompt, the chosen answer as reference
	}
	c := Case{Prompt: rec.Messages[:n:n], Reference: rec.Messages[n].Content, Label: rec.Label, Source: rec.Source}
	special := r.tmpl != ""
	if !special {
		if n != 1 || c.Prompt[0].Role != "user" {
			return Case{}, r.rowErr(rec, "", fmt.Sprintf("without a chat template (template %q) a record must be one prompt and one completion", TemplateNone))
		}
		c.RenderedPrompt = c.Prompt[0].Content
	} else {
		lm := make([]llama.Message, n)
		for i, m := range c.Prompt {
			lm[i] = llama.Message{Role: m.Role, Content: m.Content}
		}
		var err error
		if c.RenderedPrompt, err = llama.ApplyTemplate(r.tmpl, lm, true); err != nil {
			return Case{}, r.rowErr(rec, "", err.Error())
		}
	}
	var err error
	if c.PromptTokens, err = r.m.Tokenize(c.RenderedPrompt, true, special); err != nil {
		return Case{}, r.rowErr(rec, "", err.Error())
	}
	if rec.Rejected != nil {
		ch, rj, err := r.RenderPair(rec)
		if err != nil {
			return Case{}, err
		}
		c.Pair = &CasePair{Chosen: ch, Rejected: rj, RejectedText: rec.Rejected[len(rec.Rejected)-1].Content}
	}
	return c, nil
}

// Segment is a stretch of an example's text that is all trained or all not.
type Segment struct {
	Text    string `json:"text"`
	Trained bool   `json:"trained"`
}

// Segments spells an example out, special tokens included, in stretches of
// trained and untrained tokens: what the model will learn, for a person to
// read.
func (r *Renderer) Segments(ex Example) []Segment {
	var out []Segment
	var cur []byte
	trained := false
	for i, t := range ex.Tokens {
		w := ex.Weights[i] > 0
		if w != trained && len(cur) > 0 {
			out = append(out, Segment{Text: strings.ToValidUTF8(string(cur), "\uFFFD"), Trained: trained})
			cur = cur[:0]
		}
		trained = w
		cur = append(cur, r.m.Piece(t, true)...)
	}
	if len(cur) > 0 {
		out = append(out, Segment{Text: strings.ToValidUTF8(string(cur), "\uFFFD"), Trained: trained})
	}
	return out
}

func (r *Renderer) rowErr(rec Record, field, msg string) *RowError {
	return &RowError{Source: rec.Source, Field: field, Msg: msg}
}

func (r *Renderer) eogTokens() string {
	var s []string
	for _, t := range []int32{r.m.EOS(), r.m.EOT()} {
		if t >= 0 && !slices.Contains(s, fmt.Sprintf("%q", r.m.TokenText(t))) {
			s = append(s, fmt.Sprintf("%q", r.m.TokenText(t)))
		}
	}
	if len(s) == 0 {
		return "it has none"
	}
	return "it has " + strings.Join(s, ", ")
}

func commonPrefix(a, b []int32) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func rolesOf(msgs []Message) string {
	r := make([]string, len(msgs))
	for i, m := range msgs {
		r[i] = m.Role
	}
	return strings.Join(r, ", ")
}

// clip shortens text quoted in an error.
func clip(s string) string {
	r := []rune(s)
	if len(r) <= 120 {
		return s
	}
	return string(r[:60]) + "…" + string(r[len(r)-50:])
}
