package lora

import (
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/finetune-dev/finetune/adapters"
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

	backend *ggml.Backend // the CPU's: the scheduler's last resort, and the whole of it without a device
	// dev, when not nil, is the device the graphs run on (a GPU, or an
	// accelerator such as ggml's BLAS backend); the LoRA tensors, the
	// transposed copies and the kept activations live in its memory, and
	// so do the base weights on a GPU. Nodes it cannot compute run on the
	// CPU (logged once per graph kind).
	dev     *ggml.Backend
	placed  map[string]bool
	pctx    *ggml.Ctx // LoRA tensors
	pbuf    *ggml.Buffer
	pairs   []pairTensors
	byLayer []map[string]int // layer -> target -> index in pairs
	// outPair and embPair index the output head's and the token
	// embedding's pairs in pairs (-1: not adapted).
	outPair, embPair int

	// Each kind of graph is built and allocated once, with a scheduler of
	// its own: ggml's allocator never moves a tensor that already has
	// memory, so one scheduler cannot take turns between graphs.
	graphs map[graphKind]*graph

	// Transposed copies of the frozen weights, for input gradients by
	// mul_mat instead of out_prod (see ggml.Graph.UseTransposed).
	noTranspose bool
	// copyType is the type of every transposed copy; fwType, when not
	// autoType, the type quantized weights are cast to for the layers'
	// products (see setPrecision).
	copyType, fwType ggml.Type
	wt               map[ggml.Tensor]ggml.Tensor
	wtCtx            *ggml.Ctx
	wtBuf            *ggml.Buffer
	// amx: the products with frozen weights run on AMX tiles (bf16 on a
	// CPU that has them, see setPrecision), each weight packed in BF16:
	// packB[W] (Wᵀ) for the input gradient, in place of the BF16
	// transposed copy, and packF[W] for the forward product of a weight
	// that bf16 rounds there too (see forwardPacked). The packed copies
	// of frozenMatmulWeights live in wtCtx and wtBuf in place of the
	// transposed copies, made once; the checkpointed path packs its
	// layers' weights in each graph instead, before each product.
	amx          bool
	packF, packB map[ggml.Tensor]ggml.Tensor
	// amxProducts counts the products of two activations (the
	// attention's, the LoRA factors') rewritten to run on AMX tiles, both
	// rounded to BF16 (amxProductUse picks them), over all graphs built.
	amxProducts  int
	layerWeights map[ggml.Tensor]bool // see isLayerWeight

	// checkpoint selects the checkpointed path (segments.go) for training
	// and loss graphs.
	checkpoint bool
	forceSplit bool // split each layer's backward whatever the memory (tests)
	seg        *segments
	log        *slog.Logger
	// allRows runs the whole-window path's head over every row, as it
	// did before it ran over the target rows only (benchmarks compare).
	allRows   bool
	rowLabels []float32
	// prof, when set, times every node of every graph the engine runs.
	prof *ggml.Profile
	// measure builds the graphs and sizes their compute memory without
	// allocating or computing them (EstimateMemory); measured sums the
	// compute memory of the graphs that keep their own scheduler.
	measure  bool
	measured int64
}

type pairTensors struct {
	layer  int // the output head's is Layers, the embedding's -1
	target string
	nIn    int
	nOut   int
	a, b   ggml.Tensor
	// flipped: a is [r, n_in] (one row of r values per token), as
	// llama.cpp applies an embedding's update with get_rows of lora_a;
	// Params keep A as [n_in, r] for every pair.
	flipped bool
}

type graphKind int

const (
	graphTrain     graphKind = iota + 1 // loss, backward, gradients
	graphLoss                           // loss only
	graphLogits                         // logits of every position
	graphLogitsP                        // logits without LoRA (the base)
	graphHeadTrain                      // checkpointed: the head over one chunk of target rows, with its backward
	graphHeadLoss                       // checkpointed: the head over one chunk, loss only
	graphTrainRows                      // as graphTrain, the head over the window's target rows only
	graphLossRows                       // as graphLoss, the head over the target rows only
)

func (k graphKind) String() string {
	switch k {
	case graphTrain:
		return "train"
	case graphLoss:
		return "loss"
	case graphLogits:
		return "logits"
	case graphLogitsP:
		return "base logits"
	case graphHeadTrain:
		return "output head, training"
	case graphHeadLoss:
		return "output head, loss"
	case graphTrainRows:
		return "train (target rows)"
	case graphLossRows:
		return "loss (target rows)"
	}
	return fmt.Sprintf("graph kind %d", int(k))
}

type graph struct {
	kind   graphKind
	nRows  int // graphTrainRows, graphLossRows: the rows the head runs over
	ctx    *ggml.Ctx
	sched  *ggml.Sched
	g      ggml.Graph
	tokens ggml.Tensor // I32 [T]
	pos    ggml.Tensor // I32 [T]
	mask   ggml.Tensor // F32 [T, T] attention mask
	rows   ggml.Tensor // F32 [1, T]: 1 where the position predicts a target
	labels ggml.Tensor // F32 [V, T] ([V, chunk] for the head graphs)
	idx    ggml.Tensor // I32 [chunk]: the rows of a head chunk
	// gradIn is the gradient a layer graph gives of its input.
	gradIn ggml.Tensor
	host   []hostInput   // more inputs, set from host memory
	outs   []ggml.Tensor // outputs a graph built for one use hands back
	drops  []ggml.Tensor // dropout masks, computed from dropSeed
	// dropSeed is the I32 input the dropout masks are computed from.
	dropSeed ggml.Tensor
	casts    map[ggml.Tensor]ggml.Tensor // a quantized weight's cast -> the weight
	loss     ggml.Tensor
	seed     ggml.Tensor // the loss gradient that starts the backward pass
	logits   ggml.Tensor
	gradA    []ggml.Tensor
	gradB    []ggml.Tensor
}

