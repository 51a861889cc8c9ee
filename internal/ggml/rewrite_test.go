package ggml

import (
	"math"
	"math/rand/v2"
	"testing"
)

// attentionProbe is loss = Σ r ⊙ f(x) for a grouped-query attention layer
// with LoRA-like rank-2 pairs on its projections, the shape of the
// training graph's attention: every out_prod kind the backward pass of
// that graph has (both operands activations, one a transposed permute
// view, operands broadcast over heads, rank-small factors).
type attentionProbe struct {
	E, hd, H, KV, T, r int
	params             map[string]Tensor
	vals               map[string][]float32
}

func newAttentionProbe(x *Ctx, rng *rand.Rand) *attentionProbe {
	p := &attentionProbe{E: 32, hd: 32, H: 4, KV: 2, T: 40, r: 2, params: map[string]Tensor{}, vals: map[string][]float32{}}
	add := func(name string, ne0, ne1 int) {
		t := x.New2D(TypeF32, ne0, ne1).SetName(name)
		t.SetParam()
		p.params[name] = t
		v := make([]float32, ne0*ne1)
		for i := range v {
			v[i] = float32(rng.NormFloat64()) * 0.5
		}
		p.vals[name] = v
	}
	add("wq", p.E, p.hd*p.H)
	add("wk", p.E, p.hd*p.KV)
	add("wv", p.E, p.hd*p.KV)
	add("a", p.hd*p.H, p.r)
	add("b", p.r, p.E)
	return p
}

// build makes the loss in x from inputs it adds to in.
func (p *attentionProbe) build(x *Ctx, in map[string]Tensor) Tensor {
	in["x"] = x.New2D(TypeF32, p.E, p.T)
	in["mask"] = x.New2D(TypeF32, p.T, p.T)
	in["wo"] = x.New2D(TypeF32, p.hd*p.H, p.E)
	in["r"] = x.New2D(TypeF32, p.E, p.T)
	X := in["x"]
	q := x.Reshape3D(x.MulMat(p.params["wq"], X), p.hd, p.H, p.T)
	k := x.Reshape3D(x.MulMat(p.params["wk"], X), p.hd, p.KV, p.T)
	v := x.Reshape3D(x.MulMat(p.params["wv"], X), p.hd, p.KV, p.T)
	kq := x.MulMat(x.Cont(x.Permute(k, 0, 2, 1, 3)), x.Cont(x.Permute(q, 0, 2, 1, 3)))
	kq = x.SoftMaxExt(kq, in["mask"], 0.5)
	vt := x.Cont(x.Permute(v, 1, 2, 0, 3))
	o := x.Reshape2D(x.Cont(x.Permute(x.MulMat(vt, kq), 0, 2, 1, 3)), p.hd*p.H, p.T)
	y := x.Add(x.MulMat(in["wo"], o), x.MulMat(p.params["b"], x.MulMat(p.params["a"], o)))
	return x.Sum(x.Mul(y, in["r"]))
}

func (p *attentionProbe) fill(in map[string]Tensor, rng *rand.Rand) {
	randv := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	in["x"].SetF32(randv(p.E * p.T))
	in["wo"].SetF32(randv(p.hd * p.H * p.E))
	in["r"].SetF32(randv(p.E * p.T))
	mask := make([]float32, p.T*p.T)
	for qi := 0; qi < p.T; qi++ {
		for ki := qi + 1; ki < p.T; ki++ {
			mask[qi*p.T+ki] = float32(math.Inf(-1))
		}
	}
	in["mask"].SetF32(mask)
}

