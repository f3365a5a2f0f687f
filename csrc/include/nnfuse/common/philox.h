// Philox4x32-10 counter-based RNG (Salmon et al., SC'11), for host and device.
//
// One call maps a 128-bit counter and a 64-bit key to 128 random bits, so every element can draw
// its own noise from its index alone: no state, the same numbers on CPU and CUDA, whatever the
// thread count. Bit-exact twin of python/nnfuse/reference/philox.py (checked against the Random123
// known-answer vectors there and against this header by a scratch program).
//
// Round (10 of them; key bumped by (W0, W1) mod 2^32 between rounds, the first uses the key as
// given):  (lo0, hi0) = M0 * c0;  (lo1, hi1) = M1 * c2;  c = (hi1^c1^k0, lo1, hi0^c3^k1, lo0).
// The 32x32 -> 64-bit products are plain uint64_t multiplies, no intrinsics.
//
// Element stream used by the ops: element i reads word (i & 3) of the block for counter
// (j, j >> 32, offset, offset >> 32), j = i >> 2, key (seed, seed >> 32), and turns it into
// u = (word >> 8) * 2^-24 in [0, 1): 24 random bits, exact in float.
#pragma once

#include <cstdint>

#include "nnfuse/common/macros.h"

NNF_NS_BEGIN

// High 32 bits of the 32x32 -> 64-bit product. Written this way (the product's high half,
// truncated to 32 bits right away) nvcc emits mul.wide.u32; the low half is a plain 32-bit multiply.
NNF_HD uint32_t philox_mulhi(uint32_t a, uint32_t b) {
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
}

// One Philox4x32 round on ctr with round key (k0, k1).
NNF_HD void philox4x32_round(uint32_t ctr[4], uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u;
  constexpr uint32_t kM1 = 0xCD9E8D57u;
  const uint32_t hi0 = philox_mulhi(kM0, ctr[0]), lo0 = kM0 * ctr[0];
  const uint32_t hi1 = philox_mulhi(kM1, ctr[2]), lo1 = kM1 * ctr[2];
  const uint32_t c1 = ctr[1], c3 = ctr[3];
  ctr[0] = hi1 ^ c1 ^ k0;
  ctr[1] = lo1;
  ctr[2] = hi0 ^ c3 ^ k1;
  ctr[3] = lo0;
}

// Philox4x32-10: replaces ctr[0..3] with the generator's output for key (k0, k1).
NNF_HD void philox4x32_10(uint32_t ctr[4], uint32_t k0, uint32_t k1) {
  constexpr uint32_t kW0 = 0x9E3779B9u;
  constexpr uint32_t kW1 = 0xBB67AE85u;
  philox4x32_round(ctr, k0, k1);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 1; r < 10; ++r) {
    k0 += kW0;
    k1 += kW1;
    philox4x32_round(ctr, k0, k1);
  }
}

// The four words of block j of the stream (seed, offset): elements 4j .. 4j + 3.
NNF_HD void philox_block(uint64_t seed, uint64_t offset, uint64_t j, uint32_t out[4]) {
  out[0] = static_cast<uint32_t>(j);
  out[1] = static_cast<uint32_t>(j >> 32);
  out[2] = static_cast<uint32_t>(offset);
  out[3] = static_cast<uint32_t>(offset >> 32);
  philox4x32_10(out, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// 32 random bits -> uniform float in [0, 1): (w >> 8) * 2^-24, exact (24-bit integer times 2^-24).
NNF_HD float philox_word_to_uniform(uint32_t w) {
  return static_cast<float>(w >> 8) * 0x1p-24f;
}

// Uniform of element `index` of the stream (seed, offset).
NNF_HD float philox_uniform_float(uint64_t seed, uint64_t offset, uint64_t index) {
  uint32_t w[4];
  philox_block(seed, offset, index >> 2, w);
  return philox_word_to_uniform(w[index & 3]);
}

// Uniforms of elements 4j .. 4j + 3 with one generator call (for loops that step by 4).
NNF_HD void philox_uniform_float4(uint64_t seed, uint64_t offset, uint64_t j, float out[4]) {
  uint32_t w[4];
  philox_block(seed, offset, j, w);
  for (int k = 0; k < 4; ++k) out[k] = philox_word_to_uniform(w[k]);
}

NNF_NS_END
