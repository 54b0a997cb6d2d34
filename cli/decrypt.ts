/**
 * `ccpipe decrypt <encrypted image ref> --key <private key PEM>
 *                 [--output oci:<dir>:<tag> | --verify]`
 *
 * For operators: pulls an encrypted image with our registry client, streams every layer through
 * the ocicrypt decryptor (a bounded number at a time, never holding a layer in memory) and checks
 * for each layer the ciphertext digest and size, the HMAC, the plaintext digest claimed in the
 * privopts, and the diffID (`rootfs.diff_ids[i]`, after decompression). With `--output`
 * the decrypted image is written as an OCI layout (blobs renamed into place only once verified,
 * the manifest only when every layer is); `--verify` (the default) writes nothing. Prints a
 * per-layer report and exits 0 when every check passed, 1 on any failure, 2 on bad usage.
 *
 * Registries come from `CCPIPE_REGISTRY_ALLOWLIST` and `CCPIPE_PLAIN_HTTP_REGISTRIES` (and
 * credentials from `CCPIPE_REGISTRY_USERNAME`/`_PASSWORD`), read by `registrySettings` without
 * the webhook secret that `loadConfig` requires.
 *
 * NOTE: an index is resolved to its linux/amd64 image (`RegistryClient.resolveImage`); there is
 * no `--platform` flag yet.
 * NOTE: a privopts digest that differs from the plaintext is reported as `stale`, a warning and
 * not a failure: skopeo writes the digest of its source blob when it compresses or recompresses
 * a layer on the way (an uncompressed layer pushed to a registry, `--dest-compress-format`), and
 * the privopts are no more authentic than the layer. The diffID check is the binding one.
 */
import { createHash, randomBytes, type KeyObject } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Writable, type Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CcpipeError, describeError, isCcpipeError } from '../shared/errors.js';
import { loadOperatorConfig } from '../shared/config.js';
import { ImageReference } from '../shared/oci/reference.js';
import { RegistryClient, type ResolvedImage } from '../shared/oci/registry-client.js';
import {
  DiffIdTap,
  createLayerDecryptor,
  decryptedDescriptor,
  decryptedManifest,
  decryptedMediaType,
  isEncryptedMediaType,
  loadPrivateKeyFile,
  type Descriptor,
  type LayerDecryptor,
} from '../shared/ocicrypt/index.js';
import { mapBounded } from '../shared/pipeline/concurrency.js';

const USAGE = `usage: ccpipe decrypt <encrypted image ref> --key <private key PEM> [--key ...]
                      [--output oci:<dir>:<tag> | --verify]
  --key      private key file (PEM: PKCS#8, PKCS#1 or SEC1); repeat to try several
  --output   write the decrypted image as an OCI layout, as skopeo's oci:<dir>:<tag>
  --verify   only decrypt and check every layer, write nothing (the default)
`;

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const REF_NAME = 'org.opencontainers.image.ref.name';

type Env = Record<string, string | undefined>;

/** Where `--output` writes. */
export interface LayoutTarget {
  dir: string;
  tag: string;
}

/** The parsed command line. */
export interface DecryptArgs {
  reference: string;
  keyFiles: string[];
  /** Absent with `--verify`. */
  output?: LayoutTarget;
}

/** The registry settings the command needs, read from the environment. */
export interface RegistrySettings {
  allowlist: string[];
  plainHttpHosts: string[];
  credentials?: { username: string; password: string };
  layerConcurrency: number;
}

/** What happened to one layer. */
export interface LayerReport {
  index: number;
  /** The layer as the manifest lists it. */
  digest: string;
  size: number;
  encrypted: boolean;
  /** The decrypted (or plain) layer, once every check passed. */
  plain?: Descriptor;
  /**
   * Per check: `ok`, `FAILED`, `?` (not reached), `-` (not applicable: no HMAC on a plain
   * layer), `none` (no plaintext digest claimed in the privopts) or `stale` (a different one).
   */
  checks: { hmac: string; digest: string; diffId: string };
  error?: string;
  warning?: string;
}

/** The result of decrypting one image. */
export interface DecryptReport {
  reference: string;
  manifestDigest: string;
  layers: LayerReport[];
  /** Where `--output` asked to write. */
  output?: LayoutTarget;
  /** Set when the decrypted image was written. */
  written?: LayoutTarget & { manifestDigest: string };
  /** A failure that is not one layer's (manifest, config, output). */
  error?: string;
}

/** I/O of the command, replaceable in tests. */
export interface CommandIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Env;
}

const defaultIo: CommandIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
};