// probeGrads computes the probe's loss and parameter gradients, with the
// out_prods chosen by use rewritten into mul_mats when rewrite is set; it
// returns how many nodes were rewritten.
func probeGrads(t *testing.T, rewrite bool, use func(a, b Tensor) bool) (loss float32, grads map[string][]float32, rewritten, left, mem int) {
	t.Helper()
	be, err := NewCPUBackend(1)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	pctx, _ := NewCtx(16*TensorOverhead(), true)
	defer pctx.Close()
	p := newAttentionProbe(pctx, rand.New(rand.NewPCG(7, 8)))
	pbuf, err := pctx.AllocTensors(be)
	if err != nil {
		t.Fatal(err)
	}
	defer pbuf.Close()
	for name, v := range p.vals {
		p.params[name].SetF32(v)
	}
	x, _ := NewCtx(4096*TensorOverhead()+GraphOverhead(4096, true), true)
	defer x.Close()
	in := map[string]Tensor{}
	loss0 := p.build(x, in)
	for _, t := range in {
		t.SetInput()
	}
	loss0.SetOutput()
	loss0.SetLoss()
	g := x.NewGraph(4096, true)
	g.Expand(loss0)
	g.BuildBackward(x)
	g.KeepInputsOf("RMS_NORM_BACK", "SOFT_MAX_BACK")
	n := 0
	if rewrite {
		n = g.OutProdsAsMulMat(x, use)
	}
	seed := g.Grad(loss0)
	seed.SetInput()
	for _, pt := range p.params {
		g.Grad(pt).SetOutput()
	}
	s, err := NewSched([]*Backend{be}, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Alloc(g); err != nil {
		t.Fatal(err)
	}
	p.fill(in, rand.New(rand.NewPCG(9, 10)))
	seed.SetF32([]float32{1})
	if err := s.Compute(g); err != nil {
		t.Fatal(err)
	}
	grads = map[string][]float32{}
	for name, pt := range p.params {
		grads[name] = g.Grad(pt).GetF32(nil)
	}
	return loss0.GetF32(nil)[0], grads, n, len(g.OutProdTypes()), s.BufferSize(be)
}

func TestOutProdsAsMulMatKeepsValues(t *testing.T) {
	x, _ := NewCtx(4*TensorOverhead(), true)
	defer x.Close()
	if !isViewOp(x.View2D(x.New2D(TypeF32, 4, 4), 4, 2, 16, 0)) {
		t.Fatal("capi.h's GGML_OP_VIEW is not ggml's")
	}
	loss0, want, _, total, mem0 := probeGrads(t, false, nil)
	for _, c := range []struct {
		name string
		all  bool
		use  func(a, b Tensor) bool
	}{
		{"every out_prod", true, func(a, b Tensor) bool { return true }},
		{"MulMatFaster", false, nil},
		{"only batched (attention) ones", false, func(a, b Tensor) bool { return b.Ne(2) > 1 }},
		{"only unbatched ones", false, func(a, b Tensor) bool { return b.Ne(2) == 1 }},
	} {
		loss, got, n, left, mem := probeGrads(t, true, c.use)
		// The transposed copies add a few T×T matrices at most; a transpose
		// left unused in the graph would hold its source to the end.
		if mem > mem0*5/4 {
			t.Errorf("%s: compute memory %d bytes, %d without the rewrite", c.name, mem, mem0)
		}
		if n == 0 || n+left != total || c.all && left != 0 {
			t.Errorf("%s: %d of %d out_prods rewritten, %d left", c.name, n, total, left)
		}
		if loss != loss0 {
			t.Errorf("%s: loss %v, want %v", c.name, loss, loss0)
		}
		for name, w := range want {
			scale := 0.0
			for _, v := range w {
				scale = math.Max(scale, math.Abs(float64(v)))
			}
			for i, v := range got[name] {
				if d := math.Abs(float64(v - w[i])); d > 1e-5*math.Max(scale, 1) {
					t.Errorf("%s: d/d%s[%d] = %v, want %v", c.name, name, i, v, w[i])
					break
				}
			}
		}
		t.Logf("%s: %d out_prods rewritten, compute memory %d bytes (%d before)", c.name, n, mem, mem0)
	}
}
