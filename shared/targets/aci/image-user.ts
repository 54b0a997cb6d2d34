/**
 * The image's `User` (`config.User`) as the CCE policy states it, and the check that a named
 * user or group exists in the image.
 *
 * `az confcom` writes `User` into the container's `user` rule as it finds it: each part that is
 * all digits becomes an `id` matcher, any other part a `name` matcher, an absent part `any`
 * (`"nginx"` → user name `nginx`, any group; `"1000:web"` → uid 1000, group name `web`). The
 * platform resolves names against the container's own `/etc/passwd` and `/etc/group` when it
 * starts the container, so a name missing there makes the container fail to start. ccpipe
 * therefore resolves every name when it measures, reading the two files from the image's
 * layers, top layer first and honouring whiteouts, and refuses an image whose names do not
 * resolve, naming the image and the field.
 *
 * Numeric users and images without `User` (distroless and scratch images, which have no
 * `/etc/passwd`) need no lookup.
 */
import type { Readable } from 'node:stream';
import { extract, type Header } from 'tar-stream';
import { CcpipeError } from '../../errors.js';
import type { MeasuredLayer } from '../target.js';

/** A user or group matcher of the policy. */
export interface IdName {
  pattern: string;
  strategy: 'any' | 'id' | 'name' | 're2';
}

/** The `user` rule of a policy container. */
export interface PolicyUser {
  group_idnames: IdName[];
  umask: string;
  user_idname: IdName;
}

/** What the image's user parts resolved to, for logs. */
export interface ResolvedUser {
  uid?: number;
  gid?: number;
}

/** The two account files, when present in the image. */
interface AccountFiles {
  passwd?: string;
  group?: string;
}

const ANY: IdName = { pattern: '', strategy: 'any' };
const MAX_ACCOUNT_FILE = 1 << 20;

/**
 * The policy's `user` rule for an image `User` value (absent or empty = any user). As in
 * confcom, every part that is present becomes a matcher, even an empty one (`":1000"` gives an
 * empty user name).
 */
export function policyUser(user: string | undefined): PolicyUser {
  if (user === undefined || user === '') {
    return { group_idnames: [{ ...ANY }], umask: '0022', user_idname: { ...ANY } };
  }

  const [name, group] = splitUser(user);
  return {
    group_idnames: [group === undefined ? { ...ANY } : idName(group)],
    umask: '0022',
    user_idname: idName(name),
  };
}

/** True when `User` names a user or group by name, so the image must be searched. */
export function userNeedsLookup(user: string | undefined): boolean {
  return splitUser(user).some((part) => part !== undefined && part !== '' && !isId(part));
}

/**
 * Resolves the named parts of `User` in the image's layers (base first, as in
 * `rootfs.diff_ids`). Throws INVALID_INPUT naming `image` and `config.User` when a name does
 * not resolve.
 *
 * NOTE: this reads the layers a second time (after hashing), and only for images whose `User`
 * has a name; the second read streams the same blobs from the registry again.
 */
export async function resolveImageUser(
  image: string,
  user: string,
  layers: readonly MeasuredLayer[],
): Promise<ResolvedUser> {
  const [name = '', group] = splitUser(user);
  const wanted = {
    passwd: name !== '' && !isId(name),
    group: group !== undefined && group !== '' && !isId(group),
  };
  const files = await readAccountFiles(image, layers, wanted);

  const resolved: ResolvedUser = {};
  if (wanted.passwd) resolved.uid = lookup(image, user, 'user', name, files.passwd, 'passwd');
  if (wanted.group && group !== undefined) {
    resolved.gid = lookup(image, user, 'group', group, files.group, 'group');
  }
  return resolved;
}

function splitUser(user: string | undefined): [string, string | undefined] {
  const text = user ?? '';
  const colon = text.indexOf(':');
  return colon < 0 ? [text, undefined] : [text.slice(0, colon), text.slice(colon + 1)];
}

function isId(part: string): boolean {
  return /^[0-9]+$/.test(part);
}

function idName(part: string): IdName {
  return { pattern: part, strategy: isId(part) ? 'id' : 'name' };
}

/** The id of `name` in an account file (`name:x:id:…`), or an error naming the field. */
function lookup(
  image: string,
  user: string,
  kind: 'user' | 'group',
  name: string,
  file: string | undefined,
  fileName: 'passwd' | 'group',
): number {
  const where = `image ${image}: config.User ${JSON.stringify(user)}`;
  if (file === undefined) {
    const message = `${where} names ${kind} ${JSON.stringify(name)}, but the image has no ` +
      `/etc/${fileName} to resolve it (use a numeric id)`;
    throw new CcpipeError('INVALID_INPUT', message);
  }

  for (const line of file.split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name && fields[2] !== undefined && isId(fields[2])) return Number(fields[2]);
  }
  const message = `${where} names ${kind} ${JSON.stringify(name)}, ` +
    `which is not in /etc/${fileName}`;
  throw new CcpipeError('INVALID_INPUT', message);
}

