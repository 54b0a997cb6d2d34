/*
 * Sixteen dm-verity block hashes at once with AVX-512 (see sha256-x16.c).
 */
#ifndef CCPIPE_SHA256_X16_H
#define CCPIPE_SHA256_X16_H

#include <stddef.h>

/* 1 when this CPU (and its OS) can run verity_hash_x16; computes the constants once. */
int verity_x16_available(void);

/*
 * sha256(32 zero bytes || block) for 16 consecutive 4096-byte blocks at `input`; writes the
 * 16 digests, 32 bytes each, to `output`.
 */
void verity_hash_x16(const unsigned char *input, unsigned char *output);

#endif