/** Runs `ccpipe decrypt` with `argv` (after the word `decrypt`); resolves to the exit code. */
export async function decryptCommand(argv: string[], io: CommandIo = defaultIo): Promise<number> {
  let args: DecryptArgs;
  try {
    args = parseDecryptArgs(argv);
  } catch (err) {
    io.stderr(`ccpipe decrypt: ${describeError(err)}\n${USAGE}`);
    return 2;
  }

  let report: DecryptReport;
  try {
    const settings = registrySettings(io.env);
    const keys = (await Promise.all(args.keyFiles.map((path) => loadPrivateKeyFile(path)))).flat();
    report = await decryptImage(registryClient(settings), args, keys, settings.layerConcurrency);
  } catch (err) {
    io.stderr(`ccpipe decrypt: ${describeError(err)}\n`);
    return 1;
  }

  io.stdout(formatReport(report));
  return succeeded(report) ? 0 : 1;
}

/** Parses the arguments after `decrypt`; throws INVALID_INPUT on bad usage. */
export function parseDecryptArgs(argv: readonly string[]): DecryptArgs {
  const keyFiles: string[] = [];
  const positional: string[] = [];
  let output: LayoutTarget | undefined;
  let verify = false;

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--key' || arg === '--output') {
      const value = argv[++i];
      if (value === undefined) throw usage(`${arg} needs a value`);
      if (arg === '--key') keyFiles.push(value);
      else output = parseLayoutTarget(value);
    } else if (arg === '--verify') {
      verify = true;
    } else if (arg.startsWith('-')) {
      throw usage(`unknown option ${arg}`);
    } else {
      positional.push(arg);
    }
  }

  return checkedArgs(positional, keyFiles, output, verify);
}

/**
 * The registry settings from the environment (`loadOperatorConfig`: validated like the
 * pipeline's, without needing the webhook secret): allowlist, plain-HTTP hosts, credentials and
 * layer concurrency.
 */
export function registrySettings(env: Env): RegistrySettings {
  const config = loadOperatorConfig(env);
  const settings: RegistrySettings = {
    allowlist: config.registryAllowlist,
    plainHttpHosts: config.plainHttpRegistries,
    layerConcurrency: config.layerConcurrency,
  };
  if (config.registryCredentials) settings.credentials = config.registryCredentials;
  return settings;
}

/**
 * Decrypts and checks every layer of the image at `args.reference`, writing the decrypted image
 * when `args.output` is set. Layer failures are reported, not thrown; a manifest or config that
 * cannot be read throws.
 */
export async function decryptImage(
  registry: RegistryClient,
  args: DecryptArgs,
  keys: readonly KeyObject[],
  concurrency = 2,
): Promise<DecryptReport> {
  const ref = ImageReference.parse(args.reference);
  const image = await registry.resolveImage(ref);
  const pinned = ref.withDigest(image.manifestDigest);
  const blobs = args.output === undefined ? undefined : await initLayout(args.output.dir);

  const layers = await mapBounded(image.manifest.layers, concurrency, (layer, index) =>
    decryptOne(registry, pinned, image, { layer, index, keys, blobs }),
  );

  const report: DecryptReport = {
    reference: ref.toString(),
    manifestDigest: image.manifestDigest,
    layers,
  };
  if (args.output !== undefined) {
    report.output = args.output;
    if (layers.every((layer) => layer.error === undefined)) {
      await writeOutput(report, image, args.output);
    }
  }
  return report;
}

/** The report as printed: one line per layer, failures spelled out, a summary line. */
export function formatReport(report: DecryptReport): string {
  const lines = [`ccpipe decrypt ${report.reference}@${report.manifestDigest}`];
  lines.push(columns(['#', 'layer', 'size', 'hmac', 'digest', 'diffID', 'result']));
  for (const layer of report.layers) {
    lines.push(layerLine(layer));
  }
  for (const layer of report.layers) {
    const what = `  layer ${layer.index} (${layer.digest})`;
    if (layer.warning !== undefined) lines.push(`${what}: warning: ${layer.warning}`);
    if (layer.error !== undefined) lines.push(`${what}: ${layer.error}`);
  }
  if (report.error !== undefined) lines.push(`  ${report.error}`);

  const failed = report.layers.filter((layer) => layer.error !== undefined).length;
  lines.push(`${report.layers.length - failed} of ${report.layers.length} layers ok; ` +
    outcome(report));
  return `${lines.join('\n')}\n`;
}

function outcome(report: DecryptReport): string {
  const { written, output } = report;
  if (written !== undefined) {
    return `wrote oci:${written.dir}:${written.tag} (${written.manifestDigest})`;
  }
  if (output !== undefined) {
    return `image not written to oci:${output.dir}:${output.tag} ` +
      '(verified layer blobs stay in its blobs/)';
  }
  return 'verified only, nothing written';
}

