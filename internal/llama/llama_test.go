package llama

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
)

func loadModel(t *testing.T, path string) *Model {
	t.Helper()
	m, err := LoadModel(path, ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// generate runs greedy generation and returns the text.
func generate(t *testing.T, m *Model, prompt string, n int) (string, Stats) {
	t.Helper()
	toks, err := m.Tokenize(prompt, true, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := NewContext(m, ContextOptions{Context: len(toks) + n + 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	var out strings.Builder
	st, err := Generate(context.Background(), ctx, toks, GenerateOptions{MaxTokens: n}, func(s string) { out.WriteString(s) })
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), st
}

func TestGreedyGenerationStories(t *testing.T) {
	m := loadModel(t, shared.Path(t, "models/stories260K.gguf"))
	text, st := generate(t, m, "Once upon a time", 40)
	// TinyStories' opening, as the model was trained to write it.
	want := ", there was a little girl named Lily. She loved to play outside"
	if !strings.HasPrefix(text, want) {
		t.Fatalf("greedy continuation of %q = %q, want it to start with %q", "Once upon a time", text, want)
	}
	if st.GeneratedTokens != 40 || st.Stop != StopMaxTokens || len(st.Tokens) != 40 {
		t.Fatalf("stats = %+v, want 40 tokens stopped by max-tokens", st)
	}
	if m.Detokenize(st.Tokens, false, false) != text {
		t.Fatalf("streamed text %q differs from the detokenized tokens %q", text, m.Detokenize(st.Tokens, false, false))
	}
	again, _ := generate(t, m, "Once upon a time", 40)
	if again != text {
		t.Fatalf("greedy generation is not deterministic:\n%q\n%q", text, again)
	}
}

func TestModelFacts(t *testing.T) {
	m := loadModel(t, shared.Path(t, "models/stories260K.gguf"))
	if m.EmbeddingLength() != 64 || m.Layers() != 5 || m.Heads() != 8 || m.KVHeads() != 4 || m.VocabSize() != 512 {
		t.Fatalf("stories260K: embd %d layers %d heads %d/%d vocab %d", m.EmbeddingLength(), m.Layers(), m.Heads(), m.KVHeads(), m.VocabSize())
	}
	if m.BOS() != 1 || m.EOS() != 2 || !m.IsEndOfGeneration(2) || m.IsEndOfGeneration(100) {
		t.Fatalf("special tokens: bos %d eos %d", m.BOS(), m.EOS())
	}
	if m.ChatTemplate() != "" {
		t.Fatalf("stories260K has no chat template, got %q", m.ChatTemplate())
	}
}

func TestSamplingIsSeeded(t *testing.T) {
	m := loadModel(t, shared.Path(t, "models/stories260K.gguf"))
	run := func(seed uint32) string {
		toks, _ := m.Tokenize("Once upon a time", true, false)
		ctx, err := NewContext(m, ContextOptions{Context: 128, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer ctx.Close()
		var b strings.Builder
		_, err = Generate(context.Background(), ctx, toks, GenerateOptions{MaxTokens: 30, SampleOptions: SampleOptions{Temperature: 1.2, TopP: 0.95, Seed: seed}}, func(s string) { b.WriteString(s) })
		if err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	a, b, c := run(1), run(1), run(2)
	if a != b {
		t.Fatalf("same seed, different text:\n%q\n%q", a, b)
	}
	if a == c {
		t.Fatalf("seeds 1 and 2 sampled the same 30 tokens at temperature 1.2: %q", a)
	}
}

// TestTokenizerVectors checks llama.cpp's own Llama-2 tokenizer test vectors
// against the full Llama-2 vocabulary of llama-2-tiny-random.gguf.
func TestTokenizerVectors(t *testing.T) {
	model := shared.Path(t, "models/llama-2-tiny-random.gguf")
	inp, err := os.ReadFile(shared.Path(t, "models/tokenizer-tests/ggml-vocab-llama-spm.gguf.inp"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(shared.Path(t, "models/tokenizer-tests/ggml-vocab-llama-spm.gguf.out"))
	if err != nil {
		t.Fatal(err)
	}
	inputs := strings.Split(string(inp), "\n__ggml_vocab_test__\n")
	inputs = inputs[:len(inputs)-1] // the file ends with a separator
	wants := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(inputs) != len(wants) || len(inputs) < 40 {
		t.Fatalf("%d inputs but %d expected outputs", len(inputs), len(wants))
	}
	m, err := LoadModel(model, ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.VocabSize() != 32000 {
		t.Fatalf("vocab size %d, want 32000", m.VocabSize())
	}
	for i, in := range inputs {
		got, err := m.Tokenize(in, false, false)
		if err != nil {
			t.Fatal(err)
		}
		var want []Token
		for _, f := range strings.Fields(wants[i]) {
			id, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("line %d of the .out file: %v", i+1, err)
			}
			want = append(want, Token(id))
		}
		if !equalTokens(got, want) {
			t.Errorf("case %d %q: tokens %v, want %v", i+1, in, got, want)
		}
	}
}

func equalTokens(a, b []Token) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestChatTemplates(t *testing.T) {
	msgs := []Message{{"system", "Be brief."}, {"user", "Hi"}}
	got, err := ApplyTemplate("chatml", msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
	if got != want {
		t.Fatalf("chatml = %q, want %q", got, want)
	}
	got, err = ApplyTemplate("llama3", msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>") || !strings.HasSuffix(got, "<|start_header_id|>assistant<|end_header_id|>\n\n") {
		t.Fatalf("llama3 rendering %q", got)
	}
	if _, err := ApplyTemplate("no-such-template", msgs, true); err == nil {
		t.Fatal("an unknown template name was accepted")
	}
	names := BuiltinTemplates()
	if len(names) < 10 || !contains(names, "llama2") || !contains(names, "chatml") {
		t.Fatalf("built-in templates: %v", names)
	}
	m := loadModel(t, shared.Path(t, "models/stories260K.gguf"))
	if _, err := m.ApplyChatTemplate("", msgs, true); err == nil || !strings.Contains(err.Error(), "no chat template") {
		t.Fatalf("a model without a template: err = %v", err)
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func TestValidPrefixHoldsPartialUTF8(t *testing.T) {
	llama := []byte("🦙")
	for _, c := range []struct {
		in    []byte
		final bool
		want  int
	}{
		{[]byte("abc"), false, 3},
		{append([]byte("a"), llama[:2]...), false, 1},
		{append([]byte("a"), llama[:3]...), false, 1},
		{append([]byte("a"), llama...), false, 5},
		{append([]byte("a"), llama[:2]...), true, 3},
		{[]byte{0xff, 'a'}, false, 2}, // invalid bytes are not held forever
	} {
		if got := validPrefix(c.in, c.final); got != c.want {
			t.Errorf("validPrefix(%q, %v) = %d, want %d", c.in, c.final, got, c.want)
		}
	}
}

// smolLM2Template is SmolLM2-135M-Instruct's chat template as its GGUF
// holds it; qwen2Template is Qwen2-Instruct's.
const (
	smolLM2Template = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
	qwen2Template   = `{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`
)

// TestDefaultSystem: a template that gives a conversation without a system
// turn one of its own (SmolLM2's, Qwen2's) renders it before such a
// conversation, as Jinja does, and leaves a conversation with a system turn
// as it is; other templates add nothing.
func TestDefaultSystem(t *testing.T) {
	for _, c := range []struct {
		name, tmpl, want string
	}{
		{"SmolLM2", smolLM2Template, "You are a helpful AI assistant named SmolLM, trained by Hugging Face"},
		{"Qwen2", qwen2Template, "You are a helpful assistant."},
	} {
		got, ok := DefaultSystem(c.tmpl)
		if !ok || got != c.want {
			t.Errorf("%s: DefaultSystem = %q, %v; want %q", c.name, got, ok, c.want)
		}
		out, err := ApplyTemplate(c.tmpl, []Message{{"user", "Hi"}}, true)
		if err != nil {
			t.Fatal(err)
		}
		if want := "<|im_start|>system\n" + c.want + "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"; out != want {
			t.Errorf("%s: %q, want %q", c.name, out, want)
		}
		out, err = ApplyTemplate(c.tmpl, []Message{{"system", "Be brief."}, {"user", "Hi"}}, true)
		if err != nil {
			t.Fatal(err)
		}
		if want := "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"; out != want {
			t.Errorf("%s, with a system turn: %q, want %q", c.name, out, want)
		}
	}
	plain := "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
	for _, tmpl := range []string{plain, "chatml", "llama3"} {
		if got, ok := DefaultSystem(tmpl); ok {
			t.Errorf("%.40q: DefaultSystem = %q, want none", tmpl, got)
		}
	}
}
