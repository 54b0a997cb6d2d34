/**
 * Referrers (OCI distribution 1.1): artifact manifests that name another manifest as their
 * `subject` (signatures, SBOMs, attestations), and the list of them for a subject.
 *
 * A registry with the referrers API answers a manifest PUT with `OCI-Subject` and serves
 * `GET /v2/<name>/referrers/<digest>`. For the others the client keeps the referrers tag schema:
 * the tag `sha256-<hex>` of the subject holds an OCI index of its referrers, updated on every
 * push with `If-Match` (or `If-None-Match: *` for a new tag) and merged again after a 412.
 *
 * NOTE: registries that ignore conditional requests (docker-registry 2.8 does) let two pushers
 * racing on one subject lose an entry: last writer wins. The superseded index is not deleted.
 */
import { CcpipeError } from '../errors.js';
import { repositoryScope } from './auth.js';
import { parseDigest, sha256Digest } from './digest.js';
import { MAX_MANIFEST_BYTES, parseManifest, type Descriptor, type ImageIndex } from './manifest.js';
import { readManifest, writeManifest, type ManifestRead } from './manifest-io.js';
import {
  OCI_EMPTY,
  OCI_INDEX,
  OCI_MANIFEST,
  isWellFormedMediaType,
} from './media-types.js';
import type { ImageReference } from './reference.js';
import type { Call, RegistryTransport } from './transport.js';

/** The bytes of the OCI empty blob, `{}`. */
export const EMPTY_BLOB: Buffer = Buffer.from('{}');

/** The OCI empty descriptor: config of configless artifacts, layer of layerless ones. */
export const EMPTY_DESCRIPTOR: Readonly<Descriptor> = Object.freeze({
  mediaType: OCI_EMPTY,
  digest: sha256Digest(EMPTY_BLOB),
  size: EMPTY_BLOB.byteLength,
  data: EMPTY_BLOB.toString('base64'),
});

/** Content of an artifact: a blob with its media type. */
export interface ArtifactBlob {
  mediaType: string;
  data: Buffer;
  annotations?: Record<string, string>;
}

/** What `RegistryClient.pushArtifact` attaches, and to what. */
export interface PushArtifactOptions {
  /** The artifact's type (`application/vnd.example.sbom+json`). */
  artifactType: string;
  /** The manifest the artifact refers to, in the same repository. */
  subject: Pick<Descriptor, 'mediaType' | 'digest' | 'size'>;
  /** Layers; none gives the empty descriptor as the only layer. */
  blobs?: ArtifactBlob[];
  /** A config blob; default: the empty config `{}`. */
  config?: ArtifactBlob;
  annotations?: Record<string, string>;
  /** A tag for the artifact; by default it is pushed by digest only. */
  tag?: string;
}

/** A pushed artifact manifest. */
export interface PushedArtifact {
  /** The artifact manifest's descriptor, as listed among the subject's referrers. */
  descriptor: Descriptor;
  manifestBytes: Buffer;
  /** True when the registry took the subject itself (`OCI-Subject`); else the tag was updated. */
  referrersApi: boolean;
}

/** Filters of `RegistryClient.listReferrers`. */
export interface ListReferrersOptions {
  /** Only referrers of this artifact type (applied here too when the registry ignores it). */
  artifactType?: string;
}

const MAX_TAG_UPDATES = 5;
const MAX_PAGES = 100;

/** The referrers tag schema's tag for a subject: `sha256-<hex>`. */
export function referrersTag(digest: string): string {
  return parseDigest(digest, 'subject digest').replace(':', '-');
}

/** An OCI image manifest for an artifact. */
export function artifactManifest(parts: {
  artifactType: string;
  config: Descriptor;
  layers: Descriptor[];
  subject: Descriptor;
  annotations?: Record<string, string>;
}): Record<string, unknown> {
  return {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: parts.artifactType,
    config: parts.config,
    layers: parts.layers.length > 0 ? parts.layers : [{ ...EMPTY_DESCRIPTOR }],
    subject: parts.subject,
    ...(parts.annotations ? { annotations: parts.annotations } : {}),
  };
}

