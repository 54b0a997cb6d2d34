/**
 * Image references (`registry/repository[:tag][@digest]`) parsed with Docker's rules: a name
 * without a registry lives on Docker Hub (`docker.io`), whose single-component names get the
 * `library/` prefix; the first path component is a registry when it has a dot, a port, is
 * `localhost` or an IPv6 literal (`[::1]:5000`). Repositories are lower case; tags match
 * `[\w][\w.-]{0,127}`; digests must be sha256.
 */
import { isIPv6 } from 'node:net';
import { CcpipeError } from '../errors.js';
import { parseDigest, quote } from './digest.js';

/** The registry a reference without one names. */
export const DEFAULT_REGISTRY = 'docker.io';
/** The host that serves the registry API for `docker.io`. */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';

const LEGACY_DOCKER_HUB = 'index.docker.io';
const MAX_NAME_LENGTH = 255;
const MAX_REFERENCE_LENGTH = 512;

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const HOSTNAME = new RegExp(`^${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*$`);
const IPV6_LITERAL = /^\[([a-fA-F0-9:.]+)\]$/;
const PORT = /^[0-9]{1,5}$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;

/** The parts of a reference, for `ImageReference.from`. */
export interface ImageReferenceParts {
  registry?: string;
  repository: string;
  tag?: string;
  digest?: string;
}

/** A parsed, validated and normalised image reference. Instances are immutable. */
export class ImageReference {
  /** Registry host with optional port, lower case (`docker.io`, `127.0.0.1:5000`, `[::1]:5000`). */
  readonly registry: string;
  /** Repository path within the registry (`library/alpine`, `team/app`). */
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;

  private constructor(registry: string, repository: string, tag?: string, digest?: string) {
    this.registry = registry;
    this.repository = repository;
    if (tag !== undefined) this.tag = tag;
    if (digest !== undefined) this.digest = digest;
  }

  /** Parses `text`; throws INVALID_INPUT naming the reference (UNSUPPORTED for non-sha256). */
  static parse(text: unknown): ImageReference {
    if (typeof text !== 'string' || text.length === 0) {
      const shown = typeof text === 'string' ? text : `a value of type ${typeof text}`;
      throw invalid(shown, 'a reference must be a non-empty string');
    }
    if (text.length > MAX_REFERENCE_LENGTH) {
      throw invalid(text, `longer than ${MAX_REFERENCE_LENGTH} characters`);
    }

    const { rest: withoutDigest, digest } = splitDigest(text);
    const { rest: name, tag } = splitTag(text, withoutDigest);
    const { registry, path } = splitRegistry(text, name);

    return ImageReference.build(text, registry, path, tag, digest);
  }

  /** Builds a reference from parts, validated and normalised like `parse`. */
  static from(parts: ImageReferenceParts): ImageReference {
    const label = formatReference(
      parts.registry ?? DEFAULT_REGISTRY,
      parts.repository,
      parts.tag,
      parts.digest,
    );
    const registry = normaliseRegistry(label, parts.registry ?? DEFAULT_REGISTRY);
    const tag = parts.tag === undefined ? undefined : validateTag(label, parts.tag);
    const digest = parts.digest === undefined ? undefined : validateDigest(label, parts.digest);
    return ImageReference.build(label, registry, parts.repository, tag, digest);
  }

  private static build(
    label: string,
    registry: string,
    path: string,
    tag: string | undefined,
    digest: string | undefined,
  ): ImageReference {
    const repository = normaliseRepository(label, registry, path);
    if (registry.length + 1 + repository.length > MAX_NAME_LENGTH) {
      throw invalid(label, `the name is longer than ${MAX_NAME_LENGTH} characters`);
    }
    return new ImageReference(registry, repository, tag, digest);
  }

  /** `registry/repository`, without tag or digest. */
  get name(): string {
    return `${this.registry}/${this.repository}`;
  }

  /** The host (and port) serving the registry API: `registry-1.docker.io` for `docker.io`. */
  get apiHost(): string {
    return this.registry === DEFAULT_REGISTRY ? DOCKER_HUB_API_HOST : this.registry;
  }

  /**
   * What goes after `/manifests/` in a request: the digest when there is one (it pins the
   * content, as Docker does for `name:tag@digest`), else the tag, else `latest`.
   */
  get manifestReference(): string {
    return this.digest ?? this.tag ?? 'latest';
  }

  /** This repository at `tag`; any digest is dropped, since the tag now names the target. */
  withTag(tag: string): ImageReference {
    return new ImageReference(this.registry, this.repository, validateTag(this.name, tag));
  }

  /** This repository pinned to `digest`; the tag is kept for readability. */
  withDigest(digest: string): ImageReference {
    const checked = validateDigest(this.toString(), digest);
    return new ImageReference(this.registry, this.repository, this.tag, checked);
  }

