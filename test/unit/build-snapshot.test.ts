// A directory → a layer tar: overlayfs whiteouts and opaque dirs translated to the OCI
// `.wh.` forms, sorted entries, reproducible bytes, fixed mtimes with SOURCE_DATE_EPOCH.
// Whiteouts are real 0/0 character devices and opaque dirs carry trusted.* xattrs, as in
// an overlayfs upper dir; making them needs root (mknod(2), setxattr(2) of trusted.*).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseGetfattr, removeMountStubs, snapshotDir } from '../../src/build/snapshot';

if (process.getuid?.() !== 0) throw new Error('build-snapshot tests need root: they make 0/0 character devices and trusted.overlay.* xattrs, as overlayfs does');

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-snapshot-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface Listed {
  path: string;
  type: string;
  mode: number;
  uid: number;
  mtime: number;
  linkpath?: string;
}

function list(file: string): Listed[] {
  const out: Listed[] = [];
  const parser = new Parser({
    onReadEntry: (e: ReadEntry) => {
      out.push({ path: e.path, type: e.type, mode: e.mode ?? 0, uid: e.uid ?? -1, mtime: e.mtime?.getTime() ?? 0, ...(e.linkpath ? { linkpath: e.linkpath } : {}) });
      e.resume();
    },
  } as never);
  parser.end(zlib.gunzipSync(fs.readFileSync(file)));
  return out;
}

/** An upper dir as overlayfs leaves it after `rm /etc/motd; rm -rf /opt/data; mkdir /opt/data; …`. */
function upperDir(): string {
  const upper = path.join(tmp, 'upper');
  fs.mkdirSync(path.join(upper, 'etc'), { recursive: true });
  execFileSync('mknod', [path.join(upper, 'etc', 'motd'), 'c', '0', '0']);
  fs.mkdirSync(path.join(upper, 'opt', 'data'), { recursive: true });
  execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', path.join(upper, 'opt', 'data')]);
  fs.writeFileSync(path.join(upper, 'opt', 'data', 'new.txt'), 'new\n');
  fs.writeFileSync(path.join(upper, 'b.txt'), 'b\n');
  fs.writeFileSync(path.join(upper, 'a.txt'), 'a\n');
  fs.chmodSync(path.join(upper, 'a.txt'), 0o4755);
  fs.linkSync(path.join(upper, 'a.txt'), path.join(upper, 'a-link'));
  fs.symlinkSync('a.txt', path.join(upper, 'sym'));
  fs.chownSync(path.join(upper, 'b.txt'), 1000, 1000);
  return upper;
}

describe('snapshotDir', () => {
  it('turns whiteout devices and opaque dirs into .wh. entries, sorted, parents first', async () => {
    const blob = await snapshotDir(upperDir(), { overlay: true, outFile: path.join(tmp, 'layer.tar.gz') });
    expect(blob).toBeDefined();
    const entries = list(blob!.file);
    expect(entries.map((e) => e.path)).toEqual([
      'a-link', 'a.txt', 'b.txt', 'etc/', 'etc/.wh.motd', 'opt/', 'opt/data/', 'opt/data/.wh..wh..opq', 'opt/data/new.txt', 'sym',
    ]);
    const byPath = Object.fromEntries(entries.map((e) => [e.path, e]));
    expect(byPath['etc/.wh.motd']?.type).toBe('File');
    expect(byPath['a.txt']?.type).toBe('Link');
    expect(byPath['a.txt']?.linkpath).toBe('a-link');
    expect(byPath['a-link']?.mode).toBe(0o4755);
    expect(byPath['b.txt']?.uid).toBe(1000);
    expect(byPath['sym']).toMatchObject({ type: 'SymbolicLink', linkpath: 'a.txt' });
    expect(blob!.diffID).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(blob!.digest).not.toBe(blob!.diffID);
  });

  it('a staging dir (not overlay) keeps device nodes as devices and ignores opaque xattrs', async () => {
    const dir = path.join(tmp, 'staging');
    fs.mkdirSync(path.join(dir, 'dev'), { recursive: true });
    execFileSync('mknod', [path.join(dir, 'dev', 'null'), 'c', '1', '3']);
    const blob = await snapshotDir(dir, { overlay: false, outFile: path.join(tmp, 'staging.tar.gz') });
    const entries = list(blob!.file);
    expect(entries.find((e) => e.path === 'dev/null')?.type).toBe('CharacterDevice');
  });

  it('gives the same bytes twice, and fixed mtimes with SOURCE_DATE_EPOCH', async () => {
    const upper = upperDir();
    const one = await snapshotDir(upper, { overlay: true, outFile: path.join(tmp, '1.tar.gz'), sourceDateEpoch: 1_700_000_000 });
    fs.utimesSync(path.join(upper, 'b.txt'), new Date(), new Date());
    const two = await snapshotDir(upper, { overlay: true, outFile: path.join(tmp, '2.tar.gz'), sourceDateEpoch: 1_700_000_000 });
    expect(two!.diffID).toBe(one!.diffID);
    expect(two!.digest).toBe(one!.digest);
    expect(new Set(list(one!.file).map((e) => e.mtime))).toEqual(new Set([1_700_000_000_000]));
    const three = await snapshotDir(upper, { overlay: true, outFile: path.join(tmp, '3.tar.gz') });
    expect(three!.diffID).not.toBe(one!.diffID);
  });

  it('an empty directory is no layer at all', async () => {
    fs.mkdirSync(path.join(tmp, 'empty'));
    expect(await snapshotDir(path.join(tmp, 'empty'), { overlay: true, outFile: path.join(tmp, 'e.tar.gz') })).toBeUndefined();
  });

  it('long names go into pax records', async () => {
    const dir = path.join(tmp, 'long');
    const name = `${'d'.repeat(120)}/${'f'.repeat(150)}`;
    fs.mkdirSync(path.join(dir, 'd'.repeat(120)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), 'x');
    const blob = await snapshotDir(dir, { overlay: false, outFile: path.join(tmp, 'long.tar.gz') });
    expect(list(blob!.file).map((e) => e.path)).toContain(name);
  });
});

describe('removeMountStubs', () => {
  it('removes the empty mount points the runtime made, keeps those that existed or got content', () => {
    const upper = path.join(tmp, 'u');
    for (const d of ['proc', 'sys', 'dev', 'etc']) fs.mkdirSync(path.join(upper, d), { recursive: true });
    fs.writeFileSync(path.join(upper, 'etc', 'hosts'), '');
    fs.writeFileSync(path.join(upper, 'etc', 'resolv.conf'), '');
    fs.writeFileSync(path.join(upper, 'sys', 'written-by-run'), 'x');
    removeMountStubs(upper, new Set(['/etc/resolv.conf']));
    expect(fs.readdirSync(upper).sort()).toEqual(['etc', 'sys']);
    expect(fs.readdirSync(path.join(upper, 'etc'))).toEqual(['resolv.conf']);
  });
});

describe('parseGetfattr', () => {
  it('reads hex values and octal-escaped names', () => {
    const parsed = parseGetfattr('# file: /up/a\\040b\ntrusted.overlay.opaque=0x79\nuser.x=0x6869\n\n# file: /up/c\nuser.y="text"\n');
    expect(parsed.get('/up/a b')?.get('trusted.overlay.opaque')?.toString()).toBe('y');
    expect(parsed.get('/up/a b')?.get('user.x')?.toString()).toBe('hi');
    expect(parsed.get('/up/c')?.get('user.y')?.toString()).toBe('text');
  });
});
