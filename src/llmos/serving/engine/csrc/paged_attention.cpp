// Decode attention over the paged KV cache, float32 on CPU: one query token per sequence.
//
// Built and loaded at run time by llmos/serving/engine/kernels.py (g++ -O3 -march=native
// -fopenmp, cached by source and machine). Layouts are the engine's (see llama.py):
//   q        [D, H, hd]                     contiguous
//   k/v      [kv_heads, num_blocks, bs, hd] contiguous (one layer of the head-major cache)
//   tables   [D, max_blocks] int64          physical block of each logical block
//   ctx_lens [D] int64                      tokens of context of each sequence (>= 1)
//   out      [D, H, hd]
// Each (sequence, kv head) is one work item: its context's K rows are read once for the
// scores of every query head of the group, then its V rows once for the output, block by
// block (no gathered copy, no padding). Returns 0, or -1 if a table entry or a context
// length is out of range (nothing is read out of bounds; the caller raises).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

// Calls fn(l, row) for each of the first L rows of one (sequence, head) context, block by block:
// ``base`` is that head's cache, ``table`` the sequence's physical blocks.
template <typename Fn>
static inline void for_each_row(const float* base, const int64_t* table, int64_t L, int64_t bs, int64_t hd,
                                Fn&& fn) {
  for (int64_t l0 = 0; l0 < L; l0 += bs) {
    const float* block = base + table[l0 / bs] * bs * hd;
    const int64_t n = std::min(bs, L - l0);
    for (int64_t t = 0; t < n; ++t) fn(l0 + t, block + t * hd);
  }
}

extern "C" int llmos_paged_decode_attention_f32(
    const float* q, const float* k_cache, const float* v_cache, const int64_t* tables,
    const int64_t* ctx_lens, float* out, int64_t D, int64_t H, int64_t nkv, int64_t num_blocks,
    int64_t bs, int64_t hd, int64_t max_blocks, float scale, int nthreads) {
  if (nkv <= 0 || H % nkv != 0 || bs <= 0 || hd <= 0) return -1;
  for (int64_t d = 0; d < D; ++d) {
    const int64_t L = ctx_lens[d];
    if (L < 1 || L > max_blocks * bs) return -1;
    for (int64_t b = 0; b < (L + bs - 1) / bs; ++b) {
      const int64_t blk = tables[d * max_blocks + b];
      if (blk < 0 || blk >= num_blocks) return -1;
    }
  }
  const int64_t group = H / nkv;
  const int64_t head_stride = num_blocks * bs * hd;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t w = 0; w < D * nkv; ++w) {
    const int64_t d = w / nkv, kh = w % nkv;
    const int64_t L = ctx_lens[d];
    const int64_t* table = tables + d * max_blocks;
    const float* kbase = k_cache + kh * head_stride;
    const float* vbase = v_cache + kh * head_stride;
    const float* qh = q + (d * H + kh * group) * hd;
    std::vector<float> s(group * L);
    for_each_row(kbase, table, L, bs, hd, [&](int64_t l, const float* kr) {
      for (int64_t g = 0; g < group; ++g) {
        const float* qr = qh + g * hd;
        float acc = 0.f;
#pragma omp simd reduction(+ : acc)
        for (int64_t i = 0; i < hd; ++i) acc += qr[i] * kr[i];
        s[g * L + l] = acc * scale;
      }
    });
    for (int64_t g = 0; g < group; ++g) {  // softmax of each head's scores
      float* sg = s.data() + g * L;
      float m = -INFINITY;
      for (int64_t l = 0; l < L; ++l) m = std::max(m, sg[l]);
      float sum = 0.f;
      for (int64_t l = 0; l < L; ++l) {
        sg[l] = std::exp(sg[l] - m);
        sum += sg[l];
      }
      const float inv = 1.f / sum;
      for (int64_t l = 0; l < L; ++l) sg[l] *= inv;
    }
    float* oh = out + (d * H + kh * group) * hd;
    std::fill(oh, oh + group * hd, 0.f);
    for_each_row(vbase, table, L, bs, hd, [&](int64_t l, const float* vr) {
      for (int64_t g = 0; g < group; ++g) {
        const float p = s[g * L + l];
        float* o = oh + g * hd;
#pragma omp simd
        for (int64_t i = 0; i < hd; ++i) o[i] += p * vr[i];
      }
    });
  }
  return 0;
}

// Writes the K and V rows of T new tokens into their cache slots (slot = block * bs + offset):
//   k/v     [T, kv_heads, hd], rows ``row_stride`` floats apart, each row's heads contiguous
//   caches  [kv_heads, num_slots, hd] contiguous
// Returns 0, or -1 if a slot is out of range (nothing is written then).
extern "C" int llmos_write_kv_f32(const float* k, const float* v, int64_t k_row_stride, int64_t v_row_stride,
                                  float* k_cache, float* v_cache, const int64_t* slots, int64_t T, int64_t nkv,
                                  int64_t hd, int64_t num_slots) {
  for (int64_t t = 0; t < T; ++t)
    if (slots[t] < 0 || slots[t] >= num_slots) return -1;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t slot = slots[t];
    for (int64_t h = 0; h < nkv; ++h) {
      std::copy_n(k + t * k_row_stride + h * hd, hd, k_cache + (h * num_slots + slot) * hd);
      std::copy_n(v + t * v_row_stride + h * hd, hd, v_cache + (h * num_slots + slot) * hd);
    }
  }
  return 0;
}
