// The batch apply (POST /apis/d2p.dev/v1alpha1/apply, client.applyAll): kubectl apply's
// created/configured/unchanged for many objects in one request, all or nothing, with the
// same refusals a per-object apply gets.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isApiError } from '../../src/api/errors';
import { API_VERSION, type ApiObject } from '../../src/api/meta';
import type { Volume } from '../../src/api/types';
import { createClient } from '../../src/client/index';
import type { ApplyAllItem, Client } from '../../src/client/types';
import { startApiServer } from '../../src/server/api-server';
import { openStore } from '../../src/store/index';
import type { Store } from '../../src/store/types';

let dir: string;
const cleanups: Array<() => Promise<void> | void> = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-apply-batch-'));
});
afterEach(async () => {
  try {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

async function serve(wrap: (store: Store) => Store = (s) => s): Promise<{ store: Store; client: Client; socketPath: string }> {
  const store = await openStore({ dir: path.join(dir, 'store') });
  cleanups.push(() => store.close());
  const socketPath = path.join(dir, 'api.sock');
  const server = await startApiServer({ store: wrap(store), socketPath, log: () => undefined });
  cleanups.push(() => server.close());
  const client = createClient({ socketPath });
  cleanups.push(() => client.close());
  return { store, client, socketPath };
}

function volume(name: string, extra: { namespace?: string; labels?: Record<string, string>; driver?: string } = {}): Volume {
  return {
    apiVersion: API_VERSION,
    kind: 'Volume',
    metadata: { name, namespace: extra.namespace ?? 'shop', ...(extra.labels ? { labels: extra.labels } : {}) },
    spec: { driver: (extra.driver ?? 'local') as 'local' },
  };
}

function network(name: string, internal: boolean): ApiObject {
  return { apiVersion: API_VERSION, kind: 'Network', metadata: { name, namespace: 'shop' }, spec: { internal } };
}

const actions = (items: readonly ApplyAllItem[]) => items.map((i) => (i.ok ? i.action : `refused: ${i.error.reason}`));

describe('client.applyAll', () => {
  it('creates, then reports unchanged, then configured, like kubectl apply', async () => {
    const { client } = await serve();
    const manifests = [network('shop_back', false), volume('data'), volume('logs', { namespace: 'other' })];
    const first = await client.applyAll(manifests);
    expect(first.written).toBe(true);
    expect(actions(first.items)).toEqual(['created', 'created', 'created']);
    expect((await client.volumes.get('other', 'logs')).metadata.uid).toBeDefined();

    expect(actions((await client.applyAll(manifests)).items)).toEqual(['unchanged', 'unchanged', 'unchanged']);

    const changed = await client.applyAll([network('shop_back', true), volume('data', { labels: { tier: 'db' } }), manifests[2]]);
    expect(actions(changed.items)).toEqual(['configured', 'configured', 'unchanged']);
    expect((await client.networks.get('shop', 'shop_back')).spec?.internal).toBe(true);
    const data = await client.volumes.get('shop', 'data');
    expect(data.metadata.labels).toEqual({ tier: 'db' });
    expect(data.metadata.generation).toBe(1); // labels are not spec
  });

  it('keeps what others own: status, finalizers and labels the manifest does not name', async () => {
    const { client } = await serve();
    await client.applyAll([volume('data', { labels: { app: 'shop' } })]);
    const live = await client.volumes.get('shop', 'data');
    await client.volumes.update({ ...live, metadata: { ...live.metadata, finalizers: ['d2p.dev/volume'], labels: { app: 'shop', owner: 'ops' } } });
    const withFinalizer = await client.volumes.get('shop', 'data');
    await client.volumes.updateStatus({ ...withFinalizer, status: { mountpoint: '/var/lib/d2p/volumes/shop/data/_data' } });

    const result = await client.applyAll([volume('data', { labels: { app: 'shop', tier: 'db' } })]);
    expect(actions(result.items)).toEqual(['configured']);
    const after = await client.volumes.get('shop', 'data');
    expect(after.metadata.finalizers).toEqual(['d2p.dev/volume']);
    expect(after.metadata.labels).toEqual({ app: 'shop', owner: 'ops', tier: 'db' });
    expect(after.status?.mountpoint).toBe('/var/lib/d2p/volumes/shop/data/_data');
  });

  it('writes nothing when one object is refused, and refuses it with the message a single apply gets', async () => {
    const { client } = await serve();
    const bad = volume('bad', { driver: 'nfs' });
    const result = await client.applyAll([volume('fine'), bad, volume('later')]);
    expect(result.written).toBe(false);
    expect(actions(result.items)).toEqual(['created', 'refused: Invalid', 'created']);
    expect((await client.volumes.list({ namespace: 'shop' })).items).toEqual([]);

    const refused = result.items[1];
    const single = await client.volumes.apply(bad).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isApiError(single, 'Invalid')).toBe(true);
    expect(!refused.ok && refused.error.message).toBe((single as Error).message);
    expect(!refused.ok && refused.error.details?.causes?.[0]?.field).toMatch(/^spec\.driver/);
  });

  it('on a dry run says what would happen and writes nothing', async () => {
    const { client, store } = await serve();
    await client.applyAll([volume('data')]);
    const version = store.resourceVersion;
    const preview = await client.applyAll([volume('data', { labels: { tier: 'db' } }), volume('new')], { dryRun: true });
    expect(preview.written).toBe(false);
    expect(actions(preview.items)).toEqual(['configured', 'created']);
    expect(preview.items[0].ok && preview.items[0].object.metadata.labels).toEqual({ tier: 'db' });
    expect(store.resourceVersion).toBe(version);
    expect((await client.volumes.list({ namespace: 'shop' })).items.map((v) => v.metadata.name)).toEqual(['data']);
  });

  it('builds on what other writers did between its read and its write, without a conflict', async () => {
    let raced = 0;
    const { client } = await serve((store) => {
      const wrapped = Object.create(store) as Store;
      wrapped.writeBatch = async (writes, opts) => {
        if (raced === 0) {
          // After the server read the objects: a controller writes status and a finalizer,
          // another client a label. All three must survive the apply.
          raced++;
          const live = await store.get('Volume', 'shop', 'data');
          const touched = await store.update({ ...live, metadata: { ...live.metadata, finalizers: ['d2p.dev/volume'], labels: { touched: 'yes' } } });
          await store.updateStatus({ ...touched, status: { mountpoint: '/m' } as ApiObject['status'] });
        }
        return store.writeBatch(writes, opts);
      };
      return wrapped;
    });
    await client.volumes.create(volume('data'));
    const result = await client.applyAll([volume('data', { labels: { tier: 'db' } }), volume('other')]);
    expect(raced).toBe(1);
    expect(actions(result.items)).toEqual(['configured', 'created']);
    const data = await client.volumes.get('shop', 'data');
    expect(data.metadata.labels).toEqual({ touched: 'yes', tier: 'db' });
    expect(data.metadata.finalizers).toEqual(['d2p.dev/volume']);
    expect(data.status?.mountpoint).toBe('/m');
  });

  it('says unchanged when another writer made the same change first, and plans again when one created an object it saw missing', async () => {
    let calls = 0;
    const { client } = await serve((store) => {
      const wrapped = Object.create(store) as Store;
      wrapped.writeBatch = async (writes, opts) => {
        if (calls++ === 0) {
          const live = await store.get('Volume', 'shop', 'data');
          await store.update({ ...live, metadata: { ...live.metadata, labels: { tier: 'db' } } });
          await store.create(volume('late', { labels: { by: 'someone' } }));
        }
        return store.writeBatch(writes, opts);
      };
      return wrapped;
    });
    await client.volumes.create(volume('data'));
    const result = await client.applyAll([volume('data', { labels: { tier: 'db' } }), volume('late')]);
    // The first batch met AlreadyExists for "late" and wrote nothing; the second saw both.
    expect(calls).toBe(2);
    expect(actions(result.items)).toEqual(['unchanged', 'unchanged']);
    expect((await client.volumes.get('shop', 'late')).metadata.labels).toEqual({ by: 'someone' });
  });

  it('refuses an item it cannot identify by itself, and a body that is not a List', async () => {
    const { client, socketPath } = await serve();
    const result = await client.applyAll([volume('fine'), { apiVersion: API_VERSION, kind: 'Gadget', metadata: { name: 'x' } } as ApiObject]);
    expect(actions(result.items)).toEqual(['created', 'refused: BadRequest']);
    expect(!result.items[1].ok && result.items[1].error.message).toMatch(/^unknown kind "Gadget"; the API serves Image, /);
    expect((await client.volumes.list({ namespace: 'shop' })).items).toEqual([]);

    const answer = await post(socketPath, '/apis/d2p.dev/v1alpha1/apply', { kind: 'Volume', items: [] });
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toMatchObject({ kind: 'Status', reason: 'BadRequest', message: expect.stringMatching(/must be a List/) });
    const wrongVerb = await post(socketPath, '/apis/d2p.dev/v1alpha1/apply', undefined, 'GET');
    expect(wrongVerb.status).toBe(405);
  });
});

function post(socketPath: string, urlPath: string, body: unknown, method = 'POST'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      { socketPath, path: urlPath, method, headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {} },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
