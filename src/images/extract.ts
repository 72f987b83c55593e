// Layer extraction: an uncompressed layer tar → one directory that overlayfs can use as a
// lowerdir. node-tar parses the archive (headers, pax, GNU long names); the writing is ours
// because tar's Unpack cannot do what a container layer needs: it skips device nodes and
// fifos, drops xattrs, and fchowns after writing, which clears setuid/setgid bits (chown(2):
// "the S_ISUID and S_ISGID mode bits are cleared" even for root since Linux 2.2.13).
//
// Whiteouts become what overlayfs expects (Documentation/filesystems/overlayfs.rst):
//   .wh.NAME      → a character device 0/0 named NAME
//   .wh..wh..opq  → the directory gets xattr trusted.overlay.opaque="y"
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { Writable } from 'node:stream';
import type { Parser, ReadEntry } from 'tar';
import { ImageError } from './errors';
import { LayerTree, classifyWhiteout, normalizeLayerPath, type NodeKind } from './pathsafety';

/** System calls Node lacks. The default runs mknod(1) and setfattr(1); the addon can provide a direct one. */
export interface SpecialFileOps {
  mknod(absPath: string, kind: 'char' | 'block' | 'fifo', mode: number, major: number, minor: number): Promise<void>;
  /** Sets an xattr on the path itself, not on a symlink's target (lsetxattr(2)). */
  lsetxattr(absPath: string, name: string, value: Buffer): Promise<void>;
}

function run(cmd: string, args: string[], what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const notInstalled = (err as NodeJS.ErrnoException).code === 'ENOENT';
      const e = new ImageError(
        notInstalled ? 'D2P_IMAGE_UNSUPPORTED' : 'D2P_IMAGE_INVALID',
        notInstalled ? `${what}: ${cmd} is not installed (hack/install-deps installs it)` : `${what}: ${cmd} failed: ${String(stderr).trim() || err.message}`,
        { cause: err },
      );
      reject(e);
    });
  });
}

export const commandSpecialFileOps: SpecialFileOps = {
  mknod: (abs, kind, mode, major, minor) =>
    run(
      'mknod',
      ['-m', (mode & 0o7777).toString(8), abs, kind === 'char' ? 'c' : kind === 'block' ? 'b' : 'p', ...(kind === 'fifo' ? [] : [String(major), String(minor)])],
      `mknod ${abs}`,
    ),
  lsetxattr: (abs, name, value) => run('setfattr', ['-h', '-n', name, '-v', `0x${value.toString('hex')}`, abs], `setxattr ${name} on ${abs}`),
};

export interface ExtractOptions {
  special?: SpecialFileOps;
  /** Non-fatal oddities (an xattr the filesystem refuses, an AUFS metadata file). */
  onWarning?: (message: string) => void;
  /** Keep uid/gid from the archive. Default: when running as root (only root may chown to others). */
  preserveOwner?: boolean;
}

export interface ExtractResult {
  entries: number;
  whiteouts: number;
  opaqueDirs: string[];
}

const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);
const PAX_XATTR = 'SCHILY.xattr.';
/** Overlayfs reads these itself; a layer must not forge them (opaque must come from .wh..wh..opq). */
const RESERVED_XATTR_PREFIX = 'trusted.overlay.';

/**
 * Extracts xattrs from a pax extended header body ("LEN key=value\n" records, POSIX pax
 * format). node-tar hands the body over as a UTF-8 string, so a binary value (e.g.
 * security.capability) arrives damaged; those are reported and skipped rather than
 * written wrong.
 */
export function parsePaxXattrs(meta: string): { xattrs: Map<string, Buffer>; damaged: string[] } {
  const buf = Buffer.from(meta, 'utf8');
  const xattrs = new Map<string, Buffer>();
  const damaged: string[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const space = buf.indexOf(0x20, pos);
    if (space === -1) break;
    const len = Number(buf.subarray(pos, space).toString('latin1'));
    if (!Number.isInteger(len) || len <= 0 || pos + len > buf.length) break;
    const record = buf.subarray(space + 1, pos + len - 1); // without the trailing "\n"
    pos += len;
    const eq = record.indexOf(0x3d);
    if (eq === -1) continue;
    const key = record.subarray(0, eq).toString('utf8');
    if (!key.startsWith(PAX_XATTR)) continue;
    const name = key.slice(PAX_XATTR.length);
    const value = record.subarray(eq + 1);
    if (value.toString('utf8').includes('\uFFFD')) damaged.push(name);
    else xattrs.set(name, Buffer.from(value));
  }
  return { xattrs, damaged };
}

