package lora

import (
	"fmt"
	"math"

	"github.com/finetune-dev/finetune/internal/ggml"
)

// Window is one packed context window: tokens with their positions within
// their own example, the example each belongs to (for the block-diagonal
// causal mask; -1 for padding), and a 0/1 loss weight per token (token i
// is a target, predicted from position i-1, when Weights[i] > 0).
type Window struct {
	Tokens  []int32
	Weights []float32
	Pos     []int32
	Seq     []int32
}

// Targets returns how many tokens of w are prediction targets.
func (w *Window) Targets() int {
	n := 0
	for i := 1; i < len(w.Tokens); i++ {
		if w.Weights[i] > 0 && w.Seq[i] >= 0 && w.Seq[i] == w.Seq[i-1] {
			n++
		}
	}
	return n
}

// engine holds the LoRA tensors on a backend and the graphs that run a
// window through the base model with them.
type engine struct {
	base    *Base
	ctxLen  int
	scale   float32
	dropout float32
	threads int

	backend *ggml.Backend
	pctx    *ggml.Ctx // LoRA tensors
	pbuf    *ggml.Buffer
	pairs   []pairTensors
	byLayer []map[string]int // layer -> target -> index in pairs

	// Each kind of graph is built and allocated once, with a scheduler of
	// its own: ggml's allocator never moves a tensor that already has
	// memory, so one scheduler cannot take turns between graphs.
	graphs map[graphKind]*graph

	// Transposed copies of the frozen weights, for input gradients by
	// mul_mat instead of out_prod (see ggml.Graph.UseTransposed).
	noTranspose bool
	wt          map[ggml.Tensor]ggml.Tensor
	wtCtx       *ggml.Ctx
	wtBuf       *ggml.Buffer
}

type pairTensors struct {
	layer  int
	target string
	nIn    int
	nOut   int
	a, b   ggml.Tensor
}

type graphKind int

const (
	graphTrain   graphKind = iota + 1 // loss, backward, gradients
	graphLoss                         // loss only
	graphLogits                       // logits of every position
	graphLogitsP                      // logits without LoRA (the base)
)

type graph struct {
	kind   graphKind
	ctx    *ggml.Ctx
	sched  *ggml.Sched
	g      ggml.Graph
	tokens ggml.Tensor // I32 [T]
	pos    ggml.Tensor // I32 [T]
	mask   ggml.Tensor // F32 [T, T] attention mask
	rows   ggml.Tensor // F32 [1, T]: 1 where the position predicts a target
	labels ggml.Tensor // F32 [V, T]
	drops  []ggml.Tensor
	loss   ggml.Tensor
	seed   ggml.Tensor // the loss gradient that starts the backward pass
	logits ggml.Tensor
	gradA  []ggml.Tensor
	gradB  []ggml.Tensor
}

// newEngine allocates LoRA tensors of rank r for targets on every layer.
func newEngine(base *Base, targets []string, rank int, scale float32, dropout float32, ctxLen, threads int) (*engine, error) {
	e := &engine{base: base, ctxLen: ctxLen, scale: scale, dropout: dropout, threads: threads, graphs: map[graphKind]*graph{}}
	var err error
	if e.backend, err = ggml.NewCPUBackend(threads); err != nil {
		return nil, err
	}
	n := base.Hyper.Layers * len(targets)
	if e.pctx, err = ggml.NewCtx((2*n+8)*ggml.TensorOverhead(), true); err != nil {
		e.close()
		return nil, err
	}
	for l := 0; l < base.Hyper.Layers; l++ {
		m := map[string]int{}
		for _, t := range targets {
			_, nIn, nOut := base.Weight(l, t)
			p := pairTensors{layer: l, target: t, nIn: nIn, nOut: nOut}
			p.a = e.pctx.New2D(ggml.TypeF32, nIn, rank).SetName(WeightName(l, t) + ".lora_a")
			p.b = e.pctx.New2D(ggml.TypeF32, rank, nOut).SetName(WeightName(l, t) + ".lora_b")
			p.a.SetParam()
			p.b.SetParam()
			m[t] = len(e.pairs)
			e.pairs = append(e.pairs, p)
		}
		e.byLayer = append(e.byLayer, m)
	}
	if e.pbuf, err = e.pctx.AllocTensors(e.backend); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *engine) graphSize() int {
	return 4096 + e.base.Hyper.Layers*(1024+64*len(e.pairs)/max(1, e.base.Hyper.Layers))
}

