package evals

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestHeatOrder: labels confused with each other end up side by side;
// labels never confused keep their order.
func TestHeatOrder(t *testing.T) {
	labels := []string{"a", "b", "c", "d", "e", "f", "g"}
	counts := make([][]int, len(labels))
	for i := range counts {
		counts[i] = make([]int, len(labels)+1)
		counts[i][i] = 5
		counts[i][len(labels)] = 9 // (other) is not a label: it orders nothing
	}
	counts[1][4], counts[4][1] = 3, 1 // b ~ e
	counts[2][6] = 4                  // c ~ g
	counts[6][5] = 2                  // g ~ f
	order := heatOrder(labels, counts)
	pos := map[string]int{}
	var names []string
	for k, i := range order {
		pos[labels[i]] = k
		names = append(names, labels[i])
	}
	adjacent := func(x, y string) bool { d := pos[x] - pos[y]; return d == 1 || d == -1 }
	if len(order) != len(labels) || !adjacent("b", "e") || !adjacent("c", "g") || !adjacent("g", "f") || pos["a"] > pos["d"] {
		t.Fatalf("order %v", names)
	}
	none := make([][]int, 3)
	for i := range none {
		none[i] = []int{0, 0, 0, 1}
		none[i][i] = 1
	}
	if got := fmt.Sprint(heatOrder([]string{"x", "y", "z"}, none)); got != "[0 1 2]" {
		t.Fatalf("no confusion: %s", got)
	}
}

