package ggml

/*
#include <stdint.h>
#include <string.h>
#include "capi.h"

// ft_cont_f32 writes a (F32, any strides) into dst, a contiguous tensor of
// a's shape, in 32x32 tiles of dimensions 0 and 1, so that a transposed a
// is read a few cache lines at a time instead of one value per line. The
// tiles are shared out among the threads.
static void ft_cont_f32(struct ggml_tensor * dst, const struct ggml_tensor * a, int ith, int nth, void * userdata) {
	(void) userdata;
	enum { B = 32 };
	const int64_t ne0 = a->ne[0], ne1 = a->ne[1], ne2 = a->ne[2], ne3 = a->ne[3];
	const size_t nb0 = a->nb[0], nb1 = a->nb[1], nb2 = a->nb[2], nb3 = a->nb[3];
	const int64_t tiles1 = (ne1 + B - 1) / B;
	const int64_t jobs = tiles1 * ne2 * ne3;
	const int64_t per = (jobs + nth - 1) / nth;
	const int64_t j0 = per * ith, j1 = j0 + per < jobs ? j0 + per : jobs;
	for (int64_t j = j0; j < j1; j++) {
		const int64_t t1 = j % tiles1, i2 = (j / tiles1) % ne2, i3 = j / (tiles1 * ne2);
		const char * src = (const char *) a->data + i2 * nb2 + i3 * nb3;
		float * out = (float *) dst->data + (i3 * ne2 + i2) * ne1 * ne0;
		const int64_t r0 = t1 * B, r1 = r0 + B < ne1 ? r0 + B : ne1;
		for (int64_t c0 = 0; c0 < ne0; c0 += B) {
			const int64_t c1 = c0 + B < ne0 ? c0 + B : ne0;
			for (int64_t i1 = r0; i1 < r1; i1++) {
				const char * s = src + i1 * nb1;
				float * d = out + i1 * ne0;
				for (int64_t i0 = c0; i0 < c1; i0++) {
					d[i0] = *(const float *) (s + i0 * nb0);
				}
			}
		}
	}
}

static struct ggml_tensor * ft_cont(struct ggml_context * ctx, struct ggml_tensor * a) {
	return ggml_map_custom1(ctx, a, ft_cont_f32, GGML_N_TASKS_MAX, NULL);
}
*/
import "C"

// contF32 is a contiguous copy of t, an F32 tensor with any strides (a
// transposed or permuted view): ggml's own cont reads such a view one value
// per cache line, several times slower than this tiled copy.
func (x *Ctx) contF32(t Tensor) Tensor {
	if t.Type() != TypeF32 {
		panic("ggml: contF32 of a " + t.Type().String() + " tensor")
	}
	return x.wrap(C.ft_cont(x.c, t.c))
}
