package evals

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/internal/testmodel"
)

// TestHitLimitCountedAndShown: answers that ended at max_tokens are
// counted per contestant and shown in every report ("hit the limit: N of
// M"); a contestant most of whose answers hit it gets a warning beside its
// scores; a cached answer keeps its finish reason, and one cached before
// the reason was kept reads as unknown, not as stopped.
func TestHitLimitCountedAndShown(t *testing.T) {
	var cases []Case
	for i := 0; i < 6; i++ {
		cases = append(cases, qaCase(fmt.Sprintf("q%d", i), "yes", ""))
	}
	base := newScripted("base", func(Case) (string, error) { return "yes", nil })
	base.reason = FinishStop
	long := newScripted("long", func(Case) (string, error) { return "yes yes yes", nil })
	long.reason = FinishLength
	some := newScripted("some", func(c Case) (string, error) { return "yes", nil })
	some.reason = FinishLength // only q0 and q1 are asked: the others come from an old cache
	cacheDir := t.TempDir()
	cache := &cache{dir: cacheDir}
	for i := 2; i < 6; i++ {
		// An entry as finetune wrote them before it kept the finish reason.
		key := cacheKey(some.Info().Identity, &cases[i])
		old := fmt.Sprintf(`{"contestant":"some","kind":"scripted","model":"some","text":"yes","usage":{"prompt_tokens":1,"completion_tokens":1},"latency_ms":3,"created":"2026-01-01T00:00:00Z"}`)
		os.MkdirAll(filepath.Dir(cache.path(key)), 0o755)
		if err := os.WriteFile(cache.path(key), []byte(old), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func() *Results {
		res, err := Run(context.Background(), Suite{Cases: cases, Metrics: []Metric{{Name: "em", Kind: ExactMatch}}},
			[]Contestant{base, long, some}, RunOptions{Bootstrap: 50, CacheDir: cacheDir})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := run()
	for _, c := range []struct {
		name            string
		hit, unknown    int
		text, warnStart string
	}{
		{"base", 0, 0, "0 of 6", ""},
		{"long", 6, 0, "6 of 6", "long: 6 of 6 answers hit max_tokens and were cut off"},
		{"some", 2, 4, "2 of 6, 4 unknown", ""},
	} {
		cr := res.Contestant(c.name)
		if cr.HitLimit != c.hit || cr.LimitUnknown != c.unknown || cr.LimitText() != c.text || !strings.HasPrefix(cr.LimitWarning(), c.warnStart) || (c.warnStart == "") != (cr.LimitWarning() == "") {
			t.Errorf("%s: hit %d, unknown %d, %q, warning %q", c.name, cr.HitLimit, cr.LimitUnknown, cr.LimitText(), cr.LimitWarning())
		}
	}
	// Asked again, everything comes from the cache, reasons included.
	again := run()
	if c := again.Contestant("long"); c.Cached != 6 || c.HitLimit != 6 {
		t.Errorf("from the cache: long cached %d, hit the limit %d", c.Cached, c.HitLimit)
	}
	if c := again.Contestant("some"); c.Cached != 6 || c.HitLimit != 2 || c.LimitUnknown != 4 {
		t.Errorf("from the cache: some cached %d, hit %d, unknown %d", c.Cached, c.HitLimit, c.LimitUnknown)
	}

	dir := t.TempDir()
	if err := WriteReports(dir, res, ReportExtras{}); err != nil {
		t.Fatal(err)
	}
	js, _ := os.ReadFile(filepath.Join(dir, "results.json"))
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	for file, wants := range map[string][]string{
		"results.json": {`"hit_limit": 6`, `"limit_unknown": 4`, `"finish_reason": "length"`},
		"report.md":    {"| hit the limit | 0 of 6 | 6 of 6 | 2 of 6, 4 unknown |", "> **Warning** long: 6 of 6 answers hit max_tokens and were cut off"},
		"report.html":  {"<th>hit the limit</th>", `<td class="num">6 of 6</td>`, `<b>Warning</b> long: 6 of 6 answers hit max_tokens`, "hit max_tokens</div>"},
	} {
		b := map[string][]byte{"results.json": js, "report.md": md, "report.html": html}[file]
		for _, w := range wants {
			if !bytes.Contains(b, []byte(w)) {
				t.Errorf("%s lacks %q", file, w)
			}
		}
	}
	if bytes.Contains(md, []byte("**Warning** some")) || bytes.Contains(md, []byte("**Warning** base")) {
		t.Errorf("a warning for a contestant most of whose answers did not hit the limit:\n%s", md)
	}
}

// TestLocalFinishReason: a local contestant says which answers ended at
// max_tokens.
func TestLocalFinishReason(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	cases := storyCases(t, model, 3)
	l := newLocal(t, "base", model, nil, 4, Settings{MaxTokens: 3})
	answers, errs := l.AnswerBatch(context.Background(), cases)
	for i, a := range answers {
		if errs[i] != nil || a.FinishReason != FinishLength || a.Usage.CompletionTokens != 3 {
			t.Errorf("case %d: %+v, %v", i, a, errs[i])
		}
	}
	// A stop string ends an answer: stopped, not cut off.
	l = newLocal(t, "stop", model, nil, 4, Settings{MaxTokens: 40, Stop: []string{" "}})
	answers, _ = l.AnswerBatch(context.Background(), cases)
	for i, a := range answers {
		if a.FinishReason != FinishStop {
			t.Errorf("case %d with a stop string: %+v", i, a)
		}
	}
}

// TestNotALabelCounted: answers whose label is none of the label set (the
// eval cases' labels) are counted, the most frequent named, in the
// results and the label metric's section of the reports.
func TestNotALabelCounted(t *testing.T) {
	labels := []string{"card_lost", "top_up", "refund"}
	var cases []Case
	for i := 0; i < 9; i++ {
		cases = append(cases, qaCase(fmt.Sprintf("q%d", i), "Intent: "+labels[i%3], labels[i%3]))
	}
	answers := []string{"Intent: card_lost", "Intent: verify_my_id", "Intent: verify_my_id", "Intent: age_range", "no idea",
		"Intent: refund", "Intent: verify_my_id", "Intent: top_up", "Intent: card_lost"}
	tuned := newScripted("tuned", func(c Case) (string, error) {
		var i int
		fmt.Sscanf(lastUser(c), "q%d", &i)
		return answers[i], nil
	})
	res, err := Run(context.Background(), Suite{Cases: cases, Metrics: []Metric{{Name: "label_accuracy", Kind: Label, Pattern: `Intent:\s*(\w+)`}}},
		[]Contestant{tuned}, RunOptions{Bootstrap: 50})
	if err != nil {
		t.Fatal(err)
	}
	cm := res.Contestant("tuned").Confusion["label_accuracy"]
	if cm.NotALabel != 4 || cm.NoLabel != 1 || fmt.Sprint(cm.NotALabelTop) != "[{verify_my_id 3} {age_range 1}]" {
		t.Fatalf("not a label %d, no label %d, top %v", cm.NotALabel, cm.NoLabel, cm.NotALabelTop)
	}
	if got := cm.NotALabelText(); got != "not a label: 4 (verify_my_id 3, age_range 1)" {
		t.Errorf("NotALabelText %q", got)
	}
	dir := t.TempDir()
	if err := WriteReports(dir, res, ReportExtras{}); err != nil {
		t.Fatal(err)
	}
	js, _ := os.ReadFile(filepath.Join(dir, "results.json"))
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	var back Results
	if err := json.Unmarshal(js, &back); err != nil || back.Contestants[0].Confusion["label_accuracy"].NotALabel != 4 {
		t.Errorf("results.json: %v", err)
	}
	for file, b := range map[string][]byte{"report.md": md, "report.html": html} {
		for _, w := range []string{"not a label: 4 (verify_my_id 3, age_range 1)", "no label: 1"} {
			if !bytes.Contains(b, []byte(w)) {
				t.Errorf("%s lacks %q", file, w)
			}
		}
	}
}

// TestAPIFinishReason: an OpenAI-compatible server's finish_reason and an
// Ollama server's done_reason say which answers hit the limit.
func TestAPIFinishReason(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Messages []Message `json:"messages"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		reason := "stop"
		if len(body.Messages) > 0 && strings.Contains(body.Messages[len(body.Messages)-1].Content, "long") {
			reason = "length"
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/chat/completions":
			fmt.Fprintf(w, `{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":%q}],"usage":{"prompt_tokens":1,"completion_tokens":1}}`, reason)
		case "/api/tags":
			fmt.Fprint(w, `{"models":[{"name":"m:latest","model":"m:latest","digest":"abc"}]}`)
		case "/api/chat":
			fmt.Fprintf(w, `{"model":"m","message":{"role":"assistant","content":"x"},"done":true,"done_reason":%q,"prompt_eval_count":1,"eval_count":1}`, reason)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	oa, err := NewOpenAI("oa", OpenAIOptions{BaseURL: srv.URL + "/v1", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	ol, err := NewOllama("ol", OllamaOptions{Host: srv.URL, Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []Case{qaCase("short", "x", ""), qaCase("long", "x", ""), qaCase("long too", "x", "")}
	res, err := Run(context.Background(), Suite{Cases: cases, Metrics: []Metric{{Name: "em", Kind: ExactMatch}}}, []Contestant{oa, ol}, RunOptions{Bootstrap: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"oa", "ol"} {
		if c := res.Contestant(name); c.Status != "ok" || c.HitLimit != 2 || c.LimitUnknown != 0 || c.LimitWarning() == "" {
			t.Errorf("%s: %s %s, hit the limit %s", name, c.Status, c.Error, c.LimitText())
		}
	}
}

// TestLocalChoices: with choices, every answer of a local contestant is
// one of them (stories260K, which would rather tell a story), stopped, not
// cut off, and the label metric reads it as the whole answer; the choices
// are part of the contestant's identity, so cached answers without them
// are not reused.
func TestLocalChoices(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	cases := qaCases(t, model)[:8]
	var choices []string
	for _, c := range cases {
		choices = append(choices, strings.TrimSpace(c.Reference))
	}
	free := newLocal(t, "free", model, nil, 8, Settings{MaxTokens: 16})
	choosing := newLocal(t, "choosing", model, nil, 8, Settings{MaxTokens: 16, Choices: choices})
	res, err := Run(context.Background(), Suite{Cases: cases, Metrics: []Metric{{Name: "label", Kind: Label}}},
		[]Contestant{free, choosing}, RunOptions{Bootstrap: 20, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range res.Cases {
		a := c.Answers[1]
		if !slices.Contains(choices, a.Text) || a.FinishReason != FinishStop {
			t.Errorf("case %d: %q (%s) is not one of the choices", i, a.Text, a.FinishReason)
		}
		if a.Details["label"] == "" {
			t.Errorf("case %d: the label metric read no label from %q", i, a.Text)
		}
	}
	if cm := res.Contestant("choosing").Confusion["label"]; cm.NotALabel != 0 || cm.NoLabel != 0 {
		t.Errorf("choosing named %d things that are no label", cm.NotALabel)
	}
	if free.Info().Identity == choosing.Info().Identity {
		t.Error("choices do not change the contestant's identity")
	}
	t.Logf("free: %q; choosing: %q", res.Cases[0].Answers[0].Text, res.Cases[0].Answers[1].Text)
}

// TestChoicesRaiseMaxTokens: a max_tokens too short for a choice is raised
// to hold it, so no answer stops in the middle of one.
func TestChoicesRaiseMaxTokens(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	choices := []string{"Carbon dioxide and a long tail", "Lima"}
	l := newLocal(t, "choosing", model, nil, 4, Settings{MaxTokens: 4, Choices: choices})
	if got := l.Info().Settings.MaxTokens; got != len(choices[0])+1 {
		t.Fatalf("max_tokens %d, want %d", got, len(choices[0])+1)
	}
	answers, errs := l.AnswerBatch(context.Background(), qaCases(t, model)[:4])
	for i, a := range answers {
		if errs[i] != nil || !slices.Contains(choices, a.Text) || a.FinishReason != FinishStop {
			t.Errorf("case %d: %q (%s), %v", i, a.Text, a.FinishReason, errs[i])
		}
	}
}

// TestLocalChoicesChatML: on a ChatML model with a byte vocabulary, whose
// turn ends with <|im_end|>, every constrained answer is one of the
// choices and ends with the turn.
func TestLocalChoicesChatML(t *testing.T) {
	model := filepath.Join(t.TempDir(), "chatml.gguf")
	if err := testmodel.Write(model, testmodel.Config{Layers: 1, Embd: 32, Heads: 4, KVHeads: 4, FF: 64, ChatML: true, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	choices := []string{"refund", "card_lost", "top_up_failed", "Ünïcode \"quoted\"", " spaced"}
	var cases []Case
	for i := 0; i < 6; i++ {
		cases = append(cases, Case{Prompt: []Message{{Role: "user", Content: fmt.Sprintf("I need help with my card, case %d", i)}}, Reference: choices[i%len(choices)]})
	}
	for _, temp := range []float64{0, 1.3} {
		l := newLocal(t, "chat", model, nil, 3, Settings{MaxTokens: 8, Temperature: temp, Seed: 1, Choices: choices})
		answers, errs := l.AnswerBatch(context.Background(), cases)
		for i, a := range answers {
			if errs[i] != nil || !slices.Contains(choices, a.Text) || a.FinishReason != FinishStop {
				t.Errorf("temperature %g, case %d: %q (%s), %v", temp, i, a.Text, a.FinishReason, errs[i])
			}
		}
	}
}
