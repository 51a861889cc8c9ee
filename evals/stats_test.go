package evals

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func TestPercentile(t *testing.T) {
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(100 - i) // unsorted: 100..1
	}
	if p := percentile(xs, 50); !near(p, 50.5) {
		t.Errorf("p50 of 1..100 = %v, want 50.5", p)
	}
	if p := percentile(xs, 95); !near(p, 95.05) {
		t.Errorf("p95 of 1..100 = %v, want 95.05", p)
	}
	if p := percentile([]float64{7}, 95); p != 7 {
		t.Errorf("p95 of one value = %v", p)
	}
	if p := percentile(nil, 50); p != 0 {
		t.Errorf("p50 of nothing = %v", p)
	}
}

// runPaired runs two scripted contestants whose per-case correctness is
// given, scored by exact match.
func runPaired(t *testing.T, a, b []bool, opts RunOptions) *Results {
	t.Helper()
	var cases []Case
	for i := range a {
		cases = append(cases, qaCase(fmt.Sprintf("q%d", i), "yes", ""))
	}
	answer := func(right []bool) func(Case) (string, error) {
		return func(c Case) (string, error) {
			var i int
			fmt.Sscanf(lastUser(c), "q%d", &i)
			if right[i] {
				return "yes", nil
			}
			return "no", nil
		}
	}
	res, err := Run(context.Background(), Suite{Cases: cases, Metrics: []Metric{{Name: "em", Kind: ExactMatch}}},
		[]Contestant{newScripted("base", answer(b)), newScripted("tuned", answer(a))}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestPairedBootstrap checks the confidence intervals against what they
// must be: degenerate when every case agrees, and close to the normal
// approximation (mean ± 1.96·sd/√n of the paired differences) on a large
// sample.
func TestPairedBootstrap(t *testing.T) {
	// Identical contestants: difference 0, interval [0, 0], all ties.
	same := make([]bool, 30)
	for i := range same {
		same[i] = i%3 == 0
	}
	res := runPaired(t, same, same, RunOptions{})
	c := res.Compare("tuned", "base", "em")
	if c.Diff != 0 || c.Low != 0 || c.High != 0 || c.Ties != 30 || c.Significant() {
		t.Errorf("identical contestants: %+v", *c)
	}
	// The base's own interval is not degenerate (10 of 30 right).
	if s := res.Contestant("base").Scores["em"]; !near(s.Value, 1.0/3) || s.Low >= s.Value || s.High <= s.Value || s.N != 30 {
		t.Errorf("base score %+v", s)
	}

	// 400 cases: tuned right on 60%, base on 50%, correlated: a paired
	// interval is much narrower than one from independent samples.
	rng := rand.New(rand.NewPCG(7, 7))
	n := 400
	a, b := make([]bool, n), make([]bool, n)
	var diffs []float64
	for i := 0; i < n; i++ {
		b[i] = rng.Float64() < 0.5
		a[i] = b[i]
		if !b[i] && rng.Float64() < 0.25 {
			a[i] = true
		}
		if b[i] && rng.Float64() < 0.05 {
			a[i] = false
		}
		diffs = append(diffs, boolf(a[i])-boolf(b[i]))
	}
	res = runPaired(t, a, b, RunOptions{Bootstrap: 4000, Seed: 1})
	c = res.Compare("tuned", "base", "em")
	mean, sd := meanSD(diffs)
	half := 1.96 * sd / math.Sqrt(float64(n))
	if !near(c.Diff, mean) {
		t.Errorf("difference %v, want %v", c.Diff, mean)
	}
	if math.Abs(c.Low-(mean-half)) > 0.15*half || math.Abs(c.High-(mean+half)) > 0.15*half {
		t.Errorf("bootstrap interval [%.4f, %.4f], normal approximation [%.4f, %.4f]", c.Low, c.High, mean-half, mean+half)
	}
	wins, losses := 0, 0
	for i := range a {
		if a[i] && !b[i] {
			wins++
		}
		if b[i] && !a[i] {
			losses++
		}
	}
	if c.Wins != wins || c.Losses != losses || c.Ties != n-wins-losses || c.N != n {
		t.Errorf("wins/ties/losses %d/%d/%d of %d, want %d/%d/%d", c.Wins, c.Ties, c.Losses, c.N, wins, n-wins-losses, losses)
	}
	if !c.Significant() {
		t.Errorf("a +%.3f difference over %d paired cases is not significant: [%v, %v]", mean, n, c.Low, c.High)
	}
	// The same seed gives the same interval.
	again := runPaired(t, a, b, RunOptions{Bootstrap: 4000, Seed: 1}).Compare("tuned", "base", "em")
	if again.Low != c.Low || again.High != c.High {
		t.Errorf("the same seed gave [%v, %v] then [%v, %v]", c.Low, c.High, again.Low, again.High)
	}
	t.Logf("diff %.4f, bootstrap [%.4f, %.4f], normal [%.4f, %.4f]", c.Diff, c.Low, c.High, mean-half, mean+half)
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func meanSD(xs []float64) (float64, float64) {
	m := 0.0
	for _, x := range xs {
		m += x
	}
	m /= float64(len(xs))
	v := 0.0
	for _, x := range xs {
		v += (x - m) * (x - m)
	}
	return m, math.Sqrt(v / float64(len(xs)-1))
}
