// The store's write-ahead log (wal.ts): a write is durable once its record is, the object
// files follow at a checkpoint, and an open replays what a crash left — dropping only a
// torn end that was never acknowledged, refusing anything else it cannot read.
import { describe, expect, it, vi } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { openStore } from '../../src/store';
import { DirectorySyncer } from '../../src/store/disk';
import { WriteAheadLog } from '../../src/store/wal';
import { API_VERSION, type ApiObject } from '../../src/api/meta';
import { storeTestDir } from '../helpers/store-dir';

const stores = storeTestDir('d2p-store-wal-');
const { storeDir, open, close } = stores;
const segments = () => fs.readdirSync(storeDir()).filter((f) => /^wal-\d{16}\.log$/.test(f));
const objectFile = (name: string, namespace = 'shop') => path.join(storeDir(), 'objects', 'volumes', namespace, name);

function volume(name: string, labels: Record<string, string> = {}, namespace = 'shop'): ApiObject {
  return { apiVersion: API_VERSION, kind: 'Volume', metadata: { name, namespace, labels }, spec: { driver: 'local' } };
}

/** An object file's content as the store writes it, with the identity a crash would leave. */
function stored(name: string, rv: string, labels: Record<string, string> = {}): string {
  const v = volume(name, labels);
  return JSON.stringify({ ...v, metadata: { ...v.metadata, uid: `uid-${name}`, resourceVersion: rv, generation: 1 } }) + '\n';
}

function record(writes: Array<{ path: string; content: string | null }>): string {
  const json = JSON.stringify({ writes });
  return `${crc32(json).toString(16).padStart(8, '0')} ${json}\n`;
}

const at = (name: string) => `objects/volumes/shop/${name}`;

describe('the write-ahead log', () => {
  it('acknowledges a write once its record is durable; the object file comes with the checkpoint', async () => {
    const store = await open();
    await store.create(volume('a', { v: '1' }));
    const [segment] = segments();
    expect(fs.readFileSync(path.join(storeDir(), segment!), 'utf8')).toContain('"name\\":\\"a\\"');
    expect(fs.existsSync(objectFile('a'))).toBe(false);
    // A clean close writes everything out and leaves no log.
    await close(store);
    expect(JSON.parse(fs.readFileSync(objectFile('a'), 'utf8')).metadata.labels).toEqual({ v: '1' });
    expect(segments()).toEqual([]);
    const again = await open();
    expect((await again.get('Volume', 'shop', 'a')).metadata.labels).toEqual({ v: '1' });
  });

  it('checkpoints on its own: the newest content of each object, then the segment goes', async () => {
    const store = await open();
    const a = await store.create(volume('a', { v: '1' }));
    await store.update({ ...a, metadata: { ...a.metadata, labels: { v: '2' } } });
    await store.create(volume('gone'));
    await store.delete('Volume', 'shop', 'gone');
    const first = segments();
    await vi.waitFor(() => expect(fs.existsSync(objectFile('a'))).toBe(true), { timeout: 5_000 });
    await vi.waitFor(() => expect(segments().filter((s) => first.includes(s))).toEqual([]), { timeout: 5_000 });
    expect(JSON.parse(fs.readFileSync(objectFile('a'), 'utf8')).metadata.labels).toEqual({ v: '2' });
    // Created and deleted between two checkpoints: it never reached the objects folder.
    expect(fs.existsSync(objectFile('gone'))).toBe(false);
  });

  it('replays what a crash left, in order, and drops a torn end that was never acknowledged', async () => {
    const store = await open();
    await store.create(volume('kept'));
    await close(store);
    fs.writeFileSync(
      path.join(storeDir(), 'wal-0000000000000007.log'),
      record([{ path: at('new1'), content: stored('new1', '10', { step: '1' }) }]) +
        record([{ path: at('new1'), content: stored('new1', '11', { step: '2' }) }, { path: at('kept'), content: null }]),
    );
    // The newest segment ends in a record cut short, then a bad one: neither was acknowledged.
    const torn = record([{ path: at('never'), content: stored('never', '12') }]);
    fs.writeFileSync(path.join(storeDir(), 'wal-0000000000000008.log'), record([{ path: at('new2'), content: stored('new2', '12') }]) + torn.slice(0, 40));
    const again = await open();
    expect((await again.list('Volume')).items.map((o) => [o.metadata.name, o.metadata.labels])).toEqual([
      ['new1', { step: '2' }],
      ['new2', {}],
    ]);
    expect(Number(again.resourceVersion)).toBeGreaterThanOrEqual(12);
    // Replayed and written out: the old segments are gone, a fresh one is open.
    expect(segments().every((s) => s > 'wal-0000000000000008.log')).toBe(true);
    const next = await again.create(volume('after'));
    expect(Number(next.metadata.resourceVersion)).toBeGreaterThan(12);
  });

  it('refuses to open on a record it cannot read before the end of the log, naming the file and line', async () => {
    await close(await open());
    const good = record([{ path: at('x'), content: stored('x', '3') }]);
    const bad = good.replace('shop/x', 'shop/y'); // the old checksum over other bytes
    const file = path.join(storeDir(), 'wal-0000000000000002.log');
    fs.writeFileSync(file, good + bad + good);
    await expect(openStore({ dir: storeDir() })).rejects.toThrow(`store: write-ahead log ${file}, line 2: checksum mismatch`);
    // In an older segment even a bad last record is not a torn end: later segments follow it.
    fs.writeFileSync(file, good + bad);
    fs.writeFileSync(path.join(storeDir(), 'wal-0000000000000003.log'), good);
    await expect(openStore({ dir: storeDir() })).rejects.toThrow(`store: write-ahead log ${file}, line 2: checksum mismatch`);
  });

  it('seals only what is durable in the segment: a record still queued goes to the next one', async () => {
    fs.mkdirSync(storeDir(), { recursive: true });
    const wal = await WriteAheadLog.create(storeDir(), new DirectorySyncer(), 0);
    const a = { path: at('a'), content: stored('a', '1') };
    const b = { path: at('b'), content: stored('b', '2') };
    const first = wal.append([a]); // being written when the next two calls come
    const second = wal.append([b]);
    const sealed = await wal.seal();
    await Promise.all([first, second]);
    expect(sealed.latest).toEqual([a]);
    expect((await wal.seal()).latest).toEqual([b]);
    await wal.close();
  });

  it('refuses a record that names a file outside the objects folder', async () => {
    await close(await open());
    fs.writeFileSync(path.join(storeDir(), 'wal-0000000000000002.log'), record([{ path: '../../etc/passwd', content: 'x' }]));
    await expect(openStore({ dir: storeDir() })).rejects.toThrow(/wal-0000000000000002\.log, line 1: write 0 names "\.\.\/\.\.\/etc\/passwd", which is not an object file/);
  });
});
