package publish

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ollama/ollama/api"
	otemplate "github.com/ollama/ollama/template"

	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/textfmt"
)

// OllamaTemplate is a chat template in Ollama's Go template language with
// the stop parameters that go with it.
type OllamaTemplate struct {
	// Source says where it came from: "given", "the Ollama model NAME",
	// "Ollama's <name> template", "finetune's <name> template" or "plain".
	Source string
	Text   string
	Stop   []string
}

// plainTemplate serves a model trained with template "none": the prompt as
// it is.
var plainTemplate = OllamaTemplate{Source: "plain", Text: "{{ .Prompt }}"}

// builtinTemplates are Ollama templates for llama.cpp built-in chat
// templates that Ollama's own detection may not find (a recipe can name a
// built-in template for a model whose GGUF has none). Each is used only
// when it renders the probe conversations exactly as llama.cpp does.
var builtinTemplates = []OllamaTemplate{
	{Source: "finetune's chatml template",
		Text: "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n",
		Stop: []string{"<|im_start|>", "<|im_end|>"}},
	{Source: "finetune's llama3 template",
		Text: "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
		Stop: []string{"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}},
	{Source: "finetune's phi3 template",
		Text: "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n",
		Stop: []string{"<|end|>", "<|system|>", "<|user|>", "<|assistant|>"}},
	{Source: "finetune's zephyr template",
		Text: "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|endoftext|>\n{{ end }}<|assistant|>\n",
		Stop: []string{"<|system|>", "<|user|>", "<|assistant|>", "<|endoftext|>"}},
	{Source: "finetune's gemma template",
		Text: `{{- $system := "" }}{{- range .Messages }}{{- if eq .Role "system" }}{{ $system = .Content }}{{- else }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}{{ .Role }}{{ end }}` + "\n" +
			`{{ if $system }}{{ $system }}` + "\n\n" + `{{ $system = "" }}{{ end }}{{ .Content }}<end_of_turn>` + "\n" + `{{ end }}{{- end }}<start_of_turn>model` + "\n",
		Stop: []string{"<start_of_turn>", "<end_of_turn>"}},
	{Source: "finetune's llama2 template",
		Text: `{{- $system := "" }}{{- range .Messages }}{{- if eq .Role "system" }}{{ $system = .Content }}{{- else if eq .Role "user" }}[INST] {{ if $system }}{{ $system }}` + "\n" +
			`{{ $system = "" }}{{ end }}{{ .Content }} [/INST]{{- else }}{{ .Content }}</s>{{- end }}{{- end }}`,
		Stop: []string{"[INST]", "[/INST]"}},
	{Source: "finetune's mistral-v7 template",
		Text: `{{- range .Messages }}{{- if eq .Role "system" }}[SYSTEM_PROMPT] {{ .Content }}[/SYSTEM_PROMPT]{{- else if eq .Role "user" }}[INST] {{ .Content }}[/INST]{{- else }} {{ .Content }}</s>{{- end }}{{- end }}`,
		Stop: []string{"[INST]", "[/INST]", "[SYSTEM_PROMPT]"}},
}

// chatMLWithSystem is finetune's chatml template with the default system
// turn of a template like SmolLM2's (llama.DefaultSystem) before a
// conversation that does not start with a system turn, as training renders
// it. Ollama's chatml template has no such turn.
func chatMLWithSystem(sys string) OllamaTemplate {
	t := builtinTemplates[0]
	t.Source = "finetune's chatml template with the model's default system prompt"
	t.Text = `{{- if and .Messages (ne (index .Messages 0).Role "system") }}<|im_start|>system` + "\n" +
		`{{ ` + strconv.Quote(sys) + ` }}<|im_end|>` + "\n" + `{{ end }}` + t.Text
	return t
}

// probes are the conversations a served template must render exactly as
// llama.cpp renders them for training: one turn, a system prompt, several
// turns, text over several lines.
var probes = [][]llama.Message{
	{{Role: "user", Content: "Hi"}},
	{{Role: "system", Content: "You answer in one word."}, {Role: "user", Content: "What colour is the sky?"}},
	{{Role: "user", Content: "Name a fruit."}, {Role: "assistant", Content: "Apple."}, {Role: "user", Content: "Another one,\nplease."}},
	{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "a"}, {Role: "assistant", Content: "b"}, {Role: "user", Content: "c"}},
}

// TemplateSpec says how training rendered conversations and what may serve
// them.
type TemplateSpec struct {
	// Train is the recipe's data.template: "" for the model's own, a
	// llama.cpp built-in name, template text, or "none".
	Train string
	// Model is the base model's own chat template (its GGUF's
	// tokenizer.chat_template), used when Train is "".
	Model string
	// Given is an Ollama template text a person chose; it is checked like
	// any other.
	Given string
	// Inherited is the template of the Ollama model the adapter is
	// published FROM, tried first; InheritedStop its stop parameters.
	Inherited     string
	InheritedFrom string
	InheritedStop []string
}

// ResolveTemplate finds an Ollama template under which the served model
// sees exactly the prompts the tuned model was trained on: it renders the
// probe conversations with llama.cpp (the training renderer) and with each
// candidate in Ollama's template engine, and takes the first candidate that
// agrees on every one. Candidates: the given template, else the inherited
// one, Ollama's own pick for the model's Jinja template (what `ollama
// create` would choose), and finetune's templates for llama.cpp built-ins.
func ResolveTemplate(s TemplateSpec) (OllamaTemplate, error) {
	if s.Train == "none" {
		if s.Given != "" {
			return OllamaTemplate{}, errors.New(`the adapter was trained without a chat template (template "none"): the served model must get the prompt as it is, so give no Ollama template`)
		}
		return plainTemplate, nil
	}
	train := s.Train
	if train == "" {
		train = s.Model
		if train == "" {
			return OllamaTemplate{}, errors.New("the base model has no chat template and none is named for the adapter: say which one training used (the recipe's data.template, or --chat-template NAME, or --chat-template none for plain prompt and completion)")
		}
	}
	var want []string
	var wantMsgs [][]llama.Message
	for _, p := range probes {
		r, err := llama.ApplyTemplate(train, p, true)
		if err != nil {
			continue // a template without system turns, say
		}
		want = append(want, r)
		wantMsgs = append(wantMsgs, p)
	}
	if len(want) == 0 {
		return OllamaTemplate{}, fmt.Errorf("llama.cpp cannot render conversations with the training template %q", textfmt.Shorten(train, 60))
	}

	var cands []OllamaTemplate
	if s.Given != "" {
		cands = append(cands, OllamaTemplate{Source: "given", Text: s.Given})
	} else {
		if s.Inherited != "" {
			cands = append(cands, OllamaTemplate{Source: "the Ollama model " + s.InheritedFrom, Text: s.Inherited, Stop: s.InheritedStop})
		}
		if n, err := otemplate.Named(train); err == nil {
			t := OllamaTemplate{Source: "Ollama's " + n.Name + " template", Text: string(n.Bytes)}
			if n.Parameters != nil {
				t.Stop = n.Parameters.Stop
			}
			cands = append(cands, t)
		}
		if sys, ok := llama.DefaultSystem(train); ok {
			cands = append(cands, chatMLWithSystem(sys))
		}
		cands = append(cands, builtinTemplates...)
	}
	bestSource, best, bestCommon := "", "", -1
	for _, c := range cands {
		diff, common, err := renderDiff(c.Text, wantMsgs, want)
		if err == nil && diff == "" {
			return c, nil
		}
		if err != nil {
			diff = err.Error()
		}
		if common > bestCommon {
			bestSource, best, bestCommon = c.Source, diff, common
		}
	}
	what := fmt.Sprintf("the training template %q", textfmt.Shorten(train, 60))
	if s.Given != "" {
		return OllamaTemplate{}, fmt.Errorf("the given Ollama template does not render chats as %s does: it %s", what, best)
	}
	return OllamaTemplate{}, fmt.Errorf("none of the %d Ollama templates finetune knows renders chats exactly as %s does (the nearest, %s, %s); write one in Ollama's template language and give it with --template FILE",
		len(cands), what, bestSource, best)
}

// renderDiff renders msgs with the Ollama template text and describes the
// first difference from want ("" when every rendering agrees); common is
// how many bytes agreed before it, over all renderings.
func renderDiff(text string, msgs [][]llama.Message, want []string) (diff string, common int, err error) {
	t, err := otemplate.Parse(text)
	if err != nil {
		return "", 0, fmt.Errorf("is not a valid Ollama template: %v", err)
	}
	for i, p := range msgs {
		var am []api.Message
		for _, m := range p {
			am = append(am, api.Message{Role: m.Role, Content: m.Content})
		}
		var b strings.Builder
		if err := t.Execute(&b, otemplate.Values{Messages: am}); err != nil {
			return "", common, fmt.Errorf("fails to render: %v", err)
		}
		got := b.String()
		n := 0
		for n < len(got) && n < len(want[i]) && got[n] == want[i][n] {
			n++
		}
		common += n
		if got != want[i] {
			return fmt.Sprintf("renders %q where training has %q", firstDiff(got, n), firstDiff(want[i], n)), common, nil
		}
	}
	return "", common, nil
}

// firstDiff is s from a little before position i.
func firstDiff(s string, i int) string {
	return textfmt.Shorten(s[max(0, i-12):], 40)
}
