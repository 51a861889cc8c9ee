// amx.h: finetune's AMX matrix product (amx.c).
#ifndef FINETUNE_AMX_H
#define FINETUNE_AMX_H

#include <stdint.h>
#include "capi.h"

// ft_amx_init's results.
enum {
    FT_AMX_OK = 0,
    FT_AMX_NO_CPU = 1,        // no AMX-TILE, AMX-BF16, AVX512F or AVX512-BF16
    FT_AMX_NO_OS = 2,         // the OS does not manage the tile state (XCR0)
    FT_AMX_NO_PERMISSION = 3, // arch_prctl(ARCH_REQ_XCOMP_PERM) refused
};

// ft_amx_init checks the CPU and the OS and asks Linux for the process's
// permission to use AMX tiles; FT_AMX_OK when the kernels may run.
int ft_amx_init(void);

// ft_amx_pack writes A[n][k] = src[(n-n0)*sn + (k-k0)*sk], for n in
// [n0, n1) and k in [k0, k1), into dst, the packed weight of kp (a
// multiple of 32) values per row rounded to BF16.
void ft_amx_pack(uint16_t * dst, int64_t kp, const float * src, int64_t sn, int64_t sk, int64_t n0, int64_t n1, int64_t k0, int64_t k1);

// ft_amx_pack_rows is a ggml custom op that packs rows [r0, r0 + rows)
// of a weight W [n_in, n_out] (r0 is userdata as an integer): src[0], the
// rows in F32 ([n_in, rows], rows contiguous), go into src[1], the packed
// copy of Wᵀ, and into src[2] (when there is one), the packed copy of W.
// Its own result is a placeholder.
void ft_amx_pack_rows(struct ggml_tensor * dst, int ith, int nth, void * userdata);

// ft_amx_pack_op is a ggml custom op whose result is the packed copy
// (BF16 [Kp, Np]) of src[0], an F32 weight W [n_in, n_out] with
// contiguous rows, or of Wᵀ when userdata is not NULL.
void ft_amx_pack_op(struct ggml_tensor * dst, int ith, int nth, void * userdata);

// ft_amx_mul_mat is a ggml custom op: dst [N, M] F32 = src[0] (a packed
// weight, BF16 [Kp, Np]) times src[1] (F32 [K, M], rows contiguous).
void ft_amx_mul_mat(struct ggml_tensor * dst, int ith, int nth, void * userdata);

// ft_amx_mul_mat2 is a ggml custom op: MUL_MAT of src[0] (F32 [K, N, ne02,
// ne03], rows contiguous) and src[1] (F32 [K, M, ne2, ne3], rows
// contiguous), batched and broadcast as ggml's, both rounded to BF16.
void ft_amx_mul_mat2(struct ggml_tensor * dst, int ith, int nth, void * userdata);

#endif
