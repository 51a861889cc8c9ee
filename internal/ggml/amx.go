package ggml

/*
#include <string.h>
#include "amx.h"

static struct ggml_tensor * ft_amx_op(struct ggml_context * ctx, struct ggml_tensor * packed, struct ggml_tensor * x, int64_t n) {
	struct ggml_tensor * args[2] = {packed, x};
	return ggml_custom_4d(ctx, GGML_TYPE_F32, n, x->ne[1], 1, 1, args, 2, ft_amx_mul_mat, GGML_N_TASKS_MAX, NULL);
}

static struct ggml_tensor * ft_amx_pack_rows_op(struct ggml_context * ctx, struct ggml_tensor * rows, struct ggml_tensor * bwd, struct ggml_tensor * fwd, int64_t r0) {
	struct ggml_tensor * args[3] = {rows, bwd, fwd};
	return ggml_custom_4d(ctx, GGML_TYPE_F32, 1, 1, 1, 1, args, fwd != NULL ? 3 : 2, ft_amx_pack_rows, GGML_N_TASKS_MAX, (void *) (intptr_t) r0);
}

static struct ggml_tensor * ft_amx_pack_in(struct ggml_context * ctx, struct ggml_tensor * w, int64_t kp, int64_t np, int transposed) {
	struct ggml_tensor * args[1] = {w};
	return ggml_custom_4d(ctx, GGML_TYPE_BF16, kp, np, 1, 1, args, 1, ft_amx_pack_op, GGML_N_TASKS_MAX, transposed ? (void *) 1 : NULL);
}

static struct ggml_tensor * ft_amx_op2(struct ggml_context * ctx, struct ggml_tensor * a, struct ggml_tensor * b) {
	struct ggml_tensor * args[2] = {a, b};
	return ggml_custom_4d(ctx, GGML_TYPE_F32, a->ne[1], b->ne[1], b->ne[2], b->ne[3], args, 2, ft_amx_mul_mat2, GGML_N_TASKS_MAX, NULL);
}

// ft_amx_become2 turns node, an F32 MUL_MAT of two F32 operands, into
// ft_amx_mul_mat2 of the same operands.
static void ft_amx_become2(struct ggml_context * ctx, struct ggml_tensor * node) {
	struct ggml_tensor * t = ft_amx_op2(ctx, node->src[0], node->src[1]);
	node->op = t->op;
	memcpy(node->op_params, t->op_params, sizeof(node->op_params));
	memcpy(node->src, t->src, sizeof(node->src));
}

// ft_amx_become turns node, an F32 [n, m] product already in a graph,
// into the AMX product of packed and x: the op and its parameters are
// those of a node made for the purpose (left unused in ctx).
static void ft_amx_become(struct ggml_context * ctx, struct ggml_tensor * node, struct ggml_tensor * packed, struct ggml_tensor * x) {
	struct ggml_tensor * t = ft_amx_op(ctx, packed, x, node->ne[0]);
	node->op = t->op;
	memcpy(node->op_params, t->op_params, sizeof(node->op_params));
	memcpy(node->src, t->src, sizeof(node->src));
}
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"
)

// amxInit is ft_amx_init's result, asked once per process: the kernel's
// permission to use AMX tiles is the process's, for all its threads, and
// must be granted before any thread uses them.
var amxInit = sync.OnceValue(func() int {
	if runtime.GOARCH != "amd64" || runtime.GOOS != "linux" || os.Getenv("FINETUNE_NO_AMX") != "" {
		return C.FT_AMX_NO_CPU
	}
	return int(C.ft_amx_init())
})

// AMX reports whether the AMX BF16 products (AMXMulMat) can run: the CPU
// has AMX-TILE, AMX-BF16 and AVX512-BF16, the OS manages the tile state
// and Linux granted the process the use of the tiles. FINETUNE_NO_AMX set
// to anything turns them off.
func AMX() bool { return amxInit() == C.FT_AMX_OK }

// AMXStatus says why AMX products can or cannot run, for logs.
func AMXStatus() string {
	switch amxInit() {
	case C.FT_AMX_OK:
		return "available"
	case C.FT_AMX_NO_OS:
		return "the OS does not enable the tile state"
	case C.FT_AMX_NO_PERMISSION:
		return "Linux refused the tile permission (arch_prctl ARCH_REQ_XCOMP_PERM)"
	}
	if os.Getenv("FINETUNE_NO_AMX") != "" {
		return "turned off by FINETUNE_NO_AMX"
	}
	return "the CPU has no AMX-BF16"
}

// PackedShape is the shape of the packed copy of a matrix-product operand
// of ggml shape [k, n]: k rounded up to 32 values by n rounded up to 32.
func PackedShape(k, n int) (kp, np int) { return (k + 31) / 32 * 32, (n + 31) / 32 * 32 }

// NewPacked makes in x a tensor for the packed copy of an operand of ggml
// shape [k, n] (see PackedShape; BF16 values in AMX's tile layout). Its
// memory must be zeroed (ZeroPacked) before the values are packed in.
func (x *Ctx) NewPacked(k, n int) Tensor {
	kp, np := PackedShape(k, n)
	return x.New2D(TypeBF16, kp, np)
}

// hostData is t's data pointer, checked to be in host memory.
func (t Tensor) hostData() unsafe.Pointer {
	if t.c.data == nil || t.c.buffer == nil || !C.ggml_backend_buffer_is_host(t.c.buffer) {
		panic("ggml: " + t.Name() + " is not in host memory")
	}
	return t.c.data
}

// ZeroPacked zeroes a packed tensor's memory (its padding stays zero).
func ZeroPacked(p Tensor) { C.memset(p.hostData(), 0, C.size_t(p.Bytes())) }

// Pack writes a block of an operand A (ggml shape [k, n]: n rows of k
// values) into its packed copy p, rounded to BF16: A[i][j] =
// src[(i-n0)·sn + (j-k0)·sk] for rows i in [n0, n1) and values j in
// [k0, k1). Row-major blocks of A have sn = values a row, sk = 1; blocks
// of Aᵀ (rows of a weight whose transpose A is) sn = 1, sk = values a row.
func Pack(p Tensor, src []float32, sn, sk, n0, n1, k0, k1 int) {
	kp, np := p.Ne(0), p.Ne(1)
	if p.Type() != TypeBF16 || kp%32 != 0 || np%32 != 0 || n0 < 0 || k0 < 0 || n1 > np || k1 > kp {
		panic(fmt.Sprintf("ggml: packing rows [%d, %d) values [%d, %d) into %s of shape %v", n0, n1, k0, k1, p.Name(), p.Shape()))
	}
	if n1 <= n0 || k1 <= k0 {
		return
	}
	if last := (n1-n0-1)*sn + (k1-k0-1)*sk; last >= len(src) || sn < 0 || sk < 0 {
		panic(fmt.Sprintf("ggml: packing from %d values with strides %d, %d", len(src), sn, sk))
	}
	C.ft_amx_pack((*C.uint16_t)(p.hostData()), C.int64_t(kp), (*C.float)(unsafe.Pointer(&src[0])), C.int64_t(sn), C.int64_t(sk),
		C.int64_t(n0), C.int64_t(n1), C.int64_t(k0), C.int64_t(k1))
}

// PackRows is a node that packs rows [r0, r0 + rows) of a weight W
// ([n_in, n_out]), given in F32 as rows ([n_in, rows], rows contiguous),
// into bwd, the packed copy of Wᵀ (NewPacked(n_out, n_in)), and into fwd,
// the packed copy of W (NewPacked(n_in, n_out)), unless fwd is the zero
// Tensor. The packed tensors must be in host memory, zeroed first
// (ZeroPacked); the node's own result is a placeholder.
func (x *Ctx) PackRows(rows, bwd, fwd Tensor, r0 int) Tensor {
	nIn := rows.Ne(0)
	kp, np := PackedShape(bwd.Ne(0), nIn)
	if rows.Type() != TypeF32 || rows.Nb(0) != 4 || bwd.Ne(0) != kp || bwd.Ne(1) != np || r0 < 0 || r0+rows.Ne(1) > kp ||
		fwd.Valid() && (fwd.Ne(0) != np || fwd.Ne(1) != kp) {
		panic(fmt.Sprintf("ggml: packing rows [%d, %d) of shape %v into a packed copy of shape %v", r0, r0+rows.Ne(1), rows.Shape(), bwd.Shape()))
	}
	return x.wrap(C.ft_amx_pack_rows_op(x.c, rows.c, bwd.c, fwd.c, C.int64_t(r0)))
}

// PackIn is a node whose result is the packed copy of w, an F32 weight
// [n_in, n_out] with contiguous rows (NewPacked(n_in, n_out)), or of wᵀ
// when transposed (NewPacked(n_out, n_in)).
func (x *Ctx) PackIn(w Tensor, transposed bool) Tensor {
	if w.Type() != TypeF32 || w.Nb(0) != 4 || w.Ne(2) != 1 || w.Ne(3) != 1 {
		panic(fmt.Sprintf("ggml: packing a %s tensor of shape %v", w.Type(), w.Shape()))
	}
	k, n := w.Ne(0), w.Ne(1)
	if transposed {
		k, n = n, k
	}
	kp, np := PackedShape(k, n)
	t := 0
	if transposed {
		t = 1
	}
	return x.wrap(C.ft_amx_pack_in(x.c, w.c, C.int64_t(kp), C.int64_t(np), C.int(t)))
}

// AMXMulMat is MulMat(a, x) for a of ggml shape [k, n] packed into p
// (Pack): [n, x's ne1], computed on AMX tiles with x rounded to BF16 and
// F32 sums. x must be F32, two-dimensional, its rows contiguous. Only
// where AMX() holds.
func (c *Ctx) AMXMulMat(p, x Tensor, n int) Tensor {
	if err := amxOperands(p.c, x.c, n); err != nil {
		panic(err)
	}
	return c.wrap(C.ft_amx_op(c.c, p.c, x.c, C.int64_t(n)))
}

// amxOperands checks a packed weight p for n rows and an input x.
func amxOperands(p, x *C.struct_ggml_tensor, n int) error {
	kp, np := PackedShape(int(x.ne[0]), n)
	switch {
	case !AMX():
		return fmt.Errorf("ggml: AMX products cannot run here: %s", AMXStatus())
	case p._type != C.GGML_TYPE_BF16 || int(p.ne[0]) != kp || int(p.ne[1]) != np:
		return fmt.Errorf("ggml: packed operand of shape [%d, %d] for an input of %d values and %d rows", p.ne[0], p.ne[1], x.ne[0], n)
	case x._type != C.GGML_TYPE_F32 || x.nb[0] != 4 || x.ne[2] != 1 || x.ne[3] != 1:
		return fmt.Errorf("ggml: AMX product of a %s input of shape [%d, %d, %d, %d]", Type(x._type), x.ne[0], x.ne[1], x.ne[2], x.ne[3])
	}
	return nil
}

// UsePacked turns the graph's products with frozen weights into AMX
// products on their packed copies (AMXMulMat). fwd maps a weight W
// ([n_in, n_out]) to the packed copy of W, bwd to the packed copy of Wᵀ
// ([n_out, n_in]). A MUL_MAT node mul_mat(W, x) with W in fwd (the forward
// product) and an OUT_PROD node out_prod(W, transpose(dy)) with W in bwd
// (the input gradient ggml's autodiff builds, mul_mat(Wᵀ, dy)) are
// rewritten in place, when the input is F32 with contiguous rows and two
// dimensions. A weight W not in the map for which inGraph(W, transposed)
// holds (when inGraph is not nil; transposed for the input gradient's
// product) is packed in the graph instead, just before each product (W
// cast to F32 and packed: two nodes, added while the graph has room). It must run before
// OutProdsAsMulMat (which would transpose an F32 weight in the graph) and
// returns how many nodes it rewrote.
func (g Graph) UsePacked(x *Ctx, fwd, bwd map[Tensor]Tensor, inGraph func(w Tensor, transposed bool) bool) int {
	if !AMX() {
		return 0
	}
	n := g.Nodes()
	room := int(C.ggml_graph_size(g.c)) - n
	uses := g.uses()
	order := make([]*C.struct_ggml_tensor, 0, n)
	rewritten := 0
	// packed is w's packed copy (of wᵀ when transposed), made in the graph
	// (the nodes appended to order) when it is not in m.
	packed := func(m map[Tensor]Tensor, w Tensor, transposed bool) (Tensor, bool) {
		if p, ok := m[w]; ok {
			return p, true
		}
		if inGraph == nil || !inGraph(w, transposed) || room < 2 {
			return Tensor{}, false
		}
		src := w
		if w.Type() != TypeF32 {
			src = x.Cast(w, TypeF32)
			order = append(order, src.c)
			room--
		}
		p := x.PackIn(src, transposed)
		order = append(order, p.c)
		room--
		return p, true
	}
	for i := 0; i < n; i++ {
		node := C.ggml_graph_node(g.c, C.int(i))
		if node._type == C.GGML_TYPE_F32 && node.ne[2] == 1 && node.ne[3] == 1 {
			w := Tensor{node.src[0]}
			switch node.op {
			case C.GGML_OP_MUL_MAT:
				in := node.src[1]
				if in.ne[0] != w.c.ne[0] || node.ne[0] != w.c.ne[1] || in._type != C.GGML_TYPE_F32 || in.nb[0] != 4 || in.ne[2] != 1 || in.ne[3] != 1 {
					break
				}
				if p, ok := packed(fwd, w, false); ok && amxOperands(p.c, in, int(node.ne[0])) == nil {
					C.ft_amx_become(x.c, node, p.c, in)
					rewritten++
				}
			case C.GGML_OP_OUT_PROD:
				b := node.src[1]
				if b == nil || b.op != C.GGML_OP_TRANSPOSE || b.src[0] == nil {
					break
				}
				dy := b.src[0]
				if dy.ne[0] != w.c.ne[1] || node.ne[0] != w.c.ne[0] || dy.ne[1] != node.ne[1] || dy._type != C.GGML_TYPE_F32 || dy.nb[0] != 4 || dy.ne[2] != 1 || dy.ne[3] != 1 {
					break
				}
				if p, ok := packed(bwd, w, true); ok && amxOperands(p.c, dy, int(node.ne[0])) == nil {
					C.ft_amx_become(x.c, node, p.c, untransposed(b, uses))
					rewritten++
				}
			}
		}
		order = append(order, node)
	}
	g.setNodes(order)
	return rewritten
}

// ProductsLeft counts the nodes UsePacked would have rewritten but did
// not: MUL_MAT nodes whose src0 is a key of fwd and OUT_PROD nodes whose
// src0 is a key of bwd, or either whose src0 satisfies inGraph (when not
// nil; transposed for an OUT_PROD).
func (g Graph) ProductsLeft(fwd, bwd map[Tensor]Tensor, inGraph func(w Tensor, transposed bool) bool) int {
	n := 0
	for i := 0; i < g.Nodes(); i++ {
		node := C.ggml_graph_node(g.c, C.int(i))
		if node.op != C.GGML_OP_MUL_MAT && node.op != C.GGML_OP_OUT_PROD {
			continue
		}
		w := Tensor{node.src[0]}
		m, transposed := fwd, node.op == C.GGML_OP_OUT_PROD
		if transposed {
			m = bwd
		}
		if _, ok := m[w]; ok || inGraph != nil && inGraph(w, transposed) {
			n++
		}
	}
	return n
}

// AMXMulMatF32 is MulMat(a, b) of two F32 tensors computed on AMX tiles,
// both rounded to BF16, with F32 sums: a [k, n, ne02, ne03], b [k, m, ne2,
// ne3], a broadcast over b's ne2 and ne3 as MulMat does; rows contiguous.
// Only where AMX() holds.
func (c *Ctx) AMXMulMatF32(a, b Tensor) Tensor {
	if !amxActOperands(a.c, b.c) {
		panic(fmt.Sprintf("ggml: AMX product of %s %v and %s %v", a.Type(), a.Shape(), b.Type(), b.Shape()))
	}
	return c.wrap(C.ft_amx_op2(c.c, a.c, b.c))
}

// amxActOperands reports whether ft_amx_mul_mat2 takes a and b.
func amxActOperands(a, b *C.struct_ggml_tensor) bool {
	return AMX() && a._type == C.GGML_TYPE_F32 && b._type == C.GGML_TYPE_F32 && a.nb[0] == 4 && b.nb[0] == 4 &&
		a.ne[0] == b.ne[0] && a.ne[2] > 0 && a.ne[3] > 0 && b.ne[2]%a.ne[2] == 0 && b.ne[3]%a.ne[3] == 0 &&
		a.nb[1]%4 == 0 && a.ne[0] <= 4096
}

// UseAMXProducts turns the graph's MUL_MAT nodes of two F32 operands
// (activations: the attention's products and the LoRA factors') for which
// use(k, n, m) holds into AMX products of both rounded to BF16
// (AMXMulMatF32), in place. It returns how many it rewrote.
func (g Graph) UseAMXProducts(x *Ctx, use func(k, n, m int) bool) int {
	if !AMX() {
		return 0
	}
	rewritten := 0
	for i := 0; i < g.Nodes(); i++ {
		node := C.ggml_graph_node(g.c, C.int(i))
		if node.op != C.GGML_OP_MUL_MAT || node._type != C.GGML_TYPE_F32 || !amxActOperands(node.src[0], node.src[1]) {
			continue
		}
		if !bool(C.ggml_is_contiguous(node)) || !use(int(node.src[0].ne[0]), int(node.src[0].ne[1]), int(node.src[1].ne[1])) {
			continue
		}
		C.ft_amx_become2(x.c, node)
		rewritten++
	}
	return rewritten
}

// AMXProductFaster reports whether UseAMXProducts should rewrite a
// product of activations with a contraction of k values, src0 of n rows
// and src1 of m rows: the kernel packs each slice of src0 (k·n values)
// for its m rows, so it pays only for m large enough. Measured on one
// thread at SmolLM2-135M's shapes (BenchmarkAMXMulMatF32): 2.2-7x
// ggml's F32 product for m = 512 (the attention's products and the LoRA
// factors' with contraction 16 included), 0.14-0.6x for m of 16 or 64.
func AMXProductFaster(k, n, m int) bool { return m >= 256 }
