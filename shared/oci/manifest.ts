/**
 * OCI and Docker schema 2 manifests, indexes and image configurations, parsed from untrusted
 * bytes: JSON is parsed once, every field ccpipe relies on is type-checked, and the parsed object
 * itself is returned, so unknown fields survive a round trip untouched.
 *
 * NOTE: `JSON.parse` keeps the last of duplicated keys while other parsers may keep the first; the
 * digest always covers the exact bytes, and documents that could be read both as a manifest and an
 * index are refused (the CVE-2021-41190 ambiguity), but duplicate keys are not detected.
 */
import { CcpipeError } from '../errors.js';
import { parseDigest, quote, sha256Digest } from './digest.js';
import {
  OCI_INDEX,
  OCI_MANIFEST,
  baseMediaType,
  isImageMediaType,
  isIndexMediaType,
  isManifestMediaType,
  isSchema1MediaType,
  isWellFormedMediaType,
} from './media-types.js';
import type { ImageReference } from './reference.js';

/** Largest manifest or index accepted (registries must accept at least 4 MiB). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/**
 * Largest image configuration accepted.
 * NOTE: the specs set no limit; 8 MiB is far above real configs (history included) and keeps a
 * hostile registry from making us buffer an arbitrary blob.
 */
export const MAX_CONFIG_BYTES = 8 * 1024 * 1024;

/** The platform a manifest in an index is built for. */
export interface Platform {
  architecture: string;
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
  features?: string[];
  [k: string]: unknown;
}

/** An OCI content descriptor; unknown fields are kept. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
  urls?: string[];
  artifactType?: string;
  [k: string]: unknown;
}

/** An OCI image manifest or Docker schema 2 manifest; unknown fields are kept. */
export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
  subject?: Descriptor;
  artifactType?: string;
  [k: string]: unknown;
}

/** An OCI image index or Docker manifest list; unknown fields are kept. */
export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
  subject?: Descriptor;
  artifactType?: string;
  [k: string]: unknown;
}

/** The runtime part of an image configuration. Docker writes `null` for empty lists and maps. */
export interface ContainerConfig {
  User?: string;
  ExposedPorts?: Record<string, object> | null;
  Env?: string[] | null;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object> | null;
  WorkingDir?: string;
  Labels?: Record<string, string> | null;
  StopSignal?: string;
  [k: string]: unknown;
}

/** One entry of an image configuration's history. */
export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
  [k: string]: unknown;
}

/** An OCI (or Docker) image configuration; unknown fields are kept. */
export interface ImageConfig {
  architecture: string;
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
  created?: string;
  author?: string;
  config?: ContainerConfig;
  rootfs: { type: string; diff_ids: string[]; [k: string]: unknown };
  history?: HistoryEntry[];
  [k: string]: unknown;
}

/** The result of `parseManifest`: a single-platform manifest or an index. */
export type ParsedManifest =
  | { kind: 'manifest'; mediaType: string; manifest: ImageManifest }
  | { kind: 'index'; mediaType: string; index: ImageIndex };

/** The platform `selectPlatform` looks for. */
export interface PlatformSpec {
  os: string;
  architecture: string;
  variant?: string;
}

type Json = Record<string, unknown>;

/** Content types that say nothing about which kind of manifest a body is. */
const GENERIC_TYPES: ReadonlySet<string> = new Set([
  'application/json',
  'application/octet-stream',
  'text/plain',
]);

/** Variants a platform has when it names none (Docker's normalisation). */
const DEFAULT_VARIANT: Readonly<Record<string, string>> = { arm64: 'v8', arm: 'v7' };

/**
 * Parses a manifest or index fetched for `ref`. `mediaType` is the `Content-Type` it was served
 * with (parameters allowed); when that is absent or generic the body's `mediaType`, then its
 * shape, decides. Schema 1 is refused as UNSUPPORTED; malformed content is INVALID_INPUT.
 */
export function parseManifest(
  bytes: Uint8Array,
  mediaType: string | undefined,
  ref: ImageReference | string,
): ParsedManifest {
  const what = `manifest of ${String(ref)}`;
  const header = baseMediaType(mediaType);
  if (isSchema1MediaType(header)) throw schema1(what);
  if (bytes.byteLength > MAX_MANIFEST_BYTES) throw tooLarge(what, bytes.byteLength);

  const root = object(what, decodeJson(what, bytes), 'the document');
  if (root.schemaVersion === 1) throw schema1(what);
  if (root.schemaVersion !== 2) {
    throw invalid(what, `schemaVersion must be 2, got ${describe(root.schemaVersion)}`);
  }

  const type = resolveMediaType(what, root, header);
  if (isIndexMediaType(type)) {
    return { kind: 'index', mediaType: type, index: checkIndex(what, root) };
  }
  if (isManifestMediaType(type)) {
    return { kind: 'manifest', mediaType: type, manifest: checkManifest(what, root) };
  }
  throw new CcpipeError(
    'UNSUPPORTED',
    `${what} has media type ${quote(type)}, which is neither an image manifest nor an index`,
  );
}

