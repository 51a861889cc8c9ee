package datasets

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/llama"
)

// conversations the render-equality test runs through every template.
var renderCases = [][]Message{
	{{Role: "user", Content: "What is the capital of France?"}, {Role: "assistant", Content: "Paris."}},
	{{Role: "system", Content: "You answer in one word."}, {Role: "user", Content: "Colour of the sky?"}, {Role: "assistant", Content: "Blue"}},
	{{Role: "user", Content: "Count to three."}, {Role: "assistant", Content: "One, two, three."},
		{Role: "user", Content: "And back?"}, {Role: "assistant", Content: "Three, two, one."}},
	// Answers that start with punctuation merge with llama2's "[/INST]"
	// when the text is tokenized whole.
	{{Role: "user", Content: "Say something odd."}, {Role: "assistant", Content: ", comma first"}},
	{{Role: "user", Content: "Odd again"}, {Role: "assistant", Content: ":colon"}, {Role: "user", Content: "More?"}, {Role: "assistant", Content: ")paren"}},
	{{Role: "user", Content: "  spaced  "}, {Role: "assistant", Content: "  Grüße, 東京 🚀  "}},
}

// generationPrompt is what `finetune generate --chat` feeds the model for a
// conversation so far (cmd/finetune/generate.go).
func generationPrompt(t *testing.T, m *llama.Model, template string, msgs []Message) []int32 {
	t.Helper()
	lm := make([]llama.Message, len(msgs))
	for i, msg := range msgs {
		lm[i] = llama.Message{Role: msg.Role, Content: msg.Content}
	}
	text, err := m.ApplyChatTemplate(template, lm, true)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := m.Tokenize(text, true, true)
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

func spell(m *llama.Model, tokens []int32) string {
	var b []byte
	for _, t := range tokens {
		b = append(b, m.Piece(t, false)...)
	}
	return string(b)
}

// TestRenderMatchesGeneration shows that what is trained is what is served:
// for every assistant turn, some example holds, at its start, exactly the
// tokens generation uses as the prompt for that turn, all untrained,
// followed by trained tokens that spell the answer and end with the
// template's end-of-turn token, which stops generation.
func TestRenderMatchesGeneration(t *testing.T) {
	for _, c := range []struct {
		name, template string
		model          func(testing.TB) *llama.Model
		trim           bool   // the template trims contents (llama3)
		lead           string // what the template puts before an answer
		end            string // the token that ends an assistant turn
	}{
		{"llama-2 vocab, llama2 built-in", "llama2", llama2Model, false, "", "</s>"},
		{"llama-2 vocab, mistral-v7 built-in", "mistral-v7", llama2Model, false, " ", "</s>"},
		{"llama-3 style model, embedded template", "", llama3Model, true, "", "<|eot_id|>"},
		{"chatml model, embedded template", "", chatmlModel, false, "", "<|im_end|>"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := c.model(t)
			r, err := NewRenderer(m, RenderOptions{Template: c.template})
			if err != nil {
				t.Fatal(err)
			}
			for ci, msgs := range renderCases {
				exs, err := r.Render(Record{Messages: msgs, Source: fmt.Sprintf("case %d", ci)})
				if err != nil {
					t.Fatalf("case %d: %v", ci, err)
				}
				// The weights each example should have: 1 exactly on the
				// answers (and their end tokens) found after their prompts.
				want := make([][]float32, len(exs))
				for i, ex := range exs {
					want[i] = make([]float32, len(ex.Tokens))
				}
				turns := 0
				for k, msg := range msgs {
					if msg.Role != "assistant" {
						continue
					}
					turns++
					pt := generationPrompt(t, m, c.template, msgs[:k])
					answer := msg.Content
					if c.trim {
						answer = strings.TrimSpace(answer)
					}
					answer = c.lead + answer
					i := slices.IndexFunc(exs, func(ex Example) bool {
						return len(ex.Tokens) > len(pt) && slices.Equal(ex.Tokens[:len(pt)], pt)
					})
					if i < 0 {
						t.Fatalf("case %d turn %d: no example starts with the generation prompt %v", ci, turns, pt)
					}
					rest := exs[i].Tokens[len(pt):]
					end := slices.IndexFunc(rest, m.IsEndOfGeneration)
					if end < 0 {
						t.Fatalf("case %d turn %d: no end-of-generation token after the prompt", ci, turns)
					}
					if got := spell(m, rest[:end]); got != answer {
						t.Fatalf("case %d turn %d: the answer spells %q, want %q", ci, turns, got, answer)
					}
					if got := m.TokenText(rest[end]); got != c.end {
						t.Fatalf("case %d turn %d: the turn ends with %q, want %q", ci, turns, got, c.end)
					}
					for j := len(pt); j <= len(pt)+end; j++ {
						want[i][j] = 1
					}
				}
				for i, ex := range exs {
					if !slices.Equal(ex.Weights, want[i]) {
						t.Fatalf("case %d example %d: weights\n%v, want\n%v", ci, i, ex.Weights, want[i])
					}
					if !m.IsEndOfGeneration(ex.Tokens[len(ex.Tokens)-1]) {
						t.Fatalf("case %d: an example ends with %q, not the end-of-turn token", ci, m.TokenText(ex.Tokens[len(ex.Tokens)-1]))
					}
				}
			}
		})
	}
}

