// The API server over a real store, driven through the real client and, where the client
// cannot express a request (bad bodies, wrong media types), through raw HTTP on the socket.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiError, isApiError } from '../../src/api/errors';
import type { WatchEvent } from '../../src/api/meta';
import type { Image, Volume } from '../../src/api/types';
import { createClient } from '../../src/client/index';
import type { Client } from '../../src/client/types';
import { startApiServer, type ApiServer } from '../../src/server/api-server';
import { readBody } from '../../src/server/http-io';
import { SocketInUseError } from '../../src/server/unix-socket';
import { openStore } from '../../src/store/index';
import type { Store, Watch } from '../../src/store/types';

const API = '/apis/d2p.dev/v1alpha1';

interface Harness {
  dir: string;
  store: Store;
  socketPath: string;
  server: ApiServer;
  client: Client;
  logs: string[];
  stoppedWatches: () => number;
  startedWatches: () => number;
  close(): Promise<void>;
}

interface HarnessOptions {
  historySize?: number;
  /** Wraps the store, e.g. to make one call fail. */
  wrap?: (store: Store) => Store;
}

/** The real store, wrapped only to count the watches the server opens and stops. */
function countingWatches(store: Store): { store: Store; started: () => number; stopped: () => number } {
  let started = 0;
  let stopped = 0;
  const wrapped = Object.create(store) as Store;
  wrapped.watch = (kind, opts) => {
    const inner: Watch = store.watch(kind, opts);
    started++;
    let counted = false;
    return {
      [Symbol.asyncIterator]: () => inner[Symbol.asyncIterator](),
      stop: () => {
        if (!counted) stopped++;
        counted = true;
        inner.stop();
      },
    };
  };
  return { store: wrapped, started: () => started, stopped: () => stopped };
}

async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-server-'));
  const cleanups: Array<() => Promise<void>> = [async () => fs.rmSync(dir, { recursive: true, force: true })];
  const close = async (): Promise<void> => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  };
  try {
    const realStore = await openStore({ dir: path.join(dir, 'store'), historySize: opts.historySize });
    cleanups.push(() => realStore.close());
    const counting = countingWatches(opts.wrap ? opts.wrap(realStore) : realStore);
    const socketPath = path.join(dir, 'api.sock');
    const logs: string[] = [];
    const server = await startApiServer({ store: counting.store, socketPath, log: (line) => logs.push(line) });
    cleanups.push(() => server.close());
    const client = createClient({ socketPath });
    cleanups.push(() => client.close());
    return {
      dir,
      store: realStore,
      socketPath,
      server,
      client,
      logs,
      startedWatches: counting.started,
      stoppedWatches: counting.stopped,
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

function raw(socketPath: string, method: string, urlPath: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    // Node sends no length for a DELETE body unless told, so the server could not frame it.
    const length: Record<string, string> = body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) };
    const req = http.request({ socketPath, method, path: urlPath, headers: { ...length, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

function volume(name: string, namespace = 'shop', labels?: Record<string, string>): Volume {
  return { apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name, namespace, ...(labels ? { labels } : {}) }, spec: {} };
}

function image(name: string, ref: string, namespace = 'shop'): Image {
  return { apiVersion: 'd2p.dev/v1alpha1', kind: 'Image', metadata: { name, namespace }, spec: { ref } };
}

async function rejection(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error('expected the request to fail, but it succeeded');
}

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Collects `count` events from a watch, then stops it. */
async function take<T extends WatchEvent['object']>(watch: AsyncIterable<WatchEvent<T>> & { stop(): void }, count: number): Promise<WatchEvent<T>[]> {
  const events: WatchEvent<T>[] = [];
  for await (const event of watch) {
    events.push(event);
    if (events.length === count) break;
  }
  watch.stop();
  return events;
}

let h: Harness | undefined;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h?.close();
  h = undefined;
});
const harness = (): Harness => {
  if (!h) throw new Error('harness not started');
  return h;
};

describe('serving', () => {
  it('creates the socket with mode 0600 and leaves no staging directory behind', () => {
    const { socketPath, dir } = harness();
    const stat = fs.statSync(socketPath);
    expect(stat.isSocket()).toBe(true);
    expect(stat.mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir).sort()).toEqual(['api.sock', 'store']);
  });

  it('answers /healthz and serves discovery in Kubernetes shape', async () => {
    const { client, socketPath } = harness();
    await client.healthz();
    const health = await raw(socketPath, 'GET', '/healthz');
    expect(health).toMatchObject({ status: 200, text: 'ok' });
    const list = await client.discovery();
    expect(list).toMatchObject({ kind: 'APIResourceList', groupVersion: 'd2p.dev/v1alpha1' });
    const containers = list.resources.find((r) => r.name === 'containers');
    expect(containers).toMatchObject({ kind: 'Container', namespaced: true, shortNames: ['ctr'], singularName: 'container' });
    expect(containers?.verbs).toEqual(expect.arrayContaining(['create', 'get', 'list', 'watch', 'patch', 'update', 'delete']));
    expect(list.resources.find((r) => r.name === 'containers/status')?.verbs).toEqual(['get', 'patch', 'update']);
    // Events have no spec/status split, hence no status subresource.
    expect(list.resources.some((r) => r.name === 'events/status')).toBe(false);
    const groups = JSON.parse((await raw(socketPath, 'GET', '/apis')).text);
    expect(groups.groups[0]).toMatchObject({ name: 'd2p.dev', preferredVersion: { version: 'v1alpha1' } });
  });

  it('answers unknown paths, kinds and methods with Status objects', async () => {
    const { socketPath } = harness();
    const unknownKind = await raw(socketPath, 'GET', `${API}/namespaces/shop/widgets`);
    expect(unknownKind.status).toBe(404);
    expect(JSON.parse(unknownKind.text)).toMatchObject({ kind: 'Status', reason: 'NotFound', code: 404 });
    const noStatusOnEvents = await raw(socketPath, 'GET', `${API}/namespaces/shop/events/x/status`);
    expect(noStatusOnEvents.status).toBe(404);
    const postOnObject = await raw(socketPath, 'POST', `${API}/namespaces/shop/volumes/data`, '{}');
    expect(postOnObject.status).toBe(405);
    expect(JSON.parse(postOnObject.text)).toMatchObject({ reason: 'MethodNotAllowed' });
    const createWithoutNamespace = await raw(socketPath, 'POST', `${API}/volumes`, JSON.stringify(volume('x')));
    expect(createWithoutNamespace.status).toBe(405);
  });
});

