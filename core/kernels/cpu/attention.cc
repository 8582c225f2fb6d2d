// Scaled-dot-product attention, flash style: nothing of size T x T is ever held.
//   S = scale * Q K^T (+ causal mask: key j visible to query i iff j <= i),
//   P = softmax_rows(S),  O = P V,  lse_i = log sum_j exp(S_ij).
// Forward: for each (b, h, query block), walk the visible key blocks; each block of scores
// comes from a small GEMM, and an online softmax keeps per row the running max m and sum l,
// rescaling the P V accumulator whenever m grows. Saved for backward: O and lse.
// Backward (written =), each key block recomputing P = exp(S - lse) from Q, K and lse:
//   dV += P^T dO,   dP = dO V^T,   dS = P * (dP - delta) with delta_i = sum_d dO_id O_id,
//   dQ += scale * dS K,   dK += scale * dS^T Q.
// GQA: query head h reads kv head h / (H / Hkv); the backward runs one task per (b, kv
// head), which owns dK and dV of that head and dQ of the query heads sharing it, so the sum
// over query heads needs no atomics and its order is fixed (deterministic).
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/kernels/cpu/attention_kernels.h"
#include "core/kernels/cpu/loops.h"

namespace sy::kernels::cpu {
namespace {

// c (m, n) = alpha * op(a) op(b) + beta * c, row-major, through OpenBLAS.
template <typename V>
void block_gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, V alpha, const V* a,
                int64_t lda, const V* b, int64_t ldb, V beta, V* c, int64_t ldc) {
  const CBLAS_TRANSPOSE ta = transpose_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = transpose_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<V, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

// The shapes of one call, and the block walk shared by forward and backward.
struct Geometry {
  int64_t B, H, Hkv, T, D, block;
  bool causal;

  int64_t group() const { return H / Hkv; }
  int64_t blocks() const { return (T + block - 1) / block; }
  // Keys [0, key_end) can be visible to the query rows [q0, q0 + rows): causal mode skips the
  // key blocks past the diagonal.
  // Tiny problems stay on one core: waking threads costs more than their share of the work.
  bool parallel() const { return B * H * T * T * D >= 64 * kParallelGrain; }
  int64_t key_end(int64_t q0, int64_t rows) const { return causal ? q0 + rows : T; }
  // How many of the keys [k0, k0 + cols) query q0 + i sees (0 when the row is fully masked).
  int64_t visible(int64_t q0, int64_t i, int64_t k0, int64_t cols) const {
    return causal ? std::clamp<int64_t>(q0 + i - k0 + 1, 0, cols) : cols;
  }
};

Geometry geometry_of(const Tensor& q, const Tensor& k, bool causal, int64_t block) {
  return {q.size(0), q.size(1), k.size(1), q.size(2), q.size(3), block, causal};
}

template <typename V>
void forward_typed(const Geometry& g, V scale, const V* q, const V* k, const V* v, V* out, V* lse) {
  const int64_t blocks = g.blocks(), D = g.D, T = g.T, block = g.block;
  constexpr V kMinusInfinity = -std::numeric_limits<V>::infinity();
#pragma omp parallel if (g.parallel())
  {
    std::vector<V> scores(block * block), accumulator(block * D), row_max(block), row_sum(block);
    // Causal query blocks near the end do more work: hand tasks out dynamically.
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < g.B * g.H * blocks; ++task) {
      const int64_t bh = task / blocks, b = bh / g.H, h = bh % g.H;
      const int64_t q0 = (task % blocks) * block, rows = std::min(block, T - q0);
      const V* q_block = q + (bh * T + q0) * D;
      const V* k_head = k + (b * g.Hkv + h / g.group()) * T * D;
      const V* v_head = v + (b * g.Hkv + h / g.group()) * T * D;
      std::fill(accumulator.begin(), accumulator.end(), V(0));
      std::fill(row_max.begin(), row_max.end(), kMinusInfinity);
      std::fill(row_sum.begin(), row_sum.end(), V(0));
      const int64_t key_end = g.key_end(q0, rows);
      for (int64_t k0 = 0; k0 < key_end; k0 += block) {
        const int64_t cols = std::min(block, key_end - k0);
        block_gemm<V>(false, true, rows, cols, D, scale, q_block, D, k_head + k0 * D, D, V(0),
                      scores.data(), cols);
        for (int64_t i = 0; i < rows; ++i) {
          V* s = scores.data() + i * cols;
          const int64_t visible = g.visible(q0, i, k0, cols);
          std::fill(s + visible, s + cols, V(0));  // masked: probability 0
          if (visible == 0) continue;
          const V new_max = std::max(row_max[i], *std::max_element(s, s + visible));
          V sum = 0;
          for (int64_t j = 0; j < visible; ++j) {
            s[j] = std::exp(s[j] - new_max);
            sum += s[j];
          }
          const V correction = std::exp(row_max[i] - new_max);  // 0 on the row's first block
          row_sum[i] = row_sum[i] * correction + sum;
          row_max[i] = new_max;
          if (correction != V(1)) {
            for (int64_t d = 0; d < D; ++d) accumulator[i * D + d] *= correction;
          }
        }
        block_gemm<V>(false, false, rows, D, cols, V(1), scores.data(), cols, v_head + k0 * D, D, V(1),
                      accumulator.data(), D);
      }
      for (int64_t i = 0; i < rows; ++i) {
        const V inverse = V(1) / row_sum[i];
        for (int64_t d = 0; d < D; ++d) out[(bh * T + q0 + i) * D + d] = accumulator[i * D + d] * inverse;
        lse[bh * T + q0 + i] = row_max[i] + std::log(row_sum[i]);
      }
    }
  }
}

template <typename V>
void backward_typed(const Geometry& g, V scale, const V* q, const V* k, const V* v, const V* out,
                    const V* lse, const V* grad_out, V* grad_q, V* grad_k, V* grad_v) {
  const int64_t D = g.D, T = g.T, block = g.block;
#pragma omp parallel if (g.parallel())
  {
    std::vector<V> probabilities(block * block), grad_scores(block * block), delta(block);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < g.B * g.Hkv; ++task) {
      const int64_t b = task / g.Hkv, kv_head = task % g.Hkv;
      const V* k_head = k + task * T * D;
      const V* v_head = v + task * T * D;
      V* grad_k_head = grad_k + task * T * D;
      V* grad_v_head = grad_v + task * T * D;
      std::fill(grad_k_head, grad_k_head + T * D, V(0));
      std::fill(grad_v_head, grad_v_head + T * D, V(0));
      for (int64_t h = kv_head * g.group(); h < (kv_head + 1) * g.group(); ++h) {
        const int64_t bh = b * g.H + h;
        V* grad_q_head = grad_q + bh * T * D;
        std::fill(grad_q_head, grad_q_head + T * D, V(0));
        for (int64_t q0 = 0; q0 < T; q0 += block) {
          const int64_t rows = std::min(block, T - q0);
          const V* q_block = q + (bh * T + q0) * D;
          const V* grad_out_block = grad_out + (bh * T + q0) * D;
          const V* out_block = out + (bh * T + q0) * D;
          const V* lse_block = lse + bh * T + q0;
          for (int64_t i = 0; i < rows; ++i) {
            V sum = 0;
            for (int64_t d = 0; d < D; ++d) sum += grad_out_block[i * D + d] * out_block[i * D + d];
            delta[i] = sum;
          }
          const int64_t key_end = g.key_end(q0, rows);
          for (int64_t k0 = 0; k0 < key_end; k0 += block) {
            const int64_t cols = std::min(block, key_end - k0);
            V* p = probabilities.data();
            V* ds = grad_scores.data();
            block_gemm<V>(false, true, rows, cols, D, scale, q_block, D, k_head + k0 * D, D, V(0), p, cols);
            for (int64_t i = 0; i < rows; ++i) {
              const int64_t visible = g.visible(q0, i, k0, cols);
              for (int64_t j = 0; j < visible; ++j) p[i * cols + j] = std::exp(p[i * cols + j] - lse_block[i]);
              std::fill(p + i * cols + visible, p + (i + 1) * cols, V(0));
            }
            block_gemm<V>(true, false, cols, D, rows, V(1), p, cols, grad_out_block, D, V(1),
                          grad_v_head + k0 * D, D);
            block_gemm<V>(false, true, rows, cols, D, V(1), grad_out_block, D, v_head + k0 * D, D, V(0), ds, cols);
            for (int64_t i = 0; i < rows; ++i) {
              for (int64_t j = 0; j < cols; ++j) ds[i * cols + j] = p[i * cols + j] * (ds[i * cols + j] - delta[i]);
            }
            block_gemm<V>(false, false, rows, D, cols, scale, ds, cols, k_head + k0 * D, D, V(1),
                          grad_q_head + q0 * D, D);
            block_gemm<V>(true, false, cols, D, rows, scale, ds, cols, q_block, D, V(1), grad_k_head + k0 * D, D);
          }
        }
      }
    }
  }
}

