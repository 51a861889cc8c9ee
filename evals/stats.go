package evals

import (
	"math"
	"math/rand/v2"
	"sort"
)

// bootstrap draws resamples of case indices. Every statistic of a run uses
// the same resamples (the same seed), so a difference's interval is paired:
// both contestants are scored on the same resampled cases.
type bootstrap struct {
	b    int
	seed uint64
}

func newBootstrap(b int, seed uint64) *bootstrap { return &bootstrap{b: b, seed: seed} }

// ci is the percentile bootstrap 95% interval of stat over idx: stat of b
// resamples of idx drawn with replacement, their 2.5th and 97.5th
// percentiles.
func (bs *bootstrap) ci(idx []int, stat func([]int) float64) (lo, hi float64) {
	if len(idx) == 0 {
		return math.NaN(), math.NaN()
	}
	rng := rand.New(rand.NewPCG(bs.seed, uint64(len(idx))))
	sample := make([]int, len(idx))
	vals := make([]float64, bs.b)
	for k := range vals {
		for j := range sample {
			sample[j] = idx[rng.IntN(len(idx))]
		}
		vals[k] = stat(sample)
	}
	sort.Float64s(vals)
	return quantile(vals, 0.025), quantile(vals, 0.975)
}

// quantile interpolates linearly between the order statistics of sorted.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	f := pos - float64(i)
	return sorted[i]*(1-f) + sorted[i+1]*f
}

// percentile is the p-th percentile (0-100) of xs, interpolated; 0 for
// none.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return quantile(s, p/100)
}
