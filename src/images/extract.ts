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
import { Writable } from 'node:stream';
import type { Parser, ReadEntry } from 'tar';
import { addon, S_IF } from '../../addon';
import { ImageError } from './errors';
import { LayerTree, classifyWhiteout, normalizeLayerPath, type NodeKind } from './pathsafety';

/** mknod(2) through the addon: device nodes, fifos and overlayfs whiteouts (char 0/0). */
function mknod(abs: string, kind: 'char' | 'block' | 'fifo', mode: number, major: number, minor: number): void {
  addon().mknod(abs, (kind === 'char' ? S_IF.CHR : kind === 'block' ? S_IF.BLK : S_IF.FIFO) | (mode & 0o7777), major, minor);
}

export interface ExtractOptions {
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

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;

/**
 * A Writable that takes the uncompressed bytes of a layer tar and materialises it in
 * `destDir` (which must exist and be empty). It finishes only when every entry is on disk.
 *
 * Every file system call is synchronous and made while node-tar parses the chunk that
 * holds the entry: an image has thousands of small files, and a thread-pool round trip for
 * each open, write, chown, chmod, utimes and close cost more than the calls themselves
 * (an image of 14,700 files, 442 MB, took 4.4 s to pull, now 2.3 s: hack/bench/pull.js). The event loop is
 * held for one chunk's worth of entries at a time (zlib hands out 128 KiB), a few
 * milliseconds. Being synchronous also makes backpressure plain: when _write calls back,
 * the chunk is on disk and node-tar holds nothing.
 */
export class LayerExtractor extends Writable {
  readonly result: ExtractResult = { entries: 0, whiteouts: 0, opaqueDirs: [] };
  private readonly parser: Parser;
  private readonly tree = new LayerTree();
  private readonly preserveOwner: boolean;
  private readonly dirTimes: { rel: string; mtime: Date }[] = [];
  private readonly opaque = new Set<string>();
  private failure: Error | undefined;
  /** The file whose body is being written: entries come one at a time, so at most one. */
  private openFd: number | undefined;
  private pendingMeta: PendingMeta | undefined;
  private sniffed = false;
  private parserEnded = false;

  constructor(
    private readonly destDir: string,
    private readonly opts: ExtractOptions = {},
  ) {
    super({ highWaterMark: 1 << 20 });
    this.preserveOwner = opts.preserveOwner ?? process.getuid?.() === 0;
    // strict: a bad checksum or truncated archive is an error, not a warning.
    this.parser = new (tar().Parser)({ strict: true });
    this.parser.on('end', () => {
      this.parserEnded = true;
    });
    this.parser.on('error', (e: Error) => this.fail(e));
    this.parser.on('meta', (meta: string) => {
      this.pendingMeta = parsePaxXattrs(meta);
    });
    this.parser.on('entry', (entry: ReadEntry) => this.guarded(entry, () => this.onEntry(entry)));
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
    this.parser.write(chunk);
    cb(this.failure ?? null);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.failure) this.parser.end();
    if (!this.failure && !this.parserEnded) this.fail(new ImageError('D2P_IMAGE_INVALID', 'layer tar ended before its last entry was complete'));
    if (!this.failure) this.guarded(undefined, () => this.finish());
    cb(this.failure ?? null);
  }

  private fail(e: unknown): void {
    this.failure ??= e instanceof Error ? e : new Error(String(e));
    this.closeOpenFile();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.closeOpenFile();
    cb(err);
  }

  /** After a failure or an abort: the body of the open file will not come, so neither will its 'end'. */
  private closeOpenFile(): void {
    const fd = this.openFd;
    if (fd === undefined) return;
    this.openFd = undefined;
    fs.close(fd, (e) => {
      if (e) this.warn(`closing a layer file after a failed extraction: ${e.message}`);
    });
  }

  /**
   * Runs entry work so that a failure is recorded rather than thrown through node-tar's
   * parser (whose state a throw would leave half-updated). After a failure the rest of the
   * archive is only read, never written: the caller removes the directory.
   */
  private guarded(entry: ReadEntry | undefined, work: () => void): void {
    if (this.failure) {
      entry?.resume();
      return;
    }
    try {
      work();
    } catch (e) {
      this.fail(e);
      entry?.resume();
    }
  }

