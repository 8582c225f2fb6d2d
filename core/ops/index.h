// Indexing, selection and counting ops. Index tensors are i64 (i32 accepted).
#pragma once

#include <utility>

#include "core/tensor.h"

namespace sy {

// The k largest (or smallest) along dim: values and their i64 indices; ties keep the lower index first.
std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true);
// Stable sort along dim: values and i64 indices.
std::pair<Tensor, Tensor> sort(const Tensor& x, int64_t dim = -1, bool descending = false);
Tensor argsort(const Tensor& x, int64_t dim = -1, bool descending = false);
// out[i][j] = x[i][index[i][j]] for dim 1 (torch.gather semantics).
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// x with src added at index along dim (torch.scatter_add semantics), out of place.
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// Rows (slices along dim) of x picked by a 1-D index.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// x with alpha * source's slices added at the 1-D index along dim, out of place.
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& source, double alpha = 1.0);
Tensor cumsum(const Tensor& x, int64_t dim);
// Counts of each value in a 1-D non-negative integer tensor -> i64 (max(max+1, minlength)).
Tensor bincount(const Tensor& x, int64_t minlength = 0);
// x (...) integer -> (..., num_classes) i64 with a single 1 per row.
Tensor one_hot(const Tensor& x, int64_t num_classes);

}  // namespace sy
