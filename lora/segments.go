package lora

import (
	"errors"
	"fmt"
	"math"

	"github.com/finetune-dev/finetune/internal/ggml"
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
		if l > 0 {
			t.SetParam() // its gradient seeds the layer below
		}
		s.hidden = append(s.hidden, t)
	}
	if s.buf, err = s.ctx.AllocTensors(e.backend); err != nil {
		s.ctx.Close()
		return err
	}
	if s.sched, err = ggml.NewSched([]*ggml.Backend{e.backend}, e.graphSize()); err != nil {
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
func (e *engine) once(build func(gr *graph) error, in *inputs, seed float32, drops [][]float32, read func(gr *graph) error) error {
	ctx, err := e.newGraphCtx()
	if err != nil {
		return err
	}
	defer ctx.Close()
	gr := &graph{ctx: ctx}
	if err := build(gr); err != nil {
		return err
	}
	gr.sched = e.seg.sched
	gr.sched.Reset()
	if err := gr.sched.Alloc(gr.g); err != nil {
		return err
	}
	if n := gr.sched.BufferSize(e.backend); n > e.seg.peak {
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
func (e *engine) segForward(in *inputs, drops [][]float32, train bool) error {
	hidden := e.seg.hidden
	return e.once(func(gr *graph) error {
		x := gr.ctx
		n := e.newNet(x, gr, true, train)
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
	}
	if gr.sched, err = ggml.NewSched([]*ggml.Backend{e.backend}, e.graphSize()); err != nil {
		return fail(err)
	}
	if err := gr.sched.Alloc(gr.g); err != nil {
		gr.sched.Close()
		return fail(err)
	}
	e.logf("compute buffer of the output head", "rows", C, "MiB", gr.sched.BufferSize(e.backend)>>20)
	e.graphs[kind] = gr
	return gr, nil
}

// segHead runs the head over in's target rows and returns the sum of their
// cross-entropies. With backward, e.seg.grad becomes the gradient of
// seed·(that sum) with respect to the last hidden state.
func (e *engine) segHead(in *inputs, seed float32, backward bool) (float64, error) {
	gr, err := e.headGraph(backward)
	if err != nil {
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
		if err := gr.sched.Compute(gr.g); err != nil {
			return 0, err
		}
		sum += float64(gr.loss.GetF32(nil)[0])*float64(C) - float64(C-real)*logV
		if backward {
			g = gr.gradIn.GetF32(g)
			addTo(s.grad, g)
		}
	}
	return sum, nil
}

// segBackward runs the layers' backward passes from the gradient in
// e.seg.grad, adding the LoRA gradients to gA and gB.
func (e *engine) segBackward(in *inputs, drops [][]float32, gA, gB [][]float32) error {
	s := e.seg
	var buf []float32
	for l := e.base.Hyper.Layers - 1; l >= 0; l-- {
		err := e.once(func(gr *graph) error {
			x := gr.ctx
			n := e.newNet(x, gr, true, true)
			n.attentionInputs()
			n.dropouts(l)
			gradOut := x.New2D(ggml.TypeF32, e.base.Hyper.Embedding, e.ctxLen).SetName("output_gradient")
			gradOut.SetInput()
			gr.gradOut = gradOut
			// d/dθ sum(layer(h)·g) is the layer's share of the chain rule
			// with g = dLoss/d(output).
			gr.g = x.NewGraph(e.graphSize(), true)
			// The layer's weights transposed in this graph, first: only one
			// layer's copies exist at a time, and none before the first step.
			wt := map[ggml.Tensor]ggml.Tensor{}
			if !e.noTranspose {
				for _, target := range Targets {
					w, _, _ := e.base.Weight(l, target)
					if _, done := wt[w]; done {
						continue
					}
					wt[w] = transposedIn(x, w)
					gr.g.Expand(wt[w])
				}
			}
			gr.loss = x.Sum(x.Mul(n.layer(l, s.hidden[l]), gradOut))
			gr.loss.SetName("loss")
			gr.loss.SetOutput()
			gr.loss.SetLoss()
			gr.g.Expand(gr.loss)
			if err := e.finishBackward(gr, wt); err != nil {
				return err
			}
			if err := e.pairGrads(gr, l); err != nil {
				return err
			}
			if l > 0 {
				gr.gradIn = gr.g.Grad(s.hidden[l])
				if !gr.gradIn.Valid() {
					return fmt.Errorf("lora: no gradient for the input of layer %d", l)
				}
				gr.gradIn.SetOutput()
			}
			return nil
		}, in, 1, drops, func(gr *graph) error {
			for i := range e.pairs {
				if !gr.gradA[i].Valid() {
					continue
				}
				buf = gr.gradA[i].GetF32(buf)
				addTo(gA[i], buf)
				buf = gr.gradB[i].GetF32(buf)
				addTo(gB[i], buf)
			}
			if gr.gradIn.Valid() {
				s.grad = gr.gradIn.GetF32(s.grad)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// transposedIn is w transposed ([n_out, n_in]) as a node of a graph in x,
// of transposeType(w).
func transposedIn(x *ggml.Ctx, w ggml.Tensor) ggml.Tensor {
	src := w
	if w.Type() != ggml.TypeF32 {
		src = x.Cast(w, ggml.TypeF32)
	}
	t := x.Cont(x.Transpose(src))
	if tt := transposeType(w); tt != ggml.TypeF32 {
		t = x.Cast(t, tt)
	}
	return t
}
