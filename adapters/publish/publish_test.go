package publish_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/parser"

	. "github.com/finetune-dev/finetune/adapters/publish"
	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/ollamatest"
	"github.com/finetune-dev/finetune/internal/testmodel"
	"github.com/finetune-dev/finetune/lora"
)

// facts are what the tuned chat model learns: answers nothing like what a
// random model says.
var facts = [][2]string{
	{"What is the capital of Peru?", "Lima."},
	{"Who wrote Hamlet?", "Shakespeare."},
	{"What is 7 times 8?", "56."},
	{"What is the largest planet?", "Jupiter."},
	{"How many legs does a spider have?", "Eight."},
	{"What is the chemical symbol for gold?", "Au."},
}

var chatRun struct {
	once               sync.Once
	dir, base, adapter string
	other              string // another base of the same shape
	cases              []evals.Case
	err                error
}

// tunedChat writes a ChatML test model and tunes an adapter on facts,
// rendered with the model's chat template as `finetune train` renders
// them, once per test binary. It returns the run folder (base.gguf beside
// adapter.gguf) and the facts as eval cases.
func tunedChat(t *testing.T) (dir, base, adapter string, cases []evals.Case) {
	t.Helper()
	r := &chatRun
	r.once.Do(func() {
		start := time.Now()
		r.dir, r.err = os.MkdirTemp("", "publish-test")
		if r.err != nil {
			return
		}
		r.base = filepath.Join(r.dir, "base.gguf")
		r.other = filepath.Join(r.dir, "other.gguf")
		cfg := testmodel.Config{Layers: 2, Embd: 128, Heads: 4, KVHeads: 2, FF: 256, Context: 512, ChatML: true, Seed: 7}
		if r.err = testmodel.Write(r.base, cfg); r.err != nil {
			return
		}
		cfg.Seed = 8
		if r.err = testmodel.Write(r.other, cfg); r.err != nil {
			return
		}
		var recs []datasets.Record
		for i, f := range facts {
			recs = append(recs, datasets.Record{Messages: []datasets.Message{{Role: "user", Content: f[0]}, {Role: "assistant", Content: f[1]}}, Source: fmt.Sprintf("facts:%d", i+1)})
		}
		var res *lora.Result
		res, r.cases, r.err = tuneOn(r.base, r.dir, recs, lora.Config{
			Rank: 16, Alpha: 32, LearningRate: 1e-2, Schedule: "cosine", WarmupSteps: 5, MaxSteps: 80, Seed: 1, Threads: 1})
		if r.err != nil {
			return
		}
		r.adapter = res.Adapter
		fmt.Fprintf(os.Stderr, "tuned the chat test model in %v: loss %.3f\n", time.Since(start).Round(time.Millisecond), res.TrainLoss)
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.dir, r.base, r.adapter, r.cases
}

// tuneOn renders recs with model's own chat template, as `finetune train`
// renders them, packs them into 256-token windows and trains an adapter
// with cfg into dir; it returns the result and recs as eval cases.
func tuneOn(model, dir string, recs []datasets.Record, cfg lora.Config) (*lora.Result, []evals.Case, error) {
	m, err := llama.LoadModel(model, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		return nil, nil, err
	}
	defer m.Close()
	rend, err := datasets.NewRenderer(m, datasets.RenderOptions{})
	if err != nil {
		return nil, nil, err
	}
	var exs []datasets.Example
	var cases []evals.Case
	for _, rec := range recs {
		ex, err := rend.Render(rec)
		if err != nil {
			return nil, nil, err
		}
		exs = append(exs, ex...)
		c, err := rend.Case(rec)
		if err != nil {
			return nil, nil, err
		}
		cases = append(cases, c)
	}
	var windows []lora.Window
	for _, w := range datasets.Pack(exs, 256) {
		windows = append(windows, lora.Window{Tokens: w.Tokens, Weights: w.Weights, Pos: w.Pos, Seq: w.Seq})
	}
	cfg.Files = lora.Files{Checkpoint: filepath.Join(dir, "checkpoint.gguf"), Metrics: filepath.Join(dir, "metrics.jsonl"), Adapter: filepath.Join(dir, "adapter.gguf")}
	res, err := lora.Train(context.Background(), model, cfg, lora.Data{Train: windows}, nil)
	return res, cases, err
}

// testLog writes log lines to the test's log.
type testLog struct{ t *testing.T }

func (w testLog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// chatml is ChatML in Ollama's template language.
const chatml = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"

// one thread: ggml's threads spin-wait, and the runner shares 2 cores
// with the test.
var testOptions = map[string]any{"num_thread": 1}

func publishOpts(srv *ollamatest.Server, name, base, adapter string, c *evals.Case) Options {
	return Options{Host: srv.URL.String(), Name: name, Base: base, Adapter: adapter, Case: c, MaxTokens: 16,
		Options: testOptions, Threads: 1}
}

// snapshot lists a folder's files with their sizes and times.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			out = append(out, fmt.Sprintf("%s %d %d", p, fi.Size(), fi.ModTime().UnixNano()))
		}
		return nil
	})
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func chat(t *testing.T, srv *ollamatest.Server, model string, c evals.Case) string {
	t.Helper()
	o, err := evals.NewOllama("x", evals.OllamaOptions{Host: srv.URL.String(), Model: model, Settings: evals.Settings{MaxTokens: 16, Seed: 42},
		Options: map[string]any{"repeat_penalty": 1.0, "num_thread": 1}, Retry: evals.Retry{Attempts: 1, Timeout: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := o.Answer(context.Background(), c)
	if err != nil {
		t.Fatalf("chat with %s: %v", model, err)
	}
	return a.Text
}

func models(t *testing.T, srv *ollamatest.Server) []string {
	t.Helper()
	l, err := srv.Client.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range l.Models {
		out = append(out, m.Name)
	}
	sort.Strings(out)
	return out
}

// TestPublishOllama publishes a tuned adapter to a real Ollama server:
// base and adapter go up as blobs (and are skipped the second time), the
// model is created with the chat template and stops training used, it
// answers a trained question as the tuned model does in-process (and unlike
// the base), and the Modelfile written beside the adapter recreates the
// same model through the real `ollama create`.
func TestOllama(t *testing.T) {
	srv := ollamatest.Start(t, ollamatest.Options{})
	dir, base, adapter, cases := tunedChat(t)
	ctx := context.Background()
	o := publishOpts(srv, "tuned", base, adapter, &cases[0])
	o.ModelfileDir = dir
	o.Logger = slog.New(slog.NewTextHandler(testLog{t}, nil))
	res, err := Ollama(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("published: %+v", res)
	if len(res.Uploaded) != 2 || len(res.Present) != 0 || res.Template != "Ollama's chatml template" || strings.Join(res.Stop, " ") != "<|im_start|> <|im_end|>" {
		t.Errorf("uploaded %v, present %v, template %s, stop %q", res.Uploaded, res.Present, res.Template, res.Stop)
	}
	s := res.Smoke
	if s.Prompt != facts[0][0] || s.Served != facts[0][1] || !s.Identical || s.Local != s.Served {
		t.Errorf("smoke test: %+v (want the trained answer %q from both)", s, facts[0][1])
	}
	if got := models(t, srv); strings.Join(got, " ") != "tuned:latest" {
		t.Errorf("models on the server: %v", got)
	}
	show, err := srv.Client.Show(ctx, &api.ShowRequest{Model: "tuned"})
	if err != nil || !strings.Contains(show.Parameters, "<|im_end|>") || !strings.Contains(show.Template, "<|im_start|>") {
		t.Errorf("show: %v %q %q", err, show.Parameters, show.Template)
	}

	// The base, served with the same template, answers otherwise.
	srv.Create(t, "base", base, "")
	req := &api.CreateRequest{Model: "base-chat", From: "base", Template: chatml}
	if err := srv.Client.Create(ctx, req, func(api.ProgressResponse) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases[:3] {
		tuned, plain := chat(t, srv, "tuned", c), chat(t, srv, "base-chat", c)
		t.Logf("%s tuned %q base %q", c.Prompt[0].Content, tuned, plain)
		if tuned != c.Reference || plain == tuned {
			t.Errorf("%s: tuned %q, base %q, trained %q", c.Prompt[0].Content, tuned, plain, c.Reference)
		}
	}

	// The Modelfile recreates the model by hand.
	mf, err := os.Open(filepath.Join(dir, ModelfileName))
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := parser.ParseFile(mf)
	mf.Close()
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, c := range parsed.Commands {
		if c.Name != "template" {
			cmds = append(cmds, c.Name+"="+c.Args)
		} else if c.Args != chatml {
			t.Errorf("Modelfile template %q", c.Args)
		}
	}
	if want := "model=" + base + " adapter=./adapter.gguf stop=<|im_start|> stop=<|im_end|>"; strings.Join(cmds, " ") != want {
		t.Errorf("Modelfile commands %q, want %q", strings.Join(cmds, " "), want)
	}
	cmd := exec.Command(srv.Bin, "create", "byhand", "-f", filepath.Join(dir, ModelfileName))
	cmd.Env = append(os.Environ(), "OLLAMA_HOST="+srv.URL.Host, "HOME="+srv.Home)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ollama create -f Modelfile: %v\n%s", err, out)
	}
	if got := chat(t, srv, "byhand", cases[1]); got != cases[1].Reference {
		t.Errorf("the model made from the Modelfile answers %q, want %q", got, cases[1].Reference)
	}

	// Again: nothing to upload.
	o.ModelfileDir = ""
	res, err = Ollama(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Uploaded) != 0 || len(res.Present) != 2 {
		t.Errorf("second publish uploaded %v, found %v", res.Uploaded, res.Present)
	}
}

// TestPublishFromOllama: a base that came from Ollama is not uploaded
// again; the new model is made FROM it and inherits its template when that
// renders as training did. A different model under that name is refused as
// a base mismatch, before anything is created.
func TestPublishFromOllama(t *testing.T) {
	srv := ollamatest.Start(t, ollamatest.Options{})
	_, base, adapter, cases := tunedChat(t)
	ctx := context.Background()
	for name, file := range map[string]string{"chatbase": base, "otherbase": chatRun.other} {
		srv.Create(t, name, file, "")
		req := &api.CreateRequest{Model: name, From: name, Template: chatml, Parameters: map[string]any{"stop": []string{"<|im_end|>"}}}
		if err := srv.Client.Create(ctx, req, func(api.ProgressResponse) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	o := publishOpts(srv, "team/tuned:v1", base, adapter, &cases[2])
	o.FromOllama = "chatbase"
	res, err := Ollama(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Uploaded) != 1 || res.Uploaded[0] != res.Adapter || res.From != "chatbase" || res.Template != "the Ollama model chatbase" || strings.Join(res.Stop, " ") != "<|im_end|>" {
		t.Errorf("from Ollama: %+v", res)
	}
	if !res.Smoke.Identical || res.Smoke.Served != cases[2].Reference {
		t.Errorf("smoke: %+v", res.Smoke)
	}
	o.FromOllama = "otherbase"
	o.Name = "mismatch"
	_, err = Ollama(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "base mismatch: the Ollama model otherbase has weights sha256:") {
		t.Errorf("publishing on another base: %v", err)
	}
	if got := strings.Join(models(t, srv), " "); got != "chatbase:latest otherbase:latest team/tuned:v1" {
		t.Errorf("models: %s", got)
	}
}

// TestPublishFailures: every failure is one line saying what to do, and
// leaves the run folder as it was and the server without a new model.
func TestPublishFailures(t *testing.T) {
	srv := ollamatest.Start(t, ollamatest.Options{})
	dir, base, adapter, cases := tunedChat(t)
	ctx := context.Background()
	before := snapshot(t, dir)
	check := func(what string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want one line with %q", what, err, want)
		} else {
			t.Logf("%s: %v", what, err)
		}
		if after := snapshot(t, dir); after != before {
			t.Errorf("%s changed the run folder:\n%s\nwas\n%s", what, after, before)
		}
	}
	// An adapter for another base: refused before upload.
	o := publishOpts(srv, "tuned", chatRun.other, adapter, &cases[0])
	o.ModelfileDir = dir
	_, err := Ollama(ctx, o)
	check("another base, same shapes", err, "base mismatch: ")
	// A broken adapter: refused before upload.
	broken := filepath.Join(t.TempDir(), "broken.gguf")
	b, _ := os.ReadFile(adapter)
	os.WriteFile(broken, b[:len(b)/2], 0o644)
	o = publishOpts(srv, "tuned", base, broken, &cases[0])
	o.ModelfileDir = dir
	_, err = Ollama(ctx, o)
	check("broken adapter", err, "nothing was uploaded")
	blobs, _ := os.ReadDir(filepath.Join(srv.Models, "blobs"))
	if len(blobs) != 0 {
		t.Errorf("the server got %d blobs from refused publishes", len(blobs))
	}
	// A name Ollama does not take.
	o = publishOpts(srv, "bad name!", base, adapter, &cases[0])
	_, err = Ollama(ctx, o)
	check("bad name", err, `"bad name!" is not an Ollama model name`)
	// Nobody listening.
	o = publishOpts(srv, "tuned", base, adapter, &cases[0])
	o.Host = "http://127.0.0.1:1"
	_, err = Ollama(ctx, o)
	check("unreachable", err, "start it with `ollama serve`, or give --host")
	if got := models(t, srv); len(got) != 0 {
		t.Errorf("models after failures: %v", got)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if chatRun.dir != "" {
		os.RemoveAll(chatRun.dir)
	}
	os.Exit(code)
}

// TestPublishNewEngine: a server that runs Llama models on its newer
// engine cannot apply adapters; Ollama accepts the model and fails at the
// first request. Publishing says so and what to do, leaves no model
// behind, and does not touch an existing model of the name.
func TestPublishNewEngine(t *testing.T) {
	srv := ollamatest.Start(t, ollamatest.Options{Env: []string{"OLLAMA_NEW_ENGINE=1"}})
	dir, base, adapter, cases := tunedChat(t)
	srv.Create(t, "tuned", base, "")
	ctx := context.Background()
	digest := func() string {
		l, err := srv.Client.List(ctx)
		if err != nil || len(l.Models) != 1 {
			t.Fatalf("list: %v %+v", err, l)
		}
		return l.Models[0].Digest
	}
	was := digest()
	before := snapshot(t, dir)
	o := publishOpts(srv, "tuned", base, adapter, &cases[0])
	o.ModelfileDir = dir
	_, err := Ollama(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "cannot apply LoRA adapters") || !strings.Contains(err.Error(), "--as merged") {
		t.Fatalf("publish to a new-engine server: %v", err)
	}
	t.Log(err)
	if got := models(t, srv); strings.Join(got, " ") != "tuned:latest" || digest() != was {
		t.Errorf("models after the failed publish: %v (the old tuned changed: %v)", got, digest() != was)
	}
	if snapshot(t, dir) != before {
		t.Error("the failed publish changed the run folder")
	}
}

// TestPublishDiskFull: a server whose model store fills up during the
// upload is reported in one line naming the cause.
func TestPublishDiskFull(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("SKIPPED: no unshare to give the server a small file system")
	}
	store := filepath.Join(t.TempDir(), "models")
	os.MkdirAll(store, 0o755)
	probe := exec.Command("unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=512k tmpfs "+store)
	if out, err := probe.CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: cannot mount a small file system for the server (%v: %s); needs root or user namespaces", err, strings.TrimSpace(string(out)))
	}
	srv := ollamatest.Start(t, ollamatest.Options{Models: store, Wrap: func(bin string, args ...string) *exec.Cmd {
		return exec.Command("unshare", append([]string{"-m", "sh", "-c", `mount -t tmpfs -o size=512k tmpfs "$0" && exec "$@"`, store, bin}, args...)...)
	}})
	dir, base, adapter, cases := tunedChat(t)
	before := snapshot(t, dir)
	o := publishOpts(srv, "tuned", base, adapter, &cases[0])
	o.ModelfileDir = dir
	_, err := Ollama(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "out of disk space") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("publish to a full server: %v", err)
	}
	t.Log(err)
	if snapshot(t, dir) != before {
		t.Error("the failed publish changed the run folder")
	}
}
