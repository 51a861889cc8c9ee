package ggml

/*
#include <stdint.h>
#include <string.h>
#include "capi.h"

static uint64_t ft_mix64(uint64_t z) {
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

// ft_dropout_fill writes dst's dropout mask: value i is 0 where the hash
// of (seed, stream, i) falls below the threshold, else the keep scale. The
// seed tensor (src 0, I32) holds the seed's low and high words, the
// threshold (p·2³²) and the keep scale's bits; the stream is userdata. The
// same seed gives the same mask whatever the threads.
static void ft_dropout_fill(struct ggml_tensor * dst, int ith, int nth, void * userdata) {
	const uint32_t * s = (const uint32_t *) dst->src[0]->data;
	const uint64_t seed = (uint64_t) s[0] | ((uint64_t) s[1] << 32);
	const uint32_t thr = s[2];
	float keep;
	memcpy(&keep, &s[3], sizeof keep);
	const uint64_t base = ft_mix64(seed ^ ft_mix64((uint64_t) (uintptr_t) userdata));
	const int64_t n = ggml_nelements(dst);
	const int64_t per = (n + nth - 1) / nth;
	const int64_t i0 = per * ith, i1 = i0 + per < n ? i0 + per : n;
	float * d = (float *) dst->data;
	for (int64_t i = i0; i < i1; i++) {
		d[i] = (uint32_t) (ft_mix64(base + (uint64_t) i) >> 32) < thr ? 0.0f : keep;
	}
}

static struct ggml_tensor * ft_dropout_mask(struct ggml_context * ctx, struct ggml_tensor * seed, uintptr_t stream, int64_t ne0, int64_t ne1) {
	struct ggml_tensor * args[1] = {seed};
	return ggml_custom_4d(ctx, GGML_TYPE_F32, ne0, ne1, 1, 1, args, 1, ft_dropout_fill, GGML_N_TASKS_MAX, (void *) stream);
}
*/
import "C"

import "math"

// DropoutMask is a [ne0, ne1] mask of inverted dropout, computed in the
// graph from seed (an I32 [4] input set to DropoutSeed's words): each
// value is 0 with probability p, else 1/(1-p), from a hash of the seed,
// stream and the value's index. Masks of different streams are
// independent; the same seed and stream give the same mask in every
// graph, so a recomputed layer drops what its forward pass dropped.
func (x *Ctx) DropoutMask(seed Tensor, stream, ne0, ne1 int) Tensor {
	return x.wrap(C.ft_dropout_mask(x.c, seed.c, C.uintptr_t(stream), C.int64_t(ne0), C.int64_t(ne1)))
}

// DropoutSeed is the value of DropoutMask's seed input for a seed and a
// dropout probability p in [0, 1).
func DropoutSeed(seed uint64, p float64) []int32 {
	thr := uint32(math.Min(p*(1<<32), math.MaxUint32))
	keep := math.Float32bits(float32(1 / (1 - p)))
	return []int32{int32(uint32(seed)), int32(uint32(seed >> 32)), int32(thr), int32(keep)}
}