  /** Another repository on the same registry, with the same tag and digest. */
  withRepository(repository: string): ImageReference {
    const label = formatReference(this.registry, repository, this.tag, this.digest);
    return ImageReference.build(label, this.registry, repository, this.tag, this.digest);
  }

  /** The fully qualified form, e.g. `docker.io/library/alpine:3.20@sha256:…`. */
  toString(): string {
    return formatReference(this.registry, this.repository, this.tag, this.digest);
  }

  toJSON(): string {
    return this.toString();
  }
}

function formatReference(registry: string, repository: string, tag?: string, digest?: string) {
  return `${registry}/${repository}${tag ? ':' + tag : ''}${digest ? '@' + digest : ''}`;
}

function splitDigest(text: string): { rest: string; digest?: string } {
  const at = text.indexOf('@');
  if (at < 0) return { rest: text };
  return { rest: text.slice(0, at), digest: validateDigest(text, text.slice(at + 1)) };
}

function splitTag(text: string, rest: string): { rest: string; tag?: string } {
  const colon = rest.lastIndexOf(':');
  if (colon < 0 || colon < rest.lastIndexOf('/')) return { rest };
  return { rest: rest.slice(0, colon), tag: validateTag(text, rest.slice(colon + 1)) };
}

function splitRegistry(text: string, name: string): { registry: string; path: string } {
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  if (slash < 0 || !looksLikeRegistry(first)) return { registry: DEFAULT_REGISTRY, path: name };
  return { registry: normaliseRegistry(text, first), path: name.slice(slash + 1) };
}

/** Docker's rule: a first component with a dot, a colon, upper case, or `localhost`. */
function looksLikeRegistry(component: string): boolean {
  return (
    component.includes('.') ||
    component.includes(':') ||
    component.startsWith('[') ||
    component === 'localhost' ||
    component !== component.toLowerCase()
  );
}

/**
 * Validates `host[:port]` and lower-cases it (host names are case-insensitive, and one spelling
 * keeps allowlist checks unambiguous); `index.docker.io` becomes `docker.io`.
 */
function normaliseRegistry(text: string, registry: string): string {
  const { host, port } = splitHostPort(text, registry);
  const validHost = IPV6_LITERAL.test(host)
    ? isIPv6(host.slice(1, -1))
    : HOSTNAME.test(host);
  if (!validHost) throw invalid(text, `registry host ${quote(host)} is not a valid host name`);
  if (port !== undefined && !isValidPort(port)) {
    throw invalid(text, `registry port ${quote(port)} is not a port number (1-65535)`);
  }

  // Without a dot, colon or brackets only its upper case made this a registry; lower-cased it
  // would print as a repository path and parse back differently, so it is refused.
  if (!/[.:[]/.test(registry) && registry.toLowerCase() !== 'localhost') {
    throw invalid(text, `registry host ${quote(host)} has upper case but no dot or port`);
  }
  const normal = registry.toLowerCase();
  return normal === LEGACY_DOCKER_HUB ? DEFAULT_REGISTRY : normal;
}

function splitHostPort(text: string, registry: string): { host: string; port?: string } {
  if (registry.startsWith('[')) {
    const close = registry.indexOf(']');
    if (close < 0) throw invalid(text, `unterminated IPv6 literal in ${quote(registry)}`);
    const after = registry.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) {
      throw invalid(text, `unexpected ${quote(after)} after the IPv6 literal`);
    }
    return { host: registry.slice(0, close + 1), port: after ? after.slice(1) : undefined };
  }
  const colon = registry.indexOf(':');
  if (colon < 0) return { host: registry };
  return { host: registry.slice(0, colon), port: registry.slice(colon + 1) };
}

function isValidPort(port: string): boolean {
  return PORT.test(port) && Number(port) >= 1 && Number(port) <= 65535;
}

function normaliseRepository(text: string, registry: string, path: string): string {
  if (path.length === 0) throw invalid(text, 'the repository is empty');

  const components = path.split('/');
  for (const component of components) {
    if (component !== component.toLowerCase()) {
      throw invalid(text, `the repository must be lower case, got ${quote(path)}`);
    }
    if (!PATH_COMPONENT.test(component)) {
      throw invalid(
        text,
        `repository component ${quote(component)} must be lower-case letters and digits ` +
          'separated by ".", "_", "__" or "-"',
      );
    }
  }

  const needsLibrary = registry === DEFAULT_REGISTRY && components.length === 1;
  return needsLibrary ? `library/${path}` : path;
}

function validateTag(text: string, tag: string): string {
  if (!TAG.test(tag)) {
    throw invalid(text, `tag ${quote(tag)} must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
  }
  return tag;
}

function validateDigest(text: string, digest: string): string {
  return parseDigest(digest, `the digest of image reference ${quote(text)}`);
}

function invalid(text: string, reason: string): CcpipeError {
  return new CcpipeError('INVALID_INPUT', `invalid image reference ${quote(text)}: ${reason}`);
}
