// The daemon's in-process client (src/client/loopback-transport.ts) must answer exactly as
// a client over the socket does: the same objects, the same errors, the same watch events,
// and a stopped watch must end the server's side of it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiError } from '../../src/api/errors';
import type { Volume } from '../../src/api/types';
import { createClient } from '../../src/client/index';
import type { Client } from '../../src/client/types';
import { startApiServer } from '../../src/server/api-server';
import { openStore } from '../../src/store/index';
import type { EmbeddedStore } from '../../src/store/index';

let dir: string;
let store: EmbeddedStore;
let overSocket: Client;
let inProcess: Client;
const cleanups: Array<() => Promise<void>> = [];

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-loopback-'));
  store = await openStore({ dir: path.join(dir, 'store') });
  cleanups.push(() => store.close());
  const socketPath = path.join(dir, 'api.sock');
  const server = await startApiServer({ store, socketPath, log: () => undefined });
  cleanups.push(() => server.close());
  overSocket = createClient({ socketPath });
  inProcess = createClient({ socketPath, handler: server.handle });
  cleanups.push(() => overSocket.close(), () => inProcess.close());
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

const volume = (name: string, labels?: Record<string, string>): Volume => ({
  apiVersion: 'd2p.dev/v1alpha1',
  kind: 'Volume',
  metadata: { name, namespace: 'shop', ...(labels ? { labels } : {}) },
  spec: {},
});

async function failure(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (e) {
    return e as ApiError;
  }
  throw new Error('expected a failure, got success');
}

/** Time and identity fields differ between two objects made one after the other. */
function withoutIdentity(obj: Volume): unknown {
  const { uid: _uid, creationTimestamp: _created, resourceVersion: _version, name: _name, ...metadata } = obj.metadata;
  return { ...obj, metadata };
}

describe('the in-process client', () => {
  it('creates, reads, lists, patches and updates status as the socket client does', async () => {
    const viaSocket = await overSocket.volumes.create(volume('a', { tier: 'db' }));
    const viaLoopback = await inProcess.volumes.create(volume('b', { tier: 'db' }));
    expect(withoutIdentity(viaLoopback)).toEqual(withoutIdentity(viaSocket));
    expect(await inProcess.volumes.get('shop', 'a')).toEqual(await overSocket.volumes.get('shop', 'a'));

    const listed = await inProcess.volumes.list({ namespace: 'shop', labelSelector: 'tier=db' });
    expect(listed.items.map((v) => v.metadata.name)).toEqual(['a', 'b']);
    expect(listed).toEqual(await overSocket.volumes.list({ namespace: 'shop', labelSelector: 'tier=db' }));

    const patched = await inProcess.volumes.patch('shop', 'b', 'merge', { metadata: { labels: { tier: 'cache' } } });
    expect(patched.metadata.labels).toEqual({ tier: 'cache' });
    const withStatus = await inProcess.volumes.updateStatus({ ...patched, status: { phase: 'Ready' } } as Volume);
    expect((await overSocket.volumes.get('shop', 'b')).status).toEqual(withStatus.status);
  });

  it('answers failures with the same ApiError as the socket client', async () => {
    const created = await overSocket.volumes.create(volume('a'));
    await overSocket.volumes.patch('shop', 'a', 'merge', { metadata: { labels: { moved: 'on' } } });
    for (const client of [overSocket, inProcess]) {
      const exists = await failure(client.volumes.create(volume('a')));
      expect(exists).toBeInstanceOf(ApiError);
      expect(exists.reason).toBe('AlreadyExists');
      const missing = await failure(client.volumes.get('shop', 'nope'));
      expect(missing.reason).toBe('NotFound');
      expect(missing.message).toContain('nope');
      const stale = await failure(client.volumes.update(created));
      expect(stale.reason).toBe('Conflict');
      const invalid = await failure(client.volumes.create({ ...volume('.hidden') }));
      expect(invalid.reason).toBe('Invalid');
    }
  });

  it('deletes with finalizers as the socket client does (kept until they are gone)', async () => {
    await inProcess.volumes.create({ ...volume('held'), metadata: { ...volume('held').metadata, finalizers: ['test/hold'] } });
    const pending = await inProcess.volumes.delete('shop', 'held');
    expect(pending.metadata.deletionTimestamp).toBeDefined();
    const live = await inProcess.volumes.get('shop', 'held');
    await inProcess.volumes.update({ ...live, metadata: { ...live.metadata, finalizers: [] } });
    expect((await failure(overSocket.volumes.get('shop', 'held'))).reason).toBe('NotFound');
  });

  it('delivers watch events, and a stopped watch ends on the server too', async () => {
    const watch = inProcess.volumes.watch({ namespace: 'shop' });
    const seen: string[] = [];
    const consumer = (async () => {
      for await (const event of watch) {
        seen.push(`${event.type} ${event.object.metadata.name}`);
        if (seen.length === 2) break;
      }
    })();
    await overSocket.volumes.create(volume('a'));
    await overSocket.volumes.patch('shop', 'a', 'merge', { metadata: { labels: { x: 'y' } } });
    await consumer;
    expect(seen).toEqual(['ADDED a', 'MODIFIED a']);
    // The server's store watch is gone once the consumer broke out: nothing left to notify.
    await new Promise((resolve) => setImmediate(resolve));
    expect(store.openWatchCount('Volume')).toBe(0);
  });

  it('ends a watch stopped while it waits for events, and on client.close()', async () => {
    const consume = (watch: ReturnType<Client['volumes']['watch']>, names: string[]) =>
      (async () => {
        for await (const event of watch) names.push(event.object.metadata.name);
      })();
    const stopped = inProcess.volumes.watch({ namespace: 'shop' });
    const closed = inProcess.volumes.watch({ namespace: 'shop' });
    const [first, second]: string[][] = [[], []];
    const consumers = [consume(stopped, first), consume(closed, second)];
    while (store.openWatchCount('Volume') < 2) await new Promise((resolve) => setTimeout(resolve, 5));
    await overSocket.volumes.create(volume('a'));
    while (first.length + second.length < 2) await new Promise((resolve) => setTimeout(resolve, 5));
    stopped.stop();
    await consumers[0];
    await inProcess.close();
    await consumers[1];
    expect([first, second]).toEqual([['a'], ['a']]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(store.openWatchCount('Volume')).toBe(0);
  });
});
