// LayerExtractor fed the way streams really feed it (one byte, odd sizes, a chunk bigger
// than a file, the whole archive at once), its failures (no descriptor left open), and the
// addon's mknod/lsetxattr it relies on. Root: it chowns, mknods and sets trusted.* xattrs.
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addon, S_IF, type NativeError } from '../../addon';
import { ImageError, LayerExtractor } from '../../src/images';
import { fixtures } from '../helpers/test-image';

let work: string;

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('layer extraction tests need root (run them through hack/sandbox)');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-extract-it-'));
});

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** Writes `tar` into a new LayerExtractor in chunks of `chunkSize` bytes and waits for the end. */
async function extract(tar: Buffer, chunkSize: number): Promise<{ dir: string; extractor: LayerExtractor }> {
  const dir = fs.mkdtempSync(path.join(work, `layer-${chunkSize}-`));
  const extractor = new LayerExtractor(dir);
  function* chunks(): Generator<Buffer> {
    for (let off = 0; off < tar.length; off += chunkSize) yield tar.subarray(off, off + chunkSize);
  }
  await pipeline(Readable.from(chunks()), extractor);
  return { dir, extractor };
}

function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

describe('LayerExtractor', () => {
  const big = crypto.randomBytes(3 * 1024 * 1024 + 17);
  const small = Array.from({ length: 300 }, (_, i) => `file number ${i}\n`.repeat(i % 7));
  const entries = [
    { path: 'data/', type: 'dir', mode: 0o750, uid: 12, gid: 34 },
    { path: 'data/big.bin', type: 'file', content: big, mode: 0o4755, uid: 1000, gid: 1000 },
    ...small.map((content, i) => ({ path: `data/small/f${i}.txt`, type: 'file', content, mode: 0o640 })),
    { path: 'data/link', type: 'symlink', linkpath: 'big.bin' },
    { path: 'data/hard', type: 'link', linkpath: 'data/big.bin' },
    { path: 'data/fifo', type: 'fifo', mode: 0o600 },
    { path: 'data/attr.txt', type: 'file', content: 'x', xattrs: { 'user.origin': 'layer' } },
    { path: 'data/small/.wh.gone', type: 'file', content: '' },
  ];
  const tar = fixtures.tarArchive(entries);

  // 1 byte, less than a header, a header, odd, zlib's 128 KiB, more than the big file, all.
  for (const chunkSize of [1, 100, 512, 4097, 128 * 1024, 4 * 1024 * 1024, tar.length]) {
    it(`extracts the same tree from chunks of ${chunkSize} bytes`, async () => {
      const { dir, extractor } = await extract(tar, chunkSize);
      expect(extractor.result.entries).toBe(entries.length);
      const bigStat = fs.statSync(path.join(dir, 'data/big.bin'));
      expect(fs.readFileSync(path.join(dir, 'data/big.bin')).equals(big)).toBe(true);
      // setuid kept: chmod came after chown.
      expect([bigStat.mode & 0o7777, bigStat.uid, bigStat.gid, bigStat.nlink]).toEqual([0o4755, 1000, 1000, 2]);
      for (const [i, content] of small.entries()) expect(fs.readFileSync(path.join(dir, `data/small/f${i}.txt`), 'utf8')).toBe(content);
      const dirStat = fs.statSync(path.join(dir, 'data'));
      expect([dirStat.mode & 0o7777, dirStat.uid, dirStat.gid]).toEqual([0o750, 12, 34]);
      expect(fs.readlinkSync(path.join(dir, 'data/link'))).toBe('big.bin');
      expect(fs.statSync(path.join(dir, 'data/fifo')).isFIFO()).toBe(true);
      expect(execFileSync('getfattr', ['--only-values', '-n', 'user.origin', path.join(dir, 'data/attr.txt')], { encoding: 'utf8' })).toBe('layer');
      const whiteout = fs.lstatSync(path.join(dir, 'data/small/gone'));
      expect([whiteout.isCharacterDevice(), whiteout.rdev]).toEqual([true, 0]);
    });
  }

  it('fails on an escaping entry in the middle of a file body stream, and leaves no descriptor open', async () => {
    const hostile = fixtures.tarArchive([
      { path: 'a/', type: 'dir' },
      { path: 'a/first.bin', type: 'file', content: big },
      { path: 'a/../../escape.txt', type: 'file', content: 'out' },
      { path: 'a/after.bin', type: 'file', content: big },
    ]);
    const before = openFdCount();
    const failure = await extract(hostile, 64 * 1024).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(ImageError);
    expect((failure as ImageError).code).toBe('D2P_IMAGE_UNSAFE_LAYER');
    expect(fs.existsSync(path.join(work, 'escape.txt'))).toBe(false);
    // The descriptor of the file being written when the failure came is closed asynchronously.
    await new Promise((r) => setTimeout(r, 50));
    expect(openFdCount()).toBe(before);
  });

  it('a body cut short is an error, not a short file', async () => {
    const whole = fixtures.tarArchive([{ path: 'cut.bin', type: 'file', content: big }]);
    const failure = await extract(whole.subarray(0, 1024 * 1024), 64 * 1024).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(failure?.message).toMatch(/ended before its last entry|Truncated|unexpected end/i);
  });
});

describe('addon mknod and lsetxattr', () => {
  it('make device nodes and fifos, and set xattrs on a symlink itself', () => {
    const dir = fs.mkdtempSync(path.join(work, 'native-'));
    addon().mknod(path.join(dir, 'null'), S_IF.CHR | 0o666, 1, 3);
    const st = fs.statSync(path.join(dir, 'null'));
    expect([st.isCharacterDevice(), st.rdev, st.mode & 0o777]).toEqual([true, (1 << 8) | 3, 0o666 & ~process.umask()]);
    addon().mknod(path.join(dir, 'pipe'), S_IF.FIFO | 0o600, 0, 0);
    expect(fs.statSync(path.join(dir, 'pipe')).isFIFO()).toBe(true);
    fs.symlinkSync('nowhere', path.join(dir, 'sym'));
    addon().lsetxattr(path.join(dir, 'sym'), 'trusted.d2p', Buffer.from([0, 1, 2, 255]));
    const dump = execFileSync('getfattr', ['-h', '-e', 'hex', '-n', 'trusted.d2p', path.join(dir, 'sym')], { encoding: 'utf8' });
    expect(dump).toContain('trusted.d2p=0x000102ff');
  });

  it('carry errno, the system call and the path in their errors', () => {
    const missing = path.join(work, 'no/such/dir/x');
    const failure = (() => {
      try {
        addon().mknod(missing, S_IF.FIFO | 0o600, 0, 0);
        return undefined;
      } catch (e) {
        return e as NativeError;
      }
    })();
    expect(failure).toMatchObject({ code: 'ENOENT', syscall: 'mknod', path: missing });
    expect(() => addon().lsetxattr(missing, 'user.x', Buffer.from('v'))).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'lsetxattr' }));
  });
});