/**
 * `/etc/passwd` and `/etc/group` as the container sees them: from the top layer down, the first
 * layer that has the file wins; a whiteout of the file, an opaque `etc/` or a whiteout of
 * `etc` in a layer hides every layer below it.
 */
async function readAccountFiles(
  image: string,
  layers: readonly MeasuredLayer[],
  wanted: { passwd: boolean; group: boolean },
): Promise<AccountFiles> {
  const files: AccountFiles = {};
  const open = new Set<'passwd' | 'group'>();
  if (wanted.passwd) open.add('passwd');
  if (wanted.group) open.add('group');

  for (let i = layers.length - 1; i >= 0 && open.size > 0; i--) {
    const layer = layers[i] as MeasuredLayer;
    const scan = await scanLayer(image, layer, open);
    for (const name of [...open]) {
      const found = scan.files.get(name);
      if (found !== undefined) files[name] = found;
      if (found !== undefined || scan.hidden.has(name)) open.delete(name);
    }
  }
  return files;
}

interface LayerScan {
  files: Map<'passwd' | 'group', string>;
  /** Files this layer deletes or hides from the layers below. */
  hidden: Set<'passwd' | 'group'>;
}

async function scanLayer(
  image: string,
  layer: MeasuredLayer,
  names: ReadonlySet<'passwd' | 'group'>,
): Promise<LayerScan> {
  const scan: LayerScan = { files: new Map(), hidden: new Set() };
  const tar = extract();
  tar.on('entry', (header, stream, next) => {
    const name = entryName(header);
    const target = accountFile(name, names);
    noteHiding(name, header, names, scan.hidden);
    const chunks: Buffer[] = [];
    let size = 0;

    stream.on('data', (data: unknown) => {
      if (target === undefined || header.type !== 'file') return;
      const chunk = data as Buffer;
      size += chunk.length;
      if (size <= MAX_ACCOUNT_FILE) chunks.push(chunk);
    });
    stream.on('end', () => {
      if (target === undefined) return next();
      if (size > MAX_ACCOUNT_FILE) return tar.destroy(tooLarge(image, layer, target));
      keepFile(target, header, chunks, scan);
      next();
    });
    stream.resume();
  });

  const source = (await layer.open()) as Readable;
  await new Promise<void>((resolve, reject) => {
    source.once('error', (err) => {
      tar.destroy();
      reject(err);
    });
    tar.once('error', (err) => reject(tarError(image, layer, err)));
    tar.once('finish', () => resolve());
    source.pipe(tar);
  });
  return scan;
}

function entryName(header: Header): string {
  return header.name.replace(/^(\.?\/)+/, '').replace(/\/+$/, '');
}

function accountFile(
  name: string,
  names: ReadonlySet<'passwd' | 'group'>,
): 'passwd' | 'group' | undefined {
  if (name === 'etc/passwd' && names.has('passwd')) return 'passwd';
  if (name === 'etc/group' && names.has('group')) return 'group';
  return undefined;
}

/** Whiteouts (`etc/.wh.passwd`, `.wh.etc`) and opaque `etc/` hide the files below. */
function noteHiding(
  name: string,
  header: Header,
  names: ReadonlySet<'passwd' | 'group'>,
  hidden: Set<'passwd' | 'group'>,
): void {
  const hidesAll = name === '.wh.etc' || name === 'etc/.wh..wh..opq' ||
    (name === 'etc' && header.type !== 'directory');
  for (const file of names) {
    if (hidesAll || name === `etc/.wh.${file}`) hidden.add(file);
  }
}

/**
 * Keeps a found account file. NOTE: a symbolic or hard link at /etc/passwd or /etc/group is not
 * followed; the file then counts as absent (and hides lower layers), so a name fails to resolve
 * with a clear error rather than being guessed.
 */
function keepFile(
  target: 'passwd' | 'group',
  header: Header,
  chunks: Buffer[],
  scan: LayerScan,
): void {
  scan.hidden.add(target);
  if (header.type === 'file') scan.files.set(target, Buffer.concat(chunks).toString('utf8'));
}

function tooLarge(image: string, layer: MeasuredLayer, target: string): CcpipeError {
  const message = `image ${image}: /etc/${target} in layer ${layer.diffId} is over 1 MiB`;
  return new CcpipeError('INVALID_INPUT', message);
}

function tarError(image: string, layer: MeasuredLayer, err: Error): Error {
  if (err instanceof CcpipeError) return err;
  const message = `image ${image}: layer ${layer.diffId} could not be read as a tar: ` +
    err.message;
  return new CcpipeError('INVALID_INPUT', message, { cause: err });
}