describe('CRUD', () => {
  it('creates, reads, lists, updates and deletes through the client', async () => {
    const { client } = harness();
    const created = await client.volumes.create(volume('data'));
    expect(created.metadata).toMatchObject({ name: 'data', namespace: 'shop', generation: 1 });
    expect(created.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.metadata.resourceVersion).toMatch(/^[1-9][0-9]*$/);
    expect(created.spec).toEqual({ driver: 'local' }); // schema default applied

    expect(await client.volumes.get('shop', 'data')).toEqual(created);
    const list = await client.volumes.list({ namespace: 'shop' });
    expect(list.kind).toBe('VolumeList');
    expect(list.items.map((o) => o.metadata.name)).toEqual(['data']);

    const updated = await client.volumes.update({ ...created, spec: { driver: 'local', driverOpts: { type: 'tmpfs' } } });
    expect(updated.metadata.generation).toBe(2);
    expect(Number(updated.metadata.resourceVersion)).toBeGreaterThan(Number(created.metadata.resourceVersion));
    expect(updated.metadata.uid).toBe(created.metadata.uid);

    const deleted = await client.volumes.delete('shop', 'data');
    expect(deleted.metadata.name).toBe('data');
    const gone = await rejection(client.volumes.get('shop', 'data'));
    expect(gone).toMatchObject({ reason: 'NotFound', httpCode: 404, code: 'D2P_NOT_FOUND' });
  });

  it('answers 201 on create, 409 AlreadyExists on a duplicate', async () => {
    const { client, socketPath } = harness();
    const first = await raw(socketPath, 'POST', `${API}/namespaces/shop/volumes`, JSON.stringify(volume('data')), { 'content-type': 'application/json' });
    expect(first.status).toBe(201);
    const again = await rejection(client.volumes.create(volume('data')));
    expect(again).toMatchObject({ reason: 'AlreadyExists', httpCode: 409 });
  });

  it('refuses a stale resourceVersion with 409 Conflict', async () => {
    const { client } = harness();
    const created = await client.images.create(image('web', 'nginx:1'));
    await client.images.update({ ...created, spec: { ref: 'nginx:2' } });
    const stale = await rejection(client.images.update({ ...created, spec: { ref: 'nginx:3' } }));
    expect(stale).toMatchObject({ reason: 'Conflict', httpCode: 409 });
    expect(stale.message).toContain('web');
    expect((await client.images.get('shop', 'web')).spec).toMatchObject({ ref: 'nginx:2' });
  });

  it('refuses invalid objects with 422 and one cause per bad field', async () => {
    const { client } = harness();
    const bad = { ...image('web', 'nginx:1'), spec: { pullPolicy: 'Sometimes' } } as unknown as Image;
    const err = await rejection(client.images.create(bad));
    expect(err).toMatchObject({ reason: 'Invalid', httpCode: 422 });
    const fields = (err.details?.causes ?? []).map((c) => c.field);
    expect(fields).toEqual(expect.arrayContaining(['spec.ref', 'spec.pullPolicy']));
    // An update is validated too.
    const created = await client.images.create(image('web', 'nginx:1'));
    const badUpdate = await rejection(client.images.update({ ...created, spec: { ref: 'nginx:1', platform: 'not a platform' } }));
    expect(badUpdate.reason).toBe('Invalid');
    expect(badUpdate.details?.causes?.map((c) => c.field)).toContain('spec.platform');
  });

  it('refuses a body whose identity disagrees with the URL, naming both', async () => {
    const { client, socketPath } = harness();
    await client.volumes.create(volume('data'));
    const renamed = await raw(socketPath, 'PUT', `${API}/namespaces/shop/volumes/data`, JSON.stringify(volume('other')));
    expect(renamed.status).toBe(400);
    expect(JSON.parse(renamed.text).message).toMatch(/"other".*"data"/);
    const moved = await raw(socketPath, 'POST', `${API}/namespaces/shop/volumes`, JSON.stringify(volume('x', 'elsewhere')));
    expect(moved.status).toBe(400);
    expect(JSON.parse(moved.text).message).toMatch(/"elsewhere".*"shop"/);
    const wrongKind = await raw(socketPath, 'POST', `${API}/namespaces/shop/volumes`, JSON.stringify({ ...volume('x'), kind: 'Network' }));
    expect(wrongKind.status).toBe(400);
    expect(JSON.parse(wrongKind.text).message).toMatch(/"Network".*"Volume"/);
  });

  it('fills a missing namespace, name and type from the URL', async () => {
    const { socketPath } = harness();
    const res = await raw(socketPath, 'POST', `${API}/namespaces/shop/volumes`, JSON.stringify({ metadata: { name: 'bare' } }));
    expect(res.status).toBe(201);
    expect(JSON.parse(res.text)).toMatchObject({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name: 'bare', namespace: 'shop' } });
  });

  it('generates a name from metadata.generateName', async () => {
    const { client, socketPath } = harness();
    const res = await raw(socketPath, 'POST', `${API}/namespaces/shop/volumes`, JSON.stringify({ metadata: { generateName: 'cache-' } }));
    expect(res.status).toBe(201);
    const name = JSON.parse(res.text).metadata.name as string;
    expect(name).toMatch(/^cache-[a-z0-9]{5}$/);
    expect((await client.volumes.get('shop', name)).metadata.name).toBe(name);
  });

  it('keeps an object with finalizers until they are removed (202, then gone)', async () => {
    const { client, socketPath } = harness();
    await client.volumes.create({ ...volume('held'), metadata: { name: 'held', namespace: 'shop', finalizers: ['d2p.dev/cleanup'] } });
    const res = await raw(socketPath, 'DELETE', `${API}/namespaces/shop/volumes/held`);
    expect(res.status).toBe(202);
    const marked = await client.volumes.get('shop', 'held');
    expect(marked.metadata.deletionTimestamp).toBeDefined();
    await client.volumes.patch('shop', 'held', 'json', [{ op: 'remove', path: '/metadata/finalizers' }]);
    expect((await rejection(client.volumes.get('shop', 'held'))).reason).toBe('NotFound');
  });

  it('honours a DeleteOptions body with a uid precondition', async () => {
    const { client, socketPath } = harness();
    await client.volumes.create(volume('data'));
    const body = JSON.stringify({ kind: 'DeleteOptions', apiVersion: 'v1', preconditions: { uid: 'not-the-uid' } });
    const res = await raw(socketPath, 'DELETE', `${API}/namespaces/shop/volumes/data`, body, { 'content-type': 'application/json' });
    expect(res.status).toBe(409);
    expect((await client.volumes.get('shop', 'data')).metadata.name).toBe('data');
    const foreground = await raw(socketPath, 'DELETE', `${API}/namespaces/shop/volumes/data?propagationPolicy=Foreground`);
    expect(foreground.status).toBe(400);
    expect(JSON.parse(foreground.text).message).toContain('Foreground');
  });
});