func (e *engine) close() {
	for _, g := range e.graphs {
		g.sched.Close()
		g.ctx.Close()
	}
	e.graphs = nil
	e.wtBuf.Close()
	e.wtCtx.Close()
	e.pbuf.Close()
	e.pctx.Close()
	e.backend.Close()
}

// setParams copies the LoRA values into the backend tensors.
func (e *engine) setParams(p *Params) {
	for i, pt := range e.pairs {
		pt.a.SetF32(p.Pairs[i].A)
		pt.b.SetF32(p.Pairs[i].B)
	}
}

// build makes the graph of a kind.
func (e *engine) build(kind graphKind) (*graph, error) {
	h := e.base.Hyper
	T, V := e.ctxLen, h.VocabSize
	size := e.graphSize()
	nTensors := 3*size + 64
	ctx, err := ggml.NewCtx(nTensors*ggml.TensorOverhead()+ggml.GraphOverhead(size, true), true)
	if err != nil {
		return nil, err
	}
	gr := &graph{kind: kind, ctx: ctx}
	x := ctx
	gr.tokens = x.New1D(ggml.TypeI32, T).SetName("tokens")
	gr.pos = x.New1D(ggml.TypeI32, T).SetName("positions")
	gr.mask = x.New2D(ggml.TypeF32, T, T).SetName("attention_mask")
	for _, t := range []ggml.Tensor{gr.tokens, gr.pos, gr.mask} {
		t.SetInput()
	}
	withLoRA := kind != graphLogitsP
	train := kind == graphTrain
	if train && e.dropout > 0 {
		for _, p := range e.pairs {
			d := x.New2D(ggml.TypeF32, p.nIn, T).SetName(WeightName(p.layer, p.target) + ".dropout")
			d.SetInput()
			gr.drops = append(gr.drops, d)
		}
	}

	hd, H, KV := h.HeadDim, h.Heads, h.KVHeads
	eps := float32(h.RMSEpsilon)
	rope := ggml.RopeParams{Dims: h.RopeDim, Mode: 0, ContextOrg: h.ContextLength, FreqBase: float32(h.RopeFreqBase),
		FreqScale: e.base.ropeScale, ExtFactor: 0, AttnFactor: 1, BetaFast: 32, BetaSlow: 1}
	proj := func(l int, target string, in ggml.Tensor) ggml.Tensor {
		w, _, _ := e.base.Weight(l, target)
		if train && e.noTranspose && (w.Type() == ggml.TypeF16 || w.Type() == ggml.TypeBF16) {
			// ggml's CPU out_prod aborts on F16 weights.
			w = x.Cast(w, ggml.TypeF32)
		}
		y := x.MulMat(w, in)
		i, ok := e.byLayer[l][target]
		if !ok || !withLoRA {
			return y
		}
		p := e.pairs[i]
		a := in
		if len(gr.drops) > 0 {
			a = x.Mul(a, gr.drops[i])
		}
		d := x.MulMat(p.b, x.MulMat(p.a, a)) // [r, T] then [n_out, T]
		return x.Add(y, x.Scale(d, e.scale))
	}

	inp := x.GetRows(e.base.tokEmbd, gr.tokens) // [E, T]
	for l := 0; l < h.Layers; l++ {
		lw := e.base.layers[l]
		cur := x.Mul(x.RMSNorm(inp, eps), lw.attnNorm)
		q := x.Reshape3D(proj(l, "attn_q", cur), hd, H, T)
		k := x.Reshape3D(proj(l, "attn_k", cur), hd, KV, T)
		v := x.Reshape3D(proj(l, "attn_v", cur), hd, KV, T)
		q = x.RopeExt(q, gr.pos, e.base.ropeFreqs, rope)
		k = x.RopeExt(k, gr.pos, e.base.ropeFreqs, rope)
		kq := x.MulMat(x.Cont(x.Permute(k, 0, 2, 1, 3)), x.Cont(x.Permute(q, 0, 2, 1, 3))) // [T_k, T_q, H], K heads shared by H/KV query heads
		kq = x.SoftMaxExt(kq, gr.mask, float32(1/math.Sqrt(float64(hd))))
		vt := x.Cont(x.Permute(v, 1, 2, 0, 3))               // [T, hd, KV]
		o := x.Cont(x.Permute(x.MulMat(vt, kq), 0, 2, 1, 3)) // [hd, H, T]
		o = proj(l, "attn_output", x.Reshape2D(o, hd*H, T))  // [E, T]
		ffnIn := x.Add(o, inp)
		cur = x.Mul(x.RMSNorm(ffnIn, eps), lw.ffnNorm)
		ff := x.SwiGLU(proj(l, "ffn_gate", cur), proj(l, "ffn_up", cur)) // [FF, T]
		inp = x.Add(proj(l, "ffn_down", ff), ffnIn)
	}
	out := x.Mul(x.RMSNorm(inp, eps), e.base.outNorm)
	head := e.base.output
	if train && e.noTranspose && (head.Type() == ggml.TypeF16 || head.Type() == ggml.TypeBF16) {
		head = x.Cast(head, ggml.TypeF32)
	}
	logits := x.MulMat(head, out) // [V, T]

	gr.g = x.NewGraph(size, train)
	if kind == graphLogits || kind == graphLogitsP {
		logits.SetOutput()
		gr.logits = logits
		gr.g.Expand(logits)
		return gr, nil
	}
	// Rows that predict no target get zero logits and a uniform label: their
	// cross-entropy is the constant log(V) and their gradient exactly zero.
	gr.rows = x.New2D(ggml.TypeF32, 1, T).SetName("target_rows")
	gr.labels = x.New2D(ggml.TypeF32, V, T).SetName("labels")
	gr.rows.SetInput()
	gr.labels.SetInput()
	gr.loss = x.CrossEntropyLoss(x.Mul(logits, gr.rows), gr.labels)
	gr.loss.SetName("loss")
	gr.loss.SetOutput()
	if train {
		gr.loss.SetLoss()
	}
	gr.g.Expand(gr.loss)
	if train {
		gr.g.BuildBackward(x)
		gr.g.KeepInputsOf("RMS_NORM_BACK", "SOFT_MAX_BACK")
		if !e.noTranspose {
			if err := e.transposeWeights(); err != nil {
				return nil, err
			}
			gr.g.UseTransposed(e.wt)
		}
		for _, t := range gr.g.OutProdTypes() {
			if t == ggml.TypeF16 || t == ggml.TypeBF16 {
				return nil, fmt.Errorf("lora: the backward graph still takes an out_prod of a %s weight, which ggml's CPU backend cannot compute", t)
			}
		}
		// The loss gradient is a leaf set before each run; as an input it
		// gets memory no other tensor of the graph reuses.
		gr.seed = gr.g.Grad(gr.loss)
		gr.seed.SetInput()
		for _, p := range e.pairs {
			ga, gb := gr.g.Grad(p.a), gr.g.Grad(p.b)
			if !ga.Valid() || !gb.Valid() {
				return nil, fmt.Errorf("lora: no gradient for %s", p.a.Name())
			}
			ga.SetOutput()
			gb.SetOutput()
			gr.gradA = append(gr.gradA, ga)
			gr.gradB = append(gr.gradB, gb)
		}
	}
	return gr, nil
}

