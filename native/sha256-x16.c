/*
 * SHA-256 of sixteen independent messages at once, one per 32-bit lane of an AVX-512
 * register, specialised to dm-verity data blocks: each message is 32 zero bytes of salt
 * followed by one 4096-byte block (4128 bytes, so 65 compressions of 64 bytes; the last one
 * holds the block's final 32 bytes, the 0x80 terminator and the bit length 33024).
 *
 * Written from FIPS 180-4 (section 6.2). A single stream is hashed faster by the CPU's SHA
 * extensions, but the 16 lanes do more work per instruction when there are many independent
 * blocks, which a layer image has. The round constants are derived at start-up as FIPS
 * 180-4 defines them (cube and square roots of the first primes), and the results are
 * checked against OpenSSL by the tests.
 */
#include "sha256-x16.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define BLOCK_SIZE 4096
#define LANES 16
#define TARGET __attribute__((target("avx512f,avx512bw")))

static uint32_t round_k[64];
static uint32_t initial_h[8];
static int available = -1;

/* The first 32 bits of the fractional part of x. */
static uint32_t fraction_bits(long double x) {
  long double fraction = x - floorl(x);
  return (uint32_t)(fraction * 4294967296.0L);
}

static void derive_constants(void) {
  int primes[64];
  int count = 0;

  for (int n = 2; count < 64; n++) {
    int prime = 1;
    for (int d = 2; d * d <= n; d++) {
      if (n % d == 0) prime = 0;
    }
    if (prime) primes[count++] = n;
  }
  for (int i = 0; i < 64; i++) round_k[i] = fraction_bits(cbrtl((long double)primes[i]));
  for (int i = 0; i < 8; i++) initial_h[i] = fraction_bits(sqrtl((long double)primes[i]));
}

int verity_x16_available(void) {
  if (available < 0) {
    derive_constants();
    __builtin_cpu_init();
    available = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  }
  return available;
}

#define ROR(x, n) _mm512_ror_epi32((x), (n))
#define XOR3(a, b, c) _mm512_ternarylogic_epi32((a), (b), (c), 0x96)
#define CH(e, f, g) _mm512_ternarylogic_epi32((e), (f), (g), 0xCA)
#define MAJ(a, b, c) _mm512_ternarylogic_epi32((a), (b), (c), 0xE8)
#define ADD(a, b) _mm512_add_epi32((a), (b))

typedef struct {
  __m512i v[8];
} State;

/* One 64-byte compression for all lanes; w holds the 16 message words of each lane. */
TARGET static void compress(State *state, __m512i w[16]) {
  __m512i a = state->v[0], b = state->v[1], c = state->v[2], d = state->v[3];
  __m512i e = state->v[4], f = state->v[5], g = state->v[6], h = state->v[7];

#pragma GCC unroll 64
  for (int t = 0; t < 64; t++) {
    __m512i wt;
    if (t < 16) {
      wt = w[t];
    } else {
      __m512i w2 = w[(t - 2) & 15], w15 = w[(t - 15) & 15];
      __m512i s1 = XOR3(ROR(w2, 17), ROR(w2, 19), _mm512_srli_epi32(w2, 10));
      __m512i s0 = XOR3(ROR(w15, 7), ROR(w15, 18), _mm512_srli_epi32(w15, 3));
      wt = ADD(ADD(s1, w[(t - 7) & 15]), ADD(s0, w[t & 15]));
      w[t & 15] = wt;
    }
    __m512i t1 = ADD(ADD(h, XOR3(ROR(e, 6), ROR(e, 11), ROR(e, 25))),
                     ADD(CH(e, f, g), ADD(wt, _mm512_set1_epi32((int)round_k[t]))));
    __m512i t2 = ADD(XOR3(ROR(a, 2), ROR(a, 13), ROR(a, 22)), MAJ(a, b, c));
    h = g;
    g = f;
    f = e;
    e = ADD(d, t1);
    d = c;
    c = b;
    b = a;
    a = ADD(t1, t2);
  }

  state->v[0] = ADD(state->v[0], a);
  state->v[1] = ADD(state->v[1], b);
  state->v[2] = ADD(state->v[2], c);
  state->v[3] = ADD(state->v[3], d);
  state->v[4] = ADD(state->v[4], e);
  state->v[5] = ADD(state->v[5], f);
  state->v[6] = ADD(state->v[6], g);
  state->v[7] = ADD(state->v[7], h);
}

/*
 * The 16 big-endian words at byte `offset` (offset + 64 <= 4096) of every lane's block, one
 * vector per word: a 16 x 16 transpose of the lanes' 64-byte rows.
 */