/** True when every layer passed and nothing else failed. */
export function succeeded(report: DecryptReport): boolean {
  return report.error === undefined && report.layers.every((layer) => layer.error === undefined);
}

interface LayerJob {
  layer: Descriptor;
  index: number;
  keys: readonly KeyObject[];
  /** `blobs/sha256` of the output layout, or undefined for `--verify`. */
  blobs: string | undefined;
}

/** Decrypts (or, for a plain layer, reads) one layer through every check; never throws. */
async function decryptOne(
  registry: RegistryClient,
  ref: ImageReference,
  image: ResolvedImage,
  job: LayerJob,
): Promise<LayerReport> {
  const { layer, index } = job;
  const encrypted = isEncryptedMediaType(layer.mediaType);
  const report: LayerReport = {
    index,
    digest: layer.digest,
    size: layer.size,
    encrypted,
    checks: { hmac: encrypted ? '?' : '-', digest: '?', diffId: '?' },
  };

  try {
    report.plain = await streamLayer(registry, ref, image, job, report);
  } catch (err) {
    report.error = describeError(err) + wrongKeyHint(err);
  }
  return report;
}

/** After a key rotation the image may be wrapped to an earlier version of the key. */
function wrongKeyHint(err: unknown): string {
  if (!isCcpipeError(err) || !err.message.includes('no private key could unwrap')) return '';
  return ' (if the key was rotated since this image was encrypted, use the version it names: ' +
    'the local store keeps earlier versions as <key name>.<version>.key.pem)';
}

/** One layer's stream: blob → decryptor (if encrypted) → diffID tap → file or nowhere. */
async function streamLayer(
  registry: RegistryClient,
  ref: ImageReference,
  image: ResolvedImage,
  job: LayerJob,
  report: LayerReport,
): Promise<Descriptor> {
  const { layer, index } = job;
  const what = `layer ${index} (${layer.digest}) of ${ref}`;
  const decryptor = report.encrypted ? createLayerDecryptor(layer, job.keys) : undefined;
  const plainType = decryptor ? decryptedMediaType(layer.mediaType) : layer.mediaType;
  const tap = new DiffIdTap(plainType, what);
  const staged = job.blobs && join(job.blobs, `.partial-${randomBytes(6).toString('hex')}`);

  try {
    const stages: Array<Readable | Transform | Writable> = [registry.openBlob(ref, layer)];
    if (decryptor) stages.push(decryptor);
    stages.push(tap, staged ? createWriteStream(staged, { flags: 'wx' }) : discard());
    await pipeline(stages);

    const plain = checkLayer(layer, decryptor, tap, image, index, report);
    if (staged && job.blobs) await rename(staged, join(job.blobs, plain.digest.slice(7)));
    return plain;
  } catch (err) {
    if (decryptor && isCcpipeError(err) && err.code === 'CRYPTO') report.checks.hmac = 'FAILED';
    throw err;
  } finally {
    if (staged) await rm(staged, { force: true });
  }
}

/** Checks the finished stream: HMAC, privopts digest, diffID. Returns the plain descriptor. */
function checkLayer(
  layer: Descriptor,
  decryptor: LayerDecryptor | undefined,
  tap: DiffIdTap,
  image: ResolvedImage,
  index: number,
  report: LayerReport,
): Descriptor {
  const checks = report.checks;
  if (decryptor) checks.hmac = decryptor.verified ? 'ok' : 'FAILED';
  const plain = decryptor ? decryptedDescriptor(layer, decryptor.plaintextDigest) : layer;

  checks.digest = digestCheck(decryptor?.privoptsDigest, plain.digest, report);

  const expected = image.config.rootfs.diff_ids[index];
  checks.diffId = 'FAILED';
  const diffId = tap.diffId;
  if (diffId !== expected) {
    const problem = `diffID is ${diffId}, the config says ${String(expected)}`;
    throw new CcpipeError('DIGEST_MISMATCH', problem);
  }
  checks.diffId = 'ok';
  return plain;
}

/** `ok`, `none` or `stale` (with a warning) for the privopts digest of a decrypted layer. */
function digestCheck(claimed: string | undefined, actual: string, report: LayerReport): string {
  if (claimed === undefined) return 'ok';
  if (claimed === '') return 'none';
  if (claimed === actual) return 'ok';

  report.warning = `the plaintext is ${actual}, the privopts claim ${claimed} (stale)`;
  return 'stale';
}