describe('PATCH', () => {
  it('applies RFC 6902 add, replace and remove', async () => {
    const { client } = harness();
    await client.images.create(image('web', 'nginx:1'));
    const added = await client.images.patch('shop', 'web', 'json', [
      { op: 'add', path: '/metadata/labels', value: { app: 'web', tier: 'front' } },
      { op: 'replace', path: '/spec/ref', value: 'nginx:2' },
    ]);
    expect(added.metadata.labels).toEqual({ app: 'web', tier: 'front' });
    expect(added.spec).toMatchObject({ ref: 'nginx:2' });
    expect(added.metadata.generation).toBe(2);
    const removed = await client.images.patch('shop', 'web', 'json', [{ op: 'remove', path: '/metadata/labels/tier' }]);
    expect(removed.metadata.labels).toEqual({ app: 'web' });
  });

  it('fails a patch whose test operation fails with 422, changing nothing', async () => {
    const { client } = harness();
    const created = await client.images.create(image('web', 'nginx:1'));
    const err = await rejection(
      client.images.patch('shop', 'web', 'json', [
        { op: 'test', path: '/spec/ref', value: 'nginx:9' },
        { op: 'replace', path: '/spec/ref', value: 'nginx:2' },
      ]),
    );
    expect(err).toMatchObject({ reason: 'Invalid', httpCode: 422 });
    expect(err.message).toContain('operation 0 (test /spec/ref)');
    expect(err.details?.causes?.[0]).toMatchObject({ field: 'patch[0]', reason: 'TEST_OPERATION_FAILED' });
    expect(await client.images.get('shop', 'web')).toEqual(created);
  });

  it('fails a patch on a missing path with 422 and a malformed patch with 400', async () => {
    const { client, socketPath } = harness();
    await client.images.create(image('web', 'nginx:1'));
    const missing = await rejection(client.images.patch('shop', 'web', 'json', [{ op: 'remove', path: '/spec/nothing' }]));
    expect(missing.httpCode).toBe(422);
    expect(missing.message).toContain('/spec/nothing');
    const notArray = await rejection(client.images.patch('shop', 'web', 'json', { op: 'remove', path: '/spec/ref' }));
    expect(notArray).toMatchObject({ reason: 'BadRequest', httpCode: 400 });
    const badOp = await rejection(client.images.patch('shop', 'web', 'json', [{ op: 'frobnicate', path: '/spec/ref' }]));
    expect(badOp.httpCode).toBe(400);
    const wrongType = await raw(socketPath, 'PATCH', `${API}/namespaces/shop/images/web`, '{}', { 'content-type': 'application/json' });
    expect(wrongType.status).toBe(415);
    expect(JSON.parse(wrongType.text)).toMatchObject({ reason: 'UnsupportedMediaType', code: 415 });
  });

  it('applies RFC 7386 merge patches: null deletes, objects merge, arrays replace', async () => {
    const { client } = harness();
    await client.volumes.create({ ...volume('data', 'shop', { app: 'web', old: 'yes' }), spec: { driverOpts: { type: 'tmpfs', o: 'size=1m' } } });
    const patched = await client.volumes.patch('shop', 'data', 'merge', {
      metadata: { labels: { old: null, new: 'yes' }, finalizers: ['a/b'] },
      spec: { driverOpts: { o: null } },
    });
    expect(patched.metadata.labels).toEqual({ app: 'web', new: 'yes' });
    expect(patched.spec).toEqual({ driver: 'local', driverOpts: { type: 'tmpfs' } });
    expect(patched.metadata.finalizers).toEqual(['a/b']);
    const replaced = await client.volumes.patch('shop', 'data', 'merge', { metadata: { finalizers: ['c/d'] } });
    expect(replaced.metadata.finalizers).toEqual(['c/d']);
  });

  it('validates the patched object', async () => {
    const { client } = harness();
    await client.images.create(image('web', 'nginx:1'));
    const err = await rejection(client.images.patch('shop', 'web', 'merge', { spec: { pullPolicy: 'Sometimes' } }));
    expect(err.reason).toBe('Invalid');
    expect(err.details?.causes?.map((c) => c.field)).toContain('spec.pullPolicy');
  });

  it('refuses a patch that renames the object', async () => {
    const { client } = harness();
    await client.volumes.create(volume('data'));
    const err = await rejection(client.volumes.patch('shop', 'data', 'merge', { metadata: { name: 'other' } }));
    expect(err.reason).toBe('BadRequest');
    expect(err.message).toMatch(/"other".*"data"/);
  });
});