// The llama2 template puts no space between "[/INST]" and the answer, so an
// answer starting with "," tokenizes, as part of the whole text, into "],"
// — a token the served prompt never ends with. The example must still hold
// the served prompt exactly, and a later turn whose prompt tokenizes the
// earlier answer differently starts a second example.
func TestRenderPunctuationAfterLlama2Prompt(t *testing.T) {
	m := llama2Model(t)
	r, err := NewRenderer(m, RenderOptions{Template: "llama2"})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []Message{{Role: "user", Content: "Odd"}, {Role: "assistant", Content: ", comma"}, {Role: "user", Content: "More"}, {Role: "assistant", Content: "Fine"}}
	whole, _ := llama.ApplyTemplate("llama2", []llama.Message{{Role: "user", Content: "Odd"}, {Role: "assistant", Content: ", comma"}}, false)
	wt, _ := m.Tokenize(whole, true, true)
	pt := generationPrompt(t, m, "llama2", msgs[:1])
	if slices.Equal(wt[:len(pt)], pt) {
		t.Fatalf("the premise fails: the whole text tokenizes with the prompt's tokens %v", pt)
	}
	exs, err := r.Render(Record{Messages: msgs})
	if err != nil {
		t.Fatal(err)
	}
	if len(exs) != 2 {
		t.Fatalf("%d examples, want 2 (the second turn's prompt tokenizes the first answer differently)", len(exs))
	}
	if !slices.Equal(exs[0].Tokens[:len(pt)], pt) || spell(m, exs[0].Tokens[len(pt):len(exs[0].Tokens)-1]) != ", comma" {
		t.Fatalf("first example %v does not continue the prompt %v with \", comma\"", exs[0].Tokens, pt)
	}
	pt2 := generationPrompt(t, m, "llama2", msgs[:3])
	if !slices.Equal(exs[1].Tokens[:len(pt2)], pt2) {
		t.Fatalf("second example does not start with the second turn's prompt")
	}
	for i, w := range exs[1].Weights[:len(pt2)] {
		if w != 0 {
			t.Fatalf("second example trains prompt token %d (the first answer was trained in the first example)", i)
		}
	}
}

