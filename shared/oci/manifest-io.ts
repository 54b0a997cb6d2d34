/**
 * Manifest GET and PUT over the transport, with the checks every caller needs: the bytes match
 * the digest asked for and `Docker-Content-Digest`, at most 4 MiB. `ETag` and extra request
 * headers are exposed for conditional updates (the referrers tag).
 */
import { CcpipeError } from '../errors.js';
import { repositoryScope } from './auth.js';
import { quote, sha256Digest } from './digest.js';
import { MAX_MANIFEST_BYTES } from './manifest.js';
import { baseMediaType, isWellFormedMediaType } from './media-types.js';
import {
  describeCall,
  mismatch,
  type Call,
  type Method,
  type RegistryTransport,
} from './transport.js';
import type { ImageReference } from './reference.js';

/** A manifest or index as served: the exact bytes, their media type and digest. */
export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  digest: string;
}

/** A fetched manifest with the `ETag` it was served with, if any. */
export interface ManifestRead extends FetchedManifest {
  etag?: string;
}

/** What a manifest PUT answered. */
export interface ManifestWrite {
  digest: string;
  status: number;
  headers: Headers;
}

/** A Call for `manifests/<path>` with a pull scope. */
export function manifestCall(
  t: RegistryTransport,
  ref: ImageReference,
  method: Method,
  path: string,
  headers: Record<string, string>,
  ok: number[] = [200],
): Call {
  return {
    ref,
    what: 'manifest',
    method,
    url: t.url(ref, `manifests/${path}`),
    scopes: [repositoryScope(ref.repository, 'pull')],
    ok,
    headers,
    ...(ref.digest === undefined ? {} : { digest: ref.digest }),
  };
}

/**
 * GETs a manifest by tag or digest (digest wins). With `missing: 'undefined'`, a 404 gives
 * undefined instead of NOT_FOUND.
 */
export async function readManifest(
  t: RegistryTransport,
  ref: ImageReference,
  accept: readonly string[],
  missing: 'throw' | 'undefined' = 'throw',
): Promise<ManifestRead | undefined> {
  const ok = missing === 'throw' ? [200] : [200, 404];
  const accepted = { accept: accept.join(', ') };
  const call = manifestCall(t, ref, 'GET', ref.manifestReference, accepted, ok);
  const { res, url, deadline } = await t.send(call);
  if (res.status === 404) {
    deadline.clear();
    await res.body?.cancel().catch(() => undefined);
    return undefined;
  }

  const bytes = await t.readAll(call, url, res, deadline, MAX_MANIFEST_BYTES);
  const digest = sha256Digest(bytes);
  checkServedDigest(call, url, res, digest);
  if (ref.digest !== undefined && ref.digest !== digest) {
    throw mismatch(`manifest ${ref.digest} of ${ref}: the content hashes to ${digest}`);
  }

  const mediaType = baseMediaType(res.headers.get('content-type')) ?? sniffMediaType(bytes);
  const etag = res.headers.get('etag') ?? undefined;
  return etag === undefined ? { bytes, mediaType, digest } : { bytes, mediaType, digest, etag };
}

/**
 * PUTs a manifest under the reference's tag, or by digest when it has none, with extra request
 * headers (`If-Match`, …) and extra accepted statuses (412). Returns the digest of exactly the
 * bytes sent and the response's status and headers.
 */
export async function writeManifest(
  t: RegistryTransport,
  ref: ImageReference,
  bytes: Buffer,
  mediaType: string,
  extra: { headers?: Record<string, string>; ok?: number[] } = {},
): Promise<ManifestWrite> {
  checkManifestUpload(ref, bytes, mediaType);
  const digest = sha256Digest(bytes);
  if (ref.digest !== undefined && ref.digest !== digest) {
    throw mismatch(`manifest for ${ref}: the bytes hash to ${digest}, not ${ref.digest}`);
  }

  const headers = { 'content-type': mediaType, ...extra.headers };
  const ok = [200, 201, ...(extra.ok ?? [])];
  const call = manifestCall(t, ref, 'PUT', ref.tag ?? digest, headers, ok);
  call.scopes = [repositoryScope(ref.repository, 'pull,push')];
  call.body = bytes;
  call.digest = digest;

  const { res, url } = await t.exchange(call);
  if (res.status === 200 || res.status === 201) checkServedDigest(call, url, res, digest);
  return { digest, status: res.status, headers: res.headers };
}

function checkManifestUpload(ref: ImageReference, bytes: Buffer, mediaType: string): void {
  if (!isWellFormedMediaType(mediaType)) {
    const shown = quote(mediaType);
    throw new CcpipeError('INVALID_INPUT', `manifest for ${ref}: ${shown} is not a media type`);
  }
  if (bytes.byteLength > MAX_MANIFEST_BYTES) {
    const size = bytes.byteLength;
    throw new CcpipeError('INVALID_INPUT', `manifest for ${ref} is ${size} bytes, over 4 MiB`);
  }
}

/** Throws DIGEST_MISMATCH when `Docker-Content-Digest` names other content. */
export function checkServedDigest(call: Call, url: URL, res: Response, digest: string): void {
  const served = res.headers.get('docker-content-digest');
  if (served === null || served === digest) return;
  throw mismatch(`${describeCall(call, url)}: the registry reports digest ${quote(served)}, ` +
    `the content is ${digest}`);
}

/** The `mediaType` a body declares, for registries that send no Content-Type. */
function sniffMediaType(bytes: Buffer): string {
  try {
    const parsed = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown };
    return typeof parsed.mediaType === 'string' ? parsed.mediaType : '';
  } catch {
    return '';
  }
}
