/**
 * A thin OCI distribution client over the global `fetch`: manifests and blobs by tag or digest,
 * verified blob reads that resume with `Range`, chunked uploads that resume after a dropped
 * connection, cross-repository mounts, referrers (API or tag schema), and Docker's anonymous,
 * Basic and Bearer token authentication or a token provider such as `AcrTokenCredentials`.
 *
 * Every URL (registry, upload location, redirect target, token realm) must be on the allowlist
 * before a byte is sent; plain http is used only for hosts listed in `plainHttpHosts`.
 * Credentials and tokens are never logged, and URLs are logged without their query.
 *
 * The pieces: `transport.ts` (requests, auth, retries), `upload.ts` and `chunks.ts` (uploads),
 * `download.ts` (reads), `manifest-io.ts` (manifest GET/PUT), `referrers.ts`, `acr.ts`.
 */
import { Readable } from 'node:stream';
import { CcpipeError } from '../errors.js';
import { repositoryScope } from './auth.js';
import { BufferChunks, StreamChunks } from './chunks.js';
import { parseDigest, quote, sha256Digest, type BlobInfo } from './digest.js';
import { readBlob } from './download.js';
import { contentLength, redactUrl } from './http.js';
import {
  MAX_CONFIG_BYTES,
  parseImageConfig,
  parseManifest,
  selectPlatform,
  type Descriptor,
  type ImageConfig,
  type ImageManifest,
  type ParsedManifest,
  type PlatformSpec,
} from './manifest.js';
import {
  manifestCall,
  readManifest,
  writeManifest,
  type FetchedManifest,
} from './manifest-io.js';
import {
  MANIFEST_ACCEPT,
  OCI_MANIFEST,
  baseMediaType,
  isConfigMediaType,
} from './media-types.js';
import { ImageReference } from './reference.js';
import {
  EMPTY_BLOB,
  EMPTY_DESCRIPTOR,
  addToReferrersTag,
  artifactManifest,
  checkArtifactOptions,
  listReferrers,
  subjectOf,
  type ArtifactBlob,
  type ListReferrersOptions,
  type PushArtifactOptions,
  type PushedArtifact,
} from './referrers.js';
import { RegistryTransport, mismatch, type RegistryClientOptions } from './transport.js';
import { cancelUpload, hasBlob, uploadBlob, uploadCall } from './upload.js';

export type { RegistryCredentials, RegistryTokenProvider, TokenRequest } from './auth.js';
export type { BlobInfo } from './digest.js';
export type { FetchedManifest } from './manifest-io.js';
export type {
  ArtifactBlob,
  ListReferrersOptions,
  PushArtifactOptions,
  PushedArtifact,
} from './referrers.js';
export {
  RegistryError,
  type RegistryClientOptions,
  type RegistryErrorOptions,
} from './transport.js';

/** What `HEAD` says about a manifest. */
export interface ManifestHead {
  digest: string;
  mediaType: string;
  size: number;
}

/** A single-platform image with its verified manifest and configuration. */
export interface ResolvedImage {
  manifest: ImageManifest;
  manifestBytes: Buffer;
  manifestMediaType: string;
  manifestDigest: string;
  /** The digest of the index the manifest was selected from, when the reference named one. */
  indexDigest?: string;
  config: ImageConfig;
  configBytes: Buffer;
}

/** A reference, as an `ImageReference` or a string to parse. */
export type ReferenceLike = ImageReference | string;

const DEFAULT_PLATFORM: PlatformSpec = { os: 'linux', architecture: 'amd64' };

/** An OCI distribution client for the registries on its allowlist. */
export class RegistryClient {
  private readonly t: RegistryTransport;

  constructor(options: RegistryClientOptions) {
    this.t = new RegistryTransport(options);
  }

  /**
   * Fetches a manifest or index by tag or digest (digest wins when both are given). The bytes
   * are checked against the reference's digest and against `Docker-Content-Digest`.
   */
  async getManifest(
    refLike: ReferenceLike,
    accept: readonly string[] = MANIFEST_ACCEPT,
  ): Promise<FetchedManifest> {
    const ref = this.t.reference(refLike);
    const read = await readManifest(this.t, ref, accept);
    if (read === undefined) throw new CcpipeError('INTERNAL', `manifest of ${ref}: no reply`);
    return { bytes: read.bytes, mediaType: read.mediaType, digest: read.digest };
  }

