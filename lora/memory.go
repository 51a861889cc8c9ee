package lora

import (
	"fmt"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/modelinfo"
)

// CheckBase checks, without mapping any weights, that the file at path is
// a Llama model the engine can train.
func CheckBase(path string) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	if f.Architecture() != "llama" {
		return fmt.Errorf("%s: architecture %q: finetune trains llama models", path, f.Architecture())
	}
	if err := modelinfo.CheckLlama(f); err != nil {
		return err
	}
	for _, t := range f.Tensors {
		if !trainableTypes[t.Type] {
			return fmt.Errorf("%s: tensor %s is %s; training supports F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K-Q6_K base weights", path, t.Name, t.Type)
		}
	}
	return nil
}

// Memory is what a training run needs, in bytes, on each path.
type Memory struct {
	// WholeWindow keeps every layer's activations for the backward pass.
	WholeWindow int64
	// Checkpointed keeps each layer's input only and recomputes the layer
	// in the backward pass; the output head runs over chunks of rows.
	Checkpointed int64
}

// Choose says whether a run whose Config.Checkpointing is mode
// checkpoints, on a machine with avail bytes available (0: unknown), and
// the memory it then needs. "auto" checkpoints when the whole-window graph
// would take more than a third of what is available.
func (m Memory) Choose(mode string, avail int64) (checkpoint bool, need int64) {
	switch mode {
	case "on":
		return true, m.Checkpointed
	case "off":
		return false, m.WholeWindow
	}
	if avail > 0 && m.WholeWindow > avail/3 {
		return true, m.Checkpointed
	}
	return false, m.WholeWindow
}

// MemoryOptions are the settings of a run that its memory depends on.
type MemoryOptions struct {
	Rank      int
	Targets   []string // nil: the seven projections
	Dropout   float64
	Precision string // as Config.Precision
}

// EstimateMemory is the memory a training run of the model at path needs
// at context ctxLen on both paths, with the options o:
// the mapped weights, the transposed copies, the compute memory of every
// graph the path keeps (a training window with every row a target, and
// validation), sized by ggml's allocator on the graphs themselves, the
// host buffers of the path, and the LoRA tensors with their optimizer
// state. It builds the graphs, allocating nothing it sizes; used to choose
// the path and to refuse runs that cannot fit.
func EstimateMemory(path string, ctxLen int, o MemoryOptions) (Memory, error) {
	if len(o.Targets) == 0 {
		o.Targets = Targets
	}
	base, err := OpenBase(path)
	if err != nil {
		return Memory{}, err
	}
	defer base.Close()
	var m Memory
	for _, ckpt := range []bool{false, true} {
		n, err := measurePath(base, ctxLen, o, ckpt)
		if err != nil {
			return Memory{}, fmt.Errorf("lora: sizing the training graphs of %s: %w", path, err)
		}
		if ckpt {
			m.Checkpointed = n
		} else {
			m.WholeWindow = n
		}
	}
	return m, nil
}

// ResolvePrecision is the precision a run of Config.Precision p on base
// computes in on the CPU: "bf16" or "f32" as given. auto (or "") is bf16
// where ggml.AMX() holds and the base's layer weights are quantized or
// BF16: the products with the frozen weights then run on AMX tiles both
// ways (see engine.amx), and SmolLM2's Q4_1 steps ran 2.06x as fast as in
// f32 on one thread, side by side (README); rounding such weights to BF16
// is far below their quantization. Elsewhere auto is f32: ggml's own BF16
// products (on an AVX512-BF16 CPU without AMX) ran SmolLM2's steps 0.70x
// to 0.98x as fast as f32, and an F32 or F16 base would have its input
// gradients rounded to BF16 for a smaller gain (1.33x on SmolLM2's F32
// copy).
func ResolvePrecision(p string, base *Base) string {
	switch p {
	case "bf16", "f32":
		return p
	}
	if base != nil && ggml.AMX() && layersForwardPacked(base) {
		return "bf16"
	}
	return "f32"
}

// layersForwardPacked reports whether every layer weight of base is of a
// type whose forward product bf16 runs on AMX (forwardPacked).
func layersForwardPacked(base *Base) bool {
	for l := range base.layers {
		for _, t := range Targets {
			if w, _, _ := base.Weight(l, t); !forwardPacked(w) {
				return false
			}
		}
	}
	return len(base.layers) > 0
}

// runtimeBase is the memory of the process before training: the Go
// runtime, ggml's and llama.cpp's code and the threads (measured: 80 to 95
// MiB for stories260K on both paths).
const runtimeBase = 96 << 20

// graphTables is the memory per node of engine.graphSize that the
// schedulers and graph contexts a run holds take together.
const graphTables = 2800

// measurePath is the memory of one path: it builds the graphs that path
// runs on an engine that sizes them instead of allocating them.
func measurePath(base *Base, ctxLen int, o MemoryOptions, ckpt bool) (int64, error) {
	e, err := newEngine(base, o.Targets, o.Rank, 1, float32(o.Dropout), ctxLen, 1)
	if err != nil {
		return 0, err
	}
	defer e.close()
	e.setPrecision(ResolvePrecision(o.Precision, base))
	e.measure, e.checkpoint = true, ckpt
	h := base.Hyper
	T, V, E := int64(ctxLen), int64(h.VocabSize), int64(h.Embedding)
	// The window with the most targets: every row predicts one.
	in := &inputs{targets: ctxLen - 1}
	for t := 0; t+1 < ctxLen; t++ {
		in.rowsAt = append(in.rowsAt, int32(t))
		in.nextAt = append(in.nextAt, 0)
	}
	var gA, gB [][]float32
	if _, err := e.trainWindow(in, in.targets, 1, gA, gB); err != nil {
		return 0, err
	}
	if _, err := e.lossWindow(in); err != nil {
		return 0, err
	}
	var loraVals int64
	for _, p := range e.pairs {
		loraVals += int64(p.a.Elements() + p.b.Elements())
	}
	// The file's mapped weights (every page is read), the LoRA tensors on
	// the backend and, on the host, their values, gradients, two moments,
	// the best adapter and a checkpoint's copy; the attention mask.
	n := int64(base.File.FileSize) + runtimeBase + 8*4*loraVals + 4*T*T
	if e.wtBuf != nil {
		n += int64(e.wtBuf.Size())
	}
	n += e.measured
	// The schedulers' and graph contexts' own tables, which grow with the
	// graphs' size (measured: 128 MiB for SmolLM2's 30 layers, 43 MiB for
	// 8 layers of the same width, on the checkpointed path).
	n += int64(e.graphSize()) * graphTables
	if ckpt {
		s := e.seg
		n += int64(s.buf.Size()) + int64(s.peak)
		// The host's gradient of the hidden state, a head chunk's labels,
		// and a split backward's heads.
		n += 4 * (2*E*T + V*int64(s.chunk))
		sp := &s.split
		for _, b := range [][]float32{sp.q, sp.k, sp.v, sp.o, sp.dq, sp.dk, sp.dv, sp.do, sp.dh, sp.qg, sp.kg, sp.vg, sp.dog} {
			n += 4 * int64(cap(b))
		}
		n += 4 * 4 * int64(cap(sp.qg)) // a group's outputs and gradients read back
	} else {
		n += 4 * V * (T - 1) // the target rows' labels
	}
	return n, nil
}
