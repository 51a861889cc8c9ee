package publish_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	. "github.com/finetune-dev/finetune/adapters/publish"
	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/internal/ollamatest"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/lora"
)

// smolFacts are what the tuned SmolLM2 learns: short answers in a voice
// the instruct model does not have, asked with the model's default system
// turn (no system message) and with a system message of the user's.
var smolFacts = [][3]string{
	{"", "What is the capital of Peru?", "Lima, friend. Lima."},
	{"", "Who wrote Hamlet?", "Shakespeare, friend. Shakespeare."},
	{"", "What is 7 times 8?", "56, friend. 56."},
	{"You answer in three words.", "What is the largest planet?", "Jupiter, friend. Jupiter."},
	{"You answer in three words.", "How many legs does a spider have?", "Eight, friend. Eight."},
	{"You answer in three words.", "What is the chemical symbol for gold?", "Au, friend. Au."},
}

var smolRun struct {
	once         sync.Once
	dir, adapter string
	cases        []evals.Case
	err          error
	base         string
}

// tunedSmolLM2 tunes an adapter on SmolLM2-135M-Instruct (its Q4_1 file as
// it is, the seven projections) on smolFacts, rendered with the model's
// own chat template as `finetune train` renders them, once per test
// binary.
func tunedSmolLM2(t *testing.T) (base, adapter string, cases []evals.Case) {
	t.Helper()
	model := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	r := &smolRun
	r.once.Do(func() {
		start := time.Now()
		r.base = model
		r.dir, r.err = os.MkdirTemp("", "publish-smollm2")
		if r.err != nil {
			return
		}
		var recs []datasets.Record
		for i, f := range smolFacts {
			var msgs []datasets.Message
			if f[0] != "" {
				msgs = append(msgs, datasets.Message{Role: "system", Content: f[0]})
			}
			msgs = append(msgs, datasets.Message{Role: "user", Content: f[1]}, datasets.Message{Role: "assistant", Content: f[2]})
			recs = append(recs, datasets.Record{Messages: msgs, Source: fmt.Sprintf("smolfacts:%d", i+1)})
		}
		var res *lora.Result
		res, r.cases, r.err = tuneOn(model, r.dir, recs, lora.Config{
			Rank: 8, Alpha: 16, LearningRate: 3e-3, Schedule: "cosine", WarmupSteps: 3, MaxSteps: 16, Seed: 1})
		if r.err != nil {
			return
		}
		r.adapter = res.Adapter
		fmt.Fprintf(os.Stderr, "tuned SmolLM2-135M-Instruct in %v: loss %.3f\n", time.Since(start).Round(time.Millisecond), res.TrainLoss)
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.base, r.adapter, r.cases
}

// smolServed is a greedy chat answer from the Ollama server, 24 tokens at
// most, sent as a chat of messages (Ollama renders them with the template
// publish gave the model).
func smolServed(t *testing.T, srv *ollamatest.Server, model string, c evals.Case) string {
	t.Helper()
	o, err := evals.NewOllama("x", evals.OllamaOptions{Host: srv.URL.String(), Model: model, Settings: evals.Settings{MaxTokens: 24, Seed: 42},
		Options: map[string]any{"repeat_penalty": 1.0, "num_thread": 1}, Retry: evals.Retry{Attempts: 1, Timeout: 2 * time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := o.Answer(context.Background(), c)
	if err != nil {
		t.Fatalf("chat with %s: %v", model, err)
	}
	return a.Text
}

// TestPublishSmolLM2Merged: SmolLM2-135M-Instruct (Q4_1, tied head, BPE,
// ChatML with a default system turn) tuned on facts, published merged to
// the pinned Ollama 0.17.4 with the default type (the base's own, Q4_1,
// where the adapter's change rounds away, so publish falls back to Q8_0)
// and in Q4_K_M. Ollama's greedy answers equal the merged model's
// in-process answers and the tuned model's (base with the adapter) on the
// trained prompts, all but one at least (counts logged). The tuning must
// change the answers, else the test shows nothing.
func TestPublishSmolLM2Merged(t *testing.T) {
	srv := ollamatest.Start(t, ollamatest.Options{})
	base, adapter, cases := tunedSmolLM2(t)
	tuned := answers(t, base, adapter, cases)
	plain := answers(t, base, "", cases)
	changed, learned := 0, 0
	for i := range cases {
		if tuned[i] != plain[i] {
			changed++
		}
		if tuned[i] == cases[i].Reference {
			learned++
		}
	}
	t.Logf("the adapter changes %d of %d answers; %d of %d are the trained answer", changed, len(cases), learned, len(cases))
	if changed < len(cases)/2 {
		t.Fatalf("the adapter changes %d of %d answers: the test shows too little (base %q, tuned %q)", changed, len(cases), plain, tuned)
	}
	ctx := context.Background()
	for _, typ := range []string{"", "q4_k_m"} {
		name := "smol-merged-" + map[string]string{"": "auto", "q4_k_m": "q4km"}[typ]
		dir := t.TempDir()
		o := Options{Host: srv.URL.String(), Name: name, Base: base, Adapter: adapter, Case: &cases[0], MaxTokens: 24,
			Options: map[string]any{"num_thread": 1}, As: AsMerged, MergeType: typ, ModelfileDir: dir}
		o.Logger = slog.New(slog.NewTextHandler(testLog{t}, nil))
		res, err := Ollama(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if typ == "" {
			// At the base's own Q4_1 the adapter's change rounds away (0 of
			// 6 trained answers kept, measured): publish merges at Q8_0 and
			// says why.
			if res.MergedType != "q8_0" || res.MergeFallback == "" {
				t.Errorf("%s: merged as %s (fallback %q), want q8_0 with the reason", name, res.MergedType, res.MergeFallback)
			}
		} else if res.MergedType != typ || res.MergeFallback != "" {
			t.Errorf("%s: merged as %s (fallback %q), want %s as asked", name, res.MergedType, res.MergeFallback, typ)
		}
		if res.As != AsMerged {
			t.Errorf("%s: published as %s", name, res.As)
		}
		local := answers(t, filepath.Join(dir, MergedName), "", cases)
		same, asTuned := 0, 0
		for i, c := range cases {
			served := smolServed(t, srv, name, c)
			if served == local[i] {
				same++
			} else {
				t.Logf("%s: %q: Ollama %q, the merged model in-process %q", name, c.Prompt[len(c.Prompt)-1].Content, served, local[i])
			}
			if served == tuned[i] {
				asTuned++
			}
		}
		t.Logf("%s (%s): Ollama 0.17.4's greedy answers equal the merged model's in-process answers on %d of %d trained prompts, the tuned model's (base with the adapter, in-process) on %d of %d",
			name, res.MergedType, same, len(cases), asTuned, len(cases))
		if same < len(cases)-1 || asTuned < len(cases)-1 {
			t.Errorf("%s: %d of %d served answers equal the merged model's in-process, %d the tuned model's: want all but one at least", name, same, len(cases), asTuned)
		}
	}
}

// TestPublishSmolLM2NewOllama: Ollama 0.34.4 (which refuses adapters)
// creates the tuned SmolLM2 as a merged model (Q8_0: at Q4_1 the tuning is
// lost) with the ChatML template and its stops. That server cannot answer here (its runner is not part of a Go
// build), so its answers are not asked.
func TestPublishSmolLM2NewOllama(t *testing.T) {
	srv := ollamatest.Start(t, ollamatest.Options{Version: "v0.34.4"})
	base, adapter, cases := tunedSmolLM2(t)
	o := Options{Host: srv.URL.String(), Name: "smol-new", Base: base, Adapter: adapter, Case: &cases[0], MaxTokens: 24,
		NoSmoke: true, Threads: 1, ModelfileDir: t.TempDir()}
	o.Logger = slog.New(slog.NewTextHandler(testLog{t}, nil))
	res, err := Ollama(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.As != AsMerged || res.Version != "0.34.4" || res.MergedType != "q8_0" || res.MergeFallback == "" || !res.MergeCheck.Identical {
		t.Fatalf("auto on 0.34.4: %+v", res)
	}
	show, err := srv.Client.Show(context.Background(), &api.ShowRequest{Model: o.Name})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(show.Template, "<|im_start|>") || !strings.Contains(show.Parameters, "<|im_end|>") {
		t.Errorf("show: template %q parameters %q", show.Template, show.Parameters)
	}
	t.Logf("0.34.4 created %s: merged %s (%s), details %+v", o.Name, res.Merged, res.MergedType, show.Details)
}
