// amx.c: matrix products with a frozen BF16 weight on Intel AMX tiles.
//
// The product has ggml's MUL_MAT semantics: for a weight A of ggml shape
// [K, N] (N rows of K values) and an F32 input X [K, M], the result D
// [N, M] is D[m][n] = sum_k A[n][k] * X[m][k]. A is packed once (weights
// are frozen) into the layout TDPBF16PS takes as its second operand; X is
// rounded to BF16 as it is read; the sums are F32.
//
// The build compiles ggml without AMX (-mno-amx-*), so the functions that
// use tiles enable it for themselves, and Go calls ft_amx_init (CPUID, the
// OS's XCR0 and the kernel's permission) before any of them runs.

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "capi.h"
#include "amx.h"

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

// The Linux arch_prctl request that grants a process the use of an XSTATE
// component enabled on demand, and AMX's tile data component
// (Documentation/arch/x86/xstate.rst).
#define FT_ARCH_REQ_XCOMP_PERM 0x1023
#define FT_XFEATURE_XTILEDATA 18

static uint64_t ft_xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t) hi << 32) | lo;
}

int ft_amx_init(void) {
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7) {
        return FT_AMX_NO_CPU;
    }
    __cpuid_count(1, 0, a, b, c, d);
    if (!(c & (1u << 27))) { // OSXSAVE: xgetbv is usable
        return FT_AMX_NO_CPU;
    }
    __cpuid_count(7, 0, a, b, c, d);
    const int avx512f = (b >> 16) & 1, amx_bf16 = (d >> 22) & 1, amx_tile = (d >> 24) & 1;
    unsigned a1, b1, c1, d1;
    __cpuid_count(7, 1, a1, b1, c1, d1);
    const int avx512_bf16 = (a1 >> 5) & 1;
    if (!avx512f || !amx_bf16 || !amx_tile || !avx512_bf16) {
        return FT_AMX_NO_CPU;
    }
    // The OS must manage the tile state: XCR0 bits 17 (XTILECFG) and 18
    // (XTILEDATA), and the AVX-512 state (bits 5-7) besides.
    const uint64_t xcr0 = ft_xgetbv0();
    if ((xcr0 & (3ull << 17)) != (3ull << 17) || (xcr0 & 0xe0) != 0xe0) {
        return FT_AMX_NO_OS;
    }
    if (syscall(SYS_arch_prctl, FT_ARCH_REQ_XCOMP_PERM, FT_XFEATURE_XTILEDATA) != 0) {
        return FT_AMX_NO_PERMISSION;
    }
    return FT_AMX_OK;
}

