// A directory → one image layer. Two kinds of directory are snapshotted:
//  - the overlayfs upper dir of a finished RUN container, where deletions are recorded the
//    overlayfs way (Documentation/filesystems/overlayfs.rst, "whiteouts and opaque
//    directories"): a character device 0/0 is a deleted name, the xattr
//    trusted.overlay.opaque="y" hides everything below the directory in lower layers;
//  - a staging dir a COPY/ADD/WORKDIR step filled, which holds no deletions.
// The tar follows the OCI image-spec layer rules (image-spec layer.md, "Whiteouts"):
// `.wh.NAME` for a deleted NAME, `DIR/.wh..wh..opq` right after an opaque DIR. Entries are
// sorted (parents first, names in byte order) and owners written as numbers with empty
// names, so the same tree gives the same bytes; with SOURCE_DATE_EPOCH every mtime is
// that time (reproducible-builds.org/specs/source-date-epoch). The tar is hashed (diff_id),
// gzip-compressed and hashed again (blob digest) in one pass.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { Header } from 'tar';
import { MediaType, unpackLayer, type ImageStore, type LayerInfo } from '../images/index';
import { BuildError, errnoOf } from './builder-errors';

export const OPAQUE_XATTR = 'trusted.overlay.opaque';
/** Overlay features that record renames/metadata-only copy-ups in xattrs a tar cannot express. */
const UNSUPPORTED_OVERLAY_XATTRS = ['trusted.overlay.redirect', 'trusted.overlay.metacopy'];

export interface LayerBlob extends LayerInfo {
  /** The compressed tar, in the image store's tmp dir until committed. */
  file: string;
  /** The directory snapshotted, now holding exactly the tar's content (see matchTar). */
  dir: string;
}

export interface SnapshotOptions {
  /** The directory is an overlayfs upper dir: translate whiteouts and opaque dirs. */
  overlay: boolean;
  /** SOURCE_DATE_EPOCH in seconds: every entry's mtime. */
  sourceDateEpoch?: number;
  /** Where the .tar.gz is written (a new file). */
  outFile: string;
}

interface TarEntry {
  rel: string;
  abs?: string;
  type: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'BlockDevice' | 'FIFO';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: Date;
  linkpath?: string;
  devmaj?: number;
  devmin?: number;
  xattrs?: Map<string, Buffer>;
}

/** Snapshots `dir`; undefined when it holds nothing (an empty layer is not written, as BuildKit). */
export async function snapshotDir(dir: string, opts: SnapshotOptions): Promise<LayerBlob | undefined> {
  const xattrs = await readXattrs(dir);
  const entries = collectEntries(dir, opts, xattrs);
  if (entries.length === 0) return undefined;
  const uncompressed = new HashTap();
  const compressed = new HashTap();
  await pipeline(Readable.from(tarStream(entries)), uncompressed, zlib.createGzip(), compressed, fs.createWriteStream(opts.outFile, { flags: 'wx', mode: 0o644 }));
  await matchTar(dir, entries, xattrs, opts);
  return { file: opts.outFile, diffID: uncompressed.digest(), digest: compressed.digest(), size: compressed.bytes, mediaType: MediaType.OciLayerGzip, dir };
}

/**
 * Makes the directory hold exactly what its tar says, so commitLayer can rename it into
 * the store as the extracted layer instead of extracting the tar again (which costs a
 * mknod(1) per whiteout): overlayfs bookkeeping xattrs other than opaque are removed
 * (trusted.overlay.origin/impure describe the upper dir's past, not the layer), and with
 * SOURCE_DATE_EPOCH every mtime is set to it, children before their directory.
 */
async function matchTar(dir: string, entries: readonly TarEntry[], xattrs: Map<string, Map<string, Buffer>>, opts: SnapshotOptions): Promise<void> {
  const byName = new Map<string, string[]>();
  for (const [file, attrs] of xattrs) {
    for (const name of attrs.keys()) {
      if (!name.startsWith('trusted.overlay.') || name === OPAQUE_XATTR) continue;
      byName.set(name, [...(byName.get(name) ?? []), file]);
    }
  }
  for (const [name, files] of byName) await run('setfattr', ['-h', '-x', name, '--', ...files]);
  if (opts.sourceDateEpoch === undefined) return;
  const when = new Date(opts.sourceDateEpoch * 1000);
  for (const e of [...entries].reverse()) if (e.abs !== undefined) fs.lutimesSync(e.abs, when, when);
  fs.utimesSync(dir, when, when);
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, (err, _stdout, stderr) => {
      if (err) reject(new BuildError('D2P_BUILD_INVALID', `${cmd} ${args.slice(0, 3).join(' ')}…: ${String(stderr).trim() || err.message}`, { user: false, cause: err }));
      else resolve();
    });
  });
}

