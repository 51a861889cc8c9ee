package publish

import (
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/llamatest"
)

func chatModel(t *testing.T) *llama.Model {
	t.Helper()
	m, err := llama.LoadModel(llamatest.ChatMLModel(t), llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// TestResolveTemplate: the served template is one that renders every probe
// conversation exactly as llama.cpp renders it for training, for the
// model's own Jinja template and for llama.cpp built-ins; a template that
// cannot be matched, or a given one that differs, is refused with the
// first difference.
func TestResolveTemplate(t *testing.T) {
	m := chatModel(t)
	for _, tc := range []struct {
		train, source string
		stop          []string
	}{
		{"", "Ollama's chatml template", []string{"<|im_start|>", "<|im_end|>"}},
		{"chatml", "finetune's chatml template", []string{"<|im_start|>", "<|im_end|>"}},
		{"llama3", "finetune's llama3 template", []string{"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}},
		{"phi3", "finetune's phi3 template", []string{"<|end|>", "<|system|>", "<|user|>", "<|assistant|>"}},
		{"zephyr", "finetune's zephyr template", []string{"<|system|>", "<|user|>", "<|assistant|>", "<|endoftext|>"}},
		{"gemma", "finetune's gemma template", []string{"<start_of_turn>", "<end_of_turn>"}},
		{"llama2", "finetune's llama2 template", []string{"[INST]", "[/INST]"}},
		{"mistral-v7", "finetune's mistral-v7 template", []string{"[INST]", "[/INST]", "[SYSTEM_PROMPT]"}},
		{"none", "plain", nil},
	} {
		got, err := ResolveTemplate(TemplateSpec{Model: m.ChatTemplate(), Train: tc.train})
		if err != nil {
			t.Errorf("%q: %v", tc.train, err)
			continue
		}
		if got.Source != tc.source || strings.Join(got.Stop, " ") != strings.Join(tc.stop, " ") {
			t.Errorf("%q: got %s with stop %q, want %s with %q", tc.train, got.Source, got.Stop, tc.source, tc.stop)
		}
	}
	_, err := ResolveTemplate(TemplateSpec{Model: m.ChatTemplate(), Train: "vicuna"})
	if err == nil || !strings.Contains(err.Error(), `the training template "vicuna"`) || !strings.Contains(err.Error(), `where training has "USER: Hi\nASSISTANT:"`) || !strings.Contains(err.Error(), "--template FILE") {
		t.Errorf("vicuna: %v", err)
	}
	// A given template is checked: one that forgets the newline after
	// the role is refused, pointing at the difference.
	bad := "{{- range .Messages }}<|im_start|>{{ .Role }}{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
	if _, err := ResolveTemplate(TemplateSpec{Model: m.ChatTemplate(), Given: bad}); err == nil || !strings.Contains(err.Error(), `it renders "_start|>userHi<|im_end|>`) {
		t.Errorf("bad given template: %v", err)
	}
	good := builtinTemplates[0].Text
	if got, err := ResolveTemplate(TemplateSpec{Model: m.ChatTemplate(), Given: good}); err != nil || got.Source != "given" {
		t.Errorf("good given template: %+v %v", got, err)
	}
	// The Ollama model's own template comes first when it agrees, with
	// its stops; not when it differs.
	if got, err := ResolveTemplate(TemplateSpec{Model: m.ChatTemplate(), Inherited: good, InheritedFrom: "base:1b", InheritedStop: []string{"X"}}); err != nil || got.Source != "the Ollama model base:1b" || got.Stop[0] != "X" {
		t.Errorf("inherited: %+v %v", got, err)
	}
	if got, err := ResolveTemplate(TemplateSpec{Model: m.ChatTemplate(), Inherited: bad, InheritedFrom: "base:1b"}); err != nil || got.Source != "Ollama's chatml template" {
		t.Errorf("inherited, differing: %+v %v", got, err)
	}
	if _, err := ResolveTemplate(TemplateSpec{Model: m.ChatTemplate(), Train: "none", Given: good}); err == nil {
		t.Error("a template given for a model trained without one was accepted")
	}
	// A template with a default system turn (SmolLM2's) is served by one
	// that adds it too.
	smol := "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
	if got, err := ResolveTemplate(TemplateSpec{Model: smol}); err != nil || got.Source != "finetune's chatml template with the model's default system prompt" {
		t.Errorf("SmolLM2's template: %+v %v", got, err)
	}
}