/** Checks the caller's artifact options (media types, subject digest). */
export function checkArtifactOptions(ref: ImageReference, options: PushArtifactOptions): void {
  const what = `artifact for ${ref}`;
  const types = [options.artifactType, options.subject.mediaType, options.config?.mediaType,
    ...(options.blobs ?? []).map((b) => b.mediaType)];
  const bad = types.find((type) => type !== undefined && !isWellFormedMediaType(type));
  if (bad !== undefined) {
    throw new CcpipeError('INVALID_INPUT', `${what}: ${JSON.stringify(bad)} is not a media type`);
  }
  parseDigest(options.subject.digest, `${what}: subject digest`);
  if (!Number.isSafeInteger(options.subject.size) || options.subject.size < 0) {
    throw new CcpipeError('INVALID_INPUT', `${what}: bad subject size ${options.subject.size}`);
  }
}

/**
 * The subject a manifest or index names, or undefined (not OCI, no subject, or not parseable:
 * the registry judges those).
 */
export function subjectOf(
  bytes: Buffer,
  mediaType: string,
  ref: ImageReference,
): { subject: Descriptor; descriptor: Descriptor } | undefined {
  if (mediaType !== OCI_MANIFEST && mediaType !== OCI_INDEX) return undefined;
  let parsed: ReturnType<typeof parseManifest>;
  try {
    parsed = parseManifest(bytes, mediaType, ref);
  } catch {
    return undefined;
  }
  const doc = parsed.kind === 'manifest' ? parsed.manifest : parsed.index;
  if (doc.subject === undefined) return undefined;

  const configType = parsed.kind === 'manifest' ? parsed.manifest.config.mediaType : undefined;
  const artifactType = doc.artifactType ?? configType;
  const descriptor: Descriptor = {
    mediaType,
    digest: sha256Digest(bytes),
    size: bytes.byteLength,
    ...(artifactType === undefined ? {} : { artifactType }),
    ...(doc.annotations === undefined ? {} : { annotations: doc.annotations }),
  };
  return { subject: doc.subject, descriptor };
}

/**
 * Adds `descriptor` to the referrers index under the subject's `sha256-<hex>` tag, unless it is
 * listed already. Conditional PUT; after a 412, reads and merges again (at most 5 times).
 */
export async function addToReferrersTag(
  t: RegistryTransport,
  ref: ImageReference,
  subjectDigest: string,
  descriptor: Descriptor,
): Promise<void> {
  const tagRef = ref.withTag(referrersTag(subjectDigest));
  for (let attempt = 1; attempt <= MAX_TAG_UPDATES; attempt++) {
    const current = await readManifest(t, tagRef, [OCI_INDEX], 'undefined');
    const index = current ? referrersIndex(current, tagRef) : emptyIndex();
    if (index.manifests.some((d) => d.digest === descriptor.digest)) return;

    const next: ImageIndex = { ...index, manifests: [...index.manifests, descriptor] };
    const bytes = Buffer.from(JSON.stringify(next));
    const headers = condition(current);
    const written = await writeManifest(t, tagRef, bytes, OCI_INDEX, { headers, ok: [412] });
    if (written.status !== 412) return;
    t.log.debug('referrers tag changed meanwhile; merging again', { ref: String(tagRef),
      attempt });
  }
  throw new CcpipeError('CONFLICT', `referrers tag ${tagRef}: changed by someone else on each ` +
    `of ${MAX_TAG_UPDATES} attempts to add ${descriptor.digest}`);
}

/**
 * The referrers of `digest`: from the referrers API, else (404) from the referrers tag, else
 * none. Filtered by `artifactType` here as well, in case the registry ignored the filter.
 */