function collectEntries(dir: string, opts: SnapshotOptions, xattrs: Map<string, Map<string, Buffer>>): TarEntry[] {
  const out: TarEntry[] = [];
  const seenInodes = new Map<string, string>();
  const fixed = opts.sourceDateEpoch !== undefined ? new Date(opts.sourceDateEpoch * 1000) : undefined;
  const walk = (abs: string, rel: string): void => {
    for (const name of fs.readdirSync(abs).sort()) {
      const childAbs = path.join(abs, name);
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const st = fs.lstatSync(childAbs);
      const attrs = xattrs.get(childAbs);
      checkOverlayXattrs(childAbs, attrs);
      const base = { rel: childRel, abs: childAbs, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: 0, mtime: fixed ?? st.mtime };
      const userAttrs = withoutOverlayXattrs(attrs);
      const common = userAttrs ? { ...base, xattrs: userAttrs } : base;
      if (st.isDirectory()) {
        out.push({ ...common, type: 'Directory' });
        if (opts.overlay && attrs?.get(OPAQUE_XATTR)?.toString() === 'y') out.push(whiteoutEntry(`${childRel}/.wh..wh..opq`, base.mtime));
        walk(childAbs, childRel);
      } else if (st.isCharacterDevice() && opts.overlay && st.rdev === 0) {
        out.push(whiteoutEntry(rel === '' ? `.wh.${name}` : `${rel}/.wh.${name}`, base.mtime));
      } else if (st.isFile()) {
        const inode = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1 ? seenInodes.get(inode) : undefined;
        if (first !== undefined) out.push({ ...common, type: 'Link', linkpath: first });
        else {
          if (st.nlink > 1) seenInodes.set(inode, childRel);
          out.push({ ...common, type: 'File', size: st.size });
        }
      } else if (st.isSymbolicLink()) {
        out.push({ ...common, type: 'SymbolicLink', linkpath: fs.readlinkSync(childAbs) });
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        out.push({ ...common, type: st.isCharacterDevice() ? 'CharacterDevice' : 'BlockDevice', devmaj: major(st.rdev), devmin: minor(st.rdev) });
      } else if (st.isFIFO()) {
        out.push({ ...common, type: 'FIFO' });
      }
      // Sockets cannot be archived (tar has no type for them); BuildKit's differ skips them too.
    }
  };
  walk(dir, '');
  return out;
}

function whiteoutEntry(rel: string, mtime: Date): TarEntry {
  return { rel, type: 'File', mode: 0, uid: 0, gid: 0, size: 0, mtime };
}

function checkOverlayXattrs(abs: string, attrs: Map<string, Buffer> | undefined): void {
  for (const name of UNSUPPORTED_OVERLAY_XATTRS) {
    if (attrs?.has(name)) {
      throw new BuildError('D2P_BUILD_UNSUPPORTED', `${abs} carries ${name}: overlayfs redirect_dir/metacopy is enabled on this kernel, and such a change cannot be written as a layer; disable them (overlay module parameters) to build`, { user: false });
    }
  }
}

function withoutOverlayXattrs(attrs: Map<string, Buffer> | undefined): Map<string, Buffer> | undefined {
  if (!attrs) return undefined;
  const kept = new Map([...attrs].filter(([name]) => !name.startsWith('trusted.overlay.')));
  return kept.size > 0 ? kept : undefined;
}

/** Linux's dev_t encoding (glibc sys/sysmacros.h gnu_dev_major/minor). */
const major = (rdev: number): number => Number((BigInt(rdev) >> 8n) & 0xfffn) | Number((BigInt(rdev) >> 32n) & ~0xfffn);
const minor = (rdev: number): number => Number(BigInt(rdev) & 0xffn) | Number((BigInt(rdev) >> 12n) & ~0xffn);