/** Writes config, manifest and index.json; the layer blobs are already in place. */
async function writeOutput(
  report: DecryptReport,
  image: ResolvedImage,
  target: LayoutTarget,
): Promise<void> {
  const plainLayers = report.layers.map((layer) => layer.plain as Descriptor);
  const manifest = decryptedManifest(image.manifest, plainLayers);
  const bytes = Buffer.from(JSON.stringify(manifest));
  const blobs = join(target.dir, 'blobs', 'sha256');

  try {
    await writeBlob(blobs, image.manifest.config.digest, image.configBytes);
    const digest = `sha256:${sha256Hex(bytes)}`;
    await writeBlob(blobs, digest, bytes);
    await tagInIndex(target, { mediaType: OCI_MANIFEST, digest, size: bytes.length });
    report.written = { ...target, manifestDigest: digest };
  } catch (err) {
    report.error = `output oci:${target.dir}:${target.tag}: ${describeError(err)}`;
  }
}

/** Creates the layout's folders and `oci-layout`; returns its `blobs/sha256`. */
async function initLayout(dir: string): Promise<string> {
  const blobs = join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return blobs;
}

async function writeBlob(blobs: string, digest: string, bytes: Buffer): Promise<void> {
  const staged = join(blobs, `.partial-${randomBytes(6).toString('hex')}`);
  await writeFile(staged, bytes);
  await rename(staged, join(blobs, digest.slice(7)));
}

/** Adds `manifest` to `index.json` under `tag`, replacing an entry of the same tag. */
async function tagInIndex(target: LayoutTarget, manifest: Descriptor): Promise<void> {
  const path = join(target.dir, 'index.json');
  const index = await readIndex(path);
  const others = index.manifests.filter((entry) => entry.annotations?.[REF_NAME] !== target.tag);
  const entry = { ...manifest, annotations: { [REF_NAME]: target.tag } };
  const updated = { ...index, schemaVersion: 2, manifests: [...others, entry] };

  const staged = `${path}.partial-${randomBytes(6).toString('hex')}`;
  await writeFile(staged, JSON.stringify(updated));
  await rename(staged, path);
}

async function readIndex(path: string): Promise<{ manifests: Descriptor[] }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return { manifests: [] };
  }
  const index = JSON.parse(text) as { manifests?: unknown };
  if (!Array.isArray(index.manifests)) {
    throw new CcpipeError('INVALID_INPUT', `${path} has no manifests list`);
  }
  return index as { manifests: Descriptor[] };
}

function layerLine(layer: LayerReport): string {
  const { hmac, digest, diffId } = layer.checks;
  const result = layer.error !== undefined ? 'FAILED' : layer.encrypted ? 'decrypted' : 'plain';
  const short = `${layer.digest.slice(0, 19)}…`;
  return columns([String(layer.index), short, String(layer.size), hmac, digest, diffId, result]);
}

/** One report line: index and size right-aligned, the rest left-aligned. */
function columns(cells: readonly string[]): string {
  const [index = '', layer = '', size = '', ...checks] = cells;
  const [hmac = '', digest = '', diffId = '', result = ''] = checks;
  return [
    index.padStart(3),
    layer.padEnd(20),
    size.padStart(12),
    hmac.padEnd(6),
    digest.padEnd(6),
    diffId.padEnd(6),
    result,
  ].join('  ');
}

function registryClient(settings: RegistrySettings): RegistryClient {
  const credentials = settings.credentials;
  return new RegistryClient({
    allowlist: settings.allowlist,
    plainHttpHosts: settings.plainHttpHosts,
    credentials: () => credentials,
  });
}

function checkedArgs(
  positional: string[],
  keyFiles: string[],
  output: LayoutTarget | undefined,
  verify: boolean,
): DecryptArgs {
  if (positional.length !== 1) throw usage('give exactly one image reference');
  if (keyFiles.length === 0) throw usage('give at least one --key');
  if (verify && output !== undefined) throw usage('--output and --verify exclude each other');

  const args: DecryptArgs = { reference: positional[0] as string, keyFiles };
  if (output !== undefined) args.output = output;
  return args;
}

/** `oci:<dir>:<tag>`; the tag is what follows the last colon. */
function parseLayoutTarget(value: string): LayoutTarget {
  const match = /^oci:(.+):([A-Za-z0-9_][A-Za-z0-9._-]{0,127})$/.exec(value);
  if (match === null) throw usage(`--output ${value} is not oci:<dir>:<tag>`);
  return { dir: resolve(match[1] as string), tag: match[2] as string };
}

function usage(problem: string): CcpipeError {
  return new CcpipeError('INVALID_INPUT', problem);
}

function discard(): Writable {
  return new Writable({ write: (_chunk, _encoding, done) => done() });
}

function sha256Hex(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}
