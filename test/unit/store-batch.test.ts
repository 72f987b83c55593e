// The store's multi-object write (writeBatch): all or nothing in memory (one refusal, no
// write), in order for watchers, and atomic on disk (one record of the write-ahead log; the
// journal of older versions is still replayed on open): a kill -9 at any moment leaves
// every batch entirely written or not at all.
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { randomInt } from 'node:crypto';
import { buildSync } from 'esbuild';
import { openStore, type EmbeddedStore } from '../../src/store';
import type { BatchWrite } from '../../src/store/types';
import { API_VERSION, type ApiObject, type WatchEvent } from '../../src/api/meta';
import { isApiError } from '../../src/api/errors';
import { storeTestDir } from '../helpers/store-dir';

const stores = storeTestDir('d2p-store-batch-');
const { storeDir, open } = stores;

async function reopen(store: EmbeddedStore): Promise<EmbeddedStore> {
  await stores.close(store);
  return open();
}

function volume(name: string, labels: Record<string, string> = {}, namespace = 'shop'): ApiObject {
  return { apiVersion: API_VERSION, kind: 'Volume', metadata: { name, namespace, labels }, spec: { driver: 'local' } };
}

const create = (object: ApiObject): BatchWrite => ({ verb: 'create', object });
const update = (object: ApiObject): BatchWrite => ({ verb: 'update', object });

async function names(store: EmbeddedStore, kind = 'Volume'): Promise<string[]> {
  return (await store.list(kind)).items.map((o) => o.metadata.name).sort();
}

function filesIn(d: string): string[] {
  return fs.readdirSync(d);
}

