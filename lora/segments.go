package lora

import (
	"errors"
	"fmt"
	"math"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/modelinfo"
)

// The checkpointed path trains a window in segments instead of one graph
// that keeps every layer's activations for the backward pass:
//
//  1. a forward graph runs the window through every layer and keeps only
//     each layer's input, hidden[l] ([E, T]), and the last layer's output;
//  2. the output head and the cross-entropy run over the rows that predict
//     a target only, chunk rows at a time, each chunk's backward adding its
//     gradient with respect to the last hidden state to a host buffer;
//  3. from the last layer down, one graph per layer recomputes that layer
//     from hidden[l] and runs its backward pass, seeded with the gradient
//     of its output; it gives the layer's LoRA gradients and the gradient
//     of hidden[l], which seeds the layer below.
//
// Memory is then the hidden states, one layer's activations with their
// gradients, and one chunk of logits, instead of every layer's activations
// (attention probabilities are 2·T²·heads floats per layer) and five
// [V, T] tensors. It costs one more forward pass of the layers.

// segments holds the checkpointed path's state.
type segments struct {
	ctx    *ggml.Ctx
	buf    *ggml.Buffer
	hidden []ggml.Tensor // L+1 tensors [E, T]
	// sched allocates the per-window graphs (forward, one per layer),
	// each built for one use: ggml's allocator never moves a tensor that
	// already has memory, so graphs built once cannot share one.
	sched *ggml.Sched
	chunk int // output-head rows per pass
	peak  int // the largest compute buffer yet
	split split
	grads []float32 // scratch for reading gradients
	grad  []float32
	// Host-side inputs of one head chunk.
	idx    []int32
	mask   []float32
	labels []float32
}

// headChunk is how many rows the output head computes at once: about
// 32 MiB of logits, at least 32 rows, at most the context.
func headChunk(vocab, ctxLen int) int {
	c := (32 << 20) / (4 * vocab)
	c = max(32, c/32*32)
	return min(c, ctxLen)
}

func (e *engine) initSegments() error {
	if e.seg != nil {
		return nil
	}
	h := e.base.Hyper
	s := &segments{chunk: headChunk(h.VocabSize, e.ctxLen)}
	var err error
	if s.ctx, err = ggml.NewCtx((h.Layers+8)*ggml.TensorOverhead(), true); err != nil {
		return err
	}
	for l := 0; l <= h.Layers; l++ {
		t := s.ctx.New2D(ggml.TypeF32, h.Embedding, e.ctxLen).SetName(fmt.Sprintf("hidden.%d", l))
		if l > 0 || e.embPair >= 0 {
			t.SetParam() // its gradient seeds the layer below (or the embedding's update)
		}
		s.hidden = append(s.hidden, t)
	}
	if s.buf, err = s.ctx.AllocTensors(e.main()); err != nil {
		s.ctx.Close()
		return err
	}
	if s.sched, err = e.newSched(e.graphSize()); err != nil {
		s.buf.Close()
		s.ctx.Close()
		return err
	}
	s.grad = make([]float32, h.Embedding*e.ctxLen)
	e.seg = s
	return nil
}

func (s *segments) close() {
	if s == nil {
		return
	}
	s.sched.Close()
	s.buf.Close()
	s.ctx.Close()
}

// once builds a graph with build, allocates it on the shared scheduler,
// sets its inputs, computes it and hands it to read before its context is
// freed.
func (e *engine) once(build func(gr *graph) error, in *inputs, seed float32, drops uint64, read func(gr *graph) error) error {
	ctx, err := e.newGraphCtx()
	if err != nil {
		return err
	}
	defer ctx.Close()
	gr := &graph{ctx: ctx}
	if err := build(gr); err != nil {
		return err
	}
	// The forward graphs' products (a backward graph's are rewritten
	// already, in finishBackward).
	if err := e.forwardOnAMX(gr); err != nil {
		return err
	}
	gr.sched = e.seg.sched
	if e.measure {
		e.seg.peak = max(e.seg.peak, gr.sched.ReserveSize(gr.g))
		return nil
	}
	gr.sched.Reset()
	if err := gr.sched.Alloc(gr.g); err != nil {
		return err
	}
	e.logPlacement("checkpointed segment", gr.sched, gr.g)
	if n := gr.sched.BufferSize(e.main()); n > e.seg.peak {
		e.seg.peak = n
		e.logf("compute buffer of the checkpointed path", "MiB", n>>20)
	}
	if err := e.run(gr, in, seed, drops); err != nil {
		return err
	}
	if read == nil {
		return nil
	}
	return read(gr)
}

