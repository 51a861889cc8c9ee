package ggml

import (
	"math"
	"math/rand/v2"
	"testing"
)

// gradCheck builds loss = f(param) with build, computes the gradient of
// param through ggml's backward pass and compares it with central finite
// differences.
func gradCheck(t *testing.T, name string, pshape [2]int, build func(x *Ctx, p Tensor, inputs map[string]Tensor) Tensor, fill func(inputs map[string]Tensor)) {
	t.Helper()
	be, err := NewCPUBackend(1)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	pctx, _ := NewCtx(16*TensorOverhead(), true)
	defer pctx.Close()
	p := pctx.New2D(TypeF32, pshape[0], pshape[1]).SetName("param")
	p.SetParam()
	pbuf, err := pctx.AllocTensors(be)
	if err != nil {
		t.Fatal(err)
	}
	defer pbuf.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]float32, p.Elements())
	for i := range vals {
		vals[i] = float32(rng.NormFloat64())
	}
	p.SetF32(vals)

	var lossInputs map[string]Tensor
	mk := func(train bool) (Graph, Tensor, Tensor, *Sched, *Ctx) {
		x, _ := NewCtx(4096*TensorOverhead()+GraphOverhead(4096, true), true)
		inputs := map[string]Tensor{}
		loss := build(x, p, inputs)
		for _, in := range inputs {
			in.SetInput()
		}
		loss.SetOutput()
		g := x.NewGraph(4096, train)
		g.Expand(loss)
		var seed Tensor
		if train {
			loss.SetLoss()
			g.BuildBackward(x)
			g.KeepInputsOf("RMS_NORM_BACK", "SOFT_MAX_BACK")
			seed = g.Grad(loss)
			seed.SetInput()
			g.Grad(p).SetOutput()
		}
		s, err := NewSched([]*Backend{be}, 4096)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Alloc(g); err != nil {
			t.Fatal(err)
		}
		fill(inputs)
		if !train {
			lossInputs = inputs
		}
		return g, loss, seed, s, x
	}
	g, _, seed, s, x := mk(true)
	defer s.Close()
	defer x.Close()
	seed.SetF32([]float32{1})
	if err := s.Compute(g); err != nil {
		t.Fatal(err)
	}
	grad := g.Grad(p).GetF32(nil)
	lg, loss, _, ls, lx := mk(false)
	defer ls.Close()
	defer lx.Close()
	eval := func() float64 {
		p.SetF32(vals)
		fill(lossInputs)
		if err := ls.Compute(lg); err != nil {
			t.Fatal(err)
		}
		return float64(loss.GetF32(nil)[0])
	}
	worst := 0.0
	for i := range vals {
		old := vals[i]
		const h = 1e-2
		vals[i] = old + h
		lp := eval()
		vals[i] = old - h
		lm := eval()
		vals[i] = old
		fd := (lp - lm) / (2 * h)
		rel := math.Abs(fd-float64(grad[i])) / math.Max(math.Max(math.Abs(fd), math.Abs(float64(grad[i]))), 5e-3)
		worst = math.Max(worst, rel)
		if rel > 2e-2 {
			t.Errorf("%s: d/dp[%d]: ggml %.5g, finite difference %.5g", name, i, grad[i], fd)
		}
	}
	t.Logf("%s: worst relative error %.2e", name, worst)
}

func TestBackwardOps(t *testing.T) {
	const n, T, V = 8, 4, 6
	rng := rand.New(rand.NewPCG(3, 4))
	randv := func(k int) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	W := randv(n * V)
	labels := make([]float32, V*T)
	for t := 0; t < T; t++ {
		labels[t*V+rng.IntN(V)] = 1
	}
	rows := []float32{1, 1, 1, 1}
	head := func(x *Ctx, h Tensor, in map[string]Tensor) Tensor {
		in["w"] = x.New2D(TypeF32, n, V)
		in["labels"] = x.New2D(TypeF32, V, T)
		in["rows"] = x.New2D(TypeF32, 1, T)
		logits := x.MulMat(in["w"], h)
		return x.CrossEntropyLoss(x.Mul(logits, in["rows"]), in["labels"])
	}
	fillHead := func(in map[string]Tensor) {
		in["w"].SetF32(W)
		in["labels"].SetF32(labels)
		in["rows"].SetF32(rows)
	}
	gradCheck(t, "mul_mat+cross_entropy", [2]int{n, T}, head, fillHead)
	norm := randv(n)
	gradCheck(t, "rms_norm+mul", [2]int{n, T}, func(x *Ctx, p Tensor, in map[string]Tensor) Tensor {
		in["norm"] = x.New1D(TypeF32, n)
		return head(x, x.Mul(x.RMSNorm(p, 1e-5), in["norm"]), in)
	}, func(in map[string]Tensor) { in["norm"].SetF32(norm); fillHead(in) })
	A, X := randv(2*n), randv(n*T)
	gradCheck(t, "lora chain", [2]int{2, n}, func(x *Ctx, p Tensor, in map[string]Tensor) Tensor {
		in["a"] = x.New2D(TypeF32, n, 2)
		in["x"] = x.New2D(TypeF32, n, T)
		return head(x, x.Scale(x.MulMat(p, x.MulMat(in["a"], in["x"])), 2), in)
	}, func(in map[string]Tensor) { in["a"].SetF32(A); in["x"].SetF32(X); fillHead(in) })
	gradCheck(t, "rms_norm", [2]int{n, T}, func(x *Ctx, p Tensor, in map[string]Tensor) Tensor {
		return head(x, x.RMSNorm(p, 1e-5), in)
	}, fillHead)
	gradCheck(t, "mul by broadcast vector", [2]int{n, T}, func(x *Ctx, p Tensor, in map[string]Tensor) Tensor {
		in["norm"] = x.New1D(TypeF32, n)
		return head(x, x.Mul(p, in["norm"]), in)
	}, func(in map[string]Tensor) { in["norm"].SetF32(norm); fillHead(in) })
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	vals := make([]float32, 64*3)
	for i := range vals {
		vals[i] = float32(rng.NormFloat64())
	}
	for _, c := range []struct {
		typ Type
		tol float64
	}{{TypeF32, 0}, {TypeF16, 1e-3}, {TypeQ8_0, 2e-2}, {TypeQ4_0, 0.3}} {
		enc, err := Encode(c.typ, vals, 64)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := Decode(c.typ, enc, 64)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i := range vals {
			worst = math.Max(worst, math.Abs(float64(dec[i]-vals[i])))
		}
		if worst > c.tol {
			t.Errorf("%s: round trip moves values by %g (> %g)", c.typ, worst, c.tol)
		}
	}
}