// use returns the graph of a kind, allocated and ready for inputs.
func (e *engine) use(kind graphKind) (*graph, error) {
	if gr := e.graphs[kind]; gr != nil {
		return gr, nil
	}
	gr, err := e.build(kind)
	if err != nil {
		return nil, err
	}
	if gr.sched, err = ggml.NewSched([]*ggml.Backend{e.backend}, e.graphSize()); err != nil {
		gr.ctx.Close()
		return nil, err
	}
	if err := gr.sched.Alloc(gr.g); err != nil {
		gr.sched.Close()
		gr.ctx.Close()
		return nil, err
	}
	e.graphs[kind] = gr
	return gr, nil
}

// inputs are the host-side inputs of one window.
type inputs struct {
	tokens, pos []int32
	mask, rows  []float32
	labels      []float32
	targets     int
}

// prepare fills the inputs of window w.
func (e *engine) prepare(w *Window, in *inputs, withLabels bool) {
	T, V := e.ctxLen, e.base.Hyper.VocabSize
	if len(w.Tokens) != T {
		panic(fmt.Sprintf("lora: window of %d tokens for a context of %d", len(w.Tokens), T))
	}
	in.tokens, in.pos = w.Tokens, w.Pos
	if len(in.mask) != T*T {
		in.mask = make([]float32, T*T)
	}
	negInf := float32(math.Inf(-1))
	for q := 0; q < T; q++ {
		row := in.mask[q*T : (q+1)*T]
		for k := 0; k < T; k++ {
			switch {
			case k == q:
				row[k] = 0 // padding attends to itself, so no row is all -inf
			case k < q && w.Seq[q] >= 0 && w.Seq[k] == w.Seq[q]:
				row[k] = 0
			default:
				row[k] = negInf
			}
		}
	}
	if !withLabels {
		return
	}
	if len(in.rows) != T {
		in.rows = make([]float32, T)
		in.labels = make([]float32, V*T)
	}
	uniform := 1 / float32(V)
	in.targets = 0
	for t := 0; t < T; t++ {
		row := in.labels[t*V : (t+1)*V]
		target := t+1 < T && w.Weights[t+1] > 0 && w.Seq[t] >= 0 && w.Seq[t+1] == w.Seq[t]
		if target {
			clear(row)
			row[w.Tokens[t+1]] = 1
			in.rows[t] = 1
			in.targets++
		} else {
			for i := range row {
				row[i] = uniform
			}
			in.rows[t] = 0
		}
	}
}