interface PendingMeta {
  xattrs: Map<string, Buffer>;
  damaged: string[];
}

// node-tar is loaded by the first extraction, not with the image store: a daemon that never
// extracts a layer (no pulls, or only cached images) keeps ~4 MB less (issue 2's RSS budget).
type Tar = typeof import('tar');
let tarModule: Tar | undefined;
const tar = (): Tar => (tarModule ??= require('tar') as Tar);

/**
 * A Writable that takes the uncompressed bytes of a layer tar and materialises it in
 * `destDir` (which must exist and be empty). It finishes only when every entry is on disk.
 */
export class LayerExtractor extends Writable {
  readonly result: ExtractResult = { entries: 0, whiteouts: 0, opaqueDirs: [] };
  private readonly parser: Parser;
  private readonly tree = new LayerTree();
  private readonly special: SpecialFileOps;
  private readonly preserveOwner: boolean;
  private readonly dirTimes: { rel: string; mtime: Date }[] = [];
  private readonly opaque = new Set<string>();
  private chain: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  private pendingMeta: PendingMeta | undefined;
  private sniffed = false;
  private readonly parserEnded: Promise<void>;

  constructor(
    private readonly destDir: string,
    private readonly opts: ExtractOptions = {},
  ) {
    super({ highWaterMark: 1 << 20 });
    this.special = opts.special ?? commandSpecialFileOps;
    this.preserveOwner = opts.preserveOwner ?? process.getuid?.() === 0;
    // strict: a bad checksum or truncated archive is an error, not a warning.
    this.parser = new (tar().Parser)({ strict: true });
    this.parserEnded = new Promise((resolve, reject) => {
      this.parser.on('end', () => resolve());
      this.parser.on('error', (e: Error) => reject(e));
    });
    // Keep the rejection observed; _final awaits it and surfaces the error.
    this.parserEnded.catch((e: unknown) => this.fail(e));
    this.parser.on('meta', (meta: string) => {
      this.pendingMeta = parsePaxXattrs(meta);
    });
    this.parser.on('entry', (entry: ReadEntry) => this.onEntry(entry));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.failure) return cb(this.failure);
    if (!this.sniffed) {
      this.sniffed = true;
      // node-tar's parser would transparently gunzip a gzip stream it is given; inside an
      // already-decompressed layer that would be a second, unverified layer of encoding.
      if (chunk.length >= 2 && chunk[0] === 0x1f && chunk[1] === 0x8b) {
        return cb(new ImageError('D2P_IMAGE_INVALID', 'layer content is gzip inside gzip (or mislabelled): not a tar archive'));
      }
    }
    if (this.parser.write(chunk)) return cb();
    // Backpressure: node-tar's parser says "full" while entries wait for us, but emits
    // 'drain' only on some paths (not when the entry holding it back has already received
    // all its bytes). So resume on 'drain' or once our entry work has caught up, whichever
    // comes first; either way the parser holds at most what it held when it said "full".
    let resumed = false;
    const resume = () => {
      if (resumed) return;
      resumed = true;
      this.parser.off('drain', resume);
      cb(this.failure ?? null);
    };
    this.parser.once('drain', resume);
    void this.chain.then(() => setImmediate(resume));
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.parser.end();
    this.parserEnded
      .then(() => this.chain)
      .then(() => this.finish())
      .then(
        () => cb(this.failure ?? null),
        (e: unknown) => cb(e instanceof Error ? e : new Error(String(e))),
      );
  }

  private fail(e: unknown): void {
    if (this.failure) return;
    this.failure = e instanceof Error ? e : new Error(String(e));
    this.destroy(this.failure);
  }

  private onEntry(entry: ReadEntry): void {
    const meta = this.pendingMeta;
    this.pendingMeta = undefined;
    const hasBody = FILE_TYPES.has(entry.type);
    // Bodies of other entries (there should be none) are skipped now so the parser moves on.
    if (!hasBody || this.failure) entry.resume();
    if (this.failure) return;
    this.chain = this.chain
      .then(() => (this.failure ? undefined : this.apply(entry, meta)))
      .catch((e: unknown) => {
        this.fail(e);
        if (hasBody) entry.resume();
      });
  }

  private abs(rel: string): string {
    return rel === '' ? this.destDir : path.join(this.destDir, rel);
  }

  private async apply(entry: ReadEntry, meta: PendingMeta | undefined): Promise<void> {
    this.result.entries++;
    const rel = normalizeLayerPath(entry.path);
    const whiteout = classifyWhiteout(rel);
    if (whiteout) {
      entry.resume();
      return this.applyWhiteout(rel, whiteout);
    }
    if (meta) for (const name of meta.damaged) this.warn(`${rel}: xattr ${name} has a binary value that cannot be carried through; skipped`);
    switch (entry.type) {
      case 'Directory':
      case 'GNUDumpDir':
        await this.makeDirectory(rel, entry);
        break;
      case 'File':
      case 'OldFile':
      case 'ContiguousFile':
        await this.writeFile(rel, entry);
        break;
      case 'SymbolicLink':
        await this.makeSymlink(rel, entry);
        break;
      case 'Link':
        await this.makeHardlink(rel, entry);
        return; // a hard link shares owner, mode and xattrs with its target
      case 'CharacterDevice':
      case 'BlockDevice':
      case 'FIFO':
        await this.makeSpecial(rel, entry);
        break;
      default:
        throw new ImageError('D2P_IMAGE_UNSUPPORTED', `layer entry ${JSON.stringify(entry.path)}: unsupported tar entry type ${entry.type}`, { path: entry.path });
    }
    if (meta) await this.applyXattrs(rel, meta.xattrs);
  }

  /** Creates missing parents as root-owned 0755 directories, as tar does for names without a directory entry. */
  private async prepareParents(rel: string): Promise<void> {
    for (const missing of this.tree.checkParents(rel)) {
      await fs.promises.mkdir(this.abs(missing), { mode: 0o755 });
      this.tree.set(missing, 'dir');
    }
  }

  /** A later entry for an existing path replaces it (tar semantics); two directories merge. */
  private async replaceExisting(rel: string, newKind: NodeKind): Promise<void> {
    const existing = this.tree.get(rel);
    if (existing === undefined || (existing === 'dir' && newKind === 'dir')) return;
    if (rel === '') throw new ImageError('D2P_IMAGE_UNSAFE_LAYER', 'layer entry for the root is not a directory', { path: rel });
    await fs.promises.rm(this.abs(rel), { recursive: existing === 'dir', force: false });
    this.tree.remove(rel);
  }

  private async setOwner(abs: string, entry: ReadEntry, followLinks: boolean): Promise<void> {
    if (!this.preserveOwner) return;
    const uid = entry.uid ?? 0;
    const gid = entry.gid ?? 0;
    if (followLinks) await fs.promises.chown(abs, uid, gid);
    else await fs.promises.lchown(abs, uid, gid);
  }

  private async makeDirectory(rel: string, entry: ReadEntry): Promise<void> {
    await this.prepareParents(rel);
    await this.replaceExisting(rel, 'dir');
    const abs = this.abs(rel);
    if (this.tree.get(rel) === undefined) await fs.promises.mkdir(abs, { mode: 0o700 });
    this.tree.set(rel, 'dir');
    await this.setOwner(abs, entry, false);
    // chmod after chown: chown(2) may clear setgid, and mkdir(2) applies the umask.
    await fs.promises.chmod(abs, (entry.mode ?? 0o755) & 0o7777);
    if (entry.mtime) this.dirTimes.push({ rel, mtime: entry.mtime });
  }

  private async writeFile(rel: string, entry: ReadEntry): Promise<void> {
    await this.prepareParents(rel);
    await this.replaceExisting(rel, 'file');
    const abs = this.abs(rel);
    const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
    // O_EXCL|O_NOFOLLOW: we just removed whatever was there, so anything found now is not ours.
    const fh = await fs.promises.open(abs, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    this.tree.set(rel, 'file');
    try {
      // Plain writes, not fh.createWriteStream(): a FileHandle with a stream attached never
      // settles close() here (the stream holds a reference to it), leaking the descriptor.
      for await (const chunk of entry as AsyncIterable<Buffer>) {
        let off = 0;
        while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
      }
      if (this.preserveOwner) await fh.chown(entry.uid ?? 0, entry.gid ?? 0);
      await fh.chmod((entry.mode ?? 0o644) & 0o7777);
      if (entry.mtime) await fh.utimes(entry.atime ?? entry.mtime, entry.mtime);
    } finally {
      await fh.close();
    }
  }

  private async makeSymlink(rel: string, entry: ReadEntry): Promise<void> {
    if (rel === '') throw new ImageError('D2P_IMAGE_UNSAFE_LAYER', 'layer root entry is a symlink', { path: entry.path });
    await this.prepareParents(rel);
    await this.replaceExisting(rel, 'symlink');
    const abs = this.abs(rel);
    // The target is not checked: it is only ever resolved inside the container's root,
    // and we never write through a symlink (LayerTree.checkParents).
    await fs.promises.symlink(entry.linkpath ?? '', abs);
    this.tree.set(rel, 'symlink');
    await this.setOwner(abs, entry, false);
    if (entry.mtime) await fs.promises.lutimes(abs, entry.mtime, entry.mtime);
  }

  private async makeHardlink(rel: string, entry: ReadEntry): Promise<void> {
    const target = this.tree.checkHardlinkTarget(entry.path, entry.linkpath ?? '');
    await this.prepareParents(rel);
    await this.replaceExisting(rel, 'file');
    await fs.promises.link(this.abs(target), this.abs(rel));
    this.tree.set(rel, this.tree.get(target) ?? 'file');
  }

  private async makeSpecial(rel: string, entry: ReadEntry): Promise<void> {
    await this.prepareParents(rel);
    await this.replaceExisting(rel, 'file');
    const abs = this.abs(rel);
    const kind = entry.type === 'CharacterDevice' ? 'char' : entry.type === 'BlockDevice' ? 'block' : 'fifo';
    await this.special.mknod(abs, kind, (entry.mode ?? 0o600) & 0o7777, entry.header.devmaj ?? 0, entry.header.devmin ?? 0);
    this.tree.set(rel, 'file');
    await this.setOwner(abs, entry, false);
    await fs.promises.chmod(abs, (entry.mode ?? 0o600) & 0o7777);
    if (entry.mtime) await fs.promises.utimes(abs, entry.mtime, entry.mtime);
  }

  private async applyWhiteout(rel: string, w: NonNullable<ReturnType<typeof classifyWhiteout>>): Promise<void> {
    if (w.kind === 'meta') {
      this.warn(`${rel}: AUFS metadata entry ignored`);
      return;
    }
    if (w.kind === 'opaque') {
      // The directory itself must be a real directory of this layer, reached without symlinks.
      if (w.dir !== '') {
        await this.prepareParents(`${w.dir}/x`);
      }
      this.opaque.add(w.dir);
      return;
    }
    await this.prepareParents(w.target);
    // image-spec: a whiteout hides only lower layers; a file of this same layer wins.
    if (this.tree.get(w.target) !== undefined) return;
    await this.special.mknod(this.abs(w.target), 'char', 0, 0, 0);
    this.tree.set(w.target, 'whiteout');
    this.result.whiteouts++;
  }

  private async applyXattrs(rel: string, xattrs: Map<string, Buffer>): Promise<void> {
    for (const [name, value] of xattrs) {
      if (name.startsWith(RESERVED_XATTR_PREFIX)) {
        this.warn(`${rel}: xattr ${name} is reserved for overlayfs; skipped`);
        continue;
      }
      await this.special.lsetxattr(this.abs(rel), name, value);
    }
  }

  /** Work that must wait for the whole archive: later entries can recreate or touch these directories. */
  private async finish(): Promise<void> {
    if (this.failure) return;
    for (const dir of this.opaque) {
      if (this.tree.get(dir) !== 'dir') continue;
      await this.special.lsetxattr(this.abs(dir), 'trusted.overlay.opaque', Buffer.from('y'));
      this.result.opaqueDirs.push(dir);
    }
    // Creating children updated directory mtimes; restore the archive's, deepest last-written first.
    for (const { rel, mtime } of [...this.dirTimes].reverse()) {
      if (this.tree.get(rel) === 'dir') await fs.promises.utimes(this.abs(rel), mtime, mtime);
    }
  }

  private warn(message: string): void {
    this.opts.onWarning?.(message);
  }
}