  /** HEADs a manifest: its digest, media type and size, or undefined when it does not exist. */
  async headManifest(refLike: ReferenceLike): Promise<ManifestHead | undefined> {
    const ref = this.t.reference(refLike);
    const accept = { accept: MANIFEST_ACCEPT.join(', ') };
    const call = manifestCall(this.t, ref, 'HEAD', ref.manifestReference, accept, [200, 404]);
    const { res, url } = await this.t.exchange(call);
    if (res.status === 404) return undefined;

    const served = res.headers.get('docker-content-digest');
    const size = contentLength(res);
    if (served === null || size === undefined) return this.headByGet(ref);

    const digest = parseDigest(served, `Docker-Content-Digest of ${redactUrl(url)}`);
    if (ref.digest !== undefined && ref.digest !== digest) {
      throw mismatch(`manifest ${ref.digest} of ${ref}: the registry reports ${digest}`);
    }
    const mediaType = baseMediaType(res.headers.get('content-type')) ?? '';
    return { digest, mediaType, size };
  }

  /**
   * Uploads a manifest or index under the reference's tag, or by digest when it has none, and
   * returns the digest of exactly the bytes sent. An OCI manifest or index with a `subject` is
   * also listed in the subject's referrers tag (`sha256-<hex>`) when the registry does not
   * answer with `OCI-Subject` (no referrers API).
   */
  async putManifest(refLike: ReferenceLike, bytes: Buffer, mediaType: string): Promise<string> {
    const ref = this.t.reference(refLike);
    const written = await writeManifest(this.t, ref, bytes, mediaType);
    await this.maintainReferrers(ref, bytes, mediaType, written.headers);
    return written.digest;
  }

  /** True when the repository has the blob. */
  async hasBlob(refLike: ReferenceLike, digest: string): Promise<boolean> {
    const ref = this.t.reference(refLike);
    const checked = parseDigest(digest, `blob digest for ${ref}`);
    return hasBlob(this.t, ref, checked);
  }

  /**
   * Streams a blob. The stream fails with DIGEST_MISMATCH, before its last chunk is delivered,
   * when the body is longer or shorter than `size` or does not hash to `digest`; it never holds
   * more than a chunk or two. A body cut short is resumed with `Range` (up to `maxRetries`
   * times without progress). Bad arguments and hosts off the allowlist throw synchronously;
   * HTTP failures are stream errors.
   */
  openBlob(refLike: ReferenceLike, blob: BlobInfo): Readable {
    const ref = this.t.reference(refLike);
    const { digest, size } = checkBlobInfo(ref, blob);
    return Readable.from(readBlob(this.t, ref, digest, size), { objectMode: false });
  }

  /**
   * Uploads a blob held in memory (HEAD first): one PUT up to `chunkSize`, PATCH chunks above
   * (resumed from the registry's `Range` after a failure).
   */
  async pushBlob(refLike: ReferenceLike, bytes: Buffer): Promise<BlobInfo> {
    const ref = this.t.reference(refLike);
    const blob = { digest: sha256Digest(bytes), size: bytes.byteLength };
    if (await hasBlob(this.t, ref, blob.digest)) return blob;

    return uploadBlob(this.t, ref, (chunkSize) => new BufferChunks(bytes, chunkSize), blob);
  }

  /**
   * Uploads a blob from a stream, one chunk (`chunkSize`) in memory at a time: one PUT when the
   * stream fits in a chunk, else PATCH chunks with `Content-Range` and a PUT `?digest=` computed
   * on the way. A failed PATCH is resumed from what the registry reports it has. With
   * `expected`, an existing blob is not uploaded again (the stream is then destroyed unread)
   * and a different digest or size fails with DIGEST_MISMATCH before the upload is committed.
   * The stream is destroyed when the upload fails.
   */
  async pushBlobStream(
    refLike: ReferenceLike,
    stream: Readable,
    expected?: BlobInfo,
  ): Promise<BlobInfo> {
    const ref = this.t.reference(refLike);
    try {
      if (expected) {
        checkBlobInfo(ref, expected);
        if (await hasBlob(this.t, ref, expected.digest)) {
          stream.destroy();
          return { digest: expected.digest, size: expected.size };
        }
      }
      const open = (chunkSize: number) =>
        new StreamChunks(stream, chunkSize, `blob upload to ${ref}`, tooLong(ref, expected));
      return await uploadBlob(this.t, ref, open, expected);
    } catch (err) {
      stream.destroy();
      throw err;
    }
  }