async function* tarStream(entries: readonly TarEntry[]): AsyncGenerator<Buffer> {
  for (const e of entries) {
    yield* headerBlocks(e);
    if (e.type === 'File' && e.size > 0 && e.abs !== undefined) {
      let written = 0;
      for await (const chunk of fs.createReadStream(e.abs, { highWaterMark: 1 << 20 })) {
        const buf = chunk as Buffer;
        written += buf.length;
        // A file that grew since lstat would corrupt the archive: the header's size is the contract.
        if (written > e.size) throw new BuildError('D2P_BUILD_INVALID', `${e.abs} changed while it was archived`, { user: false });
        yield buf;
      }
      if (written !== e.size) throw new BuildError('D2P_BUILD_INVALID', `${e.abs} changed while it was archived`, { user: false });
      const pad = (512 - (e.size % 512)) % 512;
      if (pad > 0) yield Buffer.alloc(pad);
    }
  }
  yield Buffer.alloc(1024); // end of archive: two zero blocks (POSIX ustar)
}

function headerBlocks(e: TarEntry): Buffer[] {
  const tarPath = e.type === 'Directory' ? `${e.rel}/` : e.rel;
  const header = new Header({
    path: tarPath,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    size: e.type === 'File' ? e.size : 0,
    mtime: new Date(Math.floor(e.mtime.getTime() / 1000) * 1000),
    type: e.type,
    linkpath: e.linkpath ?? '',
    uname: '',
    gname: '',
    devmaj: e.devmaj ?? 0,
    devmin: e.devmin ?? 0,
  });
  const block = Buffer.alloc(512);
  header.encode(block);
  const records: Buffer[] = [];
  if (header.needPax) {
    records.push(paxRecord('path', tarPath));
    if (e.linkpath !== undefined) records.push(paxRecord('linkpath', e.linkpath));
  }
  for (const [name, value] of e.xattrs ?? []) records.push(paxRecord(`SCHILY.xattr.${name}`, value));
  if (records.length === 0) return [block];
  const body = Buffer.concat(records);
  const pax = new Header({ path: `PaxHeaders/${path.posix.basename(e.rel).slice(0, 80)}`, mode: 0o644, size: body.length, type: 'ExtendedHeader', mtime: new Date(0), uid: 0, gid: 0, uname: '', gname: '' });
  const paxBlock = Buffer.alloc(512);
  pax.encode(paxBlock);
  return [paxBlock, padded(body), block];
}

/** One pax record: "LEN key=value\n", where LEN counts its own digits (POSIX pax format). */
function paxRecord(key: string, value: string | Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.isBuffer(value) ? value : Buffer.from(value), Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

function padded(buf: Buffer): Buffer {
  const out = Buffer.alloc(Math.ceil(buf.length / 512) * 512);
  buf.copy(out);
  return out;
}

class HashTap extends Transform {
  private readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

/**
 * Every xattr of every entry below `dir`, by absolute path: one getfattr(1) run for the
 * whole tree (Node has no getxattr). Values are dumped hex-encoded so binary ones survive.
 */
export async function readXattrs(dir: string): Promise<Map<string, Map<string, Buffer>>> {
  const output = await new Promise<string>((resolve, reject) => {
    execFile('getfattr', ['--absolute-names', '-R', '-P', '-d', '-m', '-', '-e', 'hex', dir], { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return reject(new BuildError('D2P_BUILD_UNSUPPORTED', 'getfattr is not installed (Debian package "attr"; hack/install-deps installs it): needed to read overlayfs opaque directories', { user: false, cause: err }));
      }
      // Any failure (a file that could not be read) could hide an opaque directory, and a
      // layer without it would resurrect deleted files: no partial answers.
      reject(new BuildError('D2P_BUILD_INVALID', `getfattr ${dir} failed: ${String(stderr).trim() || err.message}`, { user: false, cause: err }));
    });
  });
  return parseGetfattr(output);
}

/** Parses `getfattr -d -e hex` output ("# file: PATH" then "name=0xHEX" lines). */
export function parseGetfattr(text: string): Map<string, Map<string, Buffer>> {
  const out = new Map<string, Map<string, Buffer>>();
  let current: Map<string, Buffer> | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = new Map();
      out.set(unescapeGetfattrPath(line.slice('# file: '.length)), current);
      continue;
    }
    const eq = line.indexOf('=');
    if (!current || eq <= 0) continue;
    const value = line.slice(eq + 1);
    current.set(line.slice(0, eq), value.startsWith('0x') ? Buffer.from(value.slice(2), 'hex') : Buffer.from(value.replace(/^"|"$/g, '')));
  }
  return out;
}

