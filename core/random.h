// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011). A draw is a pure
// function of (seed, offset, element index), so it is reproducible and identical on the
// CPU and on CUDA. A Generator hands out disjoint offset ranges: each draw of n values
// advances the offset by ceil(n / 4).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SY_HOST_DEVICE __host__ __device__
#else
#define SY_HOST_DEVICE
#endif

namespace sy {

struct PhiloxState {
  uint64_t seed = 0;
  uint64_t offset = 0;
  bool operator==(const PhiloxState&) const = default;
};

struct Philox4 {
  uint32_t x[4];
};

// Philox4x32 with 10 rounds of the counter (offset, subsequence) under the key `seed`.
SY_HOST_DEVICE inline Philox4 philox4x32_10(uint64_t seed, uint64_t counter, uint64_t subsequence) {
  constexpr uint32_t kMultiplier0 = 0xD2511F53u, kMultiplier1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = static_cast<uint32_t>(subsequence), c3 = static_cast<uint32_t>(subsequence >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t product0 = static_cast<uint64_t>(kMultiplier0) * c0;
    uint64_t product1 = static_cast<uint64_t>(kMultiplier1) * c2;
    uint32_t hi0 = static_cast<uint32_t>(product0 >> 32), lo0 = static_cast<uint32_t>(product0);
    uint32_t hi1 = static_cast<uint32_t>(product1 >> 32), lo1 = static_cast<uint32_t>(product1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return {{c0, c1, c2, c3}};
}

// The index-th 32-bit value of the stream that starts at `offset` (4 values per counter).
SY_HOST_DEVICE inline uint32_t philox_uint32(PhiloxState state, uint64_t index) {
  Philox4 block = philox4x32_10(state.seed, state.offset + index / 4, 0);
  return block.x[index % 4];
}

// Uniform in [0, 1) with 24 random bits.
SY_HOST_DEVICE inline float philox_uniform(PhiloxState state, uint64_t index) {
  return static_cast<float>(philox_uint32(state, index) >> 8) * (1.0f / 16777216.0f);
}

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : state_{seed, 0} {}
  void manual_seed(uint64_t seed) { state_ = {seed, 0}; }
  PhiloxState state() const { return state_; }
  void set_state(PhiloxState state) { state_ = state; }
  // Reserves the stream for `count` values and returns where it starts.
  PhiloxState reserve(uint64_t count) {
    PhiloxState start = state_;
    state_.offset += (count + 3) / 4;
    return start;
  }

 private:
  PhiloxState state_;
};

// The process-wide default generator (part of the runtime, like the devices).
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace sy
