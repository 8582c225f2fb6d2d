// CPU kernels for indexing, sorting, scans, counting and Philox random fills. Like the
// others in this folder they fill preallocated outputs and know nothing of autograd; the op
// checks shapes and index ranges before calling (kernels never throw from a parallel loop).
#pragma once

#include <cstdint>

#include "core/random.h"
#include "core/tensor.h"

namespace sy::kernels::cpu {

// ---- sort.cc: each contiguous row of x (rows, n) ----
// Stable sort of every row: values (rows, n) in x's dtype and i64 indices (rows, n).
// NaN sorts as the largest value (as torch).
void sort_rows(const Tensor& x, int64_t row_length, bool descending, Tensor& values, Tensor& indices);
// The k largest (or smallest) of every row, best first; equal values keep the lower index
// first. values (rows, k), indices (rows, k) i64.
void topk_rows(const Tensor& x, int64_t row_length, int64_t k, bool largest, Tensor& values,
               Tensor& indices);

// ---- index.cc ----
// out[p] = x[p with p[dim] := index[p]] for every position p of out. `index` is i64 with
// out's shape (any strides: index_select passes a broadcast view); out.size(d) <= x.size(d)
// for d != dim; every index is in [0, x.size(dim)). Any dtype.
void gather(const Tensor& x, int64_t dim, const Tensor& index, Tensor& out);
// out[p with p[dim] := index[p]] += alpha * source[p] for every position p of source;
// `index` is i64 with source's shape (any strides). Indices may repeat: the cores split a
// dim other than `dim`, each in the serial order (deterministic).
void scatter_add(Tensor& out, int64_t dim, const Tensor& index, const Tensor& source, double alpha);
// out = inclusive prefix sum of x along the middle dim of contiguous (outer, n, inner);
// reverse sums from the end (the adjoint). Floating types accumulate in f64, integers in i64.
void cumsum(const Tensor& x, int64_t outer, int64_t n, int64_t inner, bool reverse, Tensor& out);
// out[v] = number of elements of contiguous i64 x equal to v; out i64, zeroed here.
void bincount(const Tensor& x, Tensor& out);
// out (numel(x), classes) i64 = 1 at (i, x[i]), else 0; x contiguous i64.
void one_hot(const Tensor& x, Tensor& out);

// ---- random.cc: element i of a contiguous `out` (row-major order) ----
// Uniform: u_i = philox_uniform(state, i), in [0, 1) with 24 random bits; bf16 and f16
// first truncate u_i to 8 and 11 bits so that rounding can never reach 1. Then
// out_i = low + (high - low) * u_i.
void uniform(PhiloxState state, double low, double high, Tensor& out);
// Normal by Box-Muller: element i uses the pair of stream indices j = 2 * (i / 2) and
// j + 1, u1 = philox_uniform(state, j), u2 = philox_uniform(state, j + 1),
// r = sqrt(-2 log(1 - u1)), and takes r cos(2 pi u2) when i is even, r sin(2 pi u2) when
// odd; computed in f64, then out_i = mean + std * z_i. An odd numel uses index numel as the
// last u2, still inside the ceil(numel / 4) counters a reserve(numel) hands out.
void normal(PhiloxState state, double mean, double std, Tensor& out);
// mask_i = philox_uniform(state, i) >= p (bool, contiguous).
void bernoulli_keep_mask(PhiloxState state, double p, Tensor& mask);
// out = mask ? x * scale : 0, elementwise; x, mask, out share a shape (any strides).
void masked_scale(const Tensor& x, const Tensor& mask, double scale, Tensor& out);

}  // namespace sy::kernels::cpu