// ft_bf16 rounds x to BF16, to nearest even; NaNs stay NaNs.
static inline uint16_t ft_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffff) > 0x7f800000) {
        return (uint16_t) ((u >> 16) | 0x40);
    }
    return (uint16_t) ((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

// The packed layout: 16-column groups of A's rows (n), each a run of
// Kp/32 tiles of 1 KiB, tile t holding k in [32t, 32t+32) as 16 rows of
// 64 bytes, row r the pairs (A[n][32t+2r], A[n][32t+2r+1]) for the 16 n.
static inline size_t ft_packed_index(int64_t n, int64_t k, int64_t kb) {
    return ((size_t) (n >> 4) * kb + (size_t) (k >> 5)) * 512 + (size_t) ((k & 31) >> 1) * 32 + (size_t) (n & 15) * 2 + (size_t) (k & 1);
}

void ft_amx_pack(uint16_t * dst, int64_t kp, const float * src, int64_t sn, int64_t sk, int64_t n0, int64_t n1, int64_t k0, int64_t k1) {
    const int64_t kb = kp / 32;
    if (sk == 1) {
        for (int64_t n = n0; n < n1; n++) {
            const float * s = src + (n - n0) * sn - k0;
            for (int64_t k = k0; k < k1; k++) {
                dst[ft_packed_index(n, k, kb)] = ft_bf16(s[k]);
            }
        }
        return;
    }
    for (int64_t k = k0; k < k1; k++) {
        const float * s = src + (k - k0) * sk;
        for (int64_t n = n0; n < n1; n++) {
            dst[ft_packed_index(n, k, kb)] = ft_bf16(s[(n - n0) * sn]);
        }
    }
}

void ft_amx_pack_rows(struct ggml_tensor * dst, int ith, int nth, void * userdata) {
    const struct ggml_tensor * c = dst->src[0], * bwd = dst->src[1], * fwd = dst->src[2];
    const int64_t r0 = (int64_t) (intptr_t) userdata, nin = c->ne[0], rows = c->ne[1];
    const int64_t a = rows * ith / nth, b = rows * (ith + 1) / nth;
    if (a >= b) {
        return;
    }
    const int64_t stride = (int64_t) (c->nb[1] / sizeof(float));
    const float * s = (const float *) ((const char *) c->data + a * c->nb[1]);
    if (fwd != NULL) {
        ft_amx_pack((uint16_t *) fwd->data, fwd->ne[0], s, stride, 1, r0 + a, r0 + b, 0, nin);
    }
    ft_amx_pack((uint16_t *) bwd->data, bwd->ne[0], s, 1, stride, 0, nin, r0 + a, r0 + b);
}

void ft_amx_pack_op(struct ggml_tensor * dst, int ith, int nth, void * userdata) {
    const struct ggml_tensor * w = dst->src[0];
    const int transposed = userdata != NULL;
    const int64_t ld = (int64_t) (w->nb[1] / sizeof(float));
    const int64_t n = transposed ? w->ne[0] : w->ne[1], k = transposed ? w->ne[1] : w->ne[0];
    const int64_t sn = transposed ? 1 : ld, sk = transposed ? ld : 1;
    const int64_t kp = dst->ne[0], kb = kp / 32, groups = dst->ne[1] / 16;
    const int64_t g0 = groups * ith / nth, g1 = groups * (ith + 1) / nth;
    const float * src = (const float *) w->data;
    uint16_t * d = (uint16_t *) dst->data;
    // Every value of the thread's 16-column groups, padding included.
    for (int64_t g = g0; g < g1; g++) {
        memset(d + (size_t) g * kb * 512, 0, (size_t) kb * 1024);
        const int64_t n1 = (g + 1) * 16 < n ? (g + 1) * 16 : n;
        if (g * 16 < n) {
            ft_amx_pack(d, kp, src + g * 16 * sn, sn, sk, g * 16, n1, 0, k);
        }
    }
}

// The tile configuration: palette 1, every tile 16 rows of 64 bytes.
struct ft_tilecfg {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

#define FT_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))

// X is rounded to BF16 a block of at most FT_KC values of k at a time,
// and at most about FT_XB bytes of it (rows of the block) at once, so
// that the rounded rows stay in the core's L2 cache while every 32
// columns of the result read them.
enum { FT_KC = 2048, FT_XB = 1 << 20 };

// The thread's buffer of X rounded to BF16 (ggml's worker threads live
// as long as the backend, so it is kept from one call to the next).
static __thread uint16_t * ft_xb;
static __thread size_t ft_xb_cap;

static uint16_t * ft_xbuf(size_t n) {
    if (n > ft_xb_cap) {
        free(ft_xb);
        ft_xb = aligned_alloc(64, (n * 2 + 63) / 64 * 64);
        ft_xb_cap = ft_xb ? n : 0;
    }
    return ft_xb;
}

// ft_round_rows writes values [k0, k0 + kw) of rows of X (rows rows, each
// nb1 bytes after the last, at x) into xb as BF16, kw values a row: zeros
// past value k of a row and for the rows from rows up to pad.
FT_AMX_TARGET
static void ft_round_rows(uint16_t * xb, const char * x, size_t nb1, int64_t k, int64_t k0, int64_t kw, int64_t rows, int64_t pad) {
    const int64_t valid = k - k0 < kw ? k - k0 : kw;
    for (int64_t i = 0; i < rows; i++) {
        const float * s = (const float *) (x + i * nb1) + k0;
        uint16_t * d = xb + i * kw;
        int64_t j = 0;
        for (; j + 32 <= valid; j += 32) {
            __m512 lo = _mm512_loadu_ps(s + j), hi = _mm512_loadu_ps(s + j + 16);
            _mm512_storeu_si512((void *) (d + j), (__m512i) _mm512_cvtne2ps_pbh(hi, lo));
        }
        for (; j < kw; j += 32) {
            const int64_t left = valid - j < 0 ? 0 : valid - j; // 0..31
            const __mmask16 mlo = left >= 16 ? 0xffff : (__mmask16) ((1u << left) - 1);
            const __mmask16 mhi = left <= 16 ? 0 : (__mmask16) ((1u << (left - 16)) - 1);
            __m512 lo = _mm512_maskz_loadu_ps(mlo, s + j), hi = _mm512_maskz_loadu_ps(mhi, s + j + 16);
            _mm512_storeu_si512((void *) (d + j), (__m512i) _mm512_cvtne2ps_pbh(hi, lo));
        }
    }
    if (pad > rows) {
        memset(xb + rows * kw, 0, (size_t) (pad - rows) * kw * 2);
    }
}

// ft_block computes the 32x32 block of D at d (row stride ldd bytes) from
// 32 rows of X in BF16 (xb, kw values per row) and two 16-column groups
// of the packed weight (b0, b1), over kt tiles of 32 k; with acc, added
// to the block's values. Only vr rows and vc columns of the block are
// read and written.
FT_AMX_TARGET
static void ft_block(const uint16_t * xb, int64_t kw, const uint16_t * b0, const uint16_t * b1, int64_t kt, char * d, size_t ldd, int vr, int vc, int acc) {
    const size_t lda = (size_t) kw * 2;
    const uint16_t * a0 = xb, * a1 = xb + 16 * kw;
    const int full = vr == 32 && vc == 32;
    float tmp[32 * 32];
    if (!acc) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    } else if (full) {
        _tile_loadd(0, d, ldd);
        _tile_loadd(1, d + 64, ldd);
        _tile_loadd(2, d + 16 * ldd, ldd);
        _tile_loadd(3, d + 16 * ldd + 64, ldd);
    } else {
        memset(tmp, 0, sizeof(tmp));
        for (int i = 0; i < vr; i++) {
            memcpy(tmp + i * 32, d + i * ldd, (size_t) vc * 4);
        }
        _tile_loadd(0, tmp, 128);
        _tile_loadd(1, tmp + 16, 128);
        _tile_loadd(2, tmp + 16 * 32, 128);
        _tile_loadd(3, tmp + 16 * 32 + 16, 128);
    }
    for (int64_t t = 0; t < kt; t++) {
        _tile_loadd(4, a0 + t * 32, lda);
        _tile_loadd(6, b0 + t * 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, b1 + t * 512, 64);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a1 + t * 32, lda);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    if (full) {
        _tile_stored(0, d, ldd);
        _tile_stored(1, d + 64, ldd);
        _tile_stored(2, d + 16 * ldd, ldd);
        _tile_stored(3, d + 16 * ldd + 64, ldd);
        return;
    }
    _tile_stored(0, tmp, 128);
    _tile_stored(1, tmp + 16, 128);
    _tile_stored(2, tmp + 16 * 32, 128);
    _tile_stored(3, tmp + 16 * 32 + 16, 128);
    for (int i = 0; i < vr; i++) {
        memcpy(d + i * ldd, tmp + i * 32, (size_t) vc * 4);
    }
}

// The result is computed in chunks of rows by a range of columns, handed
// out to the threads as they ask (a thread the OS has paused then holds up
// no more than its chunk). The counters live in the node's own op_params,
// past ggml's custom-op parameters: the chunk taken next and how many
// threads have finished; the last thread to finish resets both for the
// node's next run (every thread of the pool runs every node, and none
// starts the next node before all have finished this one).
enum { FT_CHUNK_NEXT = 12, FT_CHUNK_DONE = 13 };

FT_AMX_TARGET
void ft_amx_mul_mat(struct ggml_tensor * dst, int ith, int nth, void * userdata) {
    (void) userdata;
    (void) ith;
    const struct ggml_tensor * w = dst->src[0];
    const struct ggml_tensor * x = dst->src[1];
    const int64_t k = x->ne[0], m = x->ne[1], n = dst->ne[0];
    const int64_t kp = w->ne[0], kb = kp / 32;
    const int64_t kc = kp < FT_KC ? kp : FT_KC, kblocks = (kp + kc - 1) / kc;
    const int64_t nblocks = (n + 31) / 32, mblocks = (m + 31) / 32;
    int64_t mcmax = FT_XB / (kc * 2) / 32 * 32;
    mcmax = mcmax < 32 ? 32 : mcmax;
    int64_t rchunks = (m + mcmax - 1) / mcmax, cchunks = 1;
    if (kblocks > 1) {
        // Every chunk reads the whole of k for its rows: chunks of rows
        // only (a chunk of columns would round its rows again, block by
        // block), at least one per thread.
        rchunks = rchunks > nth ? rchunks : nth;
        rchunks = rchunks < mblocks ? rchunks : mblocks;
    } else {
        // The rows of a chunk are rounded once per thread and call
        // (chunks of the same rows reuse them): chunks of columns too,
        // about four per thread in all.
        cchunks = (4 * (int64_t) nth + rchunks - 1) / rchunks;
        cchunks = cchunks < nblocks ? cchunks : nblocks;
    }
    const int64_t mc = (mblocks + rchunks - 1) / rchunks * 32;
    rchunks = (m + mc - 1) / mc;
    const int64_t ncols = (nblocks + cchunks - 1) / cchunks * 32;
    cchunks = (n + ncols - 1) / ncols;
    const int64_t chunks = rchunks * cchunks;
    int32_t * next = &dst->op_params[FT_CHUNK_NEXT], * done = &dst->op_params[FT_CHUNK_DONE];
    int64_t c = __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
    if (c < chunks) {
        uint16_t * xb = ft_xbuf((size_t) mc * kc);
        if (xb == NULL) {
            abort();
        }
        struct ft_tilecfg cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.palette = 1;
        for (int t = 0; t < 8; t++) {
            cfg.colsb[t] = 64;
            cfg.rows[t] = 16;
        }
        _tile_loadconfig(&cfg);
        const uint16_t * packed = (const uint16_t *) w->data;
        const size_t ldd = dst->nb[1];
        int64_t rounded = -1; // the first row of the rows in xb (a single block of k)
        for (; c < chunks; c = __atomic_fetch_add(next, 1, __ATOMIC_RELAXED)) {
            const int64_t i0 = c / cchunks * mc, c0 = c % cchunks * ncols;
            const int64_t rows = m - i0 < mc ? m - i0 : mc;
            const int64_t c1 = c0 + ncols < n ? c0 + ncols : n;
            const int64_t pad = (rows + 31) / 32 * 32;
            for (int64_t k0 = 0; k0 < kp; k0 += kc) {
                const int64_t kw = kp - k0 < kc ? kp - k0 : kc;
                if (kblocks > 1 || rounded != i0) {
                    ft_round_rows(xb, (const char *) x->data + i0 * x->nb[1], x->nb[1], k, k0, kw, rows, pad);
                    rounded = i0;
                }
                for (int64_t j = c0; j < c1; j += 32) {
                    const uint16_t * b0 = packed + ((size_t) (j / 16) * kb + (size_t) (k0 / 32)) * 512;
                    const uint16_t * b1 = b0 + (size_t) kb * 512;
                    const int vc = c1 - j < 32 ? (int) (c1 - j) : 32;
                    for (int64_t i = 0; i < rows; i += 32) {
                        const int vr = rows - i < 32 ? (int) (rows - i) : 32;
                        ft_block(xb + i * kw, kw, b0, b1, kw / 32, (char *) dst->data + (i0 + i) * ldd + j * 4, ldd, vr, vc, k0 > 0);
                    }
                }
            }
        }
        _tile_release();
    }
    if (__atomic_add_fetch(done, 1, __ATOMIC_ACQ_REL) == nth) {
        __atomic_store_n(next, 0, __ATOMIC_RELAXED);
        __atomic_store_n(done, 0, __ATOMIC_RELEASE);
    }
}

// The thread's packed copy of an activation src0's slice (ft_amx_mul_mat2).
static __thread uint16_t * ft_pb;
static __thread size_t ft_pb_cap;

// ft_amx_mul_mat2 is MUL_MAT of two F32 activations, batched as ggml's:
// src0 [K, N, ne02, ne03] (broadcast over dst's ne2/ne3 by ne2/ne02,
// ne3/ne03), src1 [K, M, ne2, ne3], both rounded to BF16, F32 sums. The
// chunks (a slice of the batch by a block of rows of src1) are split
// between the threads in runs, so a thread packs each slice of src0 it
// needs about once.
enum { FT_MC2 = 64 };

FT_AMX_TARGET
void ft_amx_mul_mat2(struct ggml_tensor * dst, int ith, int nth, void * userdata) {
    (void) userdata;
    const struct ggml_tensor * a = dst->src[0];
    const struct ggml_tensor * x = dst->src[1];
    const int64_t k = a->ne[0], n = a->ne[1], m = x->ne[1];
    const int64_t kp = (k + 31) / 32 * 32, np = (n + 31) / 32 * 32, kb = kp / 32;
    const int64_t ne2 = dst->ne[2], ne3 = dst->ne[3];
    const int64_t r2 = ne2 / a->ne[2], r3 = ne3 / a->ne[3];
    const int64_t mblocks = (m + FT_MC2 - 1) / FT_MC2;
    const int64_t chunks = ne2 * ne3 * mblocks;
    const int64_t c0 = chunks * ith / nth, c1 = chunks * (ith + 1) / nth;
    if (c0 >= c1) {
        return;
    }
    uint16_t * xb = ft_xbuf((size_t) FT_MC2 * kp);
    if ((size_t) (kp * np) > ft_pb_cap) {
        free(ft_pb);
        ft_pb = aligned_alloc(64, (size_t) kp * np * 2);
        ft_pb_cap = ft_pb ? (size_t) (kp * np) : 0;
    }
    if (xb == NULL || ft_pb == NULL) {
        abort();
    }
    struct ft_tilecfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
    const size_t ldd = dst->nb[1];
    int64_t packed = -1;
    for (int64_t c = c0; c < c1; c++) {
        const int64_t s = c / mblocks, i0 = c % mblocks * FT_MC2;
        const int64_t i2 = s % ne2, i3 = s / ne2;
        const int64_t sa = i2 / r2 + (i3 / r3) * a->ne[2];
        if (sa != packed) {
            memset(ft_pb, 0, (size_t) kp * np * 2);
            const float * src = (const float *) ((const char *) a->data + (i2 / r2) * a->nb[2] + (i3 / r3) * a->nb[3]);
            ft_amx_pack(ft_pb, kp, src, (int64_t) (a->nb[1] / 4), 1, 0, n, 0, k);
            packed = sa;
        }
        const int64_t rows = m - i0 < FT_MC2 ? m - i0 : FT_MC2;
        const int64_t pad = (rows + 31) / 32 * 32;
        const char * xs = (const char *) x->data + i2 * x->nb[2] + i3 * x->nb[3] + i0 * x->nb[1];
        ft_round_rows(xb, xs, x->nb[1], k, 0, kp, rows, pad);
        char * d = (char *) dst->data + i2 * dst->nb[2] + i3 * dst->nb[3] + i0 * ldd;
        for (int64_t j = 0; j < n; j += 32) {
            const uint16_t * b0 = ft_pb + (size_t) (j / 16) * kb * 512;
            const uint16_t * b1 = b0 + (size_t) kb * 512;
            const int vc = n - j < 32 ? (int) (n - j) : 32;
            for (int64_t i = 0; i < rows; i += 32) {
                const int vr = rows - i < 32 ? (int) (rows - i) : 32;
                ft_block(xb + i * kp, kp, b0, b1, kb, d + i * ldd + j * 4, ldd, vr, vc, 0);
            }
        }
    }
    _tile_release();
}

#else

int ft_amx_init(void) { return FT_AMX_NO_CPU; }

void ft_amx_pack(uint16_t * dst, int64_t kp, const float * src, int64_t sn, int64_t sk, int64_t n0, int64_t n1, int64_t k0, int64_t k1) {
    (void) dst; (void) kp; (void) src; (void) sn; (void) sk; (void) n0; (void) n1; (void) k0; (void) k1;
    abort();
}

void ft_amx_mul_mat(struct ggml_tensor * dst, int ith, int nth, void * userdata) {
    (void) dst; (void) ith; (void) nth; (void) userdata;
    abort();
}

void ft_amx_pack_rows(struct ggml_tensor * dst, int ith, int nth, void * userdata) {
    (void) dst; (void) ith; (void) nth; (void) userdata;
    abort();
}

void ft_amx_mul_mat2(struct ggml_tensor * dst, int ith, int nth, void * userdata) {
    (void) dst; (void) ith; (void) nth; (void) userdata;
    abort();
}

void ft_amx_pack_op(struct ggml_tensor * dst, int ith, int nth, void * userdata) {
    (void) dst; (void) ith; (void) nth; (void) userdata;
    abort();
}

#endif
