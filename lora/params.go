package lora

import (
	"math"
	"math/rand/v2"
	"sort"

	"github.com/finetune-dev/finetune/adapters"
)

// Params are the LoRA weights, the master copy the optimizer updates.
type Params struct {
	Rank  int
	Alpha float64
	Scale float32 // alpha/rank, or alpha/sqrt(rank) with rsLoRA
	Pairs []Pair
}

// Pair is the low-rank update of one base weight: A is [n_in, r] and B is
// [r, n_out] in ggml order (A holds r rows of n_in values).
type Pair struct {
	Layer  int
	Target string
	NIn    int
	NOut   int
	A, B   []float32
}

// initParams initialises A as PEFT does (torch's kaiming_uniform_ with
// a=sqrt(5): uniform in ±1/sqrt(n_in)) and B as zero, from seed.
func initParams(e *engine, rank int, alpha float64, scale float32, seed uint64) *Params {
	p := &Params{Rank: rank, Alpha: alpha, Scale: scale}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	for _, pt := range e.pairs {
		a, b := make([]float32, pt.nIn*rank), make([]float32, rank*pt.nOut)
		if pt.target == TargetEmbed {
			// PEFT's embedding LoRA: A zero, B standard normal.
			for i := range b {
				b[i] = float32(rng.NormFloat64())
			}
		} else {
			bound := 1 / math.Sqrt(float64(pt.nIn))
			for i := range a {
				a[i] = float32((2*rng.Float64() - 1) * bound)
			}
		}
		p.Pairs = append(p.Pairs, Pair{Layer: pt.layer, Target: pt.target, NIn: pt.nIn, NOut: pt.nOut, A: a, B: b})
	}
	return p
}

// clone deep-copies p.
func (p *Params) clone() *Params {
	c := *p
	c.Pairs = make([]Pair, len(p.Pairs))
	for i, q := range p.Pairs {
		q.A = append([]float32(nil), q.A...)
		q.B = append([]float32(nil), q.B...)
		c.Pairs[i] = q
	}
	return &c
}

// Adapter converts p to the llama.cpp adapter file model, whose scale is
// alpha/r: with rsLoRA the stored alpha is adjusted so that llama.cpp's
// alpha/r equals the trained scale.
func (p *Params) Adapter() *adapters.LoRA {
	l := &adapters.LoRA{Architecture: "llama", Alpha: p.Scale * float32(p.Rank)}
	for _, q := range p.Pairs {
		l.Pairs = append(l.Pairs, adapters.Pair{Base: WeightName(q.Layer, q.Target), NIn: q.NIn, NOut: q.NOut, Rank: p.Rank, A: q.A, B: q.B})
	}
	sort.SliceStable(l.Pairs, func(i, j int) bool { return l.Pairs[i].Base < l.Pairs[j].Base })
	return l
}

// count is the number of trainable values.
func (p *Params) count() int {
	n := 0
	for _, q := range p.Pairs {
		n += len(q.A) + len(q.B)
	}
	return n
}