/**
 * Parses an image configuration blob after checking that `bytes` hash to `digest`
 * (DIGEST_MISMATCH otherwise).
 */
export function parseImageConfig(
  bytes: Uint8Array,
  digest: string,
  ref?: ImageReference | string,
): ImageConfig {
  const expected = parseDigest(digest, 'config digest');
  const what = `image config ${expected}${ref === undefined ? '' : ` of ${String(ref)}`}`;
  if (bytes.byteLength > MAX_CONFIG_BYTES) throw tooLarge(what, bytes.byteLength, MAX_CONFIG_BYTES);
  const actual = sha256Digest(bytes);
  if (actual !== expected) {
    throw new CcpipeError('DIGEST_MISMATCH', `${what}: the content hashes to ${actual}`);
  }

  const root = object(what, decodeJson(what, bytes), 'the document');
  return checkImageConfig(what, root);
}

/**
 * The descriptor in `index` for `platform`, or NOT_FOUND listing the platforms it has. A platform
 * without a variant matches the default one (`arm64` ≡ `arm64/v8`), then any variant.
 */
export function selectPlatform(
  index: ImageIndex,
  platform: PlatformSpec,
  ref: ImageReference | string,
): Descriptor {
  const images = index.manifests.filter((d) => isManifestMediaType(d.mediaType));
  const sameArch = images.filter(
    (d) => d.platform?.os === platform.os && d.platform.architecture === platform.architecture,
  );

  const wanted = normaliseVariant(platform.architecture, platform.variant);
  const variantOf = (d: Descriptor) => normaliseVariant(platform.architecture, d.platform?.variant);
  const exact = sameArch.find((d) => variantOf(d) === wanted);
  const chosen = exact ?? (platform.variant === undefined ? sameArch[0] : undefined);
  if (chosen) return chosen;

  const available = index.manifests.map((d) => formatPlatform(d.platform)).join(', ') || 'none';
  throw new CcpipeError(
    'NOT_FOUND',
    `${String(ref)} has no image for ${formatPlatform(platform)} (available: ${available})`,
  );
}

/** `os/architecture[/variant]`, or `unknown` for a descriptor without a platform. */
export function formatPlatform(platform: PlatformSpec | undefined): string {
  if (!platform) return 'unknown';
  const variant = platform.variant ? `/${platform.variant}` : '';
  return `${platform.os}/${platform.architecture}${variant}`;
}

function normaliseVariant(architecture: string, variant: string | undefined): string | undefined {
  return variant ?? DEFAULT_VARIANT[architecture];
}

function resolveMediaType(what: string, root: Json, header: string | undefined): string {
  const declared = optionalMediaType(what, root, 'mediaType', 'mediaType');
  if (isSchema1MediaType(declared)) throw schema1(what);
  if (declared && isImageMediaType(header) && declared !== header) {
    throw invalid(what, `its mediaType ${quote(declared)} differs from ${quote(header ?? '')}`);
  }

  if (declared) return declared;
  if (header && !GENERIC_TYPES.has(header)) return header;
  return inferMediaType(what, root);
}

function inferMediaType(what: string, root: Json): string {
  if ('manifests' in root) return OCI_INDEX;
  if ('config' in root || 'layers' in root) return OCI_MANIFEST;
  throw invalid(what, 'it has no mediaType and neither "manifests" nor "config" and "layers"');
}

function checkManifest(what: string, root: Json): ImageManifest {
  if ('manifests' in root) throw invalid(what, 'a manifest must not have "manifests"');
  descriptor(what, root.config, 'config');
  array(what, root.layers, 'layers').forEach((layer, i) => descriptor(what, layer, `layers[${i}]`));
  checkCommonFields(what, root);
  return root as ImageManifest;
}

function checkIndex(what: string, root: Json): ImageIndex {
  if ('config' in root || 'layers' in root) {
    throw invalid(what, 'an index must not have "config" or "layers"');
  }
  const manifests = array(what, root.manifests, 'manifests');
  manifests.forEach((m, i) => descriptor(what, m, `manifests[${i}]`));
  checkCommonFields(what, root);
  return root as ImageIndex;
}

function checkCommonFields(what: string, root: Json): void {
  optionalStringMap(what, root.annotations, 'annotations');
  optionalMediaType(what, root, 'artifactType', 'artifactType');
  if (root.subject !== undefined) descriptor(what, root.subject, 'subject');
}

function descriptor(what: string, value: unknown, path: string): Descriptor {
  const d = object(what, value, path);
  if (!isWellFormedMediaType(d.mediaType)) {
    throw invalid(what, `${path}.mediaType must be a media type, got ${describe(d.mediaType)}`);
  }
  parseDigest(d.digest, `${what}: ${path}.digest`);
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw invalid(what, `${path}.size must be a non-negative integer, got ${describe(d.size)}`);
  }

  optionalStringMap(what, d.annotations, `${path}.annotations`);
  optionalStringArray(what, d.urls, `${path}.urls`);
  optionalMediaType(what, d, 'artifactType', `${path}.artifactType`);
  optionalString(what, d.data, `${path}.data`);
  if (d.platform !== undefined) checkPlatform(what, d.platform, `${path}.platform`);
  return d as Descriptor;
}