// segForward runs the window through every layer, keeping hidden[l].
func (e *engine) segForward(in *inputs, drops uint64, train bool) error {
	hidden := e.seg.hidden
	return e.once(func(gr *graph) error {
		x := gr.ctx
		n := e.newNet(x, gr, true, train)
		n.kvPer = e.kvPerGraph()
		inp := n.embed()
		n.attentionInputs()
		n.dropouts()
		gr.g = x.NewGraph(e.graphSize(), false)
		gr.g.Expand(x.Cpy(inp, hidden[0]))
		for l := 0; l < e.base.Hyper.Layers; l++ {
			inp = n.layer(l, inp)
			gr.g.Expand(x.Cpy(inp, hidden[l+1]))
		}
		return nil
	}, in, 0, drops, nil)
}

// headGraph is the output head and cross-entropy over one chunk of rows
// of the last hidden state; with backward, also its gradient with respect
// to that state.
func (e *engine) headGraph(backward bool) (*graph, error) {
	kind := graphHeadLoss
	if backward {
		kind = graphHeadTrain
	}
	if gr := e.graphs[kind]; gr != nil {
		return gr, nil
	}
	ctx, err := e.newGraphCtx()
	if err != nil {
		return nil, err
	}
	gr := &graph{kind: kind, ctx: ctx}
	fail := func(err error) (*graph, error) {
		ctx.Close()
		return nil, err
	}
	x := ctx
	C, V := e.seg.chunk, e.base.Hyper.VocabSize
	last := e.seg.hidden[len(e.seg.hidden)-1]
	gr.idx = x.New1D(ggml.TypeI32, C).SetName("target_rows")
	gr.rows = x.New2D(ggml.TypeF32, 1, C).SetName("target_mask")
	gr.labels = x.New2D(ggml.TypeF32, V, C).SetName("labels")
	for _, t := range []ggml.Tensor{gr.idx, gr.rows, gr.labels} {
		t.SetInput()
	}
	n := e.newNet(x, gr, true, backward)
	logits := n.logits(x.GetRows(last, gr.idx)) // [V, C]
	// Padding rows (mask 0) get zero logits and a uniform label: a
	// constant log(V) and exactly zero gradient.
	gr.loss = x.CrossEntropyLoss(x.Mul(logits, gr.rows), gr.labels)
	gr.loss.SetName("loss")
	gr.loss.SetOutput()
	gr.g = x.NewGraph(e.graphSize(), backward)
	gr.g.Expand(gr.loss)
	if backward {
		gr.loss.SetLoss()
		if err := e.finishBackward(gr, nil); err != nil {
			return fail(err)
		}
		gr.gradIn = gr.g.Grad(last)
		if !gr.gradIn.Valid() {
			return fail(errors.New("lora: no gradient for the last hidden state"))
		}
		gr.gradIn.SetOutput()
		if e.outPair >= 0 {
			if err := e.pairGrads(gr, e.base.Hyper.Layers); err != nil {
				return fail(err)
			}
		}
	} else if err := e.forwardOnAMX(gr); err != nil {
		return fail(err)
	}
	if gr.sched, err = e.newSched(e.graphSize()); err != nil {
		return fail(err)
	}
	if e.measure {
		e.measured += int64(gr.sched.ReserveSize(gr.g))
		e.graphs[kind] = gr
		return gr, nil
	}
	if err := gr.sched.Alloc(gr.g); err != nil {
		gr.sched.Close()
		return fail(err)
	}
	e.logPlacement(kind.String(), gr.sched, gr.g)
	e.logf("compute buffer of the output head", "rows", C, "MiB", gr.sched.BufferSize(e.main())>>20)
	e.graphs[kind] = gr
	return gr, nil
}