describe('writeBatch', () => {
  it('writes every object, with consecutive resourceVersions, seen by a watch in order', async () => {
    const store = await open();
    const before = Number(store.resourceVersion);
    const watch = store.watch('Volume', { resourceVersion: store.resourceVersion });
    const result = await store.writeBatch([create(volume('a')), create(volume('b')), create(volume('c', {}, 'other'))]);
    expect(result.written).toBe(true);
    const versions = result.outcomes.map((o) => (o.ok ? Number(o.object.metadata.resourceVersion) : NaN));
    expect(versions).toEqual([before + 1, before + 2, before + 3]);
    expect(result.outcomes.every((o) => o.ok && o.object.metadata.uid !== undefined)).toBe(true);
    const seen: WatchEvent[] = [];
    for await (const event of watch) {
      seen.push(event);
      if (seen.length === 3) break;
    }
    watch.stop();
    expect(seen.map((e) => `${e.type} ${e.object.metadata.namespace}/${e.object.metadata.name}`)).toEqual(['ADDED shop/a', 'ADDED shop/b', 'ADDED other/c']);
    // Durable: a new open finds all of them, and no journal is left behind.
    const again = await reopen(store);
    expect(await names(again)).toEqual(['a', 'b', 'c']);
    expect(filesIn(storeDir()).filter((f) => f.startsWith('journal-'))).toEqual([]);
  });

  it('writes nothing when one write is refused, and reports every refusal by position', async () => {
    const store = await open();
    await store.create(volume('taken'));
    const stale = await store.create(volume('stale'));
    const result = await store.writeBatch([
      create(volume('fresh')),
      create(volume('taken')),
      update({ ...stale, metadata: { ...stale.metadata, resourceVersion: '1', labels: { x: 'y' } } }),
      update(volume('missing')),
    ]);
    expect(result.written).toBe(false);
    expect(result.outcomes.map((o) => (o.ok ? 'ok' : o.error.reason))).toEqual(['ok', 'AlreadyExists', 'Conflict', 'NotFound']);
    expect(await names(store)).toEqual(['stale', 'taken']);
    expect(store.resourceVersion).toBe(stale.metadata.resourceVersion);
  });

  it('refuses an object named twice in one batch, and a malformed one, without writing the rest', async () => {
    const store = await open();
    const malformed = { apiVersion: API_VERSION, kind: 'Volume', metadata: { name: '../escape', namespace: 'shop' } } as ApiObject;
    const result = await store.writeBatch([create(volume('a')), create(volume('a', { second: 'yes' })), create(malformed)]);
    expect(result.written).toBe(false);
    const [first, second, third] = result.outcomes;
    expect(first.ok).toBe(true);
    expect(!second.ok && second.error.message).toBe('volume "shop/a" appears more than once in the batch');
    expect(!third.ok && isApiError(third.error, 'Invalid')).toBe(true);
    expect(await names(store)).toEqual([]);
  });

  it('on a dry run answers what each object would become and writes nothing', async () => {
    const store = await open();
    const live = await store.create(volume('a'));
    const result = await store.writeBatch([update({ ...live, metadata: { ...live.metadata, labels: { tier: 'db' } } }), create(volume('b'))], { dryRun: true });
    expect(result.written).toBe(false);
    expect(result.outcomes.map((o) => o.ok && o.object.metadata.labels)).toEqual([{ tier: 'db' }, {}]);
    expect(await names(store)).toEqual(['a']);
    expect((await store.get('Volume', 'shop', 'a')).metadata.labels).toEqual({});
    expect(store.resourceVersion).toBe(live.metadata.resourceVersion);
  });

  it('leaves an unchanged object at its version and writes only the changed ones', async () => {
    const store = await open();
    const a = await store.create(volume('a'));
    const b = await store.create(volume('b'));
    const result = await store.writeBatch([update(a), update({ ...b, metadata: { ...b.metadata, labels: { changed: 'yes' } } })]);
    expect(result.written).toBe(true);
    const [sameA, newB] = result.outcomes;
    expect(sameA.ok && sameA.object.metadata.resourceVersion).toBe(a.metadata.resourceVersion);
    expect(newB.ok && Number(newB.object.metadata.resourceVersion)).toBe(Number(b.metadata.resourceVersion) + 1);
  });

  it('rebases an update on the object as stored under its lock, or leaves it alone', async () => {
    const store = await open();
    const a = await store.create(volume('a', { base: 'yes' }));
    const b = await store.create(volume('b'));
    // Written after the caller read `a`: a stale resourceVersion would be a Conflict, a rebase builds on it.
    await store.update({ ...a, metadata: { ...a.metadata, labels: { base: 'yes', later: 'yes' } } });
    const seen: string[] = [];
    const result = await store.writeBatch([
      { ...update(a), rebase: (stored) => (seen.push(stored.metadata.resourceVersion!), { ...stored, metadata: { ...stored.metadata, labels: { ...stored.metadata.labels, added: 'yes' } } }) },
      { ...update(b), rebase: () => undefined },
    ]);
    expect(result.written).toBe(true);
    expect(seen).toEqual([String(Number(a.metadata.resourceVersion) + 2)]);
    expect((await store.get('Volume', 'shop', 'a')).metadata.labels).toEqual({ base: 'yes', later: 'yes', added: 'yes' });
    const [, leftB] = result.outcomes;
    expect(leftB.ok && leftB.object.metadata.resourceVersion).toBe(b.metadata.resourceVersion);

    const renamed = await store.writeBatch([{ ...update(b), rebase: (stored) => ({ ...stored, metadata: { ...stored.metadata, name: 'c' } }) }]);
    expect(renamed.outcomes.map((o) => !o.ok && o.error.message)).toEqual(['an update of Volume "shop/b" cannot become Volume "shop/c"']);
  });

  it('does not deadlock when batches over overlapping objects race single writes', async () => {
    const store = await open();
    const all = ['a', 'b', 'c', 'd'];
    await store.writeBatch(all.map((n) => create(volume(n))));
    const relabel = async (order: string[], tag: string) => {
      const live = await Promise.all(order.map((n) => store.get('Volume', 'shop', n)));
      return store.writeBatch(live.map((o) => update({ ...o, metadata: { ...o.metadata, resourceVersion: undefined, labels: { tag } } })));
    };
    const results = await Promise.all([
      relabel(['a', 'b', 'c', 'd'], 'one'),
      relabel(['d', 'c', 'b', 'a'], 'two'),
      store.get('Volume', 'shop', 'b').then((o) => store.update({ ...o, metadata: { ...o.metadata, resourceVersion: undefined, labels: { tag: 'single' } } })),
    ]);
    expect(results[0].written && results[1].written).toBe(true);
    // Each batch is whole: whichever committed last, its label is on all four objects except
    // where the single update came after it.
    const tags = (await store.list('Volume')).items.map((o) => o.metadata.labels?.tag);
    expect(new Set(tags.filter((t) => t !== 'single')).size).toBe(1);
  });
});