  private onEntry(entry: ReadEntry): void {
    const meta = this.pendingMeta;
    this.pendingMeta = undefined;
    this.result.entries++;
    const rel = normalizeLayerPath(entry.path);
    const whiteout = classifyWhiteout(rel);
    // Only a regular file's body is read (writeFile); every other body is skipped so the parser moves on.
    if (whiteout || !FILE_TYPES.has(entry.type)) entry.resume();
    if (whiteout) {
      this.applyWhiteout(rel, whiteout);
      return;
    }
    if (meta) for (const name of meta.damaged) this.warn(`${rel}: xattr ${name} has a binary value that cannot be carried through; skipped`);
    switch (entry.type) {
      case 'Directory':
      case 'GNUDumpDir':
        this.makeDirectory(rel, entry);
        break;
      case 'File':
      case 'OldFile':
      case 'ContiguousFile':
        // Attributes and xattrs follow when the body has been written (writeFile's 'end').
        this.writeFile(rel, entry, meta);
        return;
      case 'SymbolicLink':
        this.makeSymlink(rel, entry);
        break;
      case 'Link':
        this.makeHardlink(rel, entry);
        return; // a hard link shares owner, mode and xattrs with its target
      case 'CharacterDevice':
      case 'BlockDevice':
      case 'FIFO':
        this.makeSpecial(rel, entry);
        break;
      default:
        throw new ImageError('D2P_IMAGE_UNSUPPORTED', `layer entry ${JSON.stringify(entry.path)}: unsupported tar entry type ${entry.type}`, { path: entry.path });
    }
    if (meta) this.applyXattrs(rel, meta.xattrs);
  }

  private abs(rel: string): string {
    return rel === '' ? this.destDir : path.join(this.destDir, rel);
  }

  /** Creates missing parents as root-owned 0755 directories, as tar does for names without a directory entry. */
  private prepareParents(rel: string): void {
    for (const missing of this.tree.checkParents(rel)) {
      fs.mkdirSync(this.abs(missing), { mode: 0o755 });
      this.tree.set(missing, 'dir');
    }
  }

  /** A later entry for an existing path replaces it (tar semantics); two directories merge. */
  private replaceExisting(rel: string, newKind: NodeKind): void {
    const existing = this.tree.get(rel);
    if (existing === undefined || (existing === 'dir' && newKind === 'dir')) return;
    if (rel === '') throw new ImageError('D2P_IMAGE_UNSAFE_LAYER', 'layer entry for the root is not a directory', { path: rel });
    fs.rmSync(this.abs(rel), { recursive: existing === 'dir', force: false });
    this.tree.remove(rel);
  }

  private makeDirectory(rel: string, entry: ReadEntry): void {
    this.prepareParents(rel);
    this.replaceExisting(rel, 'dir');
    const abs = this.abs(rel);
    if (this.tree.get(rel) === undefined) fs.mkdirSync(abs, { mode: 0o700 });
    this.tree.set(rel, 'dir');
    if (this.preserveOwner) fs.lchownSync(abs, entry.uid ?? 0, entry.gid ?? 0);
    // chmod after chown: chown(2) may clear setgid, and mkdir(2) applies the umask.
    fs.chmodSync(abs, (entry.mode ?? 0o755) & 0o7777);
    if (entry.mtime) this.dirTimes.push({ rel, mtime: entry.mtime });
  }