describe('status subresource', () => {
  it('writes status only through /status, and only status there', async () => {
    const { client } = harness();
    const created = await client.images.create({ ...image('web', 'nginx:1'), status: { phase: 'Ready' } });
    expect(created.status).toBeUndefined(); // dropped on create

    const withStatus = await client.images.updateStatus({ ...created, spec: { ref: 'evil:1' }, status: { phase: 'Pulling' } });
    expect(withStatus.status).toEqual({ phase: 'Pulling' });
    expect(withStatus.spec).toMatchObject({ ref: 'nginx:1' });
    expect(withStatus.metadata.generation).toBe(1);

    const mainUpdate = await client.images.update({ ...withStatus, spec: { ref: 'nginx:2' }, status: { phase: 'Failed' } });
    expect(mainUpdate.spec).toMatchObject({ ref: 'nginx:2' });
    expect(mainUpdate.status).toEqual({ phase: 'Pulling' });

    const mainPatch = await client.images.patch('shop', 'web', 'merge', { status: { phase: 'Failed' } });
    expect(mainPatch.status).toEqual({ phase: 'Pulling' });

    const statusPatch = await client.images.patch('shop', 'web', 'merge', { spec: { ref: 'evil:2' }, status: { phase: 'Ready' } }, { subresource: 'status' });
    expect(statusPatch.status).toEqual({ phase: 'Ready' });
    expect(statusPatch.spec).toMatchObject({ ref: 'nginx:2' });

    const stored = await client.images.get('shop', 'web');
    expect(stored.spec).toMatchObject({ ref: 'nginx:2' });
    expect(stored.status).toEqual({ phase: 'Ready' });
  });

  it('validates status writes and checks their resourceVersion', async () => {
    const { client } = harness();
    const created = await client.images.create(image('web', 'nginx:1'));
    const invalidStatus = await rejection(client.images.updateStatus({ ...created, status: { phase: 'Dancing' } } as unknown as Image));
    expect(invalidStatus.reason).toBe('Invalid');
    await client.images.updateStatus({ ...created, status: { phase: 'Pulling' } });
    const stale = await rejection(client.images.updateStatus({ ...created, status: { phase: 'Ready' } }));
    expect(stale.reason).toBe('Conflict');
  });
});

