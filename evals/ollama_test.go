package evals

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/internal/ollamatest"
	"github.com/finetune-dev/finetune/internal/shared"
)

// TestOllamaContestant serves stories260K and the adapter trained in the
// test from a real Ollama server built from the pinned ollama module, and
// evaluates them beside the same model run in-process: greedy answers
// agree, the tuned model served by Ollama answers the questions, and a
// model the server lacks fails alone.
func TestOllamaContestant(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	srv := ollamatest.Start(t, ollamatest.Options{})
	u := srv.URL
	adapter, _ := tunedAdapter(t, model)
	srv.Create(t, "stories", model, "")
	srv.Create(t, "stories-tuned", model, adapter)

	// Ollama's sampler applies a repeat penalty of 1.1 unless told
	// otherwise; the in-process contestants have none. One thread: ggml's
	// threads spin-wait, and the runners share 2 cores with the
	// in-process contestants.
	greedy := map[string]any{"repeat_penalty": 1.0, "num_thread": 1}
	newOllama := func(name, m string) *Ollama {
		c, err := NewOllama(name, OllamaOptions{Host: u.String(), Model: m, Settings: qaSettings, Options: greedy, Concurrency: 1,
			Retry: Retry{Attempts: 3, Base: 100 * time.Millisecond, Timeout: time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cs := []Contestant{
		newLocal(t, "base", model, nil, 8, qaSettings),
		newLocal(t, "tuned", model, []AdapterSpec{{Path: adapter}}, 8, qaSettings),
		newOllama("ollama_base", "stories"),
		newOllama("ollama_tuned", "stories-tuned"),
		newOllama("missing", "no-such-model"),
	}
	cases := qaCases(t, model)
	start := time.Now()
	res, err := Run(context.Background(), Suite{Cases: cases, Metrics: []Metric{{Name: "exact", Kind: ExactMatch}}}, cs,
		RunOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("run in %v", time.Since(start).Round(time.Millisecond))
	for _, c := range res.Contestants {
		t.Logf("%-13s %-7s exact %.2f  tokens %d/%d  p50 %.0f ms  %s", c.Name, c.Status, c.Scores["exact"].Value, c.Usage.PromptTokens, c.Usage.CompletionTokens, c.LatencyP50MS, c.Error)
	}
	ob, ot := res.Contestant("ollama_base"), res.Contestant("ollama_tuned")
	if ob.Status != "ok" || ot.Status != "ok" || ob.Answered != len(cases) || ot.Answered != len(cases) {
		t.Fatalf("ollama contestants: %s %q, %s %q", ob.Status, ob.Error, ot.Status, ot.Error)
	}
	if ot.Scores["exact"].Value < 0.85 || ob.Scores["exact"].Value > 0.05 {
		t.Errorf("exact match served by Ollama: tuned %.2f, base %.2f", ot.Scores["exact"].Value, ob.Scores["exact"].Value)
	}
	if ot.Usage.CompletionTokens == 0 || ot.Usage.PromptTokens == 0 || ot.LatencyP50MS <= 0 {
		t.Errorf("ollama_tuned usage %+v, latency %v", ot.Usage, ot.LatencyP50MS)
	}
	same := map[string]int{}
	for _, c := range res.Cases {
		if c.Answers[0].Text == c.Answers[2].Text {
			same["base"]++
		}
		if c.Answers[1].Text == c.Answers[3].Text {
			same["tuned"]++
		} else {
			t.Logf("tuned answers differ: in-process %q, Ollama %q", c.Answers[1].Text, c.Answers[3].Text)
		}
	}
	t.Logf("answers identical to the in-process model: base %d/20, tuned %d/20", same["base"], same["tuned"])
	if same["tuned"] < 18 || same["base"] < 15 {
		t.Errorf("the same model served by Ollama answers differently: %v of 20 agree", same)
	}
	m := res.Contestant("missing")
	if m.Status != "failed" || !strings.Contains(m.Error, `no model "no-such-model"`) || !strings.Contains(m.Error, "stories") {
		t.Errorf("missing model: %s %q", m.Status, m.Error)
	}
	if c := res.Compare("ollama_tuned", "base", "exact"); c == nil || !c.Significant() {
		t.Errorf("ollama_tuned vs base: %+v", c)
	}
}

// TestOpenAIOnOllama asks a real OpenAI-compatible server nobody here
// wrote, the Ollama server's /v1 endpoint, for greedy answers through the
// openai contestant: it sends temperature 0 itself (a tiny positive
// temperature makes llama.cpp's sampler abort the runner), and its answers
// are those the same model gives through /api/chat.
func TestOpenAIOnOllama(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	srv := ollamatest.Start(t, ollamatest.Options{})
	// One thread: ggml's threads spin-wait on 2 cores. /v1 takes no
	// options, so the model's parameters say it, for both endpoints.
	srv.CreateWithParameters(t, "stories", model, "", map[string]any{"num_thread": 1})
	retry := Retry{Attempts: 2, Base: 100 * time.Millisecond, Timeout: time.Minute}
	viaChat, err := NewOllama("ollama", OllamaOptions{Host: srv.URL.String(), Model: "stories", Settings: qaSettings, Retry: retry})
	if err != nil {
		t.Fatal(err)
	}
	viaV1, err := NewOpenAI("openai", OpenAIOptions{BaseURL: srv.URL.String() + "/v1", Model: "stories", Settings: qaSettings, Concurrency: 1, Retry: retry})
	if err != nil {
		t.Fatal(err)
	}
	cases := qaCases(t, model)[:8]
	res, err := Run(context.Background(), Suite{Cases: cases, Metrics: []Metric{{Name: "exact", Kind: ExactMatch}}}, []Contestant{viaChat, viaV1}, RunOptions{Bootstrap: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Contestants {
		if c.Status != "ok" {
			t.Fatalf("%s: %s (%d of %d answered): %s\n%s", c.Name, c.Status, c.Answered, c.Asked, c.Error, srv.LogTail(3000))
		}
	}
	for i, c := range res.Cases {
		a, b := c.Answers[0].Text, c.Answers[1].Text
		if a != b || strings.TrimSpace(a) == "" {
			t.Errorf("case %d: /api/chat answered %q, /v1 %q", i, a, b)
		}
	}
	if log := srv.LogTail(1 << 20); strings.Contains(log, "Assertion") || strings.Contains(log, "unexpectedly stopped") {
		t.Errorf("the runner failed:\n%s", srv.LogTail(3000))
	}
	t.Logf("%d cases, the same answers through /api/chat and /v1; case 0: %q", len(cases), res.Cases[0].Answers[1].Text)
}
