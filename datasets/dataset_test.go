package datasets

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func chatLine(prompt, answer string) string {
	b, _ := json.Marshal(map[string]any{"messages": []map[string]any{{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}}})
	return string(b) + "\n"
}

// scanAll scans cfg, collecting the items by split.
func scanAll(t *testing.T, cfg Config, r *Renderer) (*Report, map[Split][]Item) {
	t.Helper()
	items := map[Split][]Item{}
	m := r.Model()
	rep, err := Scan(cfg, m, func(it Item) error {
		items[it.Split] = append(items[it.Split], it)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rep, items
}

func TestScanEvalFileDuplicatesAndLeaks(t *testing.T) {
	m := llama3Model(t)
	r, err := NewRenderer(m, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	train := writeFileIn(t, dir, "train.jsonl",
		chatLine("a", "1")+chatLine("b", "2")+chatLine("a", "1")+chatLine("c", "3")+chatLine("d", "4")+chatLine("a", "1"))
	eval := writeFileIn(t, dir, "eval.jsonl", chatLine("c", "three")+chatLine("e", "5")+chatLine("e", "5"))
	rep, items := scanAll(t, Config{Train: train, Eval: eval}, r)
	if rep.Train.Records != 4 || rep.Train.Duplicates != 2 || rep.Eval.Records != 2 || rep.Eval.Duplicates != 1 {
		t.Fatalf("train %d records, %d duplicates; eval %d records, %d duplicates", rep.Train.Records, rep.Train.Duplicates, rep.Eval.Records, rep.Eval.Duplicates)
	}
	// Eval records come first, so that leaks are known as training streams.
	if len(items[EvalSplit]) != 2 || items[EvalSplit][0].Record.Source != eval+":1" || len(items[TrainSplit]) != 4 {
		t.Fatalf("items: eval %d, train %d", len(items[EvalSplit]), len(items[TrainSplit]))
	}
	if rep.Leaks != 1 || !reflect.DeepEqual(rep.LeakList, []Leak{{Train: train + ":4", Eval: eval + ":1"}}) {
		t.Fatalf("leaks %d %+v", rep.Leaks, rep.LeakList)
	}
	if len(items[TrainSplit][0].Examples) != 1 || rep.Template == "" || rep.EvalSplit != "separate eval data" {
		t.Fatalf("report %+v", rep)
	}

	rep, _ = scanAll(t, Config{Train: train, KeepDuplicates: true}, r)
	if rep.Train.Records != 6 || rep.Train.Duplicates != 0 || rep.Leaks != 0 {
		t.Fatalf("keeping duplicates: %+v", rep.Train)
	}
}

func writeFileIn(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestScanRatioSplit(t *testing.T) {
	m := llama3Model(t)
	r, _ := NewRenderer(m, RenderOptions{})
	var b strings.Builder
	for i := 0; i < 1000; i++ {
		b.WriteString(chatLine(fmt.Sprintf("question %d", i/2), fmt.Sprintf("answer %d", i))) // each prompt twice, answers differ
	}
	train := writeFile(t, "train.jsonl", b.String())
	split := func(seed uint64) map[string]Split {
		_, items := scanAll(t, Config{Train: train, EvalRatio: 0.2, Seed: seed}, r)
		out := map[string]Split{}
		for sp, its := range items {
			for _, it := range its {
				out[it.Record.Source] = sp
			}
		}
		return out
	}
	a, again, other := split(1), split(1), split(2)
	if !reflect.DeepEqual(a, again) {
		t.Fatal("the same seed split differently")
	}
	if reflect.DeepEqual(a, other) {
		t.Fatal("another seed split the same way")
	}
	held := 0
	for i := 1; i <= 1000; i += 2 {
		s1, s2 := a[fmt.Sprintf("%s:%d", train, i)], a[fmt.Sprintf("%s:%d", train, i+1)]
		if s1 != s2 {
			t.Fatalf("lines %d and %d share a prompt but went to %s and %s", i, i+1, s1, s2)
		}
		if s1 == EvalSplit {
			held++
		}
	}
	// 500 prompts at 0.2: within 4 standard deviations (~9 each).
	if math.Abs(float64(held)-100) > 36 {
		t.Fatalf("%d of 500 prompts held out at ratio 0.2", held)
	}
}

func TestScanLengthRule(t *testing.T) {
	m := llama3Model(t)
	r, _ := NewRenderer(m, RenderOptions{})
	short, long := chatLine("hi", "ok"), chatLine("hi", strings.Repeat("long answer ", 20))
	masked := `{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "weight": 0}]}` + "\n"
	train := writeFile(t, "d.jsonl", short+long+masked)
	ex, _ := r.Render(Record{Messages: []Message{user("hi"), assistant("ok")}})
	n := len(ex[0].Tokens)
	exLong, _ := r.Render(Record{Messages: []Message{user("hi"), assistant(strings.Repeat("long answer ", 20))}})
	nLong := len(exLong[0].Tokens)

	rep, items := scanAll(t, Config{Train: train, MaxLength: n + 10}, r)
	st := rep.Train
	if st.Records != 3 || st.Examples != 1 || st.Dropped != 1 || st.Truncated != 0 || st.Untrained != 1 {
		t.Fatalf("drop: %+v", st)
	}
	if st.Tokens != int64(n) || st.Trained != int64(ex[0].Trained()) || st.Lengths.Max != nLong || st.Lengths.Count != 3 {
		t.Fatalf("drop: tokens %d trained %d lengths %+v", st.Tokens, st.Trained, st.Lengths)
	}
	if len(items[TrainSplit][1].Examples) != 0 {
		t.Fatal("the dropped record still has an example")
	}

	rep, items = scanAll(t, Config{Train: train, MaxLength: n + 10, Overflow: Truncate}, r)
	st = rep.Train
	if st.Examples != 2 || st.Truncated != 1 || st.Dropped != 0 || st.Tokens != int64(2*n+10) {
		t.Fatalf("truncate: %+v", st)
	}
	cut := items[TrainSplit][1].Examples[0]
	if len(cut.Tokens) != n+10 || len(cut.Weights) != n+10 || !reflect.DeepEqual(cut.Tokens, exLong[0].Tokens[:n+10]) {
		t.Fatalf("truncated example has %d tokens, want the first %d", len(cut.Tokens), n+10)
	}
	if want := 1 - float64(st.Trained)/float64(st.Tokens); st.MaskedFraction() != want || want <= 0 || want >= 1 {
		t.Fatalf("masked fraction %g", st.MaskedFraction())
	}
}

func TestScanBadRows(t *testing.T) {
	m := llama3Model(t)
	bad1 := `{"messages": [{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}]}` + "\n"
	bad2 := "{not json\n"
	// A row that reads fine but holds the end-of-turn token in its answer.
	bad3 := chatLine("q", "stop<|eot_id|>here")
	train := writeFile(t, "d.jsonl", chatLine("a", "1")+bad1+chatLine("b", "2")+bad2+bad3)

	_, err := Scan(Config{Train: train}, m, nil)
	if err == nil || err.Error() != train+`:2: messages[1].role: unknown role "robot" (want system, user or assistant)` {
		t.Fatalf("fail-fast: %v", err)
	}
	rep, err := Scan(Config{Train: train, MaxBadRows: 3}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Train.Records != 2 || len(rep.Skipped) != 3 || rep.Skipped[1].Source != train+":4" || !strings.Contains(rep.Skipped[2].Msg, "end-of-generation token") {
		t.Fatalf("skipped %v, records %d", rep.Skipped, rep.Train.Records)
	}
	var b bytes.Buffer
	if err := rep.WriteSkipped(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	var first map[string]string
	if len(lines) != 3 || json.Unmarshal([]byte(lines[0]), &first) != nil || first["source"] != train+":2" || first["field"] != "messages[1].role" || !strings.Contains(first["error"], "robot") {
		t.Fatalf("skipped rows file:\n%s", b.String())
	}
	_, err = Scan(Config{Train: train, MaxBadRows: 2}, m, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "more than 2 bad rows (max bad rows), the last: "+train+":5") {
		t.Fatalf("over the limit: %v", err)
	}
}

func TestScanWithoutModel(t *testing.T) {
	train := writeFile(t, "d.jsonl", chatLine("a", "1")+chatLine("b", "2"))
	var n int
	rep, err := Scan(Config{Train: train}, nil, func(it Item) error {
		if it.Examples != nil {
			t.Fatal("examples without a model")
		}
		n++
		return nil
	})
	if err != nil || n != 2 || rep.Train.Records != 2 || rep.Formats[FormatMessages] != 2 || rep.Train.Tokens != 0 {
		t.Fatalf("%v: %d items, %+v", err, n, rep)
	}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no training data"},
		{Config{Train: train, EvalRatio: 1}, "not within [0, 1)"},
		{Config{Train: train, Eval: train, EvalRatio: 0.1}, "not both"},
		{Config{Train: train, Overflow: "wrap"}, `unknown overflow "wrap"`},
		{Config{Train: train, MaxBadRows: -1}, "negative"},
	} {
		if _, err := Scan(c.cfg, nil, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestLengths(t *testing.T) {
	var l Lengths
	for _, n := range []int{3, 5, 5, 7, 12, 40, 41, 99, 100, 200000} {
		l.add(n)
	}
	l.finish()
	if l.Count != 10 || l.Min != 3 || l.Max != 200000 || l.P50 != 12 || l.P90 != 100 || l.P99 != 200000 {
		t.Fatalf("%+v", l)
	}
	if want := float64(3+5+5+7+12+40+41+99+100+200000) / 10; l.Mean != want {
		t.Fatalf("mean %g, want %g", l.Mean, want)
	}
	// Round bucket widths, at most 12 buckets, every example counted once.
	total := 0
	for _, b := range l.Buckets {
		total += b.Count
		if (b.Hi-b.Lo+1)%10000 != 0 {
			t.Fatalf("bucket %+v is not of a round width", b)
		}
	}
	if total != 10 || len(l.Buckets) > 12 || l.Buckets[0].Count != 9 || l.Buckets[len(l.Buckets)-1].Count != 1 {
		t.Fatalf("buckets %+v", l.Buckets)
	}

	var s Lengths
	for n := 100; n < 160; n++ {
		s.add(n)
	}
	s.finish()
	// 60 lengths: the narrowest round width giving at most 12 buckets is 5.
	var want []Bucket
	for lo := 100; lo < 160; lo += 5 {
		want = append(want, Bucket{lo, lo + 4, 5})
	}
	if !reflect.DeepEqual(s.Buckets, want) || s.P50 != 129 || s.P90 != 153 {
		t.Fatalf("%+v", s)
	}
}

// TestScanWorkersDeterministic renders with one worker and with several:
// the items, their order and the report must not change.
func TestScanWorkersDeterministic(t *testing.T) {
	m := llama2Model(t)
	var b strings.Builder
	for i := 0; i < 300; i++ {
		switch {
		case i%17 == 0:
			b.WriteString(`{"messages": [{"role": "user", "content": "x"}]}` + "\n") // bad: no answer
		case i%11 == 0:
			b.WriteString(chatLine("repeat", "same")) // duplicates
		default:
			b.WriteString(chatLine(fmt.Sprintf("question %d %s", i, strings.Repeat("word ", i%40)), fmt.Sprintf(", answer %d", i)))
		}
	}
	train := writeFile(t, "d.jsonl", b.String())
	run := func(workers int) (*Report, []Item) {
		var items []Item
		rep, err := Scan(Config{Train: train, EvalRatio: 0.25, MaxBadRows: 100, MaxLength: 40, Overflow: Truncate, Workers: workers,
			RenderOptions: RenderOptions{Template: "llama2"}}, m, func(it Item) error {
			items = append(items, it)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return rep, items
	}
	rep1, items1 := run(1)
	rep4, items4 := run(4)
	if !reflect.DeepEqual(rep1, rep4) || !reflect.DeepEqual(items1, items4) {
		t.Fatal("four workers gave another result than one")
	}
	if len(rep1.Skipped) != 18 || rep1.Train.Duplicates+rep1.Eval.Duplicates != 25 || rep1.Train.Truncated == 0 || len(items1) != 300-18-25 {
		t.Fatalf("skipped %d, duplicates %d+%d, truncated %d, items %d", len(rep1.Skipped), rep1.Train.Duplicates, rep1.Eval.Duplicates, rep1.Train.Truncated, len(items1))
	}
}
