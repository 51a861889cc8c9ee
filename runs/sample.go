package runs

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// sample chooses n of the len(keys) items, at random with seed, keeping
// each stratum's share (the items of one key) and giving every stratum at
// least one item when n allows; with one stratum it is a plain random
// sample. It returns the chosen indexes in ascending order, and all of
// them when n is 0 or not below len(keys).
func sample(keys []string, n int, seed uint64) []int {
	if n <= 0 || n >= len(keys) {
		all := make([]int, len(keys))
		for i := range all {
			all[i] = i
		}
		return all
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed_ca5e))
	var order []string
	strata := map[string][]int{}
	for i, k := range keys {
		if _, ok := strata[k]; !ok {
			order = append(order, k)
		}
		strata[k] = append(strata[k], i)
	}
	quota := allocate(order, strata, n, rng)
	var chosen []int
	for _, k := range order {
		idx := slices.Clone(strata[k])
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		chosen = append(chosen, idx[:quota[k]]...)
	}
	sort.Ints(chosen)
	return chosen
}

// allocate shares n items among the strata in proportion to their sizes
// (largest remainders), after one item for each when n is at least the
// number of strata; when it is not, n strata are drawn, a larger one more
// likely, and get one item each.
func allocate(order []string, strata map[string][]int, n int, rng *rand.Rand) map[string]int {
	quota := map[string]int{}
	if n < len(order) {
		// Weighted sampling without replacement: the n largest
		// u^(1/size).
		type draw struct {
			k   string
			key float64
		}
		draws := make([]draw, len(order))
		for i, k := range order {
			draws[i] = draw{k, math.Pow(rng.Float64(), 1/float64(len(strata[k])))}
		}
		sort.SliceStable(draws, func(i, j int) bool { return draws[i].key > draws[j].key })
		for _, d := range draws[:n] {
			quota[d.k] = 1
		}
		return quota
	}
	total := 0
	for _, k := range order {
		quota[k] = 1
		total += len(strata[k]) - 1
	}
	left := n - len(order)
	if left == 0 || total == 0 {
		return quota
	}
	type rem struct {
		k    string
		frac float64
	}
	var rems []rem
	given := 0
	for _, k := range order {
		exact := float64(left) * float64(len(strata[k])-1) / float64(total)
		whole := int(exact)
		quota[k] += whole
		given += whole
		rems = append(rems, rem{k, exact - float64(whole)})
	}
	sort.SliceStable(rems, func(i, j int) bool { return rems[i].frac > rems[j].frac })
	for i := 0; given < left; i++ {
		k := rems[i%len(rems)].k
		if quota[k] < len(strata[k]) {
			quota[k]++
			given++
		}
	}
	return quota
}
