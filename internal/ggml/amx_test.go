package ggml

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// bf16 rounds v to BF16 (to nearest even) and back.
func bf16(v float32) float32 {
	u := math.Float32bits(v)
	u = (u + 0x7fff + (u>>16)&1) &^ 0xffff
	return math.Float32frombits(u)
}

// mulMatCase is one product D [n, m] = A [k, n] times X [k, m] on a CPU
// backend: kind "amx" (A packed, AMXMulMat), or ggml's MUL_MAT with A in
// F32 ("f32") or BF16 ("bf16"). X's rows are xStride values apart.
type mulMatCase struct {
	kind                     string
	threads, k, n, m, stride int
	// transposedPack packs A from Aᵀ ([n, k]: k rows of n values), in
	// two blocks of k, as the engine packs a weight's transpose.
	transposedPack bool

	be    *Backend
	x     *Ctx
	wctx  *Ctx
	wbuf  *Buffer
	sched *Sched
	g     Graph
	in    Tensor
	out   Tensor
}

func newMulMatCase(tb testing.TB, c mulMatCase, a, xv []float32) *mulMatCase {
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
	if c.wctx, err = NewCtx(4*TensorOverhead(), true); err != nil {
		tb.Fatal(err)
	}
	var w Tensor
	switch c.kind {
	case "amx":
		w = c.wctx.NewPacked(c.k, c.n)
	case "f32":
		w = c.wctx.New2D(TypeF32, c.k, c.n)
	case "bf16":
		w = c.wctx.New2D(TypeBF16, c.k, c.n)
	default:
		tb.Fatalf("kind %q", c.kind)
	}
	if c.wbuf, err = c.wctx.AllocTensors(c.be); err != nil {
		tb.Fatal(err)
	}
	switch c.kind {
	case "amx":
		ZeroPacked(w)
		if c.transposedPack {
			at := make([]float32, c.k*c.n)
			for i := 0; i < c.n; i++ {
				for j := 0; j < c.k; j++ {
					at[j*c.n+i] = a[i*c.k+j]
				}
			}
			h := c.k / 2
			Pack(w, at, 1, c.n, 0, c.n, 0, h)
			Pack(w, at[h*c.n:], 1, c.n, 0, c.n, h, c.k)
		} else {
			h := c.n / 3
			Pack(w, a, c.k, 1, 0, h, 0, c.k)
			Pack(w, a[h*c.k:], c.k, 1, h, c.n, 0, c.k)
		}
	case "f32":
		w.SetF32(a)
	case "bf16":
		enc, err := Encode(TypeBF16, a, c.k)
		if err != nil {
			tb.Fatal(err)
		}
		w.SetBytes(enc)
	}
	c.in = c.x.New2D(TypeF32, c.stride, c.m)
	c.in.SetInput()
	xin := c.in
	if c.stride != c.k {
		xin = c.x.View2D(c.in, c.k, c.m, c.in.Nb(1), 0)
	}
	if c.kind == "amx" {
		c.out = c.x.AMXMulMat(w, xin, c.n)
	} else {
		c.out = c.x.MulMat(w, xin)
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
	c.in.SetF32(stridedRows(xv, c.m, c.k, c.stride))
	return &c
}

func (c *mulMatCase) run(tb testing.TB) {
	if err := c.sched.Compute(c.g); err != nil {
		tb.Fatal(err)
	}
}

func (c *mulMatCase) close() {
	c.sched.Close()
	c.x.Close()
	c.wbuf.Close()
	c.wctx.Close()
	c.be.Close()
}

// stridedRows lays rows of k values (vals) out stride values apart, the
// gap between them NaN, which a product must never read.
func stridedRows(vals []float32, rows, k, stride int) []float32 {
	full := make([]float32, stride*rows)
	for r := 0; r < rows; r++ {
		copy(full[r*stride:], vals[r*k:(r+1)*k])
		for j := k; j < stride; j++ {
			full[r*stride+j] = float32(math.NaN())
		}
	}
	return full
}

func randVals(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// TestAMXMulMat checks the AMX product against a float64 sum of the same
// BF16-rounded operands, on shapes with edges that are not multiples of
// the tiles' 16 rows and 32 values, single rows, rows further apart than
// their length, both ways of packing, and 1 to 3 threads.
func TestAMXMulMat(t *testing.T) {
	if !AMX() {
		t.Skip("AMX products cannot run here:", AMXStatus())
	}
	rng := rand.New(rand.NewPCG(7, 7))
	cases := []mulMatCase{
		{k: 64, n: 32, m: 32},
		{k: 1, n: 1, m: 1},
		{k: 17, n: 5, m: 3},
		{k: 31, n: 33, m: 1},
		{k: 33, n: 16, m: 17},
		{k: 100, n: 47, m: 65, stride: 120},
		{k: 576, n: 192, m: 100},
		{k: 192, n: 576, m: 130, transposedPack: true},
		{k: 45, n: 70, m: 200, transposedPack: true},
		{k: 300, n: 31, m: 257, stride: 301},
		{k: 32, n: 1000, m: 2},
		// More than one block of k (2048 values) per row.
		{k: 2049, n: 40, m: 70},
		{k: 4500, n: 33, m: 300, stride: 4501, transposedPack: true},
	}
	for _, c := range cases {
		for threads := 1; threads <= 3; threads++ {
			c.threads, c.kind = threads, "amx"
			name := fmt.Sprintf("k%d_n%d_m%d_s%d_t%v/%d", c.k, c.n, c.m, c.stride, c.transposedPack, threads)
			a, xv := randVals(rng, c.k*c.n), randVals(rng, c.k*c.m)
			mc := newMulMatCase(t, c, a, xv)
			mc.run(t)
			got := mc.out.GetF32(nil)
			mc.close()
			bad := 0
			for i := 0; i < c.m; i++ {
				for j := 0; j < c.n; j++ {
					var want, mag float64
					for k := 0; k < c.k; k++ {
						p := float64(bf16(a[j*c.k+k])) * float64(bf16(xv[i*c.k+k]))
						want += p
						mag += math.Abs(p)
					}
					if d := math.Abs(float64(got[i*c.n+j]) - want); !(d <= 1e-5*mag+1e-30) {
						if bad < 5 {
							t.Errorf("%s: D[%d][%d] = %g, want %g (|terms| %g)", name, i, j, got[i*c.n+j], want, mag)
						}
						bad++
					}
				}
			}
			if bad > 0 {
				t.Errorf("%s: %d of %d values wrong", name, bad, c.m*c.n)
			}
		}
	}
}

// The products of a LoRA step at SmolLM2-135M's shape (hidden 576, key
// and value width 192, FFN 1536, 512 tokens): the projections forward
// (k = n_in, n = n_out) and the input gradients through the transposed
// weights (k = n_out, n = n_in), and the tied output head both ways.
var smolProducts = [][3]int{
	{576, 576, 512}, {576, 192, 512}, {576, 1536, 512}, {1536, 576, 512}, {192, 576, 512},
	{576, 49152, 512}, {49152, 576, 512},
}

// BenchmarkAMXMulMat compares the AMX product with ggml's F32 and BF16
// MUL_MAT at SmolLM2's shapes, on 1 and 2 threads (GFLOP/s):
//
//	go test -run '^$' -bench AMXMulMat ./internal/ggml
func BenchmarkAMXMulMat(b *testing.B) {
	for _, s := range smolProducts {
		for _, threads := range []int{1, 2} {
			for _, kind := range []string{"f32", "bf16", "amx"} {
				k, n, m := s[0], s[1], s[2]
				b.Run(fmt.Sprintf("k%d_n%d_m%d/t%d/%s", k, n, m, threads, kind), func(b *testing.B) {
					if kind == "amx" && !AMX() {
						b.Skip("AMX products cannot run here:", AMXStatus())
					}
					rng := rand.New(rand.NewPCG(1, 1))
					c := newMulMatCase(b, mulMatCase{kind: kind, threads: threads, k: k, n: n, m: m}, randVals(rng, k*n), randVals(rng, k*m))
					defer c.close()
					c.run(b)
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						c.run(b)
					}
					b.ReportMetric(2*float64(k)*float64(n)*float64(m)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}

// TestUsePacked: in the graph of loss = Σ R ⊙ (W·(P ⊙ X)) with P a
// parameter, UsePacked turns the forward product with W and the gradient
// autodiff builds through W into AMX products on W's packed copies, given
// or made in the graph, and the loss and P's gradient are those of the
// BF16-rounded operands.
func TestUsePacked(t *testing.T) {
	if !AMX() {
		t.Skip("AMX products cannot run here:", AMXStatus())
	}
	const k, n, m = 40, 24, 19
	rng := rand.New(rand.NewPCG(3, 3))
	wv, xv, rv, pv := randVals(rng, k*n), randVals(rng, k*m), randVals(rng, n*m), randVals(rng, k*m)
	for _, tc := range []struct {
		threads int
		inGraph bool
	}{{1, false}, {2, false}, {1, true}, {3, true}} {
		threads := tc.threads
		be, err := NewCPUBackend(threads)
		if err != nil {
			t.Fatal(err)
		}
		wctx, _ := NewCtx(8*TensorOverhead(), true)
		w := wctx.New2D(TypeF32, k, n)
		pf, pb := wctx.NewPacked(k, n), wctx.NewPacked(n, k)
		wbuf, err := wctx.AllocTensors(be)
		if err != nil {
			t.Fatal(err)
		}
		w.SetF32(wv)
		ZeroPacked(pf)
		ZeroPacked(pb)
		Pack(pf, wv, k, 1, 0, n, 0, k)
		Pack(pb, wv, 1, k, 0, k, 0, n)

		x, _ := NewCtx(256*TensorOverhead()+GraphOverhead(256, true), true)
		p := x.New2D(TypeF32, k, m)
		p.SetParam()
		xin, r := x.New2D(TypeF32, k, m), x.New2D(TypeF32, n, m)
		xin.SetInput()
		r.SetInput()
		loss := x.Sum(x.Mul(x.MulMat(w, x.Mul(p, xin)), r))
		loss.SetLoss()
		loss.SetOutput()
		g := x.NewGraph(256, true)
		g.Expand(loss)
		g.BuildBackward(x)
		fwd, bwd := map[Tensor]Tensor{w: pf}, map[Tensor]Tensor{w: pb}
		var inGraph func(Tensor, bool) bool
		if tc.inGraph {
			fwd, bwd = nil, nil
			inGraph = func(t Tensor, _ bool) bool { return t == w }
		}
		before := g.Nodes()
		if got := g.UsePacked(x, fwd, bwd, inGraph); got != 2 {
			t.Fatalf("%d products rewritten, want 2", got)
		}
		if added, want := g.Nodes()-before, 2*btoi(tc.inGraph); added != want {
			t.Errorf("%d nodes added, want %d", added, want)
		}
		if left := g.ProductsLeft(fwd, bwd, inGraph); left != 0 {
			t.Errorf("%d products left", left)
		}
		if left := g.OutProdTypes(); len(left) != 0 {
			t.Errorf("out_prods left: %v", left)
		}
		seed, gp := g.Grad(loss), g.Grad(p)
		seed.SetInput()
		gp.SetOutput()
		s, err := NewSched([]*Backend{be}, 256)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Alloc(g); err != nil {
			t.Fatal(err)
		}
		p.SetF32(pv)
		xin.SetF32(xv)
		r.SetF32(rv)
		seed.SetF32([]float32{1})
		if err := s.Compute(g); err != nil {
			t.Fatal(err)
		}
		gotLoss, gotGrad := float64(loss.GetF32(nil)[0]), gp.GetF32(nil)

		var wantLoss, lossMag float64
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var y float64
				for c := 0; c < k; c++ {
					y += float64(bf16(wv[j*k+c])) * float64(bf16(pv[i*k+c]*xv[i*k+c]))
				}
				wantLoss += y * float64(rv[i*n+j])
				lossMag += math.Abs(y * float64(rv[i*n+j]))
			}
		}
		if math.Abs(gotLoss-wantLoss) > 1e-5*lossMag {
			t.Errorf("%+v: loss %g, want %g", tc, gotLoss, wantLoss)
		}
		for i := 0; i < m; i++ {
			for c := 0; c < k; c++ {
				var dh, mag float64
				for j := 0; j < n; j++ {
					q := float64(bf16(wv[j*k+c])) * float64(bf16(rv[i*n+j]))
					dh += q
					mag += math.Abs(q)
				}
				want, got := dh*float64(xv[i*k+c]), float64(gotGrad[i*k+c])
				if math.Abs(got-want) > 1e-5*mag*math.Abs(float64(xv[i*k+c]))+1e-30 {
					t.Errorf("%+v: dP[%d][%d] = %g, want %g", tc, i, c, got, want)
				}
			}
		}
		s.Close()
		x.Close()
		wbuf.Close()
		wctx.Close()
		be.Close()
	}
}

// TestPackRows: packing a weight's rows in a graph, a block of rows at a
// time on several threads, gives the bytes Pack gives, both ways.
func TestPackRows(t *testing.T) {
	if !AMX() {
		t.Skip("AMX products cannot run here:", AMXStatus())
	}
	const nIn, nOut, block = 45, 70, 17
	wv := randVals(rand.New(rand.NewPCG(5, 5)), nIn*nOut)
	be, err := NewCPUBackend(3)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	wctx, _ := NewCtx(8*TensorOverhead(), true)
	defer wctx.Close()
	w := wctx.New2D(TypeF32, nIn, nOut)
	fwd, bwd := wctx.NewPacked(nIn, nOut), wctx.NewPacked(nOut, nIn)
	wantF, wantB := wctx.NewPacked(nIn, nOut), wctx.NewPacked(nOut, nIn)
	buf, err := wctx.AllocTensors(be)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	w.SetF32(wv)
	for _, p := range []Tensor{fwd, bwd, wantF, wantB} {
		ZeroPacked(p)
	}
	Pack(wantF, wv, nIn, 1, 0, nOut, 0, nIn)
	Pack(wantB, wv, 1, nIn, 0, nIn, 0, nOut)

	x, _ := NewCtx(64*TensorOverhead()+GraphOverhead(64, false), true)
	defer x.Close()
	g := x.NewGraph(64, false)
	for r0 := 0; r0 < nOut; r0 += block {
		g.Expand(x.PackRows(x.View2D(w, nIn, min(block, nOut-r0), w.Nb(1), r0*w.Nb(1)), bwd, fwd, r0))
	}
	s, err := NewSched([]*Backend{be}, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Alloc(g); err != nil {
		t.Fatal(err)
	}
	if err := s.Compute(g); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want Tensor
	}{{"W", fwd, wantF}, {"Wᵀ", bwd, wantB}} {
		got, want := c.got.GetBytes(), c.want.GetBytes()
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("packed %s: byte %d is %d, want %d", c.name, i, got[i], want[i])
			}
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
