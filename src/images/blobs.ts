// Content-addressed blob plumbing shared by pull, load and push: a verifying tap for
// streams, atomic durable writes, and reading blobs out of any directory laid out like an
// OCI image layout (blobs/<algorithm>/<hex>), which both our store and `oci-layout` dirs are.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Transform, type TransformCallback, type Readable } from 'node:stream';
import { ImageError, errnoCode } from './errors';
import { assertDigest } from './reference';

export function sha256Hex(data: Buffer | string): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

export function digestOf(data: Buffer | string): string {
  return `sha256:${sha256Hex(data)}`;
}

export function blobPath(root: string, digest: string): string {
  assertDigest(digest, 'blob');
  const [algorithm, hex] = digest.split(':') as [string, string];
  return path.join(root, 'blobs', algorithm, hex);
}

/**
 * Hashes and counts what flows through. The size is checked as bytes arrive (a blob that
 * runs long is cut off at once), then at the end size and digest, in that order, as the
 * distribution spec asks of clients.
 */
export class DigestTap extends Transform {
  readonly hash = crypto.createHash('sha256');
  bytes = 0;

  constructor(
    private readonly expected: { digest?: string; size?: number },
    private readonly what: string,
    private readonly onBytes?: (bytes: number) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.expected.size !== undefined && this.bytes > this.expected.size) {
      return cb(this.sizeError());
    }
    this.hash.update(chunk);
    this.onBytes?.(this.bytes);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.expected.size !== undefined && this.bytes !== this.expected.size) return cb(this.sizeError());
    const actual = `sha256:${this.hash.digest('hex')}`;
    this.actualDigest = actual;
    if (this.expected.digest !== undefined && actual !== this.expected.digest) {
      return cb(
        new ImageError('D2P_IMAGE_DIGEST_MISMATCH', `${this.what}: content has digest ${actual}, expected ${this.expected.digest}`, {
          digest: this.expected.digest,
        }),
      );
    }
    cb();
  }

  actualDigest: string | undefined;

  private sizeError(): ImageError {
    return new ImageError(
      'D2P_IMAGE_SIZE_MISMATCH',
      `${this.what}: received ${this.bytes} bytes${this.bytes > (this.expected.size ?? 0) ? ' or more' : ''}, expected ${this.expected.size} (digest ${this.expected.digest ?? 'unknown'})`,
      { ...(this.expected.digest !== undefined ? { digest: this.expected.digest } : {}) },
    );
  }
}

/** fsync of a directory makes a rename in it durable (rename(2) is atomic, not durable). */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes a file so that a crash leaves either the old or the new content: temp, fsync, rename, fsync dir. */
export function writeFileAtomic(file: string, data: Buffer | string, tmpDir: string): void {
  const tmp = path.join(tmpDir, `${process.pid}-${crypto.randomBytes(6).toString('hex')}.write`);
  const fd = fs.openSync(tmp, 'wx', 0o644);
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}

/** Where blobs can be read from: our store, or an OCI image layout directory. */
export interface BlobSource {
  open(digest: string): Readable;
  read(digest: string): Promise<Buffer>;
  has(digest: string): boolean;
}

/** Blobs of a directory with an OCI-layout `blobs/` tree; symlinks are refused (the directory may come from an untrusted archive). */
export function directoryBlobSource(root: string): BlobSource {
  const regularFile = (digest: string): string => {
    const file = blobPath(root, digest);
    const st = fs.lstatSync(file);
    if (!st.isFile()) throw new ImageError('D2P_IMAGE_INVALID', `blob ${digest} in ${root} is not a regular file`, { digest });
    return file;
  };
  return {
    open: (digest) => fs.createReadStream(regularFile(digest)),
    read: async (digest) => {
      const bytes = await fs.promises.readFile(regularFile(digest));
      const actual = digestOf(bytes);
      if (actual !== digest) {
        throw new ImageError('D2P_IMAGE_DIGEST_MISMATCH', `blob ${digest} in ${root} has digest ${actual}`, { digest });
      }
      return bytes;
    },
    has: (digest) => {
      try {
        return fs.lstatSync(blobPath(root, digest)).isFile();
      } catch (e) {
        if (errnoCode(e) === 'ENOENT') return false;
        throw e;
      }
    },
  };
}
