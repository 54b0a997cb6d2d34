/**
 * Decrypting a layer into a file with staging: the plaintext goes to a temporary file next to
 * the destination and is renamed into place only after the ciphertext digest and HMAC matched,
 * so the destination never holds unauthenticated plaintext.
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createLayerDecryptor, decryptedDescriptor } from './layer.js';
import type { Descriptor } from './types.js';

/**
 * Decrypts the layer `encrypted`, read from `ciphertext`, into `destination` and returns the
 * decrypted descriptor. On any failure the staged file is removed, `destination` is left as it
 * was, and the error (CRYPTO, DIGEST_MISMATCH, ...) is rethrown.
 */
export async function decryptLayerToFile(
  encrypted: Descriptor,
  privateKeys: readonly KeyObject[],
  ciphertext: Readable,
  destination: string,
): Promise<Descriptor> {
  const decryptor = createLayerDecryptor(encrypted, privateKeys);
  const staged = `${destination}.partial-${randomBytes(6).toString('hex')}`;

  try {
    await pipeline(ciphertext, decryptor, createWriteStream(staged, { flags: 'wx' }));
    await rename(staged, destination);
  } catch (err) {
    await rm(staged, { force: true });
    throw err;
  }
  return decryptedDescriptor(encrypted, decryptor.plaintextDigest);
}