/** getfattr writes unusual bytes of a name as "\ooo" octal escapes (and "\\" for a backslash). */
function unescapeGetfattrPath(p: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '\\' && /^[0-7]{3}$/.test(p.slice(i + 1, i + 4))) {
      bytes.push(parseInt(p.slice(i + 1, i + 4), 8));
      i += 3;
    } else if (p[i] === '\\' && p[i + 1] === '\\') {
      bytes.push(0x5c);
      i += 1;
    } else bytes.push(...Buffer.from(p[i] as string));
  }
  return Buffer.from(bytes).toString();
}

/**
 * Puts a layer into the image store: the blob under blobs/, its extraction under layers/
 * (the form a RUN of a later step mounts as a lowerdir). Both appear by rename only once
 * complete, as the store's own pulls do, so a crash leaves tmp/ debris and nothing torn.
 */
export async function commitLayer(store: ImageStore, blob: LayerBlob): Promise<LayerInfo> {
  const blobPath = store.blobPath(blob.digest);
  if (exists(blobPath)) await fs.promises.rm(blob.file, { force: true });
  else {
    await fsyncFile(blob.file);
    await fs.promises.rename(blob.file, blobPath);
  }
  const layerDir = store.layerDir(blob.diffID);
  if (!exists(layerDir) && !(await renamedIntoPlace(blob.dir, layerDir))) {
    const tmp = path.join(store.tmpPath, `${process.pid}-${blob.diffID.slice(7, 23)}-${Date.now().toString(36)}.layer`);
    await fs.promises.mkdir(tmp, { mode: 0o755 });
    try {
      await unpackLayer(fs.createReadStream(blobPath), blob, tmp);
      await renameIntoPlace(tmp, layerDir);
    } finally {
      await fs.promises.rm(tmp, { recursive: true, force: true });
    }
  }
  return { digest: blob.digest, diffID: blob.diffID, size: blob.size, mediaType: blob.mediaType };
}

/** The snapshotted directory itself becomes the layer when it is on the store's file system. */
async function renamedIntoPlace(dir: string, layerDir: string): Promise<boolean> {
  try {
    await fs.promises.rename(dir, layerDir);
    // overlayfs wants a lowerdir it can search: the root of an upper dir may be 0700 or 0755.
    await fs.promises.chmod(layerDir, 0o755);
    return true;
  } catch (e) {
    if (errnoOf(e) === 'EXDEV') return false;
    if (errnoOf(e) === 'ENOTEMPTY' || errnoOf(e) === 'EEXIST') return true;
    throw e;
  }
}

async function renameIntoPlace(tmp: string, dest: string): Promise<void> {
  try {
    await fs.promises.rename(tmp, dest);
  } catch (e) {
    // A concurrent build committed the same diffID first: same content, keep theirs.
    if (errnoOf(e) === 'ENOTEMPTY' || errnoOf(e) === 'EEXIST') return;
    throw e;
  }
}

async function fsyncFile(file: string): Promise<void> {
  const fh = await fs.promises.open(file, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch (e) {
    if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR') return false;
    throw e;
  }
}

/**
 * The mount points the runtime creates in every container (system mounts and the /etc
 * files it binds). Created inside the overlay, they would land in the RUN's layer although
 * the command never made them; BuildKit removes such stubs after each RUN too
 * (executor/stubs.go). Deepest first, so /etc goes after /etc/hosts.
 */
export const MOUNT_STUBS = ['/etc/hosts', '/etc/resolv.conf', '/etc/hostname', '/proc', '/dev', '/sys', '/etc'];

/** Removes from an upper dir the stubs that did not exist before the RUN and are still empty. */
export function removeMountStubs(upper: string, existedBefore: ReadonlySet<string>): void {
  for (const stub of MOUNT_STUBS) {
    if (existedBefore.has(stub)) continue;
    const abs = path.join(upper, stub);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(abs);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR') continue;
      throw e;
    }
    if (st.isFile() && st.size === 0) fs.unlinkSync(abs);
    else if (st.isDirectory() && fs.readdirSync(abs).length === 0) fs.rmdirSync(abs);
  }
}