TARGET static void load_words(const unsigned char *input, size_t offset, __m512i w[16]) {
  const __m512i swap = _mm512_broadcast_i32x4(
      _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3));
  __m512i row[16], pair[16], quad[16];

  for (int lane = 0; lane < LANES; lane++) {
    row[lane] = _mm512_loadu_si512((const void *)(input + lane * BLOCK_SIZE + offset));
  }
  /* Pairs of rows interleaved word by word, then pairs of those interleaved by two words:
   * quad[4 * i + c] holds, in its 128-bit part k, word 4 * k + c of rows 4 * i .. 4 * i + 3. */
  for (int i = 0; i < 8; i++) {
    pair[2 * i] = _mm512_unpacklo_epi32(row[2 * i], row[2 * i + 1]);
    pair[2 * i + 1] = _mm512_unpackhi_epi32(row[2 * i], row[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    quad[4 * i] = _mm512_unpacklo_epi64(pair[4 * i], pair[4 * i + 2]);
    quad[4 * i + 1] = _mm512_unpackhi_epi64(pair[4 * i], pair[4 * i + 2]);
    quad[4 * i + 2] = _mm512_unpacklo_epi64(pair[4 * i + 1], pair[4 * i + 3]);
    quad[4 * i + 3] = _mm512_unpackhi_epi64(pair[4 * i + 1], pair[4 * i + 3]);
  }
  /* Word 4 * k + c: the 128-bit parts k of quad[c], quad[4 + c], quad[8 + c], quad[12 + c]. */
  for (int c = 0; c < 4; c++) {
    __m512i low01 = _mm512_shuffle_i32x4(quad[c], quad[4 + c], 0x44);
    __m512i high01 = _mm512_shuffle_i32x4(quad[c], quad[4 + c], 0xEE);
    __m512i low23 = _mm512_shuffle_i32x4(quad[8 + c], quad[12 + c], 0x44);
    __m512i high23 = _mm512_shuffle_i32x4(quad[8 + c], quad[12 + c], 0xEE);
    w[c] = _mm512_shuffle_epi8(_mm512_shuffle_i32x4(low01, low23, 0x88), swap);
    w[4 + c] = _mm512_shuffle_epi8(_mm512_shuffle_i32x4(low01, low23, 0xDD), swap);
    w[8 + c] = _mm512_shuffle_epi8(_mm512_shuffle_i32x4(high01, high23, 0x88), swap);
    w[12 + c] = _mm512_shuffle_epi8(_mm512_shuffle_i32x4(high01, high23, 0xDD), swap);
  }
}

TARGET void verity_hash_x16(const unsigned char *input, unsigned char *output) {
  State state;
  __m512i w[16], words16[16];
  uint32_t words[8][LANES];

  for (int i = 0; i < 8; i++) state.v[i] = _mm512_set1_epi32((int)initial_h[i]);

  /* 32 bytes of zero salt, then the block's first 32 bytes. */
  load_words(input, 0, words16);
  for (int i = 0; i < 8; i++) {
    w[i] = _mm512_setzero_si512();
    w[8 + i] = words16[i];
  }
  compress(&state, w);

  /* The block's bytes 32..4064, 64 at a time. */
  for (size_t offset = 32; offset + 64 <= BLOCK_SIZE; offset += 64) {
    load_words(input, offset, w);
    compress(&state, w);
  }

  /* The last 32 bytes, the terminator and the length in bits (32 + 4096 bytes). */
  load_words(input, BLOCK_SIZE - 64, words16);
  for (int i = 0; i < 8; i++) w[i] = words16[8 + i];
  w[8] = _mm512_set1_epi32((int)0x80000000u);
  for (int i = 9; i < 15; i++) w[i] = _mm512_setzero_si512();
  w[15] = _mm512_set1_epi32((32 + BLOCK_SIZE) * 8);
  compress(&state, w);

  for (int i = 0; i < 8; i++) _mm512_storeu_si512((void *)words[i], state.v[i]);
  for (int lane = 0; lane < LANES; lane++) {
    for (int i = 0; i < 8; i++) {
      uint32_t word = words[i][lane];
      unsigned char *at = output + lane * 32 + i * 4;
      at[0] = (unsigned char)(word >> 24);
      at[1] = (unsigned char)(word >> 16);
      at[2] = (unsigned char)(word >> 8);
      at[3] = (unsigned char)word;
    }
  }
}

#else /* not x86-64: the addon hashes every block with OpenSSL */

int verity_x16_available(void) { return 0; }

void verity_hash_x16(const unsigned char *input, unsigned char *output) {
  (void)input;
  (void)output;
}

#endif