describe('the batch journal on open', () => {
  it('completes a batch whose journal reached the disk but whose objects did not all', async () => {
    const store = await open();
    const kept = await store.create(volume('kept'));
    await store.close();
    stores.forgetOpened();
    // What a crash right after the journal's rename leaves: the journal, and only some
    // (here none) of the object files it names.
    const obj = (name: string, namespace: string, rv: string) =>
      JSON.stringify({ ...volume(name), metadata: { ...volume(name, {}, namespace).metadata, uid: `uid-${name}`, resourceVersion: rv, generation: 1 } }) + '\n';
    const journal = {
      format: 1,
      writes: [
        { path: 'objects/volumes/shop/new1', content: obj('new1', 'shop', '10') },
        { path: 'objects/volumes/other/new2', content: obj('new2', 'other', '11') },
        { path: 'objects/volumes/shop/kept', content: null },
      ],
    };
    fs.writeFileSync(path.join(storeDir(), 'journal-0123456789abcdef.json'), JSON.stringify(journal));
    const again = await open();
    expect(await names(again)).toEqual(['new1', 'new2']);
    expect((await again.get('Volume', 'other', 'new2')).metadata.uid).toBe('uid-new2');
    expect(filesIn(storeDir()).filter((f) => f.startsWith('journal-'))).toEqual([]);
    expect(Number(again.resourceVersion)).toBeGreaterThan(Number(kept.metadata.resourceVersion));
  });

  it('refuses to open on a journal it cannot read, naming the file', async () => {
    await (await open()).close();
    stores.forgetOpened();
    const file = path.join(storeDir(), 'journal-00000000000000ff.json');
    fs.writeFileSync(file, JSON.stringify({ format: 1, writes: [{ path: '../../etc/passwd', content: 'x' }] }));
    await expect(openStore({ dir: storeDir() })).rejects.toThrow(`store: journal ${file}: write 0 names "../../etc/passwd", which is not an object file`);
    fs.writeFileSync(file, '{"format": 1, "writes": [');
    await expect(openStore({ dir: storeDir() })).rejects.toThrow(/journal .*journal-00000000000000ff\.json: not valid JSON/);
  });
});

// ------------------------------------------------------------------------------ kill -9

const SETS = ['a', 'b'];
const PER_SET = 10;
const ROUNDS = 20;

/**
 * The child: two concurrent streams of batches, each rewriting all ten objects of its set
 * with the batch number; it prints {"set","batch"} once a batch is acknowledged.
 */
