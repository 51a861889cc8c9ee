package ggml

import (
	"math"
	"testing"
)

// TestDropoutMask: the mask drops about p of its values, keeps the rest at
// 1/(1-p), is the same for the same seed and stream whatever the threads,
// and differs between streams and seeds.
func TestDropoutMask(t *testing.T) {
	const ne0, ne1, p = 300, 200, 0.1
	mask := func(threads int, seed uint64, stream int) []float32 {
		be, err := NewCPUBackend(threads)
		if err != nil {
			t.Fatal(err)
		}
		defer be.Close()
		x, _ := NewCtx(16*TensorOverhead()+GraphOverhead(16, false), true)
		defer x.Close()
		s := x.New1D(TypeI32, 4)
		s.SetInput()
		m := x.DropoutMask(s, stream, ne0, ne1)
		m.SetOutput()
		g := x.NewGraph(16, false)
		g.Expand(m)
		sc, err := NewSched([]*Backend{be}, 16)
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		if err := sc.Alloc(g); err != nil {
			t.Fatal(err)
		}
		s.SetI32(DropoutSeed(seed, p))
		if err := sc.Compute(g); err != nil {
			t.Fatal(err)
		}
		return m.GetF32(nil)
	}
	a := mask(1, 42, 3)
	dropped := 0
	for _, v := range a {
		switch {
		case v == 0:
			dropped++
		case math.Abs(float64(v)-1/(1-p)) > 1e-6:
			t.Fatalf("a kept value is %v, want %v", v, 1/(1-p))
		}
	}
	// 60000 draws: the dropped fraction's standard deviation is 0.0012.
	if f := float64(dropped) / float64(len(a)); math.Abs(f-p) > 0.006 {
		t.Fatalf("dropped %.4f of the values, want about %v", f, p)
	}
	same := func(x, y []float32) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, mask(2, 42, 3)) {
		t.Error("two threads computed another mask than one")
	}
	if same(a, mask(1, 42, 4)) || same(a, mask(1, 43, 3)) {
		t.Error("another stream or seed gave the same mask")
	}
}