// segHead runs the head over in's target rows and returns the sum of their
// cross-entropies. With backward, e.seg.grad becomes the gradient of
// seed·(that sum) with respect to the last hidden state.
func (e *engine) segHead(in *inputs, seed float32, backward bool, gA, gB [][]float32) (float64, error) {
	gr, err := e.headGraph(backward)
	if err != nil || e.measure {
		return 0, err
	}
	s := e.seg
	C, V := s.chunk, e.base.Hyper.VocabSize
	if len(s.idx) != C {
		s.idx = make([]int32, C)
		s.mask = make([]float32, C)
		s.labels = make([]float32, V*C)
	}
	if backward {
		clear(s.grad)
	}
	logV := math.Log(float64(V))
	uniform := 1 / float32(V)
	sum := 0.0
	var g []float32
	for c0 := 0; c0 < len(in.rowsAt); c0 += C {
		real := min(C, len(in.rowsAt)-c0)
		for j := 0; j < C; j++ {
			row := s.labels[j*V : (j+1)*V]
			if j < real {
				s.idx[j], s.mask[j] = in.rowsAt[c0+j], 1
				clear(row)
				row[in.nextAt[c0+j]] = 1
				continue
			}
			s.idx[j], s.mask[j] = 0, 0
			for i := range row {
				row[i] = uniform
			}
		}
		gr.idx.SetI32(s.idx)
		gr.rows.SetF32(s.mask)
		gr.labels.SetF32(s.labels)
		if backward {
			// The chunk's loss is a mean over its C rows.
			gr.seed.SetF32([]float32{seed * float32(C)})
		}
		if err := e.compute(gr.sched, gr.g); err != nil {
			return 0, err
		}
		sum += float64(gr.loss.GetF32(nil)[0])*float64(C) - float64(C-real)*logV
		if backward {
			g = gr.gradIn.GetF32(g)
			addTo(s.grad, g)
			if e.outPair >= 0 {
				s.grads = e.addPairGrads(gr, gA, gB, s.grads)
			}
		}
	}
	return sum, nil
}