  private writeFile(rel: string, entry: ReadEntry, meta: PendingMeta | undefined): void {
    this.prepareParents(rel);
    this.replaceExisting(rel, 'file');
    const abs = this.abs(rel);
    // O_EXCL|O_NOFOLLOW: we just removed whatever was there, so anything found now is not ours.
    const fd = fs.openSync(abs, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    this.openFd = fd;
    this.tree.set(rel, 'file');
    // The body arrives in 'data' events during the parser.write() calls that carry it.
    entry.on('data', (chunk: Buffer) =>
      this.guarded(undefined, () => {
        if (this.openFd !== fd) return;
        let off = 0;
        while (off < chunk.length) off += fs.writeSync(fd, chunk, off, chunk.length - off);
      }),
    );
    entry.on('end', () =>
      this.guarded(undefined, () => {
        if (this.openFd !== fd) return;
        this.openFd = undefined;
        try {
          // chown before chmod: chown(2) clears setuid/setgid bits.
          if (this.preserveOwner) fs.fchownSync(fd, entry.uid ?? 0, entry.gid ?? 0);
          fs.fchmodSync(fd, (entry.mode ?? 0o644) & 0o7777);
          if (entry.mtime) fs.futimesSync(fd, entry.atime ?? entry.mtime, entry.mtime);
        } finally {
          fs.closeSync(fd);
        }
        if (meta) this.applyXattrs(rel, meta.xattrs);
      }),
    );
  }

  private makeSymlink(rel: string, entry: ReadEntry): void {
    if (rel === '') throw new ImageError('D2P_IMAGE_UNSAFE_LAYER', 'layer root entry is a symlink', { path: entry.path });
    this.prepareParents(rel);
    this.replaceExisting(rel, 'symlink');
    const abs = this.abs(rel);
    // The target is not checked: it is only ever resolved inside the container's root,
    // and we never write through a symlink (LayerTree.checkParents).
    fs.symlinkSync(entry.linkpath ?? '', abs);
    this.tree.set(rel, 'symlink');
    if (this.preserveOwner) fs.lchownSync(abs, entry.uid ?? 0, entry.gid ?? 0);
    if (entry.mtime) fs.lutimesSync(abs, entry.mtime, entry.mtime);
  }

  private makeHardlink(rel: string, entry: ReadEntry): void {
    const target = this.tree.checkHardlinkTarget(entry.path, entry.linkpath ?? '');
    this.prepareParents(rel);
    this.replaceExisting(rel, 'file');
    fs.linkSync(this.abs(target), this.abs(rel));
    this.tree.set(rel, this.tree.get(target) ?? 'file');
  }

  private makeSpecial(rel: string, entry: ReadEntry): void {
    this.prepareParents(rel);
    this.replaceExisting(rel, 'file');
    const abs = this.abs(rel);
    const kind = entry.type === 'CharacterDevice' ? 'char' : entry.type === 'BlockDevice' ? 'block' : 'fifo';
    mknod(abs, kind, (entry.mode ?? 0o600) & 0o7777, entry.header.devmaj ?? 0, entry.header.devmin ?? 0);
    this.tree.set(rel, 'file');
    if (this.preserveOwner) fs.lchownSync(abs, entry.uid ?? 0, entry.gid ?? 0);
    // mknod(2) applies the umask; chmod after chown as for files.
    fs.chmodSync(abs, (entry.mode ?? 0o600) & 0o7777);
    if (entry.mtime) fs.utimesSync(abs, entry.mtime, entry.mtime);
  }

  private applyWhiteout(rel: string, w: NonNullable<ReturnType<typeof classifyWhiteout>>): void {
    if (w.kind === 'meta') {
      this.warn(`${rel}: AUFS metadata entry ignored`);
      return;
    }
    if (w.kind === 'opaque') {
      // The directory itself must be a real directory of this layer, reached without symlinks.
      if (w.dir !== '') this.prepareParents(`${w.dir}/x`);
      this.opaque.add(w.dir);
      return;
    }
    this.prepareParents(w.target);
    // image-spec: a whiteout hides only lower layers; a file of this same layer wins.
    if (this.tree.get(w.target) !== undefined) return;
    mknod(this.abs(w.target), 'char', 0, 0, 0);
    this.tree.set(w.target, 'whiteout');
    this.result.whiteouts++;
  }

  private applyXattrs(rel: string, xattrs: Map<string, Buffer>): void {
    for (const [name, value] of xattrs) {
      if (name.startsWith(RESERVED_XATTR_PREFIX)) {
        this.warn(`${rel}: xattr ${name} is reserved for overlayfs; skipped`);
        continue;
      }
      addon().lsetxattr(this.abs(rel), name, value);
    }
  }

  /** Work that must wait for the whole archive: later entries can recreate or touch these directories. */
  private finish(): void {
    for (const dir of this.opaque) {
      if (this.tree.get(dir) !== 'dir') continue;
      addon().lsetxattr(this.abs(dir), 'trusted.overlay.opaque', Buffer.from('y'));
      this.result.opaqueDirs.push(dir);
    }
    // Creating children updated directory mtimes; restore the archive's, deepest last-written first.
    for (const { rel, mtime } of [...this.dirTimes].reverse()) {
      if (this.tree.get(rel) === 'dir') fs.utimesSync(this.abs(rel), mtime, mtime);
    }
  }

  private warn(message: string): void {
    this.opts.onWarning?.(message);
  }
}
