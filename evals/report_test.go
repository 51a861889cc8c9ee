package evals

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// reportRun is a run with every kind of thing a report shows: scores with
// intervals, a label metric, a failed contestant, prices, Unicode and
// markup in answers.
func reportRun(t *testing.T) *Results {
	t.Helper()
	labels := []string{"pos", "neg", "neu"}
	var cases []Case
	for i := 0; i < 15; i++ {
		c := qaCase(fmt.Sprintf("Review %d: is «café №%d» good?", i, i), labels[i%3], labels[i%3])
		cases = append(cases, c)
	}
	answer := func(right func(i int) bool) func(Case) (string, error) {
		return func(c Case) (string, error) {
			var i int
			fmt.Sscanf(lastUser(c), "Review %d", &i)
			if i == 7 {
				return `<script>document.title="pwned"</script> label: neg`, nil
			}
			if right(i) {
				return "I think the label: " + labels[i%3] + " ✓", nil
			}
			return "label: " + labels[(i+1)%3], nil
		}
	}
	base := newScripted("base", answer(func(i int) bool { return i%2 == 0 }))
	tuned := newScripted("tuned", answer(func(i int) bool { return i%5 != 4 }))
	gpt := newScripted("gpt", answer(func(i int) bool { return i != 3 }))
	gpt.price = Price{InputPerMillion: 2.5, OutputPerMillion: 10}
	broken := newScripted("broken", func(Case) (string, error) { return "", &FatalError{errors.New("HTTP 401 Unauthorized: bad key")} })
	res, err := Run(context.Background(), Suite{Cases: cases, Metrics: []Metric{
		{Name: "exact", Kind: Contains},
		{Name: "label", Kind: Label, Pattern: `label:\s*(\w+)`},
		{Name: "f1", Kind: TokenF1},
	}}, []Contestant{base, tuned, gpt, broken}, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestMarkdownAndJSONReports(t *testing.T) {
	res := reportRun(t)
	dir := t.TempDir()
	if err := WriteReports(dir, res, ReportExtras{Title: "Reviews", Notes: []string{"recipe: reviews.yaml"}}); err != nil {
		t.Fatal(err)
	}
	var back Results
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil || json.Unmarshal(b, &back) != nil {
		t.Fatalf("results.json: %v", err)
	}
	if len(back.Cases) != 15 || len(back.Cases[0].Answers) != 4 || back.Contestant("tuned").Scores["label"] != res.Contestant("tuned").Scores["label"] {
		t.Errorf("results.json does not round-trip: %d cases", len(back.Cases))
	}
	if back.Cases[7].Answers[1].Text == "" || back.Cases[2].Answers[3].Error == "" || back.Cases[0].Answers[0].Details["label"] != "pos" {
		t.Errorf("results.json case 7/2 answers: %+v", back.Cases[7].Answers)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	for _, want := range []string{
		"# Reviews", "recipe: reviews.yaml", "> **broken failed**: HTTP 401",
		"| metric | base | tuned | gpt | broken |",
		"| label | 0.600 [", // base right on the 8 even cases of 15, and on case 7
		"| Δ label vs base |",
		"### Confusion matrix: label, tuned",
		"| reference \\ answer | neg | neu | pos | (other) |",
		"## Cases where exact differs",
	} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("report.md:\n%s", md)
	}
}

func TestLoadLossCurve(t *testing.T) {
	p := filepath.Join(t.TempDir(), "metrics.jsonl")
	os.WriteFile(p, []byte(`{"step":1,"total_steps":3,"loss":4.5,"lr":0.001,"grad_norm":1.2}
{"step":2,"total_steps":3,"loss":3.25,"val_loss":3.5,"lr":0.001}

{"step":3,"total_steps":3,"loss":2}
`), 0o644)
	pts, err := LoadLossCurve(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 3 || pts[1].Step != 2 || pts[1].Loss != 3.25 || pts[1].ValLoss == nil || *pts[1].ValLoss != 3.5 || pts[0].ValLoss != nil || pts[2].Loss != 2 {
		t.Fatalf("loss curve %+v", pts)
	}
	os.WriteFile(p, []byte("{\"step\":1,\"loss\":1}\n{broken\n"), 0o644)
	if _, err := LoadLossCurve(p); err == nil || !strings.Contains(err.Error(), "metrics.jsonl:2") {
		t.Fatalf("a broken line: %v", err)
	}
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// chromium runs headless Chromium with args; stdout and stderr come back.
func chromium(t *testing.T, bin string, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir=" + t.TempDir(), "--enable-logging=stderr", "--v=0"}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), errb.String()
}

// TestHTMLReportInChromium opens report.html in headless Chromium: the
// script runs without a console message or error, the headline table and
// every case are there, the "tuned better than base" filter shows exactly
// the cases where tuned scored higher, answers cannot inject markup, and a
// screenshot is saved.
func TestHTMLReportInChromium(t *testing.T) {
	bin := findChromium()
	if bin == "" {
		t.Skip("SKIPPED: no chromium in PATH (apt-get install chromium); the HTML report was not opened in a browser")
	}
	res := reportRun(t)
	dir := t.TempDir()
	loss := []LossPoint{{Step: 1, Loss: 3.2}, {Step: 2, Loss: 2.1}, {Step: 3, Loss: 1.4, ValLoss: ptr(1.6)}, {Step: 4, Loss: 0.9, ValLoss: ptr(1.2)}}
	if err := WriteReports(dir, res, ReportExtras{Title: "Reviews", Loss: loss}); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, "report.html")
	html, _ := os.ReadFile(page)
	if regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`).Match(html) || bytes.Contains(html, []byte("<link")) {
		t.Error("report.html loads something from the network")
	}

	dom, logs := chromium(t, bin, "--dump-dom", "file://"+page)
	checkConsole(t, logs)
	if htmlTag := regexp.MustCompile(`<html[^>]*>`).FindString(dom); !strings.Contains(htmlTag, `data-ready="1"`) || strings.Contains(htmlTag, "data-errors") {
		t.Fatalf("the report's script did not finish cleanly:\n%s", head(dom))
	}
	headline := regexp.MustCompile(`(?s)<table id="headline">.*?</table>`).FindString(dom)
	for _, want := range []string{"<th>base<br>", "<th>tuned<br>", "<th>gpt<br>", "<th>broken<br>", "<th>exact</th>", "<th>label</th>", "<th>label_macro_f1</th>", "<th>f1</th>", "cost (spent this run)", "latency p50 / p95"} {
		if !strings.Contains(headline, want) {
			t.Errorf("the headline table lacks %q", want)
		}
	}
	if !strings.Contains(dom, "broken failed:") || !strings.Contains(dom, "<svg") || !strings.Contains(dom, "training loss") {
		t.Error("the failure, the charts or the loss curve are missing")
	}
	if n := strings.Count(dom, `<section class="case"`); n != len(res.Cases) {
		t.Errorf("%d cases in the page, want %d", n, len(res.Cases))
	}
	if !strings.Contains(dom, "&lt;script&gt;document.title") || strings.Contains(dom, "pwned</title>") || strings.Count(dom, "<script>") != 2 {
		t.Error("an answer's markup was not escaped")
	}
	if !strings.Contains(dom, "«café №3»") || !strings.Contains(dom, "✓") {
		t.Error("Unicode text is mangled")
	}
	if !strings.Contains(dom, `<span id="shown">15</span>`) {
		t.Error("without a filter, not every case is shown")
	}

	// The filter, from the address: tuned better / worse than base on
	// label.
	for _, f := range []string{"better", "worse", "same"} {
		want := 0
		for _, c := range res.Cases {
			b, okb := c.Answers[0].Scores["label"]
			tu, okt := c.Answers[1].Scores["label"]
			if okb && okt && (f == "better" && tu > b || f == "worse" && tu < b || f == "same" && tu == b) {
				want++
			}
		}
		dom, logs := chromium(t, bin, "--dump-dom", "file://"+page+"#c=tuned&m=label&f="+f)
		checkConsole(t, logs)
		shown := strings.Count(dom, `<section class="case"`) - len(regexp.MustCompile(`<section class="case"[^>]*\shidden=""`).FindAllString(dom, -1))
		if shown != want || !strings.Contains(dom, fmt.Sprintf(`<span id="shown">%d</span>`, want)) {
			t.Errorf("filter tuned %s than base: %d cases shown, want %d", f, shown, want)
		}
	}

	shot := filepath.Join(t.TempDir(), "report.png")
	_, logs = chromium(t, bin, "--screenshot="+shot, "--window-size=1280,2200", "--hide-scrollbars", "file://"+page)
	checkConsole(t, logs)
	if st, err := os.Stat(shot); err != nil || st.Size() < 20000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)
	if dst := os.Getenv("FINETUNE_KEEP_SCREENSHOT"); dst != "" {
		b, _ := os.ReadFile(shot)
		os.WriteFile(dst, b, 0o644)
	}
}

func ptr[T any](v T) *T { return &v }

func checkConsole(t *testing.T, logs string) {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "CONSOLE") || strings.Contains(line, "Uncaught") {
			t.Errorf("browser console: %s", line)
		}
	}
}

func head(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "…"
	}
	return s
}

// TestReportsMarkIncomplete: a contestant that answered some cases is
// partial in every report, its scores and comparisons say over how many
// of the cases asked, a comparison with one that answered none shows no
// difference (not a tie), and the reports say how the cases were chosen.
func TestReportsMarkIncomplete(t *testing.T) {
	var cases []Case
	for i := 0; i < 4; i++ {
		cases = append(cases, qaCase(fmt.Sprintf("q%d", i), "yes", ""))
	}
	yes := newScripted("base", func(Case) (string, error) { return "yes", nil })
	some := newScripted("some", func(c Case) (string, error) {
		if lastUser(c) == "q3" {
			return "", &statusError{code: 500, msg: "boom"}
		}
		return "yes", nil
	})
	none := newScripted("none", func(Case) (string, error) { return "", &FatalError{errors.New("HTTP 403 Forbidden")} })
	sel := &Selection{Method: "stratified", Chosen: 4, Of: 40, Seed: 9, By: "label", Strata: 2}
	res, err := Run(context.Background(), Suite{Cases: cases, Metrics: []Metric{{Name: "em", Kind: ExactMatch}}, Selection: sel},
		[]Contestant{yes, some, none}, RunOptions{Bootstrap: 100})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Contestant("some")
	if s.Status != "partial" || s.Answered != 3 || s.Asked != 4 || s.Error != "HTTP 500 Internal Server Error: boom" || s.FirstError != s.Error {
		t.Fatalf("some: %+v", s)
	}
	if sc := s.Scores["em"]; sc.N != 3 || sc.Asked != 4 || !sc.Incomplete {
		t.Errorf("some's score %+v", sc)
	}
	if n := res.Contestant("none"); n.Status != "failed" || n.Error != "HTTP 403 Forbidden" {
		t.Errorf("none: %+v", n)
	}
	dir := t.TempDir()
	if err := WriteReports(dir, res, ReportExtras{}); err != nil {
		t.Fatal(err)
	}
	js, _ := os.ReadFile(filepath.Join(dir, "results.json"))
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	for file, wants := range map[string][]string{
		"results.json": {`"status": "partial"`, `"asked": 4`, `"incomplete": true`, `"method": "stratified"`, `"first_error": "HTTP 500 Internal Server Error: boom"`},
		"report.md": {
			"Cases: a random sample of 4 of the eval split's 40 cases, stratified by label (2 strata; seed 9).",
			"> **some partial**: HTTP 500 Internal Server Error: boom (3 of 4 cases answered, 1 failed;",
			"| em | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] (n=3 of 4) | – |",
			"| status | ok | partial: 3 of 4 answered | failed: 0 of 4 answered |",
			"| some | base | em | +0.000 [+0.000, +0.000] | 0 / 3 / 0 | 3 of 4 (incomplete) |",
			"| none | base | em | – | – | 0 of 4 (incomplete) |",
		},
		"report.html": {"Cases: a random sample of 4", "<b>some partial:</b> HTTP 500 Internal Server Error: boom (3 of 4 cases answered", `<td class="num incomplete">0 of 4 (incomplete)</td>`},
	} {
		b := map[string][]byte{"results.json": js, "report.md": md, "report.html": html}[file]
		for _, w := range wants {
			if !bytes.Contains(b, []byte(w)) {
				t.Errorf("%s lacks %q", file, w)
			}
		}
	}
	if t.Failed() {
		t.Logf("report.md:\n%s", md)
	}
}

// TestConfusionCompact: reports leave out the labels no answer named, and
// a matrix of nothing but "(other)" becomes a sentence.
func TestConfusionCompact(t *testing.T) {
	cm := &Confusion{Labels: []string{"a", "b", "c"}, Predicted: []string{"a", "b", "c", "(other)"},
		Counts: [][]int{{2, 0, 0, 1}, {1, 0, 0, 0}, {0, 0, 0, 3}}}
	got := cm.Compact()
	if got == nil || fmt.Sprint(got.Predicted) != "[a (other)]" || fmt.Sprint(got.Counts) != "[[2 1] [1 0] [0 3]]" || fmt.Sprint(got.Labels) != "[a b c]" {
		t.Fatalf("compacted to %+v", got)
	}
	none := &Confusion{Labels: []string{"a", "b"}, Predicted: []string{"a", "b", "(other)"}, Counts: [][]int{{0, 0, 2}, {0, 0, 3}}}
	if none.Compact() != nil || noLabelNote(none) != "No answer named one of the 2 labels: all 5 cases are (other)." {
		t.Fatalf("all (other): %+v, %q", none.Compact(), noLabelNote(none))
	}
	var md strings.Builder
	mdConfusions(&md, &Results{Metrics: []MetricInfo{{Name: "acc", Kind: Label}}, Contestants: []ContestantResult{{Name: "base", Confusion: map[string]*Confusion{"acc": none}}}})
	if !strings.Contains(md.String(), "all 5 cases are (other)") || strings.Contains(md.String(), "| reference") {
		t.Fatalf("report.md:\n%s", md.String())
	}
}