describe('list with selectors', () => {
  it('filters by label selector, field selector and namespace', async () => {
    const { client } = harness();
    await client.volumes.create(volume('web-data', 'shop', { app: 'web', tier: 'front' }));
    await client.volumes.create(volume('db-data', 'shop', { app: 'db', tier: 'back' }));
    await client.volumes.create(volume('cache', 'shop', { app: 'cache', legacy: 'true' }));
    await client.volumes.create(volume('blog-data', 'blog', { app: 'web' }));
    const names = async (opts: Parameters<Client['volumes']['list']>[0]): Promise<string[]> =>
      (await client.volumes.list(opts)).items.map((o) => `${o.metadata.namespace}/${o.metadata.name}`).sort();

    expect(await names({ labelSelector: 'app=web' })).toEqual(['blog/blog-data', 'shop/web-data']);
    expect(await names({ namespace: 'shop', labelSelector: 'app=web' })).toEqual(['shop/web-data']);
    expect(await names({ namespace: 'shop', labelSelector: 'app in (web,db)' })).toEqual(['shop/db-data', 'shop/web-data']);
    expect(await names({ namespace: 'shop', labelSelector: '!legacy,tier!=back' })).toEqual(['shop/web-data']);
    expect(await names({ fieldSelector: 'metadata.name=cache' })).toEqual(['shop/cache']);
    expect(await names({})).toHaveLength(4);
    const bad = await rejection(client.volumes.list({ labelSelector: 'app in (' }));
    expect(bad).toMatchObject({ reason: 'BadRequest', httpCode: 400 });
  });
});

