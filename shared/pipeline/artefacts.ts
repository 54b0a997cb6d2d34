import { createHash } from 'node:crypto';
import { CcpipeError } from '../errors.js';
import { streamText } from '../runs/run-store.js';
import { statusOf } from '../errors.js';
import type { Services } from './services.js';

/** Stores a policy text under its own digest; the same text is stored once. */
export async function savePolicy(services: Services, policyText: string): Promise<string> {
  const digest = 'sha256:' + createHash('sha256').update(policyText, 'utf8').digest('hex');
  const blob = services.artefacts.getBlockBlobClient(policyPath(digest));
  try {
    await blob.upload(policyText, Buffer.byteLength(policyText), {
      conditions: { ifNoneMatch: '*' },
      blobHTTPHeaders: { blobContentType: 'text/plain; charset=utf-8' },
    });
  } catch (err) {
    if (statusOf(err) !== 409) {
      throw new CcpipeError('UPSTREAM', `could not store policy ${digest}`, { cause: err });
    }
  }
  return digest;
}

export async function loadPolicy(services: Services, digest: string): Promise<string> {
  const blob = services.artefacts.getBlockBlobClient(policyPath(digest));
  let text: string;
  try {
    text = await streamText((await blob.download()).readableStreamBody);
  } catch (err) {
    const code = statusOf(err) === 404 ? 'NOT_FOUND' : 'UPSTREAM';
    throw new CcpipeError(code, `could not read policy ${digest}`, { cause: err });
  }

  const actual = 'sha256:' + createHash('sha256').update(text, 'utf8').digest('hex');
  if (actual !== digest) {
    throw new CcpipeError('DIGEST_MISMATCH', `stored policy ${digest} has digest ${actual}`);
  }
  return text;
}

function policyPath(digest: string): string {
  return `policies/${digest.replace(':', '-')}.rego`;
}