// segBackward runs the layers' backward passes from the gradient in
// e.seg.grad, adding the LoRA gradients to gA and gB.
func (e *engine) segBackward(in *inputs, drops uint64, gA, gB [][]float32) error {
	s := e.seg
	for l := e.base.Hyper.Layers - 1; l >= 0; l-- {
		if e.kvPerGraph() > 0 {
			if err := e.segBackwardSplit(l, in, drops, gA, gB); err != nil {
				return err
			}
			continue
		}
		err := e.once(func(gr *graph) error {
			n := e.newNet(gr.ctx, gr, true, true)
			n.attentionInputs()
			n.dropouts(l)
			if err := e.seeded(gr, l, Targets, []ggml.Tensor{n.layer(l, s.hidden[l])}, [][]float32{s.grad}); err != nil {
				return err
			}
			if err := e.pairGrads(gr, l); err != nil {
				return err
			}
			return e.inputGrad(gr, l)
		}, in, 1, drops, func(gr *graph) error {
			s.grads = e.addPairGrads(gr, gA, gB, s.grads)
			if gr.gradIn.Valid() {
				s.grad = gr.gradIn.GetF32(s.grad)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if e.embPair < 0 {
		return nil
	}
	// The embedding's update, seeded with the gradient of layer 0's input.
	return e.once(func(gr *graph) error {
		n := e.newNet(gr.ctx, gr, true, true)
		if err := e.seeded(gr, -1, nil, []ggml.Tensor{n.embed()}, [][]float32{s.grad}); err != nil {
			return err
		}
		return e.pairGrads(gr, -1)
	}, in, 1, drops, func(gr *graph) error {
		s.grads = e.addPairGrads(gr, gA, gB, s.grads)
		return nil
	})
}

// inputGrad makes gr.gradIn the gradient of layer l's input, an output of
// gr (none for layer 0, whose input is the frozen embedding).
func (e *engine) inputGrad(gr *graph, l int) error {
	if l == 0 && e.embPair < 0 {
		return nil
	}
	gr.gradIn = gr.g.Grad(e.seg.hidden[l])
	if !gr.gradIn.Valid() {
		return fmt.Errorf("lora: no gradient for the input of layer %d", l)
	}
	gr.gradIn.SetOutput()
	return nil
}

// addPairGrads adds the LoRA gradients gr computed to gA and gB (buf is
// scratch space, returned for reuse).
func (e *engine) addPairGrads(gr *graph, gA, gB [][]float32, buf []float32) []float32 {
	for i := range e.pairs {
		if !gr.gradA[i].Valid() {
			continue
		}
		buf = e.gradA(i, gr.gradA[i], buf)
		addTo(gA[i], buf)
		buf = gr.gradB[i].GetF32(buf)
		addTo(gB[i], buf)
	}
	return buf
}

// transposedIn is w transposed ([n_out, n_in]) as a node of a graph in x,
// of type tt.
func transposedIn(x *ggml.Ctx, w ggml.Tensor, tt ggml.Type) ggml.Tensor {
	src := w
	if w.Type() != ggml.TypeF32 {
		src = x.Cast(w, ggml.TypeF32)
	}
	t := x.Cont(x.Transpose(src))
	if tt != ggml.TypeF32 {
		t = x.Cast(t, tt)
	}
	return t
}

// The attention of a long window in one layer's graph holds three
// [T, T, heads] tensors with its backward pass (4 GiB for 32 heads at
// 4096 tokens). Above attentionBudget bytes, the checkpointed path splits
// each layer's backward into graphs of its own: the queries, keys and
// values (qkv); the attention, a few key/value heads (and their query
// heads) at a time; and the rest of the layer. Each is recomputed from its
// inputs and differentiated with its output's gradient as seed.
var attentionBudget = 1 << 30

// kvPerGraph is how many key/value heads one attention graph of the split
// backward takes (0: the layer's backward is not split).
func (e *engine) kvPerGraph() int {
	return kvPerGraph(e.base.Hyper, e.ctxLen, e.forceSplit)
}

func kvPerGraph(h modelinfo.Hyper, ctxLen int, force bool) int {
	T := int64(ctxLen)
	perKV := 3 * 4 * T * T * int64(h.Heads/h.KVHeads) // bytes of one key/value head's attention tensors
	if perKV*int64(h.KVHeads) <= int64(attentionBudget) && !force {
		return 0
	}
	n := int(max(1, int64(attentionBudget)/2/perKV))
	for h.KVHeads%n != 0 {
		n--
	}
	return n
}

// input adds an F32 input tensor of shape ne set from v; a parameter when
// its gradient is wanted.
func (gr *graph) input(name string, v []float32, param bool, ne ...int) ggml.Tensor {
	var t ggml.Tensor
	switch len(ne) {
	case 2:
		t = gr.ctx.New2D(ggml.TypeF32, ne[0], ne[1])
	default:
		t = gr.ctx.New3D(ggml.TypeF32, ne[0], ne[1], ne[2])
	}
	t.SetName(name)
	t.SetInput()
	if param {
		t.SetParam()
	}
	gr.host = append(gr.host, hostInput{t, v})
	return t
}

// seeded makes gr.loss = Σ sum(out_i · grad_i) the graph's loss: its
// gradient with respect to anything upstream is that thing's share of the
// chain rule, given the outputs' gradients grad_i. It then builds the
// backward pass, the named targets' weights of layer l transposed first in
// the graph (only one layer's copies exist at a time, none before the
// first step).
func (e *engine) seeded(gr *graph, l int, targets []string, outs []ggml.Tensor, grads [][]float32) error {
	x := gr.ctx
	gr.g = x.NewGraph(e.graphSize(), true)
	wt := map[ggml.Tensor]ggml.Tensor{}
	if !e.noTranspose && !e.amx { // with AMX products the weights are packed in the graph (usePacked)
		for _, target := range targets {
			w, _, _ := e.base.Weight(l, target)
			if _, done := wt[w]; !done {
				wt[w] = transposedIn(x, w, e.copyTypeOf(w))
				gr.g.Expand(wt[w])
			}
		}
	}
	var loss ggml.Tensor
	for i, o := range outs {
		ne := o.Shape()
		shape := ne[:3]
		if ne[2] == 1 {
			shape = ne[:2]
		}
		g := gr.input(fmt.Sprintf("output_gradient.%d", i), grads[i], false, shape...)
		term := x.Sum(x.Mul(o, g))
		if i == 0 {
			loss = term
		} else {
			loss = x.Add(loss, term)
		}
	}
	gr.loss = loss.SetName("loss")
	gr.loss.SetOutput()
	gr.loss.SetLoss()
	gr.g.Expand(gr.loss)
	return e.finishBackward(gr, wt)
}

// headsOf copies heads [h0, h0+n) of x ([hd, H, T]) into dst ([hd, n, T]),
// or back when back is set.
func headsOf(dst, x []float32, hd, H, T, h0, n int, back bool) {
	w := n * hd
	for t := 0; t < T; t++ {
		a, b := dst[t*w:(t+1)*w], x[(t*H+h0)*hd:(t*H+h0+n)*hd]
		if back {
			copy(b, a)
		} else {
			copy(a, b)
		}
	}
}

// split is the host memory of one layer's split backward.
type split struct {
	q, k, v, o    []float32 // [hd, H|KV, T]
	dq, dk, dv    []float32
	do            []float32 // [hd·H, T]
	dh            []float32 // [E, T]
	qg, kg, vg    []float32 // one group's heads
	og, dqg, dkg  []float32
	dvg, dog, buf []float32
}

// segBackwardSplit is one layer's backward pass in the split graphs,
// from the gradient of its output in e.seg.grad to that of its input.
func (e *engine) segBackwardSplit(l int, in *inputs, drops uint64, gA, gB [][]float32) error {
	s := e.seg
	h := e.base.Hyper
	T, E, hd, H, KV := e.ctxLen, h.Embedding, h.HeadDim, h.Heads, h.KVHeads
	per := e.kvPerGraph()
	qh := per * H / KV // query heads per graph
	sp := &s.split
	if len(sp.q) != hd*H*T {
		*sp = split{
			q: make([]float32, hd*H*T), k: make([]float32, hd*KV*T), v: make([]float32, hd*KV*T), o: make([]float32, hd*H*T),
			dq: make([]float32, hd*H*T), dk: make([]float32, hd*KV*T), dv: make([]float32, hd*KV*T),
			do: make([]float32, hd*H*T), dh: make([]float32, E*T),
			qg: make([]float32, hd*qh*T), kg: make([]float32, hd*per*T), vg: make([]float32, hd*per*T),
		}
	}
	attnTargets := []string{"attn_q", "attn_k", "attn_v"}
	restTargets := []string{"attn_output", "ffn_gate", "ffn_up", "ffn_down"}
	layerOnly := []int{l}
	// The queries, keys and values, recomputed.
	err := e.once(func(gr *graph) error {
		n := e.newNet(gr.ctx, gr, true, true)
		gr.pos = gr.ctx.New1D(ggml.TypeI32, T).SetName("positions")
		gr.pos.SetInput()
		n.dropoutsOf(layerOnly, attnTargets)
		q, k, v := n.qkv(l, s.hidden[l])
		gr.g = gr.ctx.NewGraph(e.graphSize(), false)
		for _, t := range []ggml.Tensor{q, k, v} {
			t.SetOutput()
			gr.g.Expand(t)
		}
		gr.outs = []ggml.Tensor{q, k, v}
		return nil
	}, in, 0, drops, func(gr *graph) error {
		gr.outs[0].GetF32(sp.q)
		gr.outs[1].GetF32(sp.k)
		gr.outs[2].GetF32(sp.v)
		return nil
	})
	if err != nil {
		return err
	}
	// attend runs the attention of key/value heads [g, g+per), forward
	// only (o) or with its backward (dq, dk, dv from do).
	attend := func(g int, backward bool) error {
		h0 := g * H / KV
		headsOf(sp.qg, sp.q, hd, H, T, h0, qh, false)
		headsOf(sp.kg, sp.k, hd, KV, T, g, per, false)
		headsOf(sp.vg, sp.v, hd, KV, T, g, per, false)
		if backward {
			sp.dog = growTo(sp.dog, hd*qh*T)
			headsOf(sp.dog, sp.do, hd, H, T, h0, qh, false)
		}
		return e.once(func(gr *graph) error {
			n := e.newNet(gr.ctx, gr, true, true)
			gr.mask = gr.ctx.New2D(ggml.TypeF32, T, T).SetName("attention_mask")
			gr.mask.SetInput()
			q := gr.input("q", sp.qg, backward, hd, qh, T)
			k := gr.input("k", sp.kg, backward, hd, per, T)
			v := gr.input("v", sp.vg, backward, hd, per, T)
			o := n.attention(q, k, v)
			if !backward {
				o.SetOutput()
				gr.g = gr.ctx.NewGraph(e.graphSize(), false)
				gr.g.Expand(o)
				gr.outs = []ggml.Tensor{o}
				return nil
			}
			if err := e.seeded(gr, l, nil, []ggml.Tensor{o}, [][]float32{sp.dog}); err != nil {
				return err
			}
			for _, t := range []ggml.Tensor{q, k, v} {
				gt := gr.g.Grad(t)
				if !gt.Valid() {
					return fmt.Errorf("lora: no gradient for the attention's %s of layer %d", t.Name(), l)
				}
				// The gradient of a permuted input is a view of memory the
				// allocator reuses once it was consumed: copy it out.
				gt = gr.ctx.Cont(gt)
				gt.SetOutput()
				gr.g.Expand(gt)
				gr.outs = append(gr.outs, gt)
			}
			return nil
		}, in, 1, 0, func(gr *graph) error {
			if !backward {
				sp.og = gr.outs[0].GetF32(sp.og)
				headsOf(sp.og, sp.o, hd, H, T, h0, qh, true)
				return nil
			}
			sp.dqg = gr.outs[0].GetF32(sp.dqg)
			sp.dkg = gr.outs[1].GetF32(sp.dkg)
			sp.dvg = gr.outs[2].GetF32(sp.dvg)
			headsOf(sp.dqg, sp.dq, hd, H, T, h0, qh, true)
			headsOf(sp.dkg, sp.dk, hd, KV, T, g, per, true)
			headsOf(sp.dvg, sp.dv, hd, KV, T, g, per, true)
			return nil
		})
	}
	for g := 0; g < KV; g += per {
		if err := attend(g, false); err != nil {
			return err
		}
	}
	// The rest of the layer, from the attention's heads and the input.
	err = e.once(func(gr *graph) error {
		n := e.newNet(gr.ctx, gr, true, true)
		n.dropoutsOf(layerOnly, restTargets)
		o := gr.input("attention", sp.o, true, hd*H, T)
		y := n.afterAttention(l, o, s.hidden[l])
		if err := e.seeded(gr, l, restTargets, []ggml.Tensor{y}, [][]float32{s.grad}); err != nil {
			return err
		}
		if err := e.pairGradsOf(gr, layerOnly, restTargets); err != nil {
			return err
		}
		gr.outs = []ggml.Tensor{gr.g.Grad(o), gr.g.Grad(s.hidden[l])}
		wantIn := l > 0 || e.embPair >= 0 // the input's gradient is wanted
		for _, t := range gr.outs[:1+btoi(wantIn)] {
			if !t.Valid() {
				return fmt.Errorf("lora: a gradient of layer %d's feed-forward graph is missing", l)
			}
			t.SetOutput()
		}
		return nil
	}, in, 1, drops, func(gr *graph) error {
		sp.buf = e.addPairGrads(gr, gA, gB, sp.buf)
		sp.do = gr.outs[0].GetF32(sp.do)
		if l > 0 || e.embPair >= 0 {
			gr.outs[1].GetF32(sp.dh)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for g := 0; g < KV; g += per {
		if err := attend(g, true); err != nil {
			return err
		}
	}
	// The queries, keys and values, differentiated.
	return e.once(func(gr *graph) error {
		n := e.newNet(gr.ctx, gr, true, true)
		gr.pos = gr.ctx.New1D(ggml.TypeI32, T).SetName("positions")
		gr.pos.SetInput()
		n.dropoutsOf(layerOnly, attnTargets)
		q, k, v := n.qkv(l, s.hidden[l])
		if err := e.seeded(gr, l, attnTargets, []ggml.Tensor{q, k, v}, [][]float32{sp.dq, sp.dk, sp.dv}); err != nil {
			return err
		}
		if err := e.pairGradsOf(gr, layerOnly, attnTargets); err != nil {
			return err
		}
		return e.inputGrad(gr, l)
	}, in, 1, drops, func(gr *graph) error {
		sp.buf = e.addPairGrads(gr, gA, gB, sp.buf)
		if gr.gradIn.Valid() {
			s.grad = gr.gradIn.GetF32(s.grad)
			addTo(s.grad, sp.dh) // the residual path, through the rest of the layer
		}
		return nil
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func growTo(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}