describe('watch', () => {
  it('streams every change after a resourceVersion, in order, until stopped', async () => {
    const { client } = harness();
    const a = await client.volumes.create(volume('a'));
    const from = a.metadata.resourceVersion;
    const b = await client.volumes.create(volume('b'));
    await client.volumes.patch('shop', 'b', 'merge', { metadata: { labels: { x: 'y' } } });
    await client.volumes.delete('shop', 'a');

    const watch = client.volumes.watch({ namespace: 'shop', resourceVersion: from });
    const events = await take(watch, 3);
    expect(events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['ADDED b', 'MODIFIED b', 'DELETED a']);
    expect(events[0].object.metadata.uid).toBe(b.metadata.uid);
    const versions = events.map((e) => Number(e.object.metadata.resourceVersion));
    expect([...versions].sort((x, y) => x - y)).toEqual(versions);
  });

  it('delivers live changes and ends the iteration on stop()', async () => {
    const { client } = harness();
    const watch = client.volumes.watch({ namespace: 'shop', resourceVersion: harness().store.resourceVersion });
    const seen: string[] = [];
    const consumer = (async () => {
      for await (const event of watch) seen.push(`${event.type} ${event.object.metadata.name}`);
    })();
    await waitFor(() => harness().startedWatches() === 1, 'the server to open the store watch');
    await client.volumes.create(volume('live'));
    await waitFor(() => seen.length === 1, 'the ADDED event');
    watch.stop();
    await consumer; // the loop ends instead of hanging or throwing
    expect(seen).toEqual(['ADDED live']);
    // The server notices the client going away and stops the store watch.
    await waitFor(() => harness().stoppedWatches() === 1, 'the server to stop the store watch');
  });

  it('watches across namespaces from the cluster-wide path', async () => {
    const { client } = harness();
    // From "0" a watch starts with the current objects; from a real version it replays changes.
    const from = (await client.networks.create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Network', metadata: { name: 'n', namespace: 'ns1' } })).metadata
      .resourceVersion;
    await client.volumes.create(volume('one', 'ns1'));
    await client.volumes.create(volume('two', 'ns2'));
    await client.volumes.create(volume('three', 'ns1'));
    const all = await take(client.volumes.watch({ resourceVersion: from }), 3);
    expect(all.map((e) => `${e.object.metadata.namespace}/${e.object.metadata.name}`)).toEqual(['ns1/one', 'ns2/two', 'ns1/three']);
    const onlyNs1 = await take(client.volumes.watch({ namespace: 'ns1', resourceVersion: from }), 2);
    expect(onlyNs1.map((e) => e.object.metadata.name)).toEqual(['one', 'three']);
  });

  it('starts with ADDED for every current object when no resourceVersion is given', async () => {
    const { client } = harness();
    await client.volumes.create(volume('x', 'shop', { app: 'web' }));
    await client.volumes.create(volume('y', 'shop', { app: 'db' }));
    const events = await take(client.volumes.watch({ labelSelector: 'app=web' }), 1);
    expect(events).toEqual([expect.objectContaining({ type: 'ADDED', object: expect.objectContaining({ metadata: expect.objectContaining({ name: 'x' }) }) })]);
  });

  it('frames raw events as newline-delimited JSON WatchEvents', async () => {
    const { client, socketPath } = harness();
    const from = (await client.volumes.create(volume('first'))).metadata.resourceVersion;
    await client.volumes.create(volume('a'));
    await client.volumes.create(volume('b'));
    const res = await raw(socketPath, 'GET', `${API}/namespaces/shop/volumes?watch=1&resourceVersion=${from}&timeoutSeconds=1`);
    expect(res.status).toBe(200);
    expect(res.headers['transfer-encoding']).toBe('chunked');
    const lines = res.text.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['ADDED a', 'ADDED b']);
  });

  it('reports a compacted resourceVersion in-band as an ERROR event with 410 Gone', async () => {
    await harness().close();
    h = await startHarness({ historySize: 2 });
    const { client } = harness();
    const first = await client.volumes.create(volume('v0'));
    for (let i = 1; i < 5; i++) await client.volumes.create(volume(`v${i}`));
    const [event] = await take(client.volumes.watch({ namespace: 'shop', resourceVersion: first.metadata.resourceVersion }), 1);
    expect(event.type).toBe('ERROR');
    expect(event.object).toMatchObject({ kind: 'Status', code: 410 });
  });

  it('ends open watches when the server closes', async () => {
    const { client, server } = harness();
    const watch = client.volumes.watch({ namespace: 'shop', resourceVersion: harness().store.resourceVersion });
    const consumer = (async () => {
      const seen: WatchEvent[] = [];
      for await (const event of watch) seen.push(event);
      return seen;
    })();
    await waitFor(() => harness().startedWatches() === 1, 'the watch to open');
    await server.close();
    expect(await consumer).toEqual([]);
    expect(harness().stoppedWatches()).toBe(1);
    expect(fs.existsSync(harness().socketPath)).toBe(false);
  });
});

