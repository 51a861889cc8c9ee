package llama

/*
#include <stdlib.h>
#include "capi.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// ContextOptions size a context.
type ContextOptions struct {
	// Context is the number of token positions (0: the model's own).
	Context int
	// Batch is the most tokens one Decode call may take (0: 512).
	Batch int
	// Sequences is the number of independent sequences (0: 1).
	Sequences int
	// Threads used for decoding (0: every core).
	Threads int
	// F32Cache keeps the KV cache in F32 (llama.cpp's default is F16) and
	// turns flash attention off: exact attention, for comparisons.
	F32Cache bool
}

// Context holds a KV cache and decodes tokens of one model. It is not safe
// for concurrent use. Close it before its model.
type Context struct {
	c        *C.struct_llama_context
	params   C.struct_llama_context_params
	model    *Model
	batch    C.struct_llama_batch
	nctx     int
	nbat     int
	nseq     int
	adapters []appliedAdapter
	decoded  bool // a graph has been built since the C context was made
}

type appliedAdapter struct {
	a     *Adapter
	scale float32
}

// NewContext makes a context for m.
func NewContext(m *Model, opts ContextOptions) (*Context, error) {
	if opts.Threads <= 0 {
		opts.Threads = runtime.NumCPU()
	}
	if opts.Sequences <= 0 {
		opts.Sequences = 1
	}
	if opts.Batch <= 0 {
		opts.Batch = 512
	}
	if opts.Context <= 0 {
		opts.Context = m.ContextLength()
	}
	if opts.Batch > opts.Context*opts.Sequences {
		opts.Batch = opts.Context * opts.Sequences
	}
	p := C.llama_context_default_params()
	p.n_ctx = C.uint32_t(opts.Context * opts.Sequences)
	p.n_batch = C.uint32_t(opts.Batch)
	p.n_ubatch = C.uint32_t(opts.Batch)
	p.n_seq_max = C.uint32_t(opts.Sequences)
	p.n_threads = C.int32_t(opts.Threads)
	p.n_threads_batch = C.int32_t(opts.Threads)
	p.no_perf = true
	p.kv_unified = opts.Sequences > 1
	if opts.F32Cache {
		p.type_k, p.type_v = C.GGML_TYPE_F32, C.GGML_TYPE_F32
		p.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_DISABLED
	}
	c := C.llama_init_from_model(m.c, p)
	if c == nil {
		return nil, cError("%s: could not create a context of %d tokens", m.Path, opts.Context)
	}
	ctx := &Context{c: c, params: p, model: m, nctx: int(C.llama_n_ctx(c)) / opts.Sequences, nbat: opts.Batch, nseq: opts.Sequences}
	ctx.batch = C.llama_batch_init(C.int32_t(opts.Batch), 0, C.int32_t(opts.Sequences))
	return ctx, nil
}

// SetThreads sets the threads of the next decode calls (<= 0: every
// core).
func (c *Context) SetThreads(n int) {
	if n <= 0 {
		n = runtime.NumCPU()
	}
	C.llama_set_n_threads(c.c, C.int32_t(n), C.int32_t(n))
}

// Close frees the context.
func (c *Context) Close() {
	if c != nil && c.c != nil {
		C.llama_batch_free(c.batch)
		C.llama_free(c.c)
		c.c = nil
	}
}

// Model is the model the context decodes.
func (c *Context) Model() *Model { return c.model }

// Size is the number of token positions per sequence.
func (c *Context) Size() int { return c.nctx }

// BatchSize is the most tokens one Decode call takes.
func (c *Context) BatchSize() int { return c.nbat }

// Reset clears the KV cache of every sequence.
func (c *Context) Reset() { C.llama_memory_clear(C.llama_get_memory(c.c), true) }

// RemoveSequence clears the KV cache of one sequence, so that its number
// can start a new one while the others go on.
func (c *Context) RemoveSequence(seq int) {
	C.llama_memory_seq_rm(C.llama_get_memory(c.c), C.llama_seq_id(seq), -1, -1)
}

// Sequences is the number of independent sequences the context holds.
func (c *Context) Sequences() int { return c.nseq }

// SetAdapter applies a loaded LoRA adapter with the given scale, or changes
// its scale. It clears the KV cache.
//
// llama.cpp reuses the previous compute graph when a batch has the same
// shape, and its reuse check does not notice a change of adapters (it
// compares the address of the context's own adapter map with itself), so a
// change made after a decode would be silently ignored. Changing adapters
// therefore rebuilds the C context.
func (c *Context) SetAdapter(a *Adapter, scale float32) error {
	found := false
	for i := range c.adapters {
		if c.adapters[i].a == a {
			c.adapters[i].scale, found = scale, true
		}
	}
	if !found {
		c.adapters = append(c.adapters, appliedAdapter{a, scale})
	}
	return c.applyAdapters()
}

// ClearAdapters removes every adapter from the context. It clears the KV
// cache.
func (c *Context) ClearAdapters() error {
	c.adapters = nil
	return c.applyAdapters()
}

func (c *Context) applyAdapters() error {
	if c.decoded {
		fresh := C.llama_init_from_model(c.model.c, c.params)
		if fresh == nil {
			return cError("%s: could not rebuild the context to change adapters", c.model.Path)
		}
		C.llama_free(c.c)
		c.c, c.decoded = fresh, false
	}
	C.llama_clear_adapter_lora(c.c)
	for _, ad := range c.adapters {
		if C.llama_set_adapter_lora(c.c, ad.a.c, C.float(ad.scale)) != 0 {
			return cError("%s: could not apply adapter", ad.a.Path)
		}
	}
	return nil
}

// BatchToken is one token of a Decode call.
type BatchToken struct {
	Token  Token
	Pos    int
	Seq    int
	Logits bool // compute logits for this position
}

// Decode runs the model over tokens (at most BatchSize of them), appending
// them to the KV cache. Logits of the tokens marked Logits are then read with
// Logits(i), i being the token's index in this call.
func (c *Context) Decode(tokens []BatchToken) error {
	if len(tokens) == 0 {
		return nil
	}
	if len(tokens) > c.nbat {
		return fmt.Errorf("decode: %d tokens exceed the batch size %d", len(tokens), c.nbat)
	}
	n := len(tokens)
	tok := unsafe.Slice(c.batch.token, n)
	pos := unsafe.Slice(c.batch.pos, n)
	nseq := unsafe.Slice(c.batch.n_seq_id, n)
	seq := unsafe.Slice(c.batch.seq_id, n)
	logits := unsafe.Slice(c.batch.logits, n)
	for i, t := range tokens {
		if t.Pos >= c.nctx {
			return fmt.Errorf("decode: position %d is past the context size %d", t.Pos, c.nctx)
		}
		if t.Seq < 0 || t.Seq >= c.nseq {
			return fmt.Errorf("decode: sequence %d outside 0..%d", t.Seq, c.nseq-1)
		}
		tok[i] = C.llama_token(t.Token)
		pos[i] = C.llama_pos(t.Pos)
		nseq[i] = 1
		*seq[i] = C.llama_seq_id(t.Seq)
		logits[i] = 0
		if t.Logits {
			logits[i] = 1
		}
	}
	c.batch.n_tokens = C.int32_t(n)
	c.decoded = true
	if rc := C.llama_decode(c.c, c.batch); rc != 0 {
		switch rc {
		case 1:
			return cError("decode: no room left in the context (%d tokens per sequence)", c.nctx)
		case 2:
			return cError("decode: aborted")
		default:
			return cError("decode failed (code %d)", int(rc))
		}
	}
	return nil
}

// Logits returns the logits computed for the i-th token of the last Decode
// call (that token must have had Logits set). The slice aliases C memory
// that the next Decode overwrites.
func (c *Context) Logits(i int) []float32 {
	p := C.llama_get_logits_ith(c.c, C.int32_t(i))
	if p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), c.model.VocabSize())
}
