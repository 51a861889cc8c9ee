package ggml

/*
#include <stdlib.h>
#include "capi.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"
)

// Ctx is a ggml context: the arena that holds tensor descriptions (and, when
// allocating, their data) and graphs. Close it when done.
type Ctx struct{ c *C.struct_ggml_context }

// NewCtx makes a context of memSize bytes. With noAlloc it holds only tensor
// and graph metadata; the data lives in backend buffers.
func NewCtx(memSize int, noAlloc bool) (*Ctx, error) {
	c := C.ggml_init(C.struct_ggml_init_params{mem_size: C.size_t(memSize), mem_buffer: nil, no_alloc: C.bool(noAlloc)})
	if c == nil {
		return nil, fmt.Errorf("ggml: could not make a context of %d bytes", memSize)
	}
	return &Ctx{c: c}, nil
}

// Close frees the context and every tensor description in it.
func (x *Ctx) Close() {
	if x != nil && x.c != nil {
		C.ggml_free(x.c)
		x.c = nil
	}
}

// TensorOverhead is the metadata size of one tensor in a context.
func TensorOverhead() int { return int(C.ggml_tensor_overhead()) }

// GraphOverhead is the metadata size of a graph of size nodes.
func GraphOverhead(size int, grads bool) int {
	return int(C.ggml_graph_overhead_custom(C.size_t(size), C.bool(grads)))
}

// Tensor is a ggml tensor; the zero Tensor is "none".
type Tensor struct{ c *C.struct_ggml_tensor }

// Valid reports whether t refers to a tensor.
func (t Tensor) Valid() bool { return t.c != nil }

// Ne returns the size of dimension i (ggml order: 0 is innermost).
func (t Tensor) Ne(i int) int { return int(t.c.ne[i]) }

// Shape returns the four dimensions.
func (t Tensor) Shape() [4]int {
	return [4]int{int(t.c.ne[0]), int(t.c.ne[1]), int(t.c.ne[2]), int(t.c.ne[3])}
}

// Type is the tensor's type.
func (t Tensor) Type() Type { return Type(t.c._type) }

// Nb is the stride in bytes of dimension i.
func (t Tensor) Nb(i int) int { return int(t.c.nb[i]) }

// Name is the tensor's name.
func (t Tensor) Name() string { return C.GoString(&t.c.name[0]) }

// SetName names the tensor (names show in ggml's errors and debug output).
func (t Tensor) SetName(name string) Tensor {
	cs := C.CString(name)
	C.ggml_set_name(t.c, cs)
	C.free(unsafe.Pointer(cs))
	return t
}

// Bytes is the size of the tensor's data.
func (t Tensor) Bytes() int { return int(C.ggml_nbytes(t.c)) }

// Elements is the number of values.
func (t Tensor) Elements() int { return int(C.ggml_nelements(t.c)) }

// SetParam marks t as trainable: the backward graph computes its gradient.
func (t Tensor) SetParam() { C.ggml_set_param(t.c) }

// SetLoss marks t (a scalar) as the loss the backward graph differentiates.
func (t Tensor) SetLoss() { C.ggml_set_loss(t.c) }

// SetInput marks t as a graph input, SetOutput as an output to keep.
func (t Tensor) SetInput()  { C.ggml_set_input(t.c) }
func (t Tensor) SetOutput() { C.ggml_set_output(t.c) }

// SetF32 copies values into the tensor's backend memory.
func (t Tensor) SetF32(v []float32) {
	if len(v)*4 != t.Bytes() {
		panic(fmt.Sprintf("ggml: %d floats into %s of %d bytes", len(v), t.Name(), t.Bytes()))
	}
	if len(v) > 0 {
		C.ggml_backend_tensor_set(t.c, unsafe.Pointer(&v[0]), 0, C.size_t(len(v)*4))
	}
}

// SetI32 copies int32 values into the tensor's backend memory.
func (t Tensor) SetI32(v []int32) {
	if len(v)*4 != t.Bytes() {
		panic(fmt.Sprintf("ggml: %d int32s into %s of %d bytes", len(v), t.Name(), t.Bytes()))
	}
	if len(v) > 0 {
		C.ggml_backend_tensor_set(t.c, unsafe.Pointer(&v[0]), 0, C.size_t(len(v)*4))
	}
}

// SetBytes copies raw data (in the tensor's own type) into its backend
// memory.
func (t Tensor) SetBytes(b []byte) {
	if len(b) != t.Bytes() {
		panic(fmt.Sprintf("ggml: %d bytes into %s of %d bytes", len(b), t.Name(), t.Bytes()))
	}
	if len(b) > 0 {
		C.ggml_backend_tensor_set(t.c, unsafe.Pointer(&b[0]), 0, C.size_t(len(b)))
	}
}

// GetBytes reads the tensor's data as it is stored.
func (t Tensor) GetBytes() []byte {
	b := make([]byte, t.Bytes())
	if len(b) > 0 {
		C.ggml_backend_tensor_get(t.c, unsafe.Pointer(&b[0]), 0, C.size_t(len(b)))
	}
	return b
}

// GetF32 reads an F32 tensor's values into dst (allocated when nil).
func (t Tensor) GetF32(dst []float32) []float32 {
	n := t.Bytes() / 4
	if t.Type() != TypeF32 {
		panic("ggml: GetF32 of a " + t.Type().String() + " tensor")
	}
	if cap(dst) < n {
		dst = make([]float32, n)
	}
	dst = dst[:n]
	if n > 0 {
		C.ggml_backend_tensor_get(t.c, unsafe.Pointer(&dst[0]), 0, C.size_t(n*4))
	}
	return dst
}

func (x *Ctx) wrap(t *C.struct_ggml_tensor) Tensor {
	if t == nil {
		panic("ggml: out of context memory")
	}
	return Tensor{t}
}

// New1D, New2D and New3D make tensors of the given type and shape.
func (x *Ctx) New1D(t Type, ne0 int) Tensor {
	return x.wrap(C.ggml_new_tensor_1d(x.c, C.enum_ggml_type(t), C.int64_t(ne0)))
}
func (x *Ctx) New2D(t Type, ne0, ne1 int) Tensor {
	return x.wrap(C.ggml_new_tensor_2d(x.c, C.enum_ggml_type(t), C.int64_t(ne0), C.int64_t(ne1)))
}
func (x *Ctx) New3D(t Type, ne0, ne1, ne2 int) Tensor {
	return x.wrap(C.ggml_new_tensor_3d(x.c, C.enum_ggml_type(t), C.int64_t(ne0), C.int64_t(ne1), C.int64_t(ne2)))
}

// The operations the Llama training graph uses. Shapes follow ggml: for
// MulMat(a, b) with a [K, M] and b [K, N] the result is [M, N].
func (x *Ctx) GetRows(a, rows Tensor) Tensor { return x.wrap(C.ggml_get_rows(x.c, a.c, rows.c)) }
func (x *Ctx) RMSNorm(a Tensor, eps float32) Tensor {
	return x.wrap(C.ggml_rms_norm(x.c, a.c, C.float(eps)))
}
func (x *Ctx) Mul(a, b Tensor) Tensor     { return x.wrap(C.ggml_mul(x.c, a.c, b.c)) }
func (x *Ctx) Add(a, b Tensor) Tensor     { return x.wrap(C.ggml_add(x.c, a.c, b.c)) }
func (x *Ctx) MulMat(a, b Tensor) Tensor  { return x.wrap(C.ggml_mul_mat(x.c, a.c, b.c)) }
func (x *Ctx) OutProd(a, b Tensor) Tensor { return x.wrap(C.ggml_out_prod(x.c, a.c, b.c)) }
func (x *Ctx) Scale(a Tensor, s float32) Tensor {
	return x.wrap(C.ggml_scale(x.c, a.c, C.float(s)))
}
func (x *Ctx) Cast(a Tensor, t Type) Tensor {
	return x.wrap(C.ggml_cast(x.c, a.c, C.enum_ggml_type(t)))
}
func (x *Ctx) Cont(a Tensor) Tensor { return x.wrap(C.ggml_cont(x.c, a.c)) }

// Cpy copies a into b, converting to b's type; the result is b.
func (x *Ctx) Cpy(a, b Tensor) Tensor { return x.wrap(C.ggml_cpy(x.c, a.c, b.c)) }
func (x *Ctx) Reshape2D(a Tensor, ne0, ne1 int) Tensor {
	return x.wrap(C.ggml_reshape_2d(x.c, a.c, C.int64_t(ne0), C.int64_t(ne1)))
}
func (x *Ctx) Reshape3D(a Tensor, ne0, ne1, ne2 int) Tensor {
	return x.wrap(C.ggml_reshape_3d(x.c, a.c, C.int64_t(ne0), C.int64_t(ne1), C.int64_t(ne2)))
}
func (x *Ctx) Permute(a Tensor, ax0, ax1, ax2, ax3 int) Tensor {
	return x.wrap(C.ggml_permute(x.c, a.c, C.int(ax0), C.int(ax1), C.int(ax2), C.int(ax3)))
}
func (x *Ctx) Transpose(a Tensor) Tensor { return x.wrap(C.ggml_transpose(x.c, a.c)) }

// View2D is a view of a: ne0 by ne1 values, rows nb1 bytes apart, from
// offset bytes into a's data.
func (x *Ctx) View2D(a Tensor, ne0, ne1, nb1, offset int) Tensor {
	return x.wrap(C.ggml_view_2d(x.c, a.c, C.int64_t(ne0), C.int64_t(ne1), C.size_t(nb1), C.size_t(offset)))
}

// View3D is a view of a: ne0 by ne1 by ne2 values, strides nb1 and nb2
// bytes, from offset bytes into a's data.
func (x *Ctx) View3D(a Tensor, ne0, ne1, ne2, nb1, nb2, offset int) Tensor {
	return x.wrap(C.ggml_view_3d(x.c, a.c, C.int64_t(ne0), C.int64_t(ne1), C.int64_t(ne2), C.size_t(nb1), C.size_t(nb2), C.size_t(offset)))
}

// Concat joins a and b along dimension dim.
func (x *Ctx) Concat(a, b Tensor, dim int) Tensor {
	return x.wrap(C.ggml_concat(x.c, a.c, b.c, C.int(dim)))
}

// SoftMaxExt is softmax(a*scale + mask) over dimension 0.
func (x *Ctx) SoftMaxExt(a, mask Tensor, scale float32) Tensor {
	return x.wrap(C.ggml_soft_max_ext(x.c, a.c, mask.c, C.float(scale), 0))
}

// RopeParams are ggml_rope_ext's parameters.
type RopeParams struct {
	Dims       int
	Mode       int
	ContextOrg int
	FreqBase   float32
	FreqScale  float32
	ExtFactor  float32
	AttnFactor float32
	BetaFast   float32
	BetaSlow   float32
}

// RopeExt rotates a [head dim, heads, tokens] by positions pos (I32
// [tokens]); freqFactors (rope_freqs.weight) may be the zero Tensor.
func (x *Ctx) RopeExt(a, pos, freqFactors Tensor, p RopeParams) Tensor {
	return x.wrap(C.ggml_rope_ext(x.c, a.c, pos.c, freqFactors.c, C.int(p.Dims), C.int(p.Mode), C.int(p.ContextOrg),
		C.float(p.FreqBase), C.float(p.FreqScale), C.float(p.ExtFactor), C.float(p.AttnFactor), C.float(p.BetaFast), C.float(p.BetaSlow)))
}
func (x *Ctx) SwiGLU(gate, up Tensor) Tensor { return x.wrap(C.ggml_swiglu_split(x.c, gate.c, up.c)) }
func (x *Ctx) SiLU(a Tensor) Tensor          { return x.wrap(C.ggml_silu(x.c, a.c)) }

// Sum is the sum of every element of a, a scalar.
func (x *Ctx) Sum(a Tensor) Tensor { return x.wrap(C.ggml_sum(x.c, a.c)) }

// CrossEntropyLoss is -sum(labels * log_softmax(logits)) / rows, a scalar.
func (x *Ctx) CrossEntropyLoss(logits, labels Tensor) Tensor {
	return x.wrap(C.ggml_cross_entropy_loss(x.c, logits.c, labels.c))
}

// Graph is a compute graph built in a context.
type Graph struct{ c *C.struct_ggml_cgraph }

// Valid reports whether g is a graph (not the zero Graph).
func (g Graph) Valid() bool { return g.c != nil }

// NewGraph makes a graph of at most size nodes; grads makes room for a
// backward pass.
func (x *Ctx) NewGraph(size int, grads bool) Graph {
	g := C.ggml_new_graph_custom(x.c, C.size_t(size), C.bool(grads))
	if g == nil {
		panic("ggml: out of context memory for the graph")
	}
	return Graph{g}
}

// Expand adds t and everything it depends on to the graph.
func (g Graph) Expand(t Tensor) { C.ggml_build_forward_expand(g.c, t.c) }

// BuildBackward adds the backward pass of the loss to the graph, creating
// the gradient tensors in x.
func (g Graph) BuildBackward(x *Ctx) { C.ggml_build_backward_expand(x.c, g.c, nil) }

// Grad is the gradient tensor of t (zero Tensor when t has none).
func (g Graph) Grad(t Tensor) Tensor { return Tensor{C.ggml_graph_get_grad(g.c, t.c)} }

// KeepInputsOf stops ggml's allocator from computing the named ops in place
// over one of their inputs (by marking the inputs as outputs). ggml's CPU
// kernels of RMS_NORM_BACK and SOFT_MAX_BACK overwrite their output before
// they have read all of their inputs, yet its allocator lists both as safe
// to run in place: without this, their gradients come out wrong.
func (g Graph) KeepInputsOf(ops ...string) int {
	marked := 0
	for i := 0; i < g.Nodes(); i++ {
		n := C.ggml_graph_node(g.c, C.int(i))
		desc := C.GoString(C.ggml_op_desc(n))
		for _, op := range ops {
			if desc != op {
				continue
			}
			for _, src := range n.src {
				if src != nil {
					C.ggml_set_output(src)
					marked++
				}
			}
		}
	}
	return marked
}

// UseTransposed rewrites the backward graph's input gradients through
// frozen weights. ggml's autodiff builds the gradient of mul_mat(W, x) with
// respect to x as out_prod(W, transpose(dy)); ggml's CPU out_prod is several
// times slower than mul_mat, and aborts on F16 weights. Given Wt, a
// contiguous copy of W transposed ([n_out, n_in]), the same gradient is
// mul_mat(Wt, dy): each such OUT_PROD node is turned into that MUL_MAT in
// place. It returns how many nodes it rewrote.
func (g Graph) UseTransposed(transposed map[Tensor]Tensor) int {
	n := 0
	uses := g.uses()
	for i := 0; i < g.Nodes(); i++ {
		node := C.ggml_graph_node(g.c, C.int(i))
		if node.op != C.GGML_OP_OUT_PROD {
			continue
		}
		wt, ok := transposed[Tensor{node.src[0]}]
		b := node.src[1]
		if !ok || b == nil || b.op != C.GGML_OP_TRANSPOSE || b.src[0] == nil {
			continue
		}
		dy := b.src[0]
		if dy.ne[0] != wt.c.ne[0] || dy.ne[1] != node.ne[1] || wt.c.ne[1] != node.ne[0] || dy.ne[2] != 1 || dy.ne[3] != 1 {
			continue
		}
		node.op = C.GGML_OP_MUL_MAT
		node.src[0] = wt.c
		node.src[1] = untransposed(b, uses)
		n++
	}
	return n
}

// OutProdsAsMulMat rewrites OUT_PROD nodes with F32 operands into MUL_MAT
// nodes. ggml's autodiff builds both gradients of every mul_mat as
// out_prods, and its CPU out_prod is a loop of axpys, several times slower
// than its mul_mat. out_prod(a, b)[i,j] = Σ_k a[i,k]·b[j,k] is
// mul_mat(aᵀ, bᵀ): an operand that is the transpose of another tensor is
// that tensor (made contiguous when it is not); any other operand gets a
// contiguous transposed copy, nodes added to the graph just before the
// product (see contF32). use(a, b) picks the nodes to rewrite (nil:
// MulMatFaster). Nodes are rewritten only while the graph has room for the
// copies. It returns how many nodes it rewrote.
func (g Graph) OutProdsAsMulMat(x *Ctx, use func(a, b Tensor) bool) int {
	if use == nil {
		use = MulMatFaster
	}
	n := g.Nodes()
	room := int(C.ggml_graph_size(g.c)) - n
	uses := g.uses()
	order := make([]*C.struct_ggml_tensor, 0, n)
	rewritten := 0
	for i := 0; i < n; i++ {
		node := C.ggml_graph_node(g.c, C.int(i))
		a, b := node.src[0], node.src[1]
		if node.op == C.GGML_OP_OUT_PROD && a._type == C.GGML_TYPE_F32 && b._type == C.GGML_TYPE_F32 &&
			use(Tensor{a}, Tensor{b}) && copiesNeeded(a, uses)+copiesNeeded(b, uses) <= room {
			at, preA := transposedOperand(x, a, uses)
			bt, preB := transposedOperand(x, b, uses)
			room -= len(preA) + len(preB)
			order = append(append(order, preA...), preB...)
			node.op = C.GGML_OP_MUL_MAT
			node.src[0], node.src[1] = at, bt
			rewritten++
		}
		order = append(order, node)
	}
	g.setNodes(order)
	return rewritten
}

// setNodes makes order, a reordering of g's nodes with nodes added, g's
// node list.
func (g Graph) setNodes(order []*C.struct_ggml_tensor) {
	for len(order) > g.Nodes() {
		C.ggml_graph_add_node(g.c, order[0]) // grows the node count; the order is written below
	}
	copy(unsafe.Slice(C.ggml_graph_nodes(g.c), len(order)), order)
}

// MulMatFaster reports whether out_prod(a, b) of F32 operands computes
// faster as a mul_mat on ggml's CPU backend, transposed copies included:
// measured on one thread (attention and LoRA shapes of a 135M model at
// context 512), 1.4-3.6x faster for the attention's four products, 7-28x
// for the LoRA B factor's two, about as fast for its A factor's gradient; 12x
// slower for the LoRA input gradient through A, whose contraction is the
// rank: ggml's mul_mat has no fast kernel for a contraction that short.
func MulMatFaster(a, b Tensor) bool { return a.Ne(1) >= 32 }

// copiesNeeded is how many nodes transposedOperand adds for t.
func copiesNeeded(t *C.struct_ggml_tensor, uses map[*C.struct_ggml_tensor]int) int {
	if t.op != C.GGML_OP_TRANSPOSE || t.src[0] == nil {
		return 2
	}
	if C.ggml_is_contiguous(t.src[0]) {
		return 0
	}
	return 1
}

// uses counts how many times each tensor is a source of a node.
func (g Graph) uses() map[*C.struct_ggml_tensor]int {
	uses := map[*C.struct_ggml_tensor]int{}
	for i := 0; i < g.Nodes(); i++ {
		for _, s := range C.ggml_graph_node(g.c, C.int(i)).src {
			if s != nil {
				uses[s]++
			}
		}
	}
	return uses
}

// untransposed is the tensor that t, a TRANSPOSE node, transposed, for a
// product rewritten to read that instead of t. When t has no other reader
// (autodiff makes a transpose for each product), t itself becomes a view
// of that tensor: left in the graph unread, it would keep its source's
// memory from being reused until the end of the graph.
func untransposed(t *C.struct_ggml_tensor, uses map[*C.struct_ggml_tensor]int) *C.struct_ggml_tensor {
	src := t.src[0]
	if uses[t] != 1 || t.flags&tensorFlagOutput != 0 {
		return src
	}
	t.op = C.GGML_OP_VIEW
	t.ne[0], t.ne[1] = src.ne[0], src.ne[1]
	t.nb[0], t.nb[1] = src.nb[0], src.nb[1]
	return t
}

// transposedOperand is a contiguous tensor holding tᵀ, and the nodes (in
// order) that make it.
func transposedOperand(x *Ctx, t *C.struct_ggml_tensor, uses map[*C.struct_ggml_tensor]int) (*C.struct_ggml_tensor, []*C.struct_ggml_tensor) {
	if t.op == C.GGML_OP_TRANSPOSE && t.src[0] != nil {
		src := untransposed(t, uses)
		if C.ggml_is_contiguous(src) {
			return src, nil
		}
		c := x.contF32(Tensor{src}).c
		return c, []*C.struct_ggml_tensor{c}
	}
	tr := x.Transpose(Tensor{t}).c
	c := x.contF32(Tensor{tr}).c
	return c, []*C.struct_ggml_tensor{tr, c}
}

// tensorFlagOutput is ggml's GGML_TENSOR_FLAG_OUTPUT.
const tensorFlagOutput = 2

// isViewOp reports whether t is a VIEW node (a check of capi.h's value).
func isViewOp(t Tensor) bool { return t.c.op == C.GGML_OP_VIEW }

// OutProdTypes lists the types of the first operand of every OUT_PROD
// node left in the graph.
func (g Graph) OutProdTypes() []Type {
	var out []Type
	for i := 0; i < g.Nodes(); i++ {
		node := C.ggml_graph_node(g.c, C.int(i))
		if node.op == C.GGML_OP_OUT_PROD {
			out = append(out, Type(node.src[0]._type))
		}
	}
	return out
}

// Nodes is the number of nodes.
func (g Graph) Nodes() int { return int(C.ggml_graph_n_nodes(g.c)) }

// Backend is a compute backend (the CPU, or a GPU when one is loaded).
type Backend struct{ c C.ggml_backend_t }

// NewCPUBackend makes a CPU backend using threads threads.
func NewCPUBackend(threads int) (*Backend, error) {
	b := C.ggml_backend_cpu_init()
	if b == nil {
		return nil, errors.New("ggml: could not start the CPU backend")
	}
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	C.ggml_backend_cpu_set_n_threads(b, C.int(threads))
	return &Backend{c: b}, nil
}

// SetThreads sets how many threads the backend computes with from its
// next graph on (threads <= 0: every core). Backends without a thread count
// (GPUs) ignore it; the CPU and BLAS backends have one.
func (b *Backend) SetThreads(threads int) { b.setThreads(threads) }

// Close frees the backend.
func (b *Backend) Close() {
	if b != nil && b.c != nil {
		C.ggml_backend_free(b.c)
		b.c = nil
	}
}

// Buffer is backend memory holding tensor data.
type Buffer struct{ c C.ggml_backend_buffer_t }

// Close frees the buffer.
func (b *Buffer) Close() {
	if b != nil && b.c != nil {
		C.ggml_backend_buffer_free(b.c)
		b.c = nil
	}
}

// Size is the buffer's size in bytes.
func (b *Buffer) Size() int { return int(C.ggml_backend_buffer_get_size(b.c)) }

// AllocTensors allocates every tensor of x in one buffer of backend b.
func (x *Ctx) AllocTensors(b *Backend) (*Buffer, error) {
	buf := C.ggml_backend_alloc_ctx_tensors(x.c, b.c)
	if buf == nil {
		return nil, errors.New("ggml: out of memory allocating tensors")
	}
	return &Buffer{c: buf}, nil
}

// HostBuffer wraps size bytes of memory at ptr (memory-mapped file data) as
// a CPU buffer. The memory must outlive the buffer.
func HostBuffer(ptr unsafe.Pointer, size int) (*Buffer, error) {
	buf := C.ggml_backend_cpu_buffer_from_ptr(ptr, C.size_t(size))
	if buf == nil {
		return nil, errors.New("ggml: could not wrap host memory")
	}
	return &Buffer{c: buf}, nil
}

// Place points t's data at addr inside buffer b.
func (b *Buffer) Place(t Tensor, addr unsafe.Pointer) error {
	if st := C.ggml_backend_tensor_alloc(b.c, t.c, addr); st != C.GGML_STATUS_SUCCESS {
		return fmt.Errorf("ggml: could not place tensor %s (status %d)", t.Name(), int(st))
	}
	return nil
}

// Sched runs graphs on backends through ggml's backend scheduler, which
// allocates the intermediate tensors and splits work between backends.
type Sched struct {
	c        C.ggml_backend_sched_t
	backends []C.ggml_backend_t
	owners   []*Backend
}

// NewSched makes a scheduler over backends for graphs of at most graphSize
// nodes. The order is the priority: a node runs on the first backend that
// supports it and can use its inputs' memory; the CPU backend must be last
// (ggml aborts otherwise, so NewSched checks).
func NewSched(backends []*Backend, graphSize int) (*Sched, error) {
	if len(backends) == 0 || !backends[len(backends)-1].IsCPU() {
		return nil, errors.New("ggml: a scheduler needs the CPU backend last")
	}
	s := &Sched{owners: append([]*Backend(nil), backends...)}
	for _, b := range backends {
		s.backends = append(s.backends, b.c)
	}
	cb := (*C.ggml_backend_t)(C.malloc(C.size_t(len(s.backends)) * C.size_t(unsafe.Sizeof(s.backends[0]))))
	defer C.free(unsafe.Pointer(cb))
	copy(unsafe.Slice(cb, len(s.backends)), s.backends)
	s.c = C.ggml_backend_sched_new(cb, nil, C.int(len(s.backends)), C.size_t(graphSize), false, true)
	if s.c == nil {
		return nil, errors.New("ggml: could not make a backend scheduler")
	}
	return s, nil
}

// Close frees the scheduler.
func (s *Sched) Close() {
	if s != nil && s.c != nil {
		C.ggml_backend_sched_free(s.c)
		s.c = nil
	}
}

// Alloc allocates g's intermediate tensors.
func (s *Sched) Alloc(g Graph) error {
	if !C.ggml_backend_sched_alloc_graph(s.c, g.c) {
		return errors.New("ggml: out of memory allocating the compute graph")
	}
	return nil
}

// Compute runs g (allocating it first when needed).
func (s *Sched) Compute(g Graph) error {
	if st := C.ggml_backend_sched_graph_compute(s.c, g.c); st != C.GGML_STATUS_SUCCESS {
		return fmt.Errorf("ggml: graph compute failed (status %d)", int(st))
	}
	return nil
}

// ReserveSize is the compute memory g needs on all the scheduler's
// backends together, measured by ggml's allocator without allocating.
func (s *Sched) ReserveSize(g Graph) int {
	sizes := make([]C.size_t, len(s.backends))
	C.ggml_backend_sched_reserve_size(s.c, g.c, &sizes[0])
	n := 0
	for _, v := range sizes {
		n += int(v)
	}
	return n
}

// Reset forgets the allocation of the last graph.
func (s *Sched) Reset() { C.ggml_backend_sched_reset(s.c) }

// BufferSize is the compute memory the scheduler holds on backend b.
func (s *Sched) BufferSize(b *Backend) int {
	return int(C.ggml_backend_sched_get_buffer_size(s.c, b.c))
}