describe('dryRun=All', () => {
  it('answers what create, update, patch and delete would do, and persists nothing', async () => {
    const { client, store } = harness();
    const previewed = await client.images.create(image('web', 'nginx:1'), { dryRun: true });
    expect(previewed.metadata.uid).toBeDefined();
    expect(previewed.spec).toEqual({ ref: 'nginx:1', pullPolicy: 'IfNotPresent' });
    expect((await client.images.list()).items).toEqual([]);

    const live = await client.images.create(image('web', 'nginx:1'));
    const versionBefore = store.resourceVersion;
    const update = await client.images.update({ ...live, spec: { ref: 'nginx:2' } }, { dryRun: true });
    expect(update.spec).toMatchObject({ ref: 'nginx:2' });
    expect(update.metadata.generation).toBe(2);
    const patch = await client.images.patch('shop', 'web', 'merge', { metadata: { labels: { a: 'b' } } }, { dryRun: true });
    expect(patch.metadata.labels).toEqual({ a: 'b' });
    const deleted = await client.images.delete('shop', 'web', { dryRun: true });
    expect(deleted.metadata.name).toBe('web');

    expect(store.resourceVersion).toBe(versionBefore);
    expect(await client.images.get('shop', 'web')).toEqual(live);
  });

  it('fails as the real write would', async () => {
    const { client } = harness();
    const live = await client.images.create(image('web', 'nginx:1'));
    expect((await rejection(client.images.create(image('web', 'nginx:1'), { dryRun: true }))).reason).toBe('AlreadyExists');
    expect((await rejection(client.images.create(image('bad', 'NOT A REF'), { dryRun: true }))).reason).toBe('Invalid');
    await client.images.update({ ...live, spec: { ref: 'nginx:2' } });
    expect((await rejection(client.images.update({ ...live, spec: { ref: 'nginx:3' } }, { dryRun: true }))).reason).toBe('Conflict');
    expect((await rejection(client.images.delete('shop', 'nope', { dryRun: true }))).reason).toBe('NotFound');
  });

  it("runs the store's own metadata checks, so all-or-nothing apply cannot pass a dry run and fail for real", async () => {
    const { client } = harness();
    const owner = { apiVersion: 'd2p.dev/v1alpha1', kind: 'Image', name: 'o', uid: 'u1', controller: true };
    const twoControllers = image('owned', 'nginx:1');
    twoControllers.metadata.ownerReferences = [owner, { ...owner, name: 'p', uid: 'u2' }];
    const err = await rejection(client.images.create(twoControllers, { dryRun: true }));
    expect(err.reason).toBe('Invalid');
    expect(err.message).toContain('only one reference can have controller set to true');

    const live = await client.images.create({ ...image('held', 'nginx:1'), metadata: { ...image('held', 'nginx:1').metadata, finalizers: ['x/y'] } });
    const marked = await client.images.delete('shop', 'held');
    expect(marked.metadata.deletionTimestamp).toBeDefined();
    const more = { ...marked, metadata: { ...marked.metadata, finalizers: ['x/y', 'x/z'] } };
    expect((await rejection(client.images.update(more, { dryRun: true }))).reason).toBe((await rejection(client.images.update(more))).reason);
    expect(live.metadata.uid).toBe(marked.metadata.uid);
  });

  it('refuses dryRun values other than All', async () => {
    const { socketPath } = harness();
    const res = await raw(socketPath, 'POST', `${API}/namespaces/shop/volumes?dryRun=Some`, JSON.stringify(volume('x')));
    expect(res.status).toBe(400);
    expect(JSON.parse(res.text).message).toContain('"Some"');
  });
});