export async function listReferrers(
  t: RegistryTransport,
  ref: ImageReference,
  digest: string,
  options: ListReferrersOptions = {},
): Promise<Descriptor[]> {
  const subject = parseDigest(digest, `referrers subject for ${ref}`);
  const listed = (await fromApi(t, ref, subject, options.artifactType)) ??
    (await fromTag(t, ref, subject));
  const wanted = options.artifactType;
  return wanted === undefined ? listed : listed.filter((d) => d.artifactType === wanted);
}

async function fromApi(
  t: RegistryTransport,
  ref: ImageReference,
  digest: string,
  artifactType: string | undefined,
): Promise<Descriptor[] | undefined> {
  const url = t.url(ref, `referrers/${digest}`);
  if (artifactType !== undefined) url.searchParams.set('artifactType', artifactType);
  const call: Call = {
    ref, what: 'referrers', method: 'GET', url, digest, ok: [200, 404],
    scopes: [repositoryScope(ref.repository, 'pull')], headers: { accept: OCI_INDEX },
  };

  const found: Descriptor[] = [];
  for (let page = 1; page <= MAX_PAGES; page++) {
    const { res, url: served, deadline } = await t.send(call);
    if (res.status === 404 && page === 1) {
      deadline.clear();
      await res.body?.cancel().catch(() => undefined);
      return undefined;
    }
    const bytes = await t.readAll(call, served, res, deadline, MAX_MANIFEST_BYTES);
    const index = parseReferrersPage(bytes, res, ref, digest);
    found.push(...index.manifests);

    const next = nextLink(res.headers.get('link'));
    if (next === undefined) return found;
    call.url = t.resolveUrl(call, served, next);
    call.ok = [200];
  }
  throw t.protocolError(call, call.url, `more than ${MAX_PAGES} pages of referrers`);
}

async function fromTag(
  t: RegistryTransport,
  ref: ImageReference,
  digest: string,
): Promise<Descriptor[]> {
  const tagRef = ref.withTag(referrersTag(digest));
  const current = await readManifest(t, tagRef, [OCI_INDEX], 'undefined');
  return current ? referrersIndex(current, tagRef).manifests : [];
}

function parseReferrersPage(
  bytes: Buffer,
  res: Response,
  ref: ImageReference,
  digest: string,
): ImageIndex {
  const what = `referrers of ${ref.withDigest(digest)}`;
  const parsed = parseManifest(bytes, res.headers.get('content-type') ?? OCI_INDEX, what);
  if (parsed.kind !== 'index') {
    throw new CcpipeError('UPSTREAM', `${what}: the registry answered with a manifest, ` +
      'not an index', { retryable: false });
  }
  return parsed.index;
}

/** The index a referrers tag holds; anything else there is not overwritten. */
function referrersIndex(read: ManifestRead, tagRef: ImageReference): ImageIndex {
  const parsed = parseManifest(read.bytes, read.mediaType, tagRef);
  if (parsed.kind !== 'index' || parsed.mediaType !== OCI_INDEX) {
    throw new CcpipeError('CONFLICT', `referrers tag ${tagRef} holds a ${parsed.mediaType}, ` +
      'not an OCI index of referrers; it is left as it is', { retryable: false });
  }
  return parsed.index;
}

function emptyIndex(): ImageIndex {
  return { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] };
}

/** `If-Match` the version read, or `If-None-Match: *` when there was none. */
function condition(current: ManifestRead | undefined): Record<string, string> {
  if (current === undefined) return { 'if-none-match': '*' };
  return current.etag === undefined ? {} : { 'if-match': current.etag };
}

/** The target of `Link: <…>; rel="next"`, if any. */
function nextLink(header: string | null): string | undefined {
  for (const part of header?.split(',') ?? []) {
    const match = /^\s*<([^>]*)>\s*;\s*rel="?next"?\s*$/i.exec(part);
    if (match) return match[1];
  }
  return undefined;
}