function checkPlatform(what: string, value: unknown, path: string): void {
  const p = object(what, value, path);
  requiredString(what, p.architecture, `${path}.architecture`);
  requiredString(what, p.os, `${path}.os`);
  optionalString(what, p.variant, `${path}.variant`);
  optionalString(what, p['os.version'], `${path}.os.version`);
  optionalStringArray(what, p['os.features'], `${path}.os.features`);
  optionalStringArray(what, p.features, `${path}.features`);
}

function checkImageConfig(what: string, root: Json): ImageConfig {
  requiredString(what, root.architecture, 'architecture');
  requiredString(what, root.os, 'os');
  for (const key of ['variant', 'os.version', 'created', 'author']) {
    optionalString(what, root[key], key);
  }
  optionalStringArray(what, root['os.features'], 'os.features');

  const rootfs = object(what, root.rootfs, 'rootfs');
  requiredString(what, rootfs.type, 'rootfs.type');
  array(what, rootfs.diff_ids, 'rootfs.diff_ids').forEach((id, i) =>
    parseDigest(id, `${what}: rootfs.diff_ids[${i}]`),
  );

  if (root.config !== undefined && root.config !== null) checkContainerConfig(what, root.config);
  if (root.history !== undefined) {
    array(what, root.history, 'history').forEach((h, i) => checkHistory(what, h, `history[${i}]`));
  }
  return root as ImageConfig;
}

function checkContainerConfig(what: string, value: unknown): void {
  const c = object(what, value, 'config');
  for (const key of ['User', 'WorkingDir', 'StopSignal']) {
    optionalString(what, c[key], `config.${key}`);
  }
  for (const key of ['Env', 'Entrypoint', 'Cmd']) {
    if (c[key] !== null) optionalStringArray(what, c[key], `config.${key}`);
  }
  if (c.Labels !== null) optionalStringMap(what, c.Labels, 'config.Labels');
  for (const key of ['ExposedPorts', 'Volumes']) {
    if (c[key] !== null && c[key] !== undefined) objectMap(what, c[key], `config.${key}`);
  }
}

function checkHistory(what: string, value: unknown, path: string): void {
  const h = object(what, value, path);
  for (const key of ['created', 'created_by', 'author', 'comment']) {
    optionalString(what, h[key], `${path}.${key}`);
  }
  if (h.empty_layer !== undefined && typeof h.empty_layer !== 'boolean') {
    throw invalid(what, `${path}.empty_layer must be a boolean, got ${describe(h.empty_layer)}`);
  }
}

function decodeJson(what: string, bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw new CcpipeError('INVALID_INPUT', `${what} is not valid UTF-8`, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new CcpipeError('INVALID_INPUT', `${what} is not valid JSON: ${reason}`, { cause: err });
  }
}

function object(what: string, value: unknown, path: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(what, `${path} must be an object, got ${describe(value)}`);
  }
  return value as Json;
}

function array(what: string, value: unknown, path: string): unknown[] {
  if (!Array.isArray(value)) {
    throw invalid(what, `${path} must be an array, got ${describe(value)}`);
  }
  return value;
}

function requiredString(what: string, value: unknown, path: string): void {
  if (typeof value !== 'string') {
    throw invalid(what, `${path} must be a string, got ${describe(value)}`);
  }
}

function optionalString(what: string, value: unknown, path: string): void {
  if (value !== undefined) requiredString(what, value, path);
}

function optionalMediaType(what: string, obj: Json, key: string, path: string): string | undefined {
  const value = obj[key];
  if (value === undefined) return undefined;
  if (!isWellFormedMediaType(value)) {
    throw invalid(what, `${path} must be a media type, got ${describe(value)}`);
  }
  return value;
}

function optionalStringArray(what: string, value: unknown, path: string): void {
  if (value === undefined) return;
  array(what, value, path).forEach((item, i) => requiredString(what, item, `${path}[${i}]`));
}

function optionalStringMap(what: string, value: unknown, path: string): void {
  if (value === undefined) return;
  for (const [key, item] of Object.entries(object(what, value, path))) {
    requiredString(what, item, `${path}[${quote(key)}]`);
  }
}

function objectMap(what: string, value: unknown, path: string): void {
  for (const [key, item] of Object.entries(object(what, value, path))) {
    object(what, item, `${path}[${quote(key)}]`);
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return quote(value);
  return `${typeof value} ${String(value)}`;
}

function invalid(what: string, reason: string): CcpipeError {
  return new CcpipeError('INVALID_INPUT', `${what} is invalid: ${reason}`);
}

function schema1(what: string): CcpipeError {
  return new CcpipeError(
    'UNSUPPORTED',
    `${what} is a Docker schema 1 manifest, which ccpipe does not support; ` +
      're-push the image with a current client to get a schema 2 or OCI manifest',
  );
}

function tooLarge(what: string, size: number, limit = MAX_MANIFEST_BYTES): CcpipeError {
  return new CcpipeError('INVALID_INPUT', `${what} is ${size} bytes, over the ${limit}-byte limit`);
}