const CHILD = `
import { openStore } from './src/store';
const [dir, startsJson] = process.argv.slice(2);
const starts = JSON.parse(startsJson);
const payload = () => 'x'.repeat(Math.floor(Math.random() * 9000));
async function stream(store, set, start) {
  for (let batch = start; ; batch++) {
    const writes = [];
    for (let i = 0; i < ${PER_SET}; i++) {
      const name = set + i;
      const live = await store.get('Container', 'crash', name).catch((e) => { if (e.reason === 'NotFound') return undefined; throw e; });
      const object = { apiVersion: 'd2p.dev/v1alpha1', kind: 'Container', metadata: { name, namespace: 'crash', labels: { batch: String(batch) } }, spec: { batch, payload: payload() } };
      writes.push(live ? { verb: 'update', object } : { verb: 'create', object });
    }
    const result = await store.writeBatch(writes);
    if (!result.written) throw new Error('batch refused: ' + JSON.stringify(result.outcomes.filter((o) => !o.ok)));
    process.stdout.write(JSON.stringify({ set, batch }) + '\\n');
  }
}
openStore({ dir }).then((store) => {
  process.stdout.write(JSON.stringify({ ready: true }) + '\\n');
  return Promise.all(${JSON.stringify(SETS)}.map((set) => stream(store, set, starts[set])));
}).catch((e) => { process.stderr.write(String(e && e.stack || e)); process.exit(3); });
`;

describe('a kill -9 in the middle of batches', () => {
  it('leaves every batch whole: all objects of a set carry the same batch, the last acknowledged or the next', async () => {
    const script = path.join(stores.dir, 'child.js');
    buildSync({
      stdin: { contents: CHILD, resolveDir: path.resolve(__dirname, '..', '..'), loader: 'ts' },
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      outfile: script,
      logLevel: 'error',
    });
    const acked: Record<string, number> = Object.fromEntries(SETS.map((s) => [s, 0]));
    for (let round = 0; round < ROUNDS; round++) {
      const starts = Object.fromEntries(SETS.map((s) => [s, acked[s] + 1]));
      await runUntilKilled(script, storeDir(), starts, acked);
      const store = await open();
      const objects = (await store.list('Container', { namespace: 'crash' })).items;
      for (const set of SETS) {
        const batches = new Set(objects.filter((o) => o.metadata.name.startsWith(set)).map((o) => (o.spec as { batch: number }).batch));
        const count = objects.filter((o) => o.metadata.name.startsWith(set)).length;
        if (acked[set] === 0 && count === 0) continue; // killed before the first batch of this set landed
        expect(count, `set ${set} after round ${round}`).toBe(PER_SET);
        expect(batches.size, `set ${set} after round ${round}: batches ${[...batches].join(',')}`).toBe(1);
        const [found] = [...batches];
        expect([acked[set], acked[set] + 1], `set ${set} after round ${round}`).toContain(found);
        acked[set] = found;
      }
      expect(filesIn(storeDir()).filter((f) => f.startsWith('journal-'))).toEqual([]);
      await store.close();
      stores.forgetOpened();
    }
    // The storm really wrote batches (not a test of an idle child).
    expect(acked.a + acked.b).toBeGreaterThan(ROUNDS);
  }, 120_000);
});

/**
 * Runs the child until it has acknowledged a few batches, then SIGKILLs it at a random
 * moment; every acknowledgement it wrote before dying is read (the pipe keeps them).
 */
async function runUntilKilled(script: string, dirOfStore: string, starts: Record<string, number>, acked: Record<string, number>): Promise<void> {
  const child = spawn(process.execPath, [script, dirOfStore, JSON.stringify(starts)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const killAfter = randomInt(1, 12);
  let seen = 0;
  let timer: NodeJS.Timeout | undefined;
  try {
    for await (const line of createInterface({ input: child.stdout })) {
      const msg = JSON.parse(line) as { ready?: boolean; set?: string; batch?: number };
      if (msg.set !== undefined) acked[msg.set] = msg.batch!;
      // A random moment inside a later batch, not right at an acknowledgement.
      if (++seen === killAfter) timer = setTimeout(() => child.kill('SIGKILL'), randomInt(0, 15));
    }
  } finally {
    clearTimeout(timer);
    child.kill('SIGKILL');
  }
  const code = await exited;
  if (code !== null && stderr) throw new Error(`the batch child failed (exit ${code}): ${stderr}`);
}
