package ggml

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// actCase is MUL_MAT of two F32 activations a [k, n, ba] (rows stride
// values apart) and b [k, m, bb], bb a multiple of ba (a broadcast as
// for GQA heads), computed by ggml ("f32") or on AMX tiles ("amx").
type actCase struct {
	kind                     string
	threads, k, n, m, ba, bb int
	stride                   int
	be                       *Backend
	x                        *Ctx
	sched                    *Sched
	g                        Graph
	ain, bin, out            Tensor
}

func newActCase(tb testing.TB, c actCase, av, bv []float32) *actCase {
	tb.Helper()
	if c.stride == 0 {
		c.stride = c.k
	}
	var err error
	if c.be, err = NewCPUBackend(c.threads); err != nil {
		tb.Fatal(err)
	}
	if c.x, err = NewCtx(16*TensorOverhead()+GraphOverhead(16, false), true); err != nil {
		tb.Fatal(err)
	}
	c.ain = c.x.New3D(TypeF32, c.stride, c.n, c.ba)
	c.bin = c.x.New3D(TypeF32, c.k, c.m, c.bb)
	c.ain.SetInput()
	c.bin.SetInput()
	a := c.ain
	if c.stride != c.k {
		a = c.x.View3D(c.ain, c.k, c.n, c.ba, c.ain.Nb(1), c.ain.Nb(2), 0)
	}
	if c.kind == "amx" {
		c.out = c.x.AMXMulMatF32(a, c.bin)
	} else {
		c.out = c.x.MulMat(a, c.bin)
	}
	c.out.SetOutput()
	c.g = c.x.NewGraph(16, false)
	c.g.Expand(c.out)
	if c.sched, err = NewSched([]*Backend{c.be}, 16); err != nil {
		tb.Fatal(err)
	}
	if err := c.sched.Alloc(c.g); err != nil {
		tb.Fatal(err)
	}
	c.ain.SetF32(stridedRows(av, c.n*c.ba, c.k, c.stride))
	c.bin.SetF32(bv)
	return &c
}

func (c *actCase) run(tb testing.TB) {
	if err := c.sched.Compute(c.g); err != nil {
		tb.Fatal(err)
	}
}

func (c *actCase) close() {
	c.sched.Close()
	c.x.Close()
	c.be.Close()
}

// The activation products of a LoRA step at SmolLM2-135M's shape (9
// query heads over 3 key and value heads of 64, 512 tokens, rank 16):
// k, n, m, ba, bb.
var smolActProducts = [][5]int{
	{64, 512, 512, 3, 9}, {512, 64, 512, 3, 9}, {512, 64, 512, 9, 9}, {512, 512, 64, 9, 9},
	{16, 1536, 512, 1, 1}, {16, 576, 512, 1, 1}, {576, 16, 512, 1, 1}, {512, 576, 16, 1, 1},
}

// TestAMXMulMatF32 checks the AMX product of two activations against a
// float64 sum of the same BF16-rounded operands: batched and broadcast
// shapes, edges that are not multiples of the tiles, rows further apart
// than their length, 1 to 3 threads.
func TestAMXMulMatF32(t *testing.T) {
	if !AMX() {
		t.Skip("AMX products cannot run here:", AMXStatus())
	}
	rng := rand.New(rand.NewPCG(9, 9))
	cases := []actCase{
		{k: 1, n: 1, m: 1, ba: 1, bb: 1},
		{k: 17, n: 5, m: 3, ba: 1, bb: 2},
		{k: 33, n: 47, m: 65, ba: 2, bb: 6, stride: 40},
		{k: 64, n: 100, m: 130, ba: 3, bb: 9},
		{k: 130, n: 64, m: 70, ba: 3, bb: 3},
		{k: 16, n: 200, m: 129, ba: 1, bb: 1},
		{k: 300, n: 16, m: 31, ba: 1, bb: 1},
	}
	for _, c := range cases {
		for threads := 1; threads <= 3; threads++ {
			c.threads, c.kind = threads, "amx"
			name := fmt.Sprintf("k%d_n%d_m%d_b%d/%d_s%d/%d", c.k, c.n, c.m, c.ba, c.bb, c.stride, threads)
			av, bv := randVals(rng, c.k*c.n*c.ba), randVals(rng, c.k*c.m*c.bb)
			ac := newActCase(t, c, av, bv)
			ac.run(t)
			got := ac.out.GetF32(nil)
			ac.close()
			bad := 0
			for h := 0; h < c.bb; h++ {
				ha := h / (c.bb / c.ba)
				for i := 0; i < c.m; i++ {
					for j := 0; j < c.n; j++ {
						var want, mag float64
						for k := 0; k < c.k; k++ {
							p := float64(bf16(av[(ha*c.n+j)*c.k+k])) * float64(bf16(bv[(h*c.m+i)*c.k+k]))
							want += p
							mag += math.Abs(p)
						}
						g := got[(h*c.m+i)*c.n+j]
						if d := math.Abs(float64(g) - want); !(d <= 1e-5*mag+1e-30) {
							if bad < 5 {
								t.Errorf("%s: D[%d][%d][%d] = %g, want %g (|terms| %g)", name, h, i, j, g, want, mag)
							}
							bad++
						}
					}
				}
			}
			if bad > 0 {
				t.Errorf("%s: %d of %d values wrong", name, bad, c.m*c.n*c.bb)
			}
		}
	}
}

// BenchmarkAMXMulMatF32 compares the AMX product of two activations with
// ggml's F32 MUL_MAT at SmolLM2's shapes, on 1 and 2 threads (GFLOP/s):
//
//	go test -run '^$' -bench AMXMulMatF32 ./internal/ggml
func BenchmarkAMXMulMatF32(b *testing.B) {
	for _, s := range smolActProducts {
		for _, threads := range []int{1, 2} {
			for _, kind := range []string{"f32", "amx"} {
				k, n, m, ba, bb := s[0], s[1], s[2], s[3], s[4]
				b.Run(fmt.Sprintf("k%d_n%d_m%d_b%d/%d/t%d/%s", k, n, m, ba, bb, threads, kind), func(b *testing.B) {
					if kind == "amx" && !AMX() {
						b.Skip("AMX products cannot run here:", AMXStatus())
					}
					rng := rand.New(rand.NewPCG(1, 1))
					c := newActCase(b, actCase{kind: kind, threads: threads, k: k, n: n, m: m, ba: ba, bb: bb}, randVals(rng, k*n*ba), randVals(rng, k*m*bb))
					defer c.close()
					c.run(b)
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						c.run(b)
					}
					b.ReportMetric(2*float64(k)*float64(n)*float64(m)*float64(bb)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}