// hostInput is an input tensor and the values run sets it to.
type hostInput struct {
	t ggml.Tensor
	v []float32
}

// newEngine allocates LoRA tensors of rank r for targets on every layer,
// on the CPU.
func newEngine(base *Base, targets []string, rank int, scale float32, dropout float32, ctxLen, threads int) (*engine, error) {
	return newEngineOn(nil, base, targets, rank, scale, dropout, ctxLen, threads)
}

// newEngineOn is newEngine with the graphs on device dev (nil: the CPU);
// the engine owns dev from then on.
func newEngineOn(dev *ggml.Backend, base *Base, targets []string, rank int, scale float32, dropout float32, ctxLen, threads int) (*engine, error) {
	e := &engine{base: base, ctxLen: ctxLen, scale: scale, dropout: dropout, threads: threads, graphs: map[graphKind]*graph{}, outPair: -1, embPair: -1,
		copyType: ggml.TypeF32, fwType: ggml.TypeF32, dev: dev, placed: map[string]bool{}}
	var err error
	if e.backend, err = ggml.NewCPUBackend(threads); err != nil {
		dev.Close()
		return nil, err
	}
	if dev != nil && dev.Device().Type != ggml.DeviceCPU && dev.Device().Type != ggml.DeviceAccel {
		if err := base.placeOn(dev); err != nil {
			e.close()
			return nil, err
		}
	}
	n := base.Hyper.Layers * len(targets)
	if e.pctx, err = ggml.NewCtx((2*n+8)*ggml.TensorOverhead(), true); err != nil {
		e.close()
		return nil, err
	}
	for l := 0; l < base.Hyper.Layers; l++ {
		m := map[string]int{}
		for _, t := range targets {
			if !isLayerTarget(t) {
				continue
			}
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
	for _, t := range targets {
		if isLayerTarget(t) {
			continue
		}
		_, nIn, nOut := base.Weight(0, t)
		p := pairTensors{layer: base.Hyper.Layers, target: t, nIn: nIn, nOut: nOut}
		switch t {
		case TargetOutput:
			e.outPair = len(e.pairs)
			p.a = e.pctx.New2D(ggml.TypeF32, nIn, rank)
		case TargetEmbed:
			e.embPair = len(e.pairs)
			p.layer, p.flipped = -1, true
			p.a = e.pctx.New2D(ggml.TypeF32, rank, nIn)
		}
		p.a.SetName(WeightName(0, t) + ".lora_a")
		p.b = e.pctx.New2D(ggml.TypeF32, rank, nOut).SetName(WeightName(0, t) + ".lora_b")
		p.a.SetParam()
		p.b.SetParam()
		e.pairs = append(e.pairs, p)
	}
	if e.pbuf, err = e.pctx.AllocTensors(e.main()); err != nil {
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
	e.seg.close()
	e.seg = nil
	e.wtBuf.Close()
	e.wtCtx.Close()
	e.pbuf.Close()
	e.pctx.Close()
	e.backend.Close()
	e.dev.Close()
}

// main is the backend the engine's tensors live on: the device's, else the
// CPU's.
func (e *engine) main() *ggml.Backend {
	if e.dev != nil {
		return e.dev
	}
	return e.backend
}

// backends are the scheduler's backends, in priority order (the CPU last).
func (e *engine) backends() []*ggml.Backend {
	if e.dev != nil {
		return []*ggml.Backend{e.dev, e.backend}
	}
	return []*ggml.Backend{e.backend}
}

// setThreads sets the threads of the CPU's backend and of a device that
// computes with threads (BLAS).
func (e *engine) setThreads(n int) {
	e.backend.SetThreads(n)
	if e.dev != nil {
		e.dev.SetThreads(n)
	}
}

// newSched is a scheduler over e.backends().
func (e *engine) newSched(size int) (*ggml.Sched, error) {
	return ggml.NewSched(e.backends(), size)
}

// logPlacement says, once per kind of graph, how the scheduler cut an
// allocated graph between the device and the CPU, naming the ops (with
// their types) that the device cannot compute.
func (e *engine) logPlacement(kind string, s *ggml.Sched, g ggml.Graph) {
	if e.dev == nil || e.placed[kind] {
		return
	}
	e.placed[kind] = true
	if ops := e.dev.Unsupported(g); len(ops) > 0 {
		if e.log != nil {
			e.log.Warn("part of the graph runs on the CPU: the device cannot compute these ops", "graph", kind, "device", e.dev.Name(), "ops", strings.Join(ops, " "), "splits", s.Splits())
		}
		return
	}
	e.logf("graph placed on the device", "graph", kind, "device", e.dev.Name(), "splits", s.Splits())
}

// setParams copies the LoRA values into the backend tensors.
func (e *engine) setParams(p *Params) {
	for i, pt := range e.pairs {
		a := p.Pairs[i].A
		if pt.flipped {
			a = adapters.Transpose(a, pt.nIn, p.Rank)
		}
		pt.a.SetF32(a)
		pt.b.SetF32(p.Pairs[i].B)
	}
}

// gradA reads the gradient of pair i's A from t into buf, in Params'
// layout ([n_in, r]).
func (e *engine) gradA(i int, t ggml.Tensor, buf []float32) []float32 {
	buf = t.GetF32(buf)
	if pt := e.pairs[i]; pt.flipped {
		return adapters.Transpose(buf, pt.a.Ne(0), pt.a.Ne(1))
	}
	return buf
}

// net builds pieces of the model into one graph's context.
type net struct {
	e        *engine
	x        *ggml.Ctx
	gr       *graph
	withLoRA bool
	train    bool
	rope     ggml.RopeParams
	// kvPer, when above 0, computes a forward graph's attention that many
	// key/value heads at a time.
	kvPer int
}

func (e *engine) newNet(x *ggml.Ctx, gr *graph, withLoRA, train bool) *net {
	h := e.base.Hyper
	return &net{e: e, x: x, gr: gr, withLoRA: withLoRA, train: train,
		rope: ggml.RopeParams{Dims: h.RopeDim, Mode: 0, ContextOrg: h.ContextLength, FreqBase: float32(h.RopeFreqBase),
			FreqScale: e.base.ropeScale, ExtFactor: 0, AttnFactor: 1, BetaFast: 32, BetaSlow: 1}}
}

// newGraphCtx is a context sized for one graph of the engine.
func (e *engine) newGraphCtx() (*ggml.Ctx, error) {
	size := e.graphSize()
	return ggml.NewCtx((3*size+64)*ggml.TensorOverhead()+ggml.GraphOverhead(size, true), true)
}

// attentionInputs adds the positions and the attention mask.
func (n *net) attentionInputs() {
	T := n.e.ctxLen
	n.gr.pos = n.x.New1D(ggml.TypeI32, T).SetName("positions")
	n.gr.mask = n.x.New2D(ggml.TypeF32, T, T).SetName("attention_mask")
	n.gr.pos.SetInput()
	n.gr.mask.SetInput()
}

// dropouts adds the dropout masks of the pairs of the given layers (all
// when layers is nil) when training with dropout.
func (n *net) dropouts(layers ...int) { n.dropoutsOf(layers, nil) }

// dropoutsOf adds the dropout masks of the pairs of the given layers (all
// when nil) and targets (all when nil): computed in the graph from the
// window's dropout seed (gr.dropSeed), one stream per pair, so that a
// layer recomputed in another graph drops the same values.
func (n *net) dropoutsOf(layers []int, targets []string) {
	e := n.e
	if !n.train || e.dropout <= 0 {
		return
	}
	if !n.gr.dropSeed.Valid() {
		n.gr.dropSeed = n.x.New1D(ggml.TypeI32, 4).SetName("dropout_seed")
		n.gr.dropSeed.SetInput()
	}
	n.gr.drops = make([]ggml.Tensor, len(e.pairs))
	for i, p := range e.pairs {
		if layers != nil && !slices.Contains(layers, p.layer) || targets != nil && !slices.Contains(targets, p.target) {
			continue
		}
		if !isLayerTarget(p.target) {
			continue // as PEFT: no dropout before the embedding's update; none kept for the head's
		}
		n.gr.drops[i] = n.x.DropoutMask(n.gr.dropSeed, i, p.nIn, e.ctxLen).SetName(WeightName(p.layer, p.target) + ".dropout")
	}
}

// embed looks up the tokens' embeddings, with the embedding's update
// scale·B·A[token] as llama.cpp applies it.
func (n *net) embed() ggml.Tensor {
	x, e := n.x, n.e
	n.gr.tokens = x.New1D(ggml.TypeI32, e.ctxLen).SetName("tokens")
	n.gr.tokens.SetInput()
	emb := x.GetRows(e.base.tokEmbd, n.gr.tokens) // [E, T]
	if !n.withLoRA || e.embPair < 0 {
		return emb
	}
	p := e.pairs[e.embPair]
	d := x.MulMat(p.b, x.GetRows(p.a, n.gr.tokens)) // [r, T] then [E, T]
	return x.Add(emb, x.Scale(d, e.scale))
}

// frozen is a base weight as the graph multiplies by it.
func (n *net) frozen(w ggml.Tensor) ggml.Tensor {
	if n.train && n.e.noTranspose && (w.Type() == ggml.TypeF16 || w.Type() == ggml.TypeBF16) {
		// ggml's CPU out_prod aborts on F16 weights.
		return n.x.Cast(w, ggml.TypeF32)
	}
	return w
}

// dequantized is w as the products of a layer take it: a quantized weight
// cast in the graph to e.fwType on the CPU (ggml's products with quantized
// weights round their inputs to 8 bits and run several times slower than
// F32 ones), one weight at a time, freed after its product; the backward
// pass uses its transposed copy still (see finishBackward). The logits
// graphs keep llama.cpp's own products, those a served model computes.
func (n *net) dequantized(w ggml.Tensor) ggml.Tensor {
	e := n.e
	switch w.Type() {
	case ggml.TypeF32, ggml.TypeF16, ggml.TypeBF16:
		return w
	}
	if e.fwType == autoType || e.dev != nil || n.gr.kind == graphLogits || n.gr.kind == graphLogitsP {
		return w
	}
	if e.packed(w) {
		return w // its product is rewritten into an AMX product on its packed copy
	}
	c := n.x.Cast(w, ggml.TypeF32)
	if e.fwType != ggml.TypeF32 {
		c = n.x.Cast(c, e.fwType)
	}
	if n.gr.casts == nil {
		n.gr.casts = map[ggml.Tensor]ggml.Tensor{}
	}
	n.gr.casts[c] = w
	return c
}

// proj is W·in for a target of layer l, plus its LoRA pair's scale·B·A·in.
func (n *net) proj(l int, target string, in ggml.Tensor) ggml.Tensor {
	x, e := n.x, n.e
	w, _, _ := e.base.Weight(l, target)
	y := x.MulMat(n.dequantized(n.frozen(w)), in)
	i, ok := e.byLayer[l][target]
	if !ok || !n.withLoRA {
		return y
	}
	p := e.pairs[i]
	a := in
	if i < len(n.gr.drops) && n.gr.drops[i].Valid() {
		a = x.Mul(a, n.gr.drops[i])
	}
	d := x.MulMat(p.b, x.MulMat(p.a, a)) // [r, T] then [n_out, T]
	return x.Add(y, x.Scale(d, e.scale))
}

// layer is transformer block l applied to inp [E, T].
func (n *net) layer(l int, inp ggml.Tensor) ggml.Tensor {
	h := n.e.base.Hyper
	q, k, v := n.qkv(l, inp)
	var o ggml.Tensor // [hd, H, T]
	if per := n.kvPer; per > 0 && per < h.KVHeads {
		// A few key/value heads at a time: without a backward pass in the
		// graph, each group's attention probabilities are freed before the
		// next group's exist.
		x := n.x
		qh := per * h.Heads / h.KVHeads
		for g := 0; g < h.KVHeads; g += per {
			qg := x.View3D(q, q.Ne(0), qh, q.Ne(2), q.Nb(1), q.Nb(2), g*h.Heads/h.KVHeads*q.Nb(1))
			kg := x.View3D(k, k.Ne(0), per, k.Ne(2), k.Nb(1), k.Nb(2), g*k.Nb(1))
			vg := x.View3D(v, v.Ne(0), per, v.Ne(2), v.Nb(1), v.Nb(2), g*v.Nb(1))
			og := n.attention(qg, kg, vg)
			if g == 0 {
				o = og
			} else {
				o = x.Concat(o, og, 1)
			}
		}
	} else {
		o = n.attention(q, k, v)
	}
	return n.afterAttention(l, n.x.Reshape2D(o, h.HeadDim*h.Heads, n.e.ctxLen), inp)
}

// qkv are layer l's queries [hd, H, T] and keys [hd, KV, T], rotated, and
// values [hd, KV, T] of inp [E, T].
func (n *net) qkv(l int, inp ggml.Tensor) (q, k, v ggml.Tensor) {
	x, e, gr := n.x, n.e, n.gr
	h := e.base.Hyper
	T := e.ctxLen
	hd, H, KV := h.HeadDim, h.Heads, h.KVHeads
	cur := x.Mul(x.RMSNorm(inp, float32(h.RMSEpsilon)), e.base.layers[l].attnNorm)
	q = x.Reshape3D(n.proj(l, "attn_q", cur), hd, H, T)
	k = x.Reshape3D(n.proj(l, "attn_k", cur), hd, KV, T)
	v = x.Reshape3D(n.proj(l, "attn_v", cur), hd, KV, T)
	q = x.RopeExt(q, gr.pos, e.base.ropeFreqs, n.rope)
	k = x.RopeExt(k, gr.pos, e.base.ropeFreqs, n.rope)
	return q, k, v
}

// attention is softmax(q·k/√hd + mask)·v per head: [hd, heads of q, T].
// Key and value heads are shared by consecutive query heads (head i uses
// key head i/(heads of q/heads of k)).
func (n *net) attention(q, k, v ggml.Tensor) ggml.Tensor {
	x := n.x
	hd := q.Ne(0)
	kq := x.MulMat(x.Cont(x.Permute(k, 0, 2, 1, 3)), x.Cont(x.Permute(q, 0, 2, 1, 3))) // [T_k, T_q, heads]
	kq = x.SoftMaxExt(kq, n.gr.mask, float32(1/math.Sqrt(float64(hd))))
	vt := x.Cont(x.Permute(v, 1, 2, 0, 3))                 // [T, hd, KV]
	return x.Cont(x.Permute(x.MulMat(vt, kq), 0, 2, 1, 3)) // [hd, heads, T]
}

// afterAttention is the rest of layer l from the attention's heads o
// [hd·H, T] and the layer's input inp: the output projection, the residual,
// the feed-forward block and its residual.
func (n *net) afterAttention(l int, o, inp ggml.Tensor) ggml.Tensor {
	x, e := n.x, n.e
	eps := float32(e.base.Hyper.RMSEpsilon)
	ffnIn := x.Add(n.proj(l, "attn_output", o), inp) // [E, T]
	cur := x.Mul(x.RMSNorm(ffnIn, eps), e.base.layers[l].ffnNorm)
	ff := x.SwiGLU(n.proj(l, "ffn_gate", cur), n.proj(l, "ffn_up", cur)) // [FF, T]
	return x.Add(n.proj(l, "ffn_down", ff), ffnIn)
}

// logits are the output head over hidden states [E, N]: [V, N].
func (n *net) logits(hidden ggml.Tensor) ggml.Tensor {
	x, e := n.x, n.e
	out := x.Mul(x.RMSNorm(hidden, float32(e.base.Hyper.RMSEpsilon)), e.base.outNorm)
	y := x.MulMat(n.frozen(e.base.output), out)
	if !n.withLoRA || e.outPair < 0 {
		return y
	}
	p := e.pairs[e.outPair]
	return x.Add(y, x.Scale(x.MulMat(p.b, x.MulMat(p.a, out)), e.scale))
}

// finishBackward adds the backward pass of gr.loss to gr.g and makes its
// gradients computable on the CPU backend. The loss gradient becomes an
// input (gr.seed). The input gradients through frozen weights use the
// transposed copies in wt (made in the graph) or else e.wt.
func (e *engine) finishBackward(gr *graph, wt map[ggml.Tensor]ggml.Tensor) error {
	gr.g.BuildBackward(gr.ctx)
	gr.g.KeepInputsOf("RMS_NORM_BACK", "SOFT_MAX_BACK")
	if !e.noTranspose {
		if wt != nil {
			gr.g.UseTransposed(gr.withCasts(wt))
		}
		if e.amx {
			if err := e.usePacked(gr); err != nil {
				return err
			}
		} else {
			if err := e.transposeWeights(); err != nil {
				return err
			}
			gr.g.UseTransposed(gr.withCasts(e.wt))
		}
		// The out_prods left are those of the attention's activations
		// and of the LoRA factors: on the CPU, mul_mats on transposed
		// copies are faster (the copies are a CPU-only custom op, so a
		// device keeps its own out_prod).
		if e.dev == nil {
			gr.g.OutProdsAsMulMat(gr.ctx, nil)
		}
		// With AMX, the products of two activations left (the
		// attention's and the LoRA factors') run on tiles too, both
		// operands rounded to BF16, where that is faster.
		if e.amx {
			e.amxProducts += gr.g.UseAMXProducts(gr.ctx, amxProductUse)
		}
	}
	for _, t := range gr.g.OutProdTypes() {
		if t == ggml.TypeF16 || t == ggml.TypeBF16 {
			return fmt.Errorf("lora: the backward graph still takes an out_prod of a %s weight, which ggml's CPU backend cannot compute", t)
		}
	}
	// The loss gradient is a leaf set before each run; as an input it
	// gets memory no other tensor of the graph reuses.
	gr.seed = gr.g.Grad(gr.loss)
	gr.seed.SetInput()
	return nil
}

// amxProductUse picks the products of two activations that run on AMX
// tiles (a variable for the tests, which run them all).
var amxProductUse = ggml.AMXProductFaster

// withCasts is wt with the weights' casts in gr (see dequantized) mapped
// to their weights' copies too.
func (gr *graph) withCasts(wt map[ggml.Tensor]ggml.Tensor) map[ggml.Tensor]ggml.Tensor {
	if len(gr.casts) == 0 {
		return wt
	}
	m := maps.Clone(wt)
	for c, w := range gr.casts {
		if t, ok := wt[w]; ok {
			m[c] = t
		}
	}
	return m
}

// pairGrads marks the gradients of the LoRA pairs of the given layers (all
// when nil) as outputs of gr; gr.gradA/gradB are indexed like e.pairs
// (zero tensors for pairs not in the graph).
func (e *engine) pairGrads(gr *graph, layers ...int) error { return e.pairGradsOf(gr, layers, nil) }

// pairGradsOf is pairGrads for the pairs of the given layers and targets
// (all when nil).
func (e *engine) pairGradsOf(gr *graph, layers []int, targets []string) error {
	gr.gradA = make([]ggml.Tensor, len(e.pairs))
	gr.gradB = make([]ggml.Tensor, len(e.pairs))
	for i, p := range e.pairs {
		if layers != nil && !slices.Contains(layers, p.layer) || targets != nil && !slices.Contains(targets, p.target) {
			continue
		}
		ga, gb := gr.g.Grad(p.a), gr.g.Grad(p.b)
		if !ga.Valid() || !gb.Valid() {
			return fmt.Errorf("lora: no gradient for %s", p.a.Name())
		}
		ga.SetOutput()
		gb.SetOutput()
		gr.gradA[i], gr.gradB[i] = ga, gb
	}
	return nil
}

// build makes the whole-window graph of a kind; the Rows kinds run the
// head over nRows rows picked by gr.idx.
func (e *engine) build(kind graphKind, nRows int) (*graph, error) {
	T, V := e.ctxLen, e.base.Hyper.VocabSize
	ctx, err := e.newGraphCtx()
	if err != nil {
		return nil, err
	}
	gr := &graph{kind: kind, ctx: ctx, nRows: nRows}
	x := ctx
	train := kind == graphTrain || kind == graphTrainRows
	n := e.newNet(x, gr, kind != graphLogitsP, train)
	inp := n.embed()
	n.attentionInputs()
	n.dropouts()
	for l := 0; l < e.base.Hyper.Layers; l++ {
		inp = n.layer(l, inp)
	}
	if kind == graphTrainRows || kind == graphLossRows {
		gr.idx = x.New1D(ggml.TypeI32, nRows).SetName("target_rows")
		gr.labels = x.New2D(ggml.TypeF32, V, nRows).SetName("labels")
		gr.idx.SetInput()
		gr.labels.SetInput()
		gr.loss = x.CrossEntropyLoss(n.logits(x.GetRows(inp, gr.idx)), gr.labels) // [V, nRows]
		return e.finishLoss(gr, train)
	}
	logits := n.logits(inp) // [V, T]

	gr.g = x.NewGraph(e.graphSize(), train)
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
	return e.finishLoss(gr, train)
}

// finishLoss makes gr.g the graph of gr.loss, with its backward pass and
// the LoRA gradients when training.
func (e *engine) finishLoss(gr *graph, train bool) (*graph, error) {
	if !gr.g.Valid() {
		gr.g = gr.ctx.NewGraph(e.graphSize(), train)
	}
	gr.loss.SetName("loss")
	gr.loss.SetOutput()
	if train {
		gr.loss.SetLoss()
	}
	gr.g.Expand(gr.loss)
	if train {
		if err := e.finishBackward(gr, nil); err != nil {
			return nil, err
		}
		if err := e.pairGrads(gr); err != nil {
			return nil, err
		}
	} else if err := e.forwardOnAMX(gr); err != nil {
		return nil, err
	}
	return gr, nil
}

// forwardOnAMX rewrites a forward-only graph's products for AMX as a
// training graph's forward pass is (frozen weights, and the products of
// two activations where faster), so that validation losses and DPO's
// reference log-probabilities are computed with the arithmetic of the
// training steps. A no-op without AMX.
func (e *engine) forwardOnAMX(gr *graph) error {
	if !e.amx || e.noTranspose {
		return nil
	}
	if err := e.usePacked(gr); err != nil {
		return err
	}
	e.amxProducts += gr.g.UseAMXProducts(gr.ctx, amxProductUse)
	return nil
}

// useRows returns the graph of kind graphTrainRows or graphLossRows for a
// window of nRows targets, built again when the count changes (on the same
// scheduler, whose memory is reused when it suffices).
func (e *engine) useRows(kind graphKind, nRows int) (*graph, error) {
	old := e.graphs[kind]
	if old != nil && old.nRows == nRows {
		return old, nil
	}
	var sched *ggml.Sched
	if old != nil {
		sched = old.sched
		old.ctx.Close()
		delete(e.graphs, kind)
	}
	gr, err := e.build(kind, nRows)
	if err != nil {
		sched.Close()
		return nil, err
	}
	if sched == nil {
		if sched, err = e.newSched(e.graphSize()); err != nil {
			gr.ctx.Close()
			return nil, err
		}
	}
	if e.measure {
		e.measured += int64(sched.ReserveSize(gr.g))
		gr.sched = sched
		e.graphs[kind] = gr
		return gr, nil
	}
	sched.Reset()
	if err := sched.Alloc(gr.g); err != nil {
		sched.Close()
		gr.ctx.Close()
		return nil, err
	}
	e.logPlacement(kind.String(), sched, gr.g)
	gr.sched = sched
	e.graphs[kind] = gr
	return gr, nil
}

// runRows computes a Rows graph on in: its head over in's target rows.
func (e *engine) runRows(gr *graph, in *inputs, seed float32, drops uint64) error {
	if e.measure {
		return nil
	}
	V := e.base.Hyper.VocabSize
	if len(e.rowLabels) < V*gr.nRows {
		e.rowLabels = make([]float32, V*gr.nRows)
	}
	labels := e.rowLabels[:V*gr.nRows]
	clear(labels)
	for i, t := range in.nextAt {
		labels[i*V+int(t)] = 1
	}
	gr.idx.SetI32(in.rowsAt)
	gr.labels.SetF32(labels)
	return e.run(gr, in, seed, drops)
}

// use returns the graph of a kind, allocated and ready for inputs.
func (e *engine) use(kind graphKind) (*graph, error) {
	if gr := e.graphs[kind]; gr != nil {
		return gr, nil
	}
	gr, err := e.build(kind, 0)
	if err != nil {
		return nil, err
	}
	if gr.sched, err = e.newSched(e.graphSize()); err != nil {
		gr.ctx.Close()
		return nil, err
	}
	if e.measure {
		e.measured += int64(gr.sched.ReserveSize(gr.g))
		e.graphs[kind] = gr
		return gr, nil
	}
	if err := gr.sched.Alloc(gr.g); err != nil {
		gr.sched.Close()
		gr.ctx.Close()
		return nil, err
	}
	e.logPlacement(kind.String(), gr.sched, gr.g)
	e.graphs[kind] = gr
	return gr, nil
}

// inputs are the host-side inputs of one window.
type inputs struct {
	tokens, pos []int32
	mask, rows  []float32
	labels      []float32 // whole-window path only
	targets     int
	// rowsAt are the rows that predict a target, nextAt their targets.
	rowsAt, nextAt []int32
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
	in.rowsAt, in.nextAt = in.rowsAt[:0], in.nextAt[:0]
	for t := 0; t+1 < T; t++ {
		if w.Weights[t+1] > 0 && w.Seq[t] >= 0 && w.Seq[t+1] == w.Seq[t] {
			in.rowsAt = append(in.rowsAt, int32(t))
			in.nextAt = append(in.nextAt, w.Tokens[t+1])
		}
	}
	in.targets = len(in.rowsAt)
	if !e.allRows || e.checkpoint {
		return // labels are made per chunk of target rows
	}
	if len(in.rows) != T {
		in.rows = make([]float32, T)
		in.labels = make([]float32, V*T)
	}
	uniform := 1 / float32(V)
	for i := range in.labels {
		in.labels[i] = uniform
	}
	clear(in.rows)
	for i, t := range in.rowsAt {
		row := in.labels[int(t)*V : (int(t)+1)*V]
		clear(row)
		row[in.nextAt[i]] = 1
		in.rows[t] = 1
	}
}

// run computes graph gr on prepared inputs; seed scales the gradient (the
// backward pass differentiates seed·loss).
func (e *engine) run(gr *graph, in *inputs, seed float32, drops uint64) error {
	if e.measure {
		return nil
	}
	if gr.tokens.Valid() {
		gr.tokens.SetI32(in.tokens)
	}
	if gr.pos.Valid() {
		gr.pos.SetI32(in.pos)
	}
	if gr.mask.Valid() {
		gr.mask.SetF32(in.mask)
	}
	if gr.rows.Valid() && !gr.idx.Valid() {
		gr.rows.SetF32(in.rows)
		gr.labels.SetF32(in.labels)
	}
	if gr.dropSeed.Valid() {
		gr.dropSeed.SetI32(ggml.DropoutSeed(drops, float64(e.dropout)))
	}
	if gr.seed.Valid() {
		gr.seed.SetF32([]float32{seed})
	}
	for _, h := range gr.host {
		h.t.SetF32(h.v)
	}
	return e.compute(gr.sched, gr.g)
}

// windowLoss converts the graph's loss, a mean over all T rows including
// the constant log(V) of non-target rows, into the mean cross-entropy over
// the window's targets.
func (e *engine) windowLoss(gr *graph, in *inputs) float64 {
	if in.targets == 0 {
		return 0
	}
	l := float64(gr.loss.GetF32(nil)[0])
	if gr.nRows > 0 {
		return l // a mean over the target rows already
	}
	T := float64(e.ctxLen)
	masked := T - float64(in.targets)
	return (l*T - masked*math.Log(float64(e.base.Hyper.VocabSize))) / float64(in.targets)
}

// frozenMatmulWeights are the base weights the graph multiplies by; the
// checkpointed path transposes a layer's weights in that layer's own graph
// and needs only the output head's kept.
func (e *engine) frozenMatmulWeights() []ggml.Tensor {
	if e.checkpoint {
		return []ggml.Tensor{e.base.output}
	}
	var ws []ggml.Tensor
	for l := range e.base.layers {
		for _, t := range Targets {
			w, _, _ := e.base.Weight(l, t)
			ws = append(ws, w)
		}
	}
	return append(ws, e.base.output)
}

// packed reports whether w's forward product runs on its AMX packed copy:
// a weight that bf16 rounds in the forward pass (forwardPacked), when the
// products run on AMX.
func (e *engine) packed(w ggml.Tensor) bool {
	return e.amx && !e.noTranspose && forwardPacked(w)
}

// forwardPacked reports whether the forward product with w runs on AMX
// under bf16: a quantized or BF16 weight, which bf16 multiplies in BF16
// anyway (a quantized layer weight was cast to BF16 for its product; the
// output head's quantized product rounded its input to 8 bits). An F32 or
// F16 weight keeps its own product, its input unrounded (as in f32); only
// its input gradient goes through BF16, as with the BF16 copies.
func forwardPacked(w ggml.Tensor) bool {
	return w.Type() != ggml.TypeF32 && w.Type() != ggml.TypeF16
}

// usePacked rewrites gr's products with the frozen weights into AMX
// products on their packed copies, packing the weights first when they
// are not yet; on the checkpointed path, the layers' weights are packed
// in gr (see engine.amx).
func (e *engine) usePacked(gr *graph) error {
	if !e.amx || e.noTranspose {
		return nil
	}
	if err := e.packWeights(); err != nil {
		return err
	}
	var inGraph func(w ggml.Tensor, transposed bool) bool
	if e.checkpoint {
		inGraph = func(w ggml.Tensor, transposed bool) bool {
			return (transposed || forwardPacked(w)) && e.isLayerWeight(w)
		}
	}
	gr.g.UsePacked(gr.ctx, e.packF, e.packB, inGraph)
	if n := gr.g.ProductsLeft(e.packF, e.packB, inGraph); n > 0 {
		return fmt.Errorf("lora: %d products with frozen weights could not run on AMX tiles", n)
	}
	return nil
}

// isLayerWeight reports whether w is one of the layers' projection
// weights.
func (e *engine) isLayerWeight(w ggml.Tensor) bool {
	if e.layerWeights == nil {
		e.layerWeights = map[ggml.Tensor]bool{}
		for l := range e.base.layers {
			for _, t := range Targets {
				lw, _, _ := e.base.Weight(l, t)
				e.layerWeights[lw] = true
			}
		}
	}
	return e.layerWeights[w]
}

// packWeights packs every frozen weight the graphs multiply by, in BF16
// for AMX products, both ways (see engine.amx).
func (e *engine) packWeights() error {
	if e.packF != nil {
		return nil
	}
	ws := e.frozenMatmulWeights()
	var err error
	if e.wtCtx, err = ggml.NewCtx((2*len(ws)+8)*ggml.TensorOverhead(), true); err != nil {
		return err
	}
	packF, packB := map[ggml.Tensor]ggml.Tensor{}, map[ggml.Tensor]ggml.Tensor{}
	var order []ggml.Tensor
	for _, w := range ws {
		if _, done := packF[w]; done {
			continue
		}
		if forwardPacked(w) {
			packF[w] = e.wtCtx.NewPacked(w.Ne(0), w.Ne(1)).SetName(w.Name() + ".amx")
		}
		packB[w] = e.wtCtx.NewPacked(w.Ne(1), w.Ne(0)).SetName(w.Name() + ".T.amx")
		order = append(order, w)
	}
	if e.wtBuf, err = e.wtCtx.AllocTensors(e.main()); err != nil {
		return err
	}
	if !e.measure {
		start := time.Now()
		e.logf("packing the frozen weights for AMX products", "weights", len(order))
		if err := e.packInto(order, packF, packB); err != nil {
			return fmt.Errorf("lora: packing the frozen weights: %w", err)
		}
		e.logf("packed", "took", time.Since(start).Round(time.Millisecond))
	}
	e.packF, e.packB = packF, packB
	return nil
}

// packInto packs each weight w of ws ([n_in, n_out]) into packF[w] (when
// it has one) and wᵀ into packB[w], in one graph that casts a block of
// w's rows at a time to F32 (no more than about transposeBlock bytes) and
// packs it, on the CPU's threads.
func (e *engine) packInto(ws []ggml.Tensor, packF, packB map[ggml.Tensor]ggml.Tensor) error {
	var chunks int
	for _, w := range ws {
		ggml.ZeroPacked(packB[w])
		if f, ok := packF[w]; ok {
			ggml.ZeroPacked(f)
		}
		chunks += (w.Ne(1) + packRows(w) - 1) / packRows(w)
	}
	size := 3*chunks + 3*len(ws) + 16 // the nodes, and the weights and their copies as leaves
	x, err := ggml.NewCtx(size*ggml.TensorOverhead()+ggml.GraphOverhead(size, false), true)
	if err != nil {
		return err
	}
	defer x.Close()
	g := x.NewGraph(size, false)
	for _, w := range ws {
		nIn, nOut, rows := w.Ne(0), w.Ne(1), packRows(w)
		for r0 := 0; r0 < nOut; r0 += rows {
			n := min(rows, nOut-r0)
			src := x.View2D(w, nIn, n, w.Nb(1), r0*w.Nb(1))
			if w.Type() != ggml.TypeF32 {
				src = x.Cast(src, ggml.TypeF32)
			}
			g.Expand(x.PackRows(src, packB[w], packF[w], r0))
		}
	}
	return e.computeOnce(g, size)
}

// packRows is how many rows of w packInto casts to F32 at once.
func packRows(w ggml.Tensor) int { return max(1, transposeBlock/(4*w.Ne(0))) }

// copyTypeOf is the type of w's transposed copy.
func (e *engine) copyTypeOf(w ggml.Tensor) ggml.Type { return e.copyType }

// autoType leaves a weight's type as it is (fwType).
const autoType ggml.Type = -1

// setPrecision sets the types of the products with frozen weights:
// "bf16" makes the transposed copies BF16 and casts quantized weights to
// BF16 for the layers' products (their inputs are then rounded to BF16,
// the sums stay F32); "f32" (the default) makes both F32.
func (e *engine) setPrecision(p string) {
	e.copyType, e.fwType = ggml.TypeF32, ggml.TypeF32
	e.amx = false
	if p == "bf16" {
		e.copyType, e.fwType = ggml.TypeBF16, ggml.TypeBF16
		e.amx = e.dev == nil && ggml.AMX()
	}
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
		t := e.wtCtx.New2D(e.copyTypeOf(w), w.Ne(1), w.Ne(0)).SetName(w.Name() + ".T")
		wt[w] = t
		order = append(order, w)
	}
	if e.wtBuf, err = e.wtCtx.AllocTensors(e.main()); err != nil {
		return err
	}
	if e.measure {
		e.wt = wt // sized; never written
		return nil
	}
	start, last := time.Now(), time.Now()
	var done int64
	var total int64
	for _, w := range order {
		total += int64(w.Elements())
	}
	e.logf("making transposed copies of the frozen weights", "weights", len(order), "values", total)
	for _, w := range order {
		if time.Since(last) > 10*time.Second {
			e.logf("transposing", "done", fmt.Sprintf("%.0f%%", 100*float64(done)/float64(total)), "elapsed", time.Since(start).Round(time.Second))
			last = time.Now()
		}
		done += int64(w.Elements())
		if err := e.transposeInto(w, wt[w]); err != nil {
			return fmt.Errorf("lora: transposing %s: %w", w.Name(), err)
		}
	}
	e.wt = wt
	e.logf("transposed copies made", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// transposeBlock is about how many bytes of a weight transposeInto holds
// in F32 at once.
var transposeBlock = 32 << 20

// transposeInto writes w transposed into dst ([n_out, n_in]), a block of
// w's columns at a time (dst's rows), so that no more than about
// transposeBlock bytes of w are ever held in F32.
func (e *engine) transposeInto(w, dst ggml.Tensor) error {
	nIn, nOut := w.Ne(0), w.Ne(1)
	bs := w.Type().BlockSize()
	cols := max(bs, transposeBlock/(4*nOut)/bs*bs)
	chunks := (nIn + cols - 1) / cols
	size := 8*chunks + 16
	x, err := ggml.NewCtx(size*ggml.TensorOverhead()+ggml.GraphOverhead(size, false), true)
	if err != nil {
		return err
	}
	defer x.Close()
	g := x.NewGraph(size, false)
	for c0 := 0; c0 < nIn; c0 += cols {
		n := min(cols, nIn-c0)
		src := x.View2D(w, n, nOut, w.Nb(1), c0/bs*w.Type().RowSize(bs))
		if w.Type() != ggml.TypeF32 {
			src = x.Cast(src, ggml.TypeF32)
		}
		g.Expand(x.Cpy(x.Cont(x.Transpose(src)), x.View2D(dst, nOut, n, dst.Nb(1), c0*dst.Nb(1))))
	}
	return e.computeOnce(g, size)
}

// computeOnce runs g once on a scheduler of its own (graph size size).
func (e *engine) computeOnce(g ggml.Graph, size int) error {
	s, err := e.newSched(size)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Alloc(g); err != nil {
		return err
	}
	return e.compute(s, g)
}

// compute runs g on s, node by node into e.prof when profiling.
func (e *engine) compute(s *ggml.Sched, g ggml.Graph) error {
	if e.prof != nil {
		return s.ComputeProfiled(g, e.prof)
	}
	return s.Compute(g)
}

// logf logs to the engine's logger, when it has one.
func (e *engine) logf(msg string, args ...any) {
	if e.log != nil {
		e.log.Info(msg, args...)
	}
}

// trainWindow runs window w (prepared in in) forward and backward and adds
// to gA and gB the gradients of its targets' summed cross-entropy divided
// by n (the optimizer step's target count). It returns the window's mean
// cross-entropy over its targets.
func (e *engine) trainWindow(in *inputs, n int, drops uint64, gA, gB [][]float32) (float64, error) {
	if in.targets == 0 {
		return 0, nil
	}
	if e.checkpoint {
		if err := e.initSegments(); err != nil {
			return 0, err
		}
		if err := e.segForward(in, drops, true); err != nil {
			return 0, err
		}
		sum, err := e.segHead(in, 1/float32(n), true, gA, gB)
		if err != nil {
			return 0, err
		}
		if err := e.segBackward(in, drops, gA, gB); err != nil {
			return 0, err
		}
		return sum / float64(in.targets), nil
	}
	var gr *graph
	var err error
	if e.allRows {
		// The graph's loss averages over all T rows; seed T/n makes the
		// gradient that of the sum over the window's targets divided by n.
		if gr, err = e.use(graphTrain); err == nil {
			err = e.run(gr, in, float32(e.ctxLen)/float32(n), drops)
		}
	} else if gr, err = e.useRows(graphTrainRows, in.targets); err == nil {
		// The loss averages over the window's targets.
		err = e.runRows(gr, in, float32(in.targets)/float32(n), drops)
	}
	if err != nil || e.measure {
		return 0, err
	}
	var buf []float32
	for i := range e.pairs {
		buf = e.gradA(i, gr.gradA[i], buf)
		addTo(gA[i], buf)
		buf = gr.gradB[i].GetF32(buf)
		addTo(gB[i], buf)
	}
	return e.windowLoss(gr, in), nil
}

// lossWindow is the mean cross-entropy over the targets of the window
// prepared in in (0 when it has none).
func (e *engine) lossWindow(in *inputs) (float64, error) {
	if in.targets == 0 {
		return 0, nil
	}
	if e.checkpoint {
		if err := e.initSegments(); err != nil {
			return 0, err
		}
		if err := e.segForward(in, 0, false); err != nil {
			return 0, err
		}
		sum, err := e.segHead(in, 0, false, nil, nil)
		return sum / float64(in.targets), err
	}
	var gr *graph
	var err error
	if e.allRows {
		if gr, err = e.use(graphLoss); err == nil {
			err = e.run(gr, in, 0, 0)
		}
	} else if gr, err = e.useRows(graphLossRows, in.targets); err == nil {
		err = e.runRows(gr, in, 0, 0)
	}
	if err != nil || e.measure {
		return 0, err
	}
	return e.windowLoss(gr, in), nil
}