// run computes graph gr on prepared inputs; seed scales the gradient (the
// backward pass differentiates seed·loss).
func (e *engine) run(gr *graph, in *inputs, seed float32, drops [][]float32) error {
	gr.tokens.SetI32(in.tokens)
	gr.pos.SetI32(in.pos)
	gr.mask.SetF32(in.mask)
	if gr.rows.Valid() {
		gr.rows.SetF32(in.rows)
		gr.labels.SetF32(in.labels)
	}
	for i, d := range gr.drops {
		d.SetF32(drops[i])
	}
	if gr.seed.Valid() {
		gr.seed.SetF32([]float32{seed})
	}
	return gr.sched.Compute(gr.g)
}

// windowLoss converts the graph's loss, a mean over all T rows including
// the constant log(V) of non-target rows, into the mean cross-entropy over
// the window's targets.
func (e *engine) windowLoss(gr *graph, in *inputs) float64 {
	if in.targets == 0 {
		return 0
	}
	T := float64(e.ctxLen)
	l := float64(gr.loss.GetF32(nil)[0])
	masked := T - float64(in.targets)
	return (l*T - masked*math.Log(float64(e.base.Hyper.VocabSize))) / float64(in.targets)
}

// frozenMatmulWeights are the base weights the graph multiplies by.
func (e *engine) frozenMatmulWeights() []ggml.Tensor {
	var ws []ggml.Tensor
	for l := range e.base.layers {
		for _, t := range Targets {
			w, _, _ := e.base.Weight(l, t)
			ws = append(ws, w)
		}
	}
	return append(ws, e.base.output)
}

// transposeType is the type of a weight's transposed copy: the weight's own
// for float types, else Q8_0 (F16 when rows do not split into its blocks).
func transposeType(w ggml.Tensor) ggml.Type {
	switch w.Type() {
	case ggml.TypeF32, ggml.TypeF16, ggml.TypeBF16:
		return w.Type()
	}
	if w.Ne(1)%ggml.TypeQ8_0.BlockSize() == 0 {
		return ggml.TypeQ8_0
	}
	return ggml.TypeF16
}

// transposeWeights makes Wt = transpose(W) for every frozen weight, one
// small graph per weight so that no more than one weight is ever held in
// F32 at once.
func (e *engine) transposeWeights() error {
	if e.wt != nil {
		return nil
	}
	ws := e.frozenMatmulWeights()
	var err error
	if e.wtCtx, err = ggml.NewCtx((len(ws)+8)*ggml.TensorOverhead(), true); err != nil {
		return err
	}
	wt := map[ggml.Tensor]ggml.Tensor{}
	var order []ggml.Tensor
	for _, w := range ws {
		if _, done := wt[w]; done {
			continue
		}
		t := e.wtCtx.New2D(transposeType(w), w.Ne(1), w.Ne(0)).SetName(w.Name() + ".T")
		wt[w] = t
		order = append(order, w)
	}
	if e.wtBuf, err = e.wtCtx.AllocTensors(e.backend); err != nil {
		return err
	}
	for _, w := range order {
		x, err := ggml.NewCtx(16*ggml.TensorOverhead()+ggml.GraphOverhead(16, false), true)
		if err != nil {
			return err
		}
		src := w
		if w.Type() != ggml.TypeF32 {
			src = x.Cast(w, ggml.TypeF32)
		}
		out := x.Cpy(x.Cont(x.Transpose(src)), wt[w])
		g := x.NewGraph(16, false)
		g.Expand(out)
		s, err := ggml.NewSched([]*ggml.Backend{e.backend}, 16)
		if err == nil {
			err = s.Alloc(g)
			if err == nil {
				err = s.Compute(g)
			}
			s.Close()
		}
		x.Close()
		if err != nil {
			return fmt.Errorf("lora: transposing %s: %w", w.Name(), err)
		}
	}
	e.wt = wt
	return nil
}
