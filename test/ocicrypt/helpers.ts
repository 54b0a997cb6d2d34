/** Shared fixtures for the ocicrypt tests: keys, descriptors and whole-buffer round trips. */
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { expect } from 'vitest';
import {
  createLayerDecryptor,
  createLayerEncryptor,
  type Descriptor,
  type InjectedSecrets,
  type LayerDecryptor,
  type Recipient,
} from '../../shared/ocicrypt/index.js';

export const GZIP_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';

export interface RsaPair {
  publicKey: KeyObject;
  privateKey: KeyObject;
}

/** A fresh RSA key pair (2048 bits unless told). */
export function rsaPair(bits = 2048): RsaPair {
  return generateKeyPairSync('rsa', { modulusLength: bits });
}

export function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** The descriptor of `bytes` as a layer. */
export function layerDescriptor(bytes: Buffer, mediaType = GZIP_LAYER): Descriptor {
  return { mediaType, digest: sha256(bytes), size: bytes.length };
}

/** Feeds `bytes` in chunks of `chunkSize` through `transform` and collects the output. */
export async function runTransform(
  transform: Transform,
  bytes: Buffer,
  chunkSize = 4096,
): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(chunks(bytes, chunkSize)), transform, async (source) => {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      out.push(chunk);
    }
  });
  return Buffer.concat(out);
}

function* chunks(bytes: Buffer, size: number): Generator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) {
    yield bytes.subarray(at, at + size);
  }
}

/** Encrypts a whole layer; returns the ciphertext and the encrypted descriptor. */
export async function encryptLayer(
  plaintext: Buffer,
  recipients: Recipient[],
  options: { source?: Descriptor; inject?: InjectedSecrets } = {},
): Promise<{ ciphertext: Buffer; descriptor: Descriptor }> {
  const source = options.source ?? layerDescriptor(plaintext);
  const encryptor = createLayerEncryptor(source, recipients, options.inject);
  const ciphertext = await runTransform(encryptor.transform, plaintext);
  return { ciphertext, descriptor: encryptor.finish() };
}

/** Decrypts a whole layer; returns the plaintext and the finished decryptor. */
export async function decryptLayer(
  descriptor: Descriptor,
  ciphertext: Buffer,
  privateKeys: KeyObject[],
): Promise<{ plaintext: Buffer; decryptor: LayerDecryptor }> {
  const decryptor = createLayerDecryptor(descriptor, privateKeys);
  const plaintext = await runTransform(decryptor, ciphertext);
  return { plaintext, decryptor };
}

/** Asserts that `run` throws (or rejects with) a CcpipeError with `code` and a matching message. */
export async function expectFailure(
  run: () => unknown,
  code: string,
  message: RegExp,
): Promise<Error> {
  let caught: unknown;
  try {
    await run();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a failure').toBeInstanceOf(Error);
  expect(caught).toMatchObject({ name: 'CcpipeError', code });
  expect((caught as Error).message).toMatch(message);
  return caught as Error;
}

/** Decodes a padded standard base64 annotation, asserting it is exactly that encoding. */
export function decodeStdBase64(text: string): Buffer {
  expect(text).toMatch(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/);
  const bytes = Buffer.from(text, 'base64');
  expect(bytes.toString('base64')).toBe(text);
  return bytes;
}

/** The annotation `name` of `descriptor`, asserting it exists. */
export function annotation(descriptor: Descriptor, name: string): string {
  const value = descriptor.annotations?.[name];
  expect(value, `annotation ${name}`).toBeTypeOf('string');
  return value as string;
}
