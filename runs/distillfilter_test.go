package runs

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"context"
)

// TestDistillFilters: a teacher on loopback whose answers are known (two
// per prompt, by seed) and a judge that grades them; every filter leaves
// out exactly the answers it should, the report counts each, and the
// judge's verdicts are cached with the answers (a second distillation asks
// neither again).
func TestDistillFilters(t *testing.T) {
	var teacherCalls, judgeCalls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Messages []struct{ Role, Content string }
			Seed     int64
		}
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &body)
		q := body.Messages[len(body.Messages)-1].Content
		text, finish := "", "stop"
		if strings.HasPrefix(r.URL.Path, "/judge/") {
			judgeCalls.Add(1)
			text = "Score: 2\nWeak."
			if strings.Contains(q, "GOOD") {
				text = "Score: 5\nFine."
			}
		} else {
			teacherCalls.Add(1)
			switch q {
			case "cut": // cut at max_tokens, then a complete answer
				text, finish = "half an ans", "length"
				if body.Seed%2 == 1 {
					text, finish = "a GOOD whole answer", "stop"
				}
			case "empty":
				text = "  \n"
			case "refuse":
				text = "I'm sorry, but as an AI I cannot help with that."
			case "same": // the same answer for both seeds: one is a duplicate
				text = "the GOOD same answer"
			case "weak": // the judge gives 2
				text = fmt.Sprintf("a weak answer %d", body.Seed)
			default:
				text = fmt.Sprintf("a GOOD answer to %s (seed %d)", q, body.Seed)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"choices": []any{map[string]any{"message": map[string]any{"role": "assistant", "content": text}, "finish_reason": finish}},
			"usage": map[string]any{"prompt_tokens": 10, "completion_tokens": 4}})
	}))
	defer srv.Close()
	dir := t.TempDir()
	prompts := filepath.Join(dir, "prompts.txt.jsonl")
	var pb strings.Builder
	for _, q := range []string{"fine", "cut", "empty", "refuse", "same", "weak"} {
		fmt.Fprintf(&pb, "{\"prompt\": %q, \"completion\": \"ignored\"}\n", q)
	}
	os.WriteFile(prompts, []byte(pb.String()), 0o644)
	body := fmt.Sprintf(`name: filters
base: base.gguf
distill:
  prompts: %s
  teacher: teacher
  answers: 2
  generation:
    temperature: 0.7
    max_tokens: 32
  filters:
    refusals: ["(?i)as an ai", "^I can't"]
    judge: judge
    rubric: "5: helpful and correct; 1: useless"
    min_score: 4
eval:
  contestants:
    - name: teacher
      kind: openai
      model: t
      base_url: %s/teacher/v1
      concurrency: 2
    - name: judge
      kind: openai
      model: j
      base_url: %s/judge/v1
  metrics:
    - name: rouge_l
`, prompts, srv.URL, srv.URL)
	r := recipe(t, dir, body)
	root := filepath.Join(dir, "runs")
	run, rep, err := Distill(context.Background(), r, DistillOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	run.Close()
	f := rep.Filtered
	// 12 answers: cut 1, empty 2, refusals 2, duplicates 1, judged low 2
	// (weak ×2); kept: fine ×2, cut's whole answer, same ×1.
	if f.Cut != 1 || f.Empty != 2 || f.Refusals != 2 || f.Duplicates != 1 || f.JudgedLow != 2 || f.NotJudged != 0 || f.Failed != 0 || rep.Rows != 4 || f.Total() != 8 {
		t.Fatalf("filtered %+v, %d rows", f, rep.Rows)
	}
	if teacherCalls.Load() != 12 || judgeCalls.Load() != 6 {
		t.Fatalf("%d teacher calls (want 12), %d judge calls (want 6: the answers the other filters kept)", teacherCalls.Load(), judgeCalls.Load())
	}
	rows := readDistilled(t, run.Path(DistilledFile))
	var got []string
	for _, row := range rows {
		got = append(got, fmt.Sprintf("%s/%d: %s", row.Messages[0].Content, row.Distill.Sample, row.Messages[1].Content))
		if row.Distill.JudgeScore == nil || *row.Distill.JudgeScore != 5 || row.Distill.Settings.Temperature != 0.7 || row.Distill.Settings.Seed != 42+int64(row.Distill.Sample) {
			t.Errorf("provenance %+v", row.Distill)
		}
	}
	want := "fine/0: a GOOD answer to fine (seed 42)|fine/1: a GOOD answer to fine (seed 43)|cut/1: a GOOD whole answer|same/0: the GOOD same answer"
	if strings.Join(got, "|") != want {
		t.Fatalf("rows\n  %s\nwant\n  %s", strings.Join(got, "|"), want)
	}
	// Again: the cache answers both the teacher and the judge.
	run2, rep2, err := Distill(context.Background(), r, DistillOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	run2.Close()
	if teacherCalls.Load() != 12 || judgeCalls.Load() != 6 || rep2.Filtered != f || rep2.Rows != 4 {
		t.Fatalf("second distillation: %d teacher calls, %d judge calls, %+v", teacherCalls.Load(), judgeCalls.Load(), rep2.Filtered)
	}
}