  /**
   * Mounts a blob from another repository of the same registry. True when mounted (201); false
   * when the registry opened an upload session instead (202), which is cancelled.
   */
  async mountBlob(
    refLike: ReferenceLike,
    digest: string,
    fromRepository: string | ImageReference,
  ): Promise<boolean> {
    const ref = this.t.reference(refLike);
    const checked = parseDigest(digest, `blob digest to mount into ${ref}`);
    const from = mountSource(ref, fromRepository);

    const url = this.t.url(ref, 'blobs/uploads/');
    url.searchParams.set('mount', checked);
    url.searchParams.set('from', from.repository);
    const call = uploadCall(ref, 'POST', url, [201, 202], checked);
    call.scopes.push(repositoryScope(from.repository, 'pull'));
    call.body = Buffer.alloc(0);

    const { res } = await this.t.exchange(call);
    if (res.status === 201) return true;
    await cancelUpload(this.t, ref, this.t.location(call, url, res));
    return false;
  }

  /**
   * Pushes an artifact manifest (OCI image manifest with `artifactType`, the empty config unless
   * one is given, `subject`) by digest, and lists it among the subject's referrers: by the
   * registry itself (`OCI-Subject`) or in the referrers tag.
   */
  async pushArtifact(
    refLike: ReferenceLike,
    options: PushArtifactOptions,
  ): Promise<PushedArtifact> {
    const ref = this.t.reference(refLike);
    checkArtifactOptions(ref, options);
    const layers = await this.pushArtifactBlobs(ref, options.blobs ?? []);
    const config = options.config
      ? await this.pushArtifactBlob(ref, options.config)
      : await this.pushEmptyBlob(ref);

    const { mediaType, digest, size } = options.subject;
    const annotations = options.annotations ? { annotations: options.annotations } : {};
    const manifest = artifactManifest({ artifactType: options.artifactType, config, layers,
      subject: { mediaType, digest, size }, ...annotations });
    const manifestBytes = Buffer.from(JSON.stringify(manifest));

    const target = options.tag === undefined ? withoutTag(ref) : ref.withTag(options.tag);
    const written = await writeManifest(this.t, target, manifestBytes, OCI_MANIFEST);
    const referrersApi = await this.maintainReferrers(target, manifestBytes, OCI_MANIFEST,
      written.headers);
    const descriptor: Descriptor = { mediaType: OCI_MANIFEST, digest: written.digest,
      size: manifestBytes.byteLength, artifactType: options.artifactType, ...annotations };
    return { descriptor, manifestBytes, referrersApi };
  }

  /**
   * The referrers of manifest `digest` in the reference's repository: from the referrers API,
   * else from the referrers tag, else none; optionally of one `artifactType` only.
   */
  async listReferrers(
    refLike: ReferenceLike,
    digest: string,
    options: ListReferrersOptions = {},
  ): Promise<Descriptor[]> {
    const ref = this.t.reference(refLike);
    return listReferrers(this.t, ref, digest, options);
  }

  /**
   * Resolves a reference to one image: follows an index to the manifest for `platform`, then
   * fetches and verifies the configuration.
   */
  async resolveImage(
    refLike: ReferenceLike,
    platform: PlatformSpec = DEFAULT_PLATFORM,
  ): Promise<ResolvedImage> {
    const ref = this.t.reference(refLike);
    const top = await this.getManifest(ref);
    const parsed = parseManifest(top.bytes, top.mediaType, ref);
    if (parsed.kind === 'manifest') return this.withConfig(ref, parsed, top);

    const descriptor = selectPlatform(parsed.index, platform, ref);
    const pinned = ref.withDigest(descriptor.digest);
    const image = await this.getManifest(pinned, [descriptor.mediaType, ...MANIFEST_ACCEPT]);
    if (image.bytes.byteLength !== descriptor.size) {
      const size = image.bytes.byteLength;
      throw mismatch(`manifest ${descriptor.digest} of ${ref}: ${size} bytes, index says ` +
        `${descriptor.size}`);
    }

    const inner = parseManifest(image.bytes, image.mediaType, pinned);
    if (inner.kind !== 'manifest') {
      throw new CcpipeError('UNSUPPORTED', `${pinned} is an index inside an index`);
    }
    return { ...(await this.withConfig(pinned, inner, image)), indexDigest: top.digest };
  }