func TestRenderWeights(t *testing.T) {
	m := llama3Model(t)
	conv := []Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello", Mask: true}, {Role: "user", Content: "Bye"}, {Role: "assistant", Content: "Goodbye"}}
	r, err := NewRenderer(m, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	exs, err := r.Render(Record{Messages: conv})
	if err != nil || len(exs) != 1 {
		t.Fatalf("%d examples, %v", len(exs), err)
	}
	ex := exs[0]
	// Only "Goodbye<|eot_id|>" is trained: the masked turn is context.
	var trained []int32
	for i, w := range ex.Weights {
		if w == 1 {
			trained = append(trained, ex.Tokens[i])
		}
	}
	if got := spell(m, trained); got != "Goodbye" || m.TokenText(trained[len(trained)-1]) != "<|eot_id|>" {
		t.Fatalf("trained %q (last %q), want Goodbye and <|eot_id|>", got, m.TokenText(trained[len(trained)-1]))
	}

	r, err = NewRenderer(m, RenderOptions{TrainOnInputs: true})
	if err != nil {
		t.Fatal(err)
	}
	exs, err = r.Render(Record{Messages: conv})
	if err != nil {
		t.Fatal(err)
	}
	// Everything but the first token and the masked answer is trained.
	masked := 0
	for i, w := range exs[0].Weights {
		if w == 0 && i > 0 {
			masked++
		}
	}
	hello, _ := m.Tokenize("Hello<|eot_id|>", false, true)
	if exs[0].Weights[0] != 0 || masked != len(hello) {
		t.Fatalf("train on inputs: %d untrained tokens after the first, want %d (the masked turn)", masked, len(hello))
	}
	segs := r.Segments(exs[0])
	if len(segs) != 4 || segs[0].Trained || segs[0].Text != "<|begin_of_text|>" || !segs[1].Trained || segs[2].Trained || segs[2].Text != "Hello<|eot_id|>" ||
		!segs[3].Trained || !strings.HasSuffix(segs[3].Text, "<|end_header_id|>\n\nGoodbye<|eot_id|>") {
		t.Fatalf("segments %+v", segs)
	}
}

func TestRenderPlainTextAndCompletion(t *testing.T) {
	m := llama2Model(t)
	r, err := NewRenderer(m, RenderOptions{Template: TemplateNone})
	if err != nil {
		t.Fatal(err)
	}
	text := "Once upon a time </s> there was a cat."
	exs, err := r.Render(Record{Text: text})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := m.Tokenize(text, true, false)
	want = append(want, m.EOS())
	if !slices.Equal(exs[0].Tokens, want) || want[0] != m.BOS() {
		t.Fatalf("text tokens %v, want BOS, the text (special text as text) and EOS: %v", exs[0].Tokens, want)
	}
	if exs[0].Weights[0] != 0 || slices.Contains(exs[0].Weights[1:], 0) {
		t.Fatalf("text weights %v, want all trained but the first", exs[0].Weights)
	}

	prompt, completion := "Translate to French: cat =>", " chat"
	exs, err = r.Render(Record{Messages: []Message{{Role: "user", Content: prompt}, {Role: "assistant", Content: completion}}})
	if err != nil {
		t.Fatal(err)
	}
	pt, _ := m.Tokenize(prompt, true, false) // what generate without --chat feeds the model
	ex := exs[0]
	if !slices.Equal(ex.Tokens[:len(pt)], pt) || spell(m, ex.Tokens[len(pt):len(ex.Tokens)-1]) != completion || ex.Tokens[len(ex.Tokens)-1] != m.EOS() {
		t.Fatalf("completion example %v: want the prompt %v, then %q and EOS", ex.Tokens, pt, completion)
	}
	if slices.Contains(ex.Weights[:len(pt)], 1) || slices.Contains(ex.Weights[len(pt):], 0) {
		t.Fatalf("completion weights %v", ex.Weights)
	}

	_, err = r.Render(Record{Messages: renderCases[2], Source: "x.jsonl:3"})
	if err == nil || !strings.Contains(err.Error(), "x.jsonl:3") || !strings.Contains(err.Error(), "one prompt and one completion") {
		t.Fatalf("a conversation without a template: %v", err)
	}
}

func TestRendererRefuses(t *testing.T) {
	m := llama2Model(t)
	for _, c := range []struct {
		template string
		want     []string
	}{
		{"no-such", []string{`unknown chat template "no-such"`, "chatml"}},
		// ChatML ends turns with <|im_end|>, which the Llama-2 vocabulary
		// does not have: a model trained on it would never stop.
		{"chatml", []string{"<|im_end|>", "no end-of-generation token", "would not stop", `"</s>"`}},
	} {
		_, err := NewRenderer(m, RenderOptions{Template: c.template})
		if err == nil {
			t.Fatalf("template %q: no error", c.template)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("template %q: error %q lacks %q", c.template, err, w)
			}
		}
	}
	r, err := NewRenderer(m, RenderOptions{Template: "llama2"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Render(Record{Source: "d.jsonl:7", Messages: []Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Done</s> and more"}}})
	if err == nil || !strings.Contains(err.Error(), "d.jsonl:7") || !strings.Contains(err.Error(), "inside its text") {
		t.Fatalf("an answer holding </s>: %v", err)
	}
}

// TestPlainTextNeedsNoTemplate: on a model without a chat template, plain
// text renders with no template named; a conversation is refused, saying
// to name one.
func TestPlainTextNeedsNoTemplate(t *testing.T) {
	m := llama2Model(t)
	r, err := NewRenderer(m, RenderOptions{})
	if err != nil {
		t.Fatalf("no template named, for plain text: %v", err)
	}
	text := "Once upon a time there was a cat."
	exs, err := r.Render(Record{Text: text, Source: "t.jsonl:1"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := m.Tokenize(text, true, false)
	if want = append(want, m.EOS()); !slices.Equal(exs[0].Tokens, want) {
		t.Fatalf("text tokens %v, want BOS, the text and EOS: %v", exs[0].Tokens, want)
	}
	if _, err := r.Case(Record{Text: text}); !errors.Is(err, ErrNoCase) {
		t.Fatalf("Case of plain text: %v, want ErrNoCase", err)
	}
	chat := Record{Messages: []Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello"}}, Source: "t.jsonl:2"}
	_, rerr := r.Render(chat)
	_, cerr := r.Case(chat)
	for _, err := range []error{rerr, cerr} {
		var re *RowError
		if err == nil || errors.As(err, &re) {
			t.Fatalf("a conversation without a template: %v, want an error that is not a bad row (skipping would not help)", err)
		}
		for _, w := range []string{m.Path, "no chat template", "llama3", TemplateNone} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q lacks %q", err, w)
			}
		}
	}

	// Through Scan: a text data set; a chat data set stops the scan even
	// when bad rows may be skipped.
	cfg := Config{Train: writeFile(t, "text.jsonl", `{"text": "one cat"}`+"\n"+`{"text": "two cats"}`+"\n"), MaxLength: 64}
	rep, err := Scan(cfg, m, nil)
	if err != nil || rep.Train.Examples != 2 {
		t.Fatalf("text data set: %v, report %+v", err, rep)
	}
	cfg.Train, cfg.MaxBadRows = writeFile(t, "chat.jsonl", `{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}`+"\n"), 5
	if _, err := Scan(cfg, m, nil); err == nil || !strings.Contains(err.Error(), "no chat template") {
		t.Fatalf("a conversation in the data: %v", err)
	}
}

func TestCase(t *testing.T) {
	m := llama3Model(t)
	r, err := NewRenderer(m, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "2+2?"}, {Role: "assistant", Content: "4"}}
	c, err := r.Case(Record{Messages: msgs, Label: "math", Source: "e.jsonl:2"})
	if err != nil {
		t.Fatal(err)
	}
	lm := []llama.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "2+2?"}}
	want, _ := m.ApplyChatTemplate("", lm, true)
	if c.RenderedPrompt != want || !slices.Equal(c.PromptTokens, generationPrompt(t, m, "", msgs[:2])) {
		t.Fatalf("rendered prompt %q, want %q", c.RenderedPrompt, want)
	}
	if c.Reference != "4" || c.Label != "math" || c.Source != "e.jsonl:2" || len(c.Prompt) != 2 {
		t.Fatalf("case %+v", c)
	}
	if _, err := r.Case(Record{Text: "plain"}); !errors.Is(err, ErrNoCase) {
		t.Fatalf("a text record: %v, want ErrNoCase", err)
	}
}
