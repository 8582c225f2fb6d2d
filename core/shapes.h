// The project's dimension vocabulary, written once. Every tensor field and kernel argument
// carries a shape comment in these letters, e.g. `Tensor w1;  // (E, C, 2F)`.
//
//   B  batch (sequences in a micro-batch)      T  sequence length
//   C  model width (hidden size)               H  attention heads (Hkv: key/value heads)
//   D  head dimension (C = H * D)              V  vocabulary size
//   E  experts                                 K  top-k (experts per token)
//   F  expert FFN width                        N  tokens routed (rows after permutation)
#pragma once

#include <cstdint>
#include <vector>

namespace sy {

using Shape = std::vector<int64_t>;

}  // namespace sy