  // ---- helpers -------------------------------------------------------------------------------

  private async headByGet(ref: ImageReference): Promise<ManifestHead> {
    // NOTE: some registries omit Docker-Content-Digest or Content-Length on HEAD; fetch instead.
    const fetched = await this.getManifest(ref);
    return { digest: fetched.digest, mediaType: fetched.mediaType, size: fetched.bytes.byteLength };
  }

  private async withConfig(
    ref: ImageReference,
    parsed: Extract<ParsedManifest, { kind: 'manifest' }>,
    fetched: FetchedManifest,
  ): Promise<ResolvedImage> {
    const descriptor = parsed.manifest.config;
    if (!isConfigMediaType(descriptor.mediaType)) {
      throw new CcpipeError(
        'UNSUPPORTED',
        `${ref} is not a container image: config media type ${quote(descriptor.mediaType)}`,
      );
    }
    if (descriptor.size > MAX_CONFIG_BYTES) {
      throw new CcpipeError('INVALID_INPUT', `config ${descriptor.digest} of ${ref} is ` +
        `${descriptor.size} bytes, over the ${MAX_CONFIG_BYTES}-byte limit`);
    }

    const configBytes = await collect(this.openBlob(ref, descriptor));
    const config = parseImageConfig(configBytes, descriptor.digest, ref);
    return {
      manifest: parsed.manifest,
      manifestBytes: fetched.bytes,
      manifestMediaType: parsed.mediaType,
      manifestDigest: fetched.digest,
      config,
      configBytes,
    };
  }

  /**
   * After a manifest PUT: when it has a `subject` and the registry did not take it
   * (`OCI-Subject`), adds it to the referrers tag. True when the registry took it.
   */
  private async maintainReferrers(
    ref: ImageReference,
    bytes: Buffer,
    mediaType: string,
    headers: Headers,
  ): Promise<boolean> {
    const found = subjectOf(bytes, mediaType, ref);
    if (found === undefined) return false;
    if (headers.get('oci-subject') === found.subject.digest) return true;

    await addToReferrersTag(this.t, ref, found.subject.digest, found.descriptor);
    return false;
  }

  private async pushArtifactBlobs(ref: ImageReference, blobs: ArtifactBlob[]) {
    const layers: Descriptor[] = [];
    for (const blob of blobs) layers.push(await this.pushArtifactBlob(ref, blob));
    return layers;
  }

  private async pushArtifactBlob(ref: ImageReference, blob: ArtifactBlob): Promise<Descriptor> {
    const { digest, size } = await this.pushBlob(ref, blob.data);
    const annotations = blob.annotations ? { annotations: blob.annotations } : {};
    return { mediaType: blob.mediaType, digest, size, ...annotations };
  }

  private async pushEmptyBlob(ref: ImageReference): Promise<Descriptor> {
    await this.pushBlob(ref, EMPTY_BLOB);
    return { ...EMPTY_DESCRIPTOR };
  }
}

/** The repository of `ref` without tag or digest: manifests PUT to it go by digest. */
function withoutTag(ref: ImageReference): ImageReference {
  return ImageReference.from({ registry: ref.registry, repository: ref.repository });
}

/** Validates a digest and size given by a caller. */
function checkBlobInfo(ref: ImageReference, blob: BlobInfo): BlobInfo {
  const digest = parseDigest(blob.digest, `blob digest for ${ref}`);
  if (!Number.isSafeInteger(blob.size) || blob.size < 0) {
    throw new CcpipeError('INVALID_INPUT', `blob ${digest} of ${ref}: bad size ${blob.size}`);
  }
  return { digest, size: blob.size };
}

/** A size check for streamed uploads: fails as soon as the stream passes `expected.size`. */
function tooLong(ref: ImageReference, expected: BlobInfo | undefined) {
  return (size: number): void => {
    if (expected === undefined || size <= expected.size) return;
    throw mismatch(`blob upload to ${ref}: the stream is longer than ${expected.size} bytes ` +
      `(expected ${expected.digest})`);
  };
}

function mountSource(ref: ImageReference, from: string | ImageReference): ImageReference {
  if (typeof from === 'string') return ref.withRepository(from);
  if (from.registry !== ref.registry) {
    throw new CcpipeError(
      'INVALID_INPUT',
      `cannot mount into ${ref} from ${from}: a mount stays within one registry`,
    );
  }
  return from;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