describe('request limits and failures', () => {
  it('refuses bodies over 8 MiB with 413', async () => {
    const { socketPath } = harness();
    const huge = JSON.stringify({ ...volume('big'), metadata: { name: 'big', annotations: { blob: 'x'.repeat(9 * 1024 * 1024) } } });
    const res = await raw(socketPath, 'POST', `${API}/namespaces/shop/volumes`, huge, { 'content-type': 'application/json' });
    expect(res.status).toBe(413);
    expect(JSON.parse(res.text)).toMatchObject({ kind: 'Status', code: 413, reason: 'RequestEntityTooLarge' });
  });

  it('stops reading a body without Content-Length once it passes the limit', async () => {
    const stream = Object.assign(new PassThrough(), { headers: {} }) as unknown as http.IncomingMessage;
    const reading = readBody(stream, 10);
    (stream as unknown as PassThrough).write(Buffer.alloc(6));
    (stream as unknown as PassThrough).write(Buffer.alloc(6));
    await expect(reading).rejects.toMatchObject({ httpCode: 413, reason: 'RequestEntityTooLarge' });
    const small = Object.assign(new PassThrough(), { headers: {} }) as unknown as http.IncomingMessage;
    const ok = readBody(small, 10);
    (small as unknown as PassThrough).end(Buffer.from('0123456789'));
    expect((await ok).toString()).toBe('0123456789');
  });

  it('refuses bodies that are not JSON objects with 400', async () => {
    const { socketPath } = harness();
    const notJson = await raw(socketPath, 'POST', `${API}/namespaces/shop/volumes`, '{nope', { 'content-type': 'application/json' });
    expect(notJson.status).toBe(400);
    expect(JSON.parse(notJson.text).message).toContain('not valid JSON');
    const array = await raw(socketPath, 'POST', `${API}/namespaces/shop/volumes`, '[]');
    expect(array.status).toBe(400);
    const yaml = await raw(socketPath, 'POST', `${API}/namespaces/shop/volumes`, 'kind: Volume', { 'content-type': 'application/yaml' });
    expect(yaml.status).toBe(415);
  });

  it('turns unexpected exceptions into 500 InternalError and logs them', async () => {
    await harness().close();
    h = await startHarness({
      wrap: (store) => {
        const failing = Object.create(store) as Store;
        failing.get = async () => {
          throw new Error('disk on fire');
        };
        return failing;
      },
    });
    const err = await rejection(harness().client.volumes.get('shop', 'x'));
    expect(err).toMatchObject({ reason: 'InternalError' });
    expect(err.message).toContain('disk on fire');
    expect(harness().logs.join('\n')).toContain('disk on fire');
  });
});

describe('the socket file', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-sock-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A socket file nobody listens on, as a daemon killed with SIGKILL leaves behind. */
  async function staleSocket(file: string): Promise<void> {
    const listener = net.createServer();
    const bound = path.join(dir, 'bound.sock');
    await new Promise<void>((resolve) => listener.listen(bound, resolve));
    fs.linkSync(bound, file); // a second name that survives the listener's unlink on close
    await new Promise<void>((resolve) => listener.close(() => resolve()));
  }

  it('replaces a stale socket but refuses one that answers', async () => {
    const socketPath = path.join(dir, 'd2p.sock');
    await staleSocket(socketPath);
    const store = await openStore({ dir: path.join(dir, 'store') });
    try {
      const server = await startApiServer({ store, socketPath, log: () => undefined });
      try {
        const second = startApiServer({ store, socketPath, log: () => undefined });
        await expect(second).rejects.toBeInstanceOf(SocketInUseError);
        const client = createClient({ socketPath });
        await client.healthz(); // the first server is unharmed
        await client.close();
      } finally {
        await server.close();
      }
    } finally {
      await store.close();
    }
  });

  it('never replaces a file that is not a socket', async () => {
    const socketPath = path.join(dir, 'd2p.sock');
    fs.writeFileSync(socketPath, 'precious');
    const store = await openStore({ dir: path.join(dir, 'store') });
    try {
      await expect(startApiServer({ store, socketPath, log: () => undefined })).rejects.toThrow(/not a unix socket/);
      expect(fs.readFileSync(socketPath, 'utf8')).toBe('precious');
    } finally {
      await store.close();
    }
  });

  it('refuses a socket path longer than sun_path allows', async () => {
    const socketPath = path.join(dir, 'x'.repeat(120));
    const store = await openStore({ dir: path.join(dir, 'store') });
    try {
      await expect(startApiServer({ store, socketPath, log: () => undefined })).rejects.toThrow(/at most 107/);
    } finally {
      await store.close();
    }
  });
});

// Keeps the isApiError import honest: the client's errors are real ApiError instances.
describe('client errors', () => {
  it('are ApiError values rebuilt from the Status', async () => {
    const err = await rejection(harness().client.networks.get('shop', 'missing'));
    expect(isApiError(err, 'NotFound')).toBe(true);
    expect(err.message).toBe('network "shop/missing" not found');
  });
});
