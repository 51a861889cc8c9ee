package lora

import (
	"fmt"
	"os"
	"slices"
	"syscall"
	"unsafe"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/modelinfo"
)

// Base is a frozen Llama base model: its weights memory-mapped from the GGUF
// file, in the file's own types, as ggml tensors. Close it when done.
type Base struct {
	Path  string
	File  *gguf.File
	Hyper modelinfo.Hyper

	mapped []byte
	ctx    *ggml.Ctx
	buf    *ggml.Buffer
	// devCtx, devBuf hold the weights' copies on a GPU (placeOn).
	devCtx *ggml.Ctx
	devBuf *ggml.Buffer
	byName map[string]ggml.Tensor
	layers []layerWeights

	tokEmbd, outNorm, output, ropeFreqs ggml.Tensor
	ropeScale                           float32
}

type layerWeights struct {
	attnNorm, ffnNorm ggml.Tensor
	proj              map[string]ggml.Tensor // attn_q ... ffn_down
}

// Targets are the projections LoRA can adapt in every layer, in the order
// they run.
var Targets = []string{"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}

// The model-wide targets: the output head (tied or not) and the token
// embedding. They are the ones that let a base learn tokens it never
// produced (an end-of-turn token, characters it never emitted): no update
// of the layers can change two tokens whose head rows are equal.
const (
	TargetOutput = "output"
	TargetEmbed  = "token_embd"
)

// ModelTargets are the targets that are not per layer.
var ModelTargets = []string{TargetOutput, TargetEmbed}

// isLayerTarget reports whether target is one of the per-layer projections.
func isLayerTarget(target string) bool { return slices.Contains(Targets, target) }

// trainableTypes are the base weight types the training graph accepts.
var trainableTypes = map[gguf.TensorType]bool{
	gguf.F32: true, gguf.F16: true, gguf.BF16: true, gguf.Q8_0: true, gguf.Q4_0: true, gguf.Q4_1: true,
	gguf.Q5_0: true, gguf.Q5_1: true, gguf.Q2_K: true, gguf.Q3_K: true, gguf.Q4_K: true, gguf.Q5_K: true, gguf.Q6_K: true,
}

// OpenBase maps a Llama GGUF model for training. The file is checked first
// (shapes, vocabulary, types), so a bad file gives an error naming it
// instead of an abort inside ggml.
func OpenBase(path string) (*Base, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	if f.Architecture() != "llama" {
		return nil, fmt.Errorf("%s: architecture %q: finetune trains llama models", path, f.Architecture())
	}
	if err := modelinfo.CheckLlama(f); err != nil {
		return nil, err
	}
	h, err := modelinfo.ParseHyper(f)
	if err != nil {
		return nil, err
	}
	for _, t := range f.Tensors {
		if !trainableTypes[t.Type] {
			return nil, fmt.Errorf("%s: tensor %s is %s; training supports F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K-Q6_K base weights", path, t.Name, t.Type)
		}
	}
	b := &Base{Path: path, File: f, Hyper: h, byName: map[string]ggml.Tensor{}, ropeScale: 1}
	if v, ok := f.Float("llama.rope.scaling.factor"); ok && v > 0 {
		if typ, _ := f.String("llama.rope.scaling.type"); typ == "linear" {
			b.ropeScale = float32(1 / v)
		}
	}
	if err := b.mmap(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *Base) mmap() error {
	fd, err := os.Open(b.Path)
	if err != nil {
		return err
	}
	defer fd.Close()
	data, err := syscall.Mmap(int(fd.Fd()), 0, int(b.File.FileSize), syscall.PROT_READ, syscall.MAP_PRIVATE)
	if err != nil {
		return fmt.Errorf("%s: memory-mapping the weights: %w", b.Path, err)
	}
	b.mapped = data
	b.ctx, err = ggml.NewCtx((len(b.File.Tensors)+8)*ggml.TensorOverhead(), true)
	if err != nil {
		return err
	}
	base := unsafe.Pointer(&data[0])
	b.buf, err = ggml.HostBuffer(base, len(data))
	if err != nil {
		return err
	}
	for _, ti := range b.File.Tensors {
		dims := make([]int, 4)
		for i := range dims {
			dims[i] = 1
			if i < len(ti.Dims) {
				dims[i] = int(ti.Dims[i])
			}
		}
		var t ggml.Tensor
		switch len(ti.Dims) {
		case 1:
			t = b.ctx.New1D(ggml.Type(ti.Type), dims[0])
		case 2:
			t = b.ctx.New2D(ggml.Type(ti.Type), dims[0], dims[1])
		default:
			continue // no Llama weight has more dimensions
		}
		t.SetName(ti.Name)
		off := uintptr(b.File.DataOffset) + uintptr(ti.Offset)
		if err := b.buf.Place(t, unsafe.Add(base, off)); err != nil {
			return fmt.Errorf("%s: %w", b.Path, err)
		}
		b.byName[ti.Name] = t
	}
	b.bind()
	return nil
}

// bind points the model's fields at the tensors of byName.
func (b *Base) bind() {
	b.layers = b.layers[:0]
	b.tokEmbd = b.byName["token_embd.weight"]
	b.outNorm = b.byName["output_norm.weight"]
	b.output = b.byName["output.weight"]
	if !b.output.Valid() {
		b.output = b.tokEmbd // tied output head
	}
	b.ropeFreqs = b.byName["rope_freqs.weight"]
	for l := 0; l < b.Hyper.Layers; l++ {
		lw := layerWeights{proj: map[string]ggml.Tensor{}}
		lw.attnNorm = b.byName[fmt.Sprintf("blk.%d.attn_norm.weight", l)]
		lw.ffnNorm = b.byName[fmt.Sprintf("blk.%d.ffn_norm.weight", l)]
		for _, p := range Targets {
			lw.proj[p] = b.byName[fmt.Sprintf("blk.%d.%s.weight", l, p)]
		}
		b.layers = append(b.layers, lw)
	}
}

// placeOn copies the weights into the memory of dev (a GPU's), in their
// own types, and has the model use those copies.
func (b *Base) placeOn(dev *ggml.Backend) error {
	ctx, err := ggml.NewCtx((len(b.byName)+8)*ggml.TensorOverhead(), true)
	if err != nil {
		return err
	}
	copies := make(map[string]ggml.Tensor, len(b.byName))
	for name, t := range b.byName {
		var c ggml.Tensor
		if t.Ne(1) == 1 {
			c = ctx.New1D(t.Type(), t.Ne(0))
		} else {
			c = ctx.New2D(t.Type(), t.Ne(0), t.Ne(1))
		}
		copies[name] = c.SetName(name)
	}
	buf, err := ctx.AllocTensors(dev)
	if err != nil {
		ctx.Close()
		return fmt.Errorf("%s: the weights do not fit in %s's memory: %w", b.Path, dev.Name(), err)
	}
	for name, t := range b.byName {
		copies[name].SetBytes(t.GetBytes())
	}
	b.devCtx, b.devBuf = ctx, buf
	b.byName = copies
	b.bind()
	return nil
}

// Close unmaps the weights.
func (b *Base) Close() {
	if b == nil {
		return
	}
	b.devBuf.Close()
	b.devCtx.Close()
	b.buf.Close()
	b.ctx.Close()
	if b.mapped != nil {
		syscall.Munmap(b.mapped)
		b.mapped = nil
	}
}

// Weight returns the base weight adapted by a LoRA target in layer l (l is
// ignored for the model-wide targets), and the shape [n_in, n_out] of the
// linear map its update is: the embedding's update maps a one-hot token
// (n_in = vocabulary) to an embedding (n_out = embedding size).
func (b *Base) Weight(l int, target string) (ggml.Tensor, int, int) {
	switch target {
	case TargetOutput:
		return b.output, b.output.Ne(0), b.output.Ne(1)
	case TargetEmbed:
		return b.tokEmbd, b.tokEmbd.Ne(1), b.tokEmbd.Ne(0)
	}
	t := b.layers[l].proj[target]
	return t, t.Ne(0), t.Ne(1)
}

// Tied reports whether the base has no output head of its own: its head
// is the token embedding.
func (b *Base) Tied() bool { return !b.byName["output.weight"].Valid() }

// WeightName is the GGUF name of the base weight adapted by target in layer
// l (the adapter's tensors are this name + ".lora_a"/".lora_b"). The output
// head's is "output.weight" even for a tied base, whose head is the token
// embedding (see adapters.Untie).
func WeightName(l int, target string) string {
	if !isLayerTarget(target) {
		return target + ".weight"
	}
	return fmt.Sprintf("blk.%d.%s.weight", l, target)
}
