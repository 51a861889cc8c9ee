package ggml

/*
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include "capi.h"

// ft_prof records, for every node the scheduler computes, its op, the type
// of its first operand, its output type and the nanoseconds it took. With
// the callback set, the scheduler computes the graph one node at a time
// (each node a graph of its own, the threads woken and joined for it, as
// they are between any two nodes of a graph).
typedef struct {
	int32_t op, src0, type, pad;
	int64_t ns;
	int64_t flop;
} ft_prof_rec;

typedef struct {
	ft_prof_rec * recs;
	int n, cap;
	int64_t start;
} ft_prof;

static int64_t ft_now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool ft_prof_cb(struct ggml_tensor * t, bool ask, void * user_data) {
	ft_prof * p = (ft_prof *) user_data;
	if (ask) {
		p->start = ft_now();
		return true;
	}
	int64_t ns = ft_now() - p->start;
	if (p->n == p->cap) {
		int cap = p->cap ? 2 * p->cap : 4096;
		ft_prof_rec * r = (ft_prof_rec *) realloc(p->recs, (size_t) cap * sizeof(ft_prof_rec));
		if (!r) {
			return true;
		}
		p->recs = r;
		p->cap = cap;
	}
	ft_prof_rec * r = &p->recs[p->n++];
	r->op = t->op;
	r->src0 = t->src[0] ? (int32_t) t->src[0]->type : -1;
	r->type = t->type;
	r->ns = ns;
	r->flop = 0;
	if (t->op == GGML_OP_MUL_MAT || t->op == GGML_OP_OUT_PROD) {
		// 2·n·m·k: the output's values times the shared dimension.
		int64_t k = t->op == GGML_OP_MUL_MAT ? t->src[0]->ne[0] : t->src[0]->ne[1];
		r->flop = 2 * k * t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
	}
	return true;
}

static void ft_prof_set(ggml_backend_sched_t s, ft_prof * p) {
	ggml_backend_sched_set_eval_callback(s, p ? ft_prof_cb : NULL, p);
}

static const char * ft_op_name(int op) {
	struct ggml_tensor t = {0};
	t.op = (enum ggml_op) op;
	return ggml_op_desc(&t);
}
*/
import "C"

import (
	"fmt"
	"sort"
	"strings"
	"time"
	"unsafe"
)

// Profile is the time a scheduler's computations took, node by node,
// summed by op kind (the op, its first operand's type and its output's
// type). Set it on a scheduler with Sched.SetProfile; Close frees it.
type Profile struct {
	c      *C.ft_prof
	Graphs int // computations recorded
	Wall   time.Duration
	kinds  map[string]*OpTime
}

// OpTime is one op kind's share of a Profile.
type OpTime struct {
	Kind  string // e.g. "MUL_MAT q4_1→f32"
	Nodes int
	Time  time.Duration
	FLOP  float64 // matrix products only
}

// NewProfile makes an empty profile.
func NewProfile() *Profile {
	return &Profile{c: (*C.ft_prof)(C.calloc(1, C.size_t(unsafe.Sizeof(C.ft_prof{})))), kinds: map[string]*OpTime{}}
}

// Close frees the profile's C memory.
func (p *Profile) Close() {
	if p == nil || p.c == nil {
		return
	}
	C.free(unsafe.Pointer(p.c.recs))
	C.free(unsafe.Pointer(p.c))
	p.c = nil
}

// ComputeProfiled runs g as Compute does, node by node, adding each node's
// time to p.
func (s *Sched) ComputeProfiled(g Graph, p *Profile) error {
	C.ft_prof_set(s.c, p.c)
	defer C.ft_prof_set(s.c, nil)
	p.c.n = 0
	start := time.Now()
	err := s.Compute(g)
	p.Wall += time.Since(start)
	p.Graphs++
	recs := unsafe.Slice(p.c.recs, int(p.c.n))
	for _, r := range recs {
		kind := C.GoString(C.ft_op_name(C.int(r.op)))
		if r.src0 >= 0 {
			kind += " " + Type(r.src0).String()
		}
		kind += "→" + Type(r._type).String()
		k := p.kinds[kind]
		if k == nil {
			k = &OpTime{Kind: kind}
			p.kinds[kind] = k
		}
		k.Nodes++
		k.Time += time.Duration(r.ns)
		k.FLOP += float64(r.flop)
	}
	return err
}

// Kinds are the op kinds recorded, the slowest first.
func (p *Profile) Kinds() []OpTime {
	var ks []OpTime
	for _, k := range p.kinds {
		ks = append(ks, *k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].Time > ks[j].Time })
	return ks
}

// String is a table of the op kinds, the slowest first, with each kind's
// share of the nodes' time and, for matrix products, GFLOP/s.
func (p *Profile) String() string {
	var b strings.Builder
	var total time.Duration
	nodes := 0
	ks := p.Kinds()
	for _, k := range ks {
		total += k.Time
		nodes += k.Nodes
	}
	fmt.Fprintf(&b, "%d graphs, %d nodes, %.2f s in nodes, %.2f s wall\n", p.Graphs, nodes, total.Seconds(), p.Wall.Seconds())
	fmt.Fprintf(&b, "%-36s %7s %9s %6s %9s\n", "op kind", "nodes", "seconds", "share", "GFLOP/s")
	for _, k := range ks {
		gf := ""
		if k.FLOP > 0 && k.Time > 0 {
			gf = fmt.Sprintf("%9.1f", k.FLOP/k.Time.Seconds()/1e9)
		}
		fmt.Fprintf(&b, "%-36s %7d %9.3f %5.1f%% %s\n", k.Kind, k.Nodes, k.Time.Seconds(), 100*k.Time.Seconds()/max(total.Seconds(), 1e-9), gf)
	}
	return b.String()
}

// Reset forgets what p recorded.
func (p *Profile) Reset() {
	p.Graphs, p.Wall = 0, 0
	p.kinds = map[string]*OpTime{}
}