void check_operands(const std::vector<const Tensor*>& tensors, DType dtype) {
  for (const Tensor* tensor : tensors) {
    SY_CHECK(tensor->is_contiguous() && tensor->dtype() == dtype, "attention kernel: operand ",
             ShapeString(tensor->shape()), " of ", dtype_name(tensor->dtype()), " must be contiguous ",
             dtype_name(dtype));
  }
}

}  // namespace

int64_t attention_block_size(int64_t D) {
  // OpenBLAS runs a GEMM on one thread up to m * n * k = 4 * 65536 flops; the blocks run
  // inside OpenMP tasks already, so they stay under it: 64 x 64 blocks up to D = 64.
  int64_t block = 64;
  while (block > 16 && block * block * D > 4 * 65536) block /= 2;
  return block;
}

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                       int64_t block, Tensor& out, Tensor& lse) {
  SY_CHECK(block > 0, "attention: block size ", block);
  check_operands({&q, &k, &v, &out, &lse}, q.dtype());
  const Geometry g = geometry_of(q, k, causal, block);
  if (q.numel() == 0) return;
  if (q.dtype() == DType::kF32) {
    forward_typed<float>(g, static_cast<float>(scale), q.data<float>(), k.data<float>(), v.data<float>(),
                         out.data<float>(), lse.data<float>());
  } else {
    SY_CHECK(q.dtype() == DType::kF64, "attention kernel: f32 or f64, got ", dtype_name(q.dtype()));
    forward_typed<double>(g, scale, q.data<double>(), k.data<double>(), v.data<double>(), out.data<double>(),
                          lse.data<double>());
  }
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& grad_out, bool causal, double scale,
                        int64_t block, Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) {
  SY_CHECK(block > 0, "attention backward: block size ", block);
  check_operands({&q, &k, &v, &out, &lse, &grad_out, &grad_q, &grad_k, &grad_v}, q.dtype());
  const Geometry g = geometry_of(q, k, causal, block);
  if (q.numel() == 0) return;
  if (q.dtype() == DType::kF32) {
    backward_typed<float>(g, static_cast<float>(scale), q.data<float>(), k.data<float>(), v.data<float>(),
                          out.data<float>(), lse.data<float>(), grad_out.data<float>(), grad_q.data<float>(),
                          grad_k.data<float>(), grad_v.data<float>());
  } else {
    SY_CHECK(q.dtype() == DType::kF64, "attention backward: f32 or f64, got ", dtype_name(q.dtype()));
    backward_typed<double>(g, scale, q.data<double>(), k.data<double>(), v.data<double>(), out.data<double>(),
                           lse.data<double>(), grad_out.data<double>(), grad_q.data<double>(),
                           grad_k.data<double>(), grad_v.data<double>());
  }
}

}  // namespace sy::kernels::cpu