// manyLabelsRun is a run on 72 labels, 3 cases each: the base names no
// label, the tuned model is mostly right and confuses pairs of labels far
// apart in alphabetical order, and names some labels that are no label.
func manyLabelsRun(t *testing.T) *Results {
	t.Helper()
	const n = 72
	var labels []string
	for i := 0; i < n; i++ {
		labels = append(labels, fmt.Sprintf("intent_%02d_%s", i, strings.Repeat("x", i%9)))
	}
	var cases []Case
	for i := 0; i < 3*n; i++ {
		cases = append(cases, qaCase(fmt.Sprintf("q%d", i), labels[i%n], labels[i%n]))
	}
	base := newScripted("base", func(Case) (string, error) { return "I cannot say", nil })
	tuned := newScripted("tuned", func(c Case) (string, error) {
		var i int
		fmt.Sscanf(lastUser(c), "q%d", &i)
		l := i % n
		switch {
		case i/n == 0 && l%4 == 0:
			return labels[(l+n/2)%n], nil // confused with a label half the list away
		case i/n == 1 && l%10 == 3:
			return "verify_my_id", nil
		}
		return labels[l], nil
	})
	res, err := Run(context.Background(), Suite{Cases: cases, Metrics: []Metric{{Name: "label_accuracy", Kind: Label}}}, []Contestant{base, tuned}, RunOptions{Bootstrap: 20})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestConfusionHeatMapInChromium: with 72 labels the confusion matrix is
// a heat map that fits the page width (no horizontal scrolling), its
// cells without numbers but with a title each, the diagonal marked and
// the confused labels next to each other; the screenshot shows colour.
func TestConfusionHeatMapInChromium(t *testing.T) {
	res := manyLabelsRun(t)
	dir := t.TempDir()
	if err := WriteReports(dir, res, ReportExtras{Title: "Banking"}); err != nil {
		t.Fatal(err)
	}
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	table := regexp.MustCompile(`(?s)<h3>Confusion matrix: label_accuracy, tuned</h3>.*?</table>`).Find(html)
	if table == nil {
		t.Fatal("no heat map for tuned")
	}
	if n := bytes.Count(table, []byte(`<td class="d"`)); n != 72 {
		t.Errorf("%d diagonal cells, want 72", n)
	}
	if n := bytes.Count(table, []byte("<td")); n != 72*73 {
		t.Errorf("%d cells, want 72×73", n)
	}
	if regexp.MustCompile(`<td[^>]*>\d+</td>`).Match(table) {
		t.Error("a large heat map shows numbers in its cells")
	}
	if !bytes.Contains(table, []byte(`title="reference intent_04_xxxx, answer intent_40_xxxx: 1 of 3 (33%)"`)) {
		t.Errorf("a confused cell lacks its title")
	}
	if !bytes.Contains(html, []byte("not a label: 7 (verify_my_id 7)")) {
		t.Error("the label section does not say what was not a label")
	}
	// Confused labels sit together: intent_04 next to intent_40.
	var cols []string
	for _, m := range regexp.MustCompile(`<th class="col" title="([^"]*)">`).FindAllSubmatch(table, -1) {
		cols = append(cols, string(m[1]))
	}
	at := map[string]int{}
	for i, c := range cols {
		at[c] = i
	}
	if d := at["intent_04_xxxx"] - at["intent_40_xxxx"]; d != 1 && d != -1 {
		t.Errorf("intent_04 and intent_40, confused, are %d columns apart", d)
	}
	if base := regexp.MustCompile(`(?s)<h3>Confusion matrix: label_accuracy, base</h3>.*?<h3`).Find(html); !bytes.Contains(base, []byte("No answer named one of the 72 labels")) {
		t.Error("base's matrix of nothing but (other) is not a sentence")
	}

	// report.md lists the confusions instead of a 72-column table.
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	for _, w := range []string{"72 labels: 191 of 216 cases right.", "| intent_04_xxxx | intent_40_xxxx | 1 |", "| intent_03_xxx | (other) | 1 |"} {
		if !bytes.Contains(md, []byte(w)) {
			t.Errorf("report.md lacks %q", w)
		}
	}
	if bytes.Contains(md, []byte("| reference \\ answer |")) {
		t.Error("report.md has the 72-label table")
	}

	bin := findChromium()
	if bin == "" {
		t.Skip("SKIPPED: no chromium in PATH (apt-get install chromium); the heat map was not laid out in a browser")
	}
	// Measure the layout: the page's width against the window's, the
	// heat map's right edge.
	measured := filepath.Join(dir, "measured.html")
	probe := `<script>(function(){var d=document.documentElement,r=0;document.querySelectorAll("table.heat").forEach(function(t){r=Math.max(r,t.getBoundingClientRect().right)});` +
		`d.setAttribute("data-measure",d.clientWidth+" "+d.scrollWidth+" "+Math.ceil(r))})();</script>`
	os.WriteFile(measured, bytes.Replace(html, []byte("</body>"), []byte(probe+"</body>"), 1), 0o644)
	dom, logs := chromium(t, bin, "--window-size=1280,2000", "--dump-dom", "file://"+measured)
	checkConsole(t, logs)
	m := regexp.MustCompile(`data-measure="(\d+) (\d+) (\d+)"`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("the probe did not run:\n%s", head(dom))
	}
	var client, scroll, right int
	fmt.Sscan(m[1]+" "+m[2]+" "+m[3], &client, &scroll, &right)
	if scroll > client || right > client || right == 0 {
		t.Errorf("the page scrolls sideways: window %d px, page %d px, heat map's right edge at %d px", client, scroll, right)
	}
	t.Logf("window %d px, page %d px, heat map's right edge %d px", client, scroll, right)

	// Screenshot of the matrices: coloured cells, green and red.
	shot := filepath.Join(t.TempDir(), "heat.png")
	page := filepath.Join(dir, "report.html")
	_, logs = chromium(t, bin, "--screenshot="+shot, "--window-size=1280,2400", "--hide-scrollbars", "file://"+page)
	checkConsole(t, logs)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	green, red := 0, 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			r, g, bl = r>>8, g>>8, bl>>8
			switch {
			case g > r+40 && g > bl+20:
				green++
			case r > g+60 && r > bl+60:
				red++
			}
		}
	}
	if green < 2000 || red < 100 {
		t.Errorf("the screenshot shows %d green and %d red pixels: no heat map?", green, red)
	}
	t.Logf("screenshot %s: %d green, %d red pixels", shot, green, red)
	if dst := os.Getenv("FINETUNE_KEEP_SCREENSHOT"); dst != "" {
		b, _ := os.ReadFile(shot)
		os.WriteFile(strings.TrimSuffix(dst, ".png")+"-heat.png", b, 0o644)
	}
}
