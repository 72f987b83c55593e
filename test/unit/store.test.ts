import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openStore, type EmbeddedStore, type StoreOptions } from '../../src/store';
import type { Watch } from '../../src/store/types';
import { API_VERSION, type ApiObject, type OwnerReference, type WatchEvent } from '../../src/api/meta';
import { isApiError, type StatusReason } from '../../src/api/errors';

let dir: string;
const opened: EmbeddedStore[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-store-'));
});

afterEach(async () => {
  try {
    await Promise.all(opened.splice(0).map((s) => s.close()));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

async function open(extra: Partial<StoreOptions> = {}): Promise<EmbeddedStore> {
  const store = await openStore({ dir: path.join(dir, 'store'), ...extra });
  opened.push(store);
  return store;
}

async function reopen(store: EmbeddedStore, extra: Partial<StoreOptions> = {}): Promise<EmbeddedStore> {
  await store.close();
  return open(extra);
}

function obj(kind: string, name: string, extra: { spec?: unknown; labels?: Record<string, string>; namespace?: string; finalizers?: string[]; owners?: ApiObject[] } = {}): ApiObject {
  const ownerReferences: OwnerReference[] | undefined = extra.owners?.map((o) => ({
    apiVersion: API_VERSION,
    kind: o.kind,
    name: o.metadata.name,
    uid: o.metadata.uid!,
  }));
  return {
    apiVersion: API_VERSION,
    kind,
    metadata: {
      name,
      ...(extra.namespace ? { namespace: extra.namespace } : {}),
      ...(extra.labels ? { labels: extra.labels } : {}),
      ...(extra.finalizers ? { finalizers: extra.finalizers } : {}),
      ...(ownerReferences ? { ownerReferences } : {}),
    },
    spec: extra.spec ?? { image: 'busybox' },
  };
}

async function rejection(p: Promise<unknown> | (() => unknown)): Promise<unknown> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection, got success');
}

async function expectApiError(p: Promise<unknown> | (() => unknown), reason: StatusReason): Promise<Error> {
  const err = await rejection(p);
  expect(isApiError(err, reason), `expected ApiError ${reason}, got ${String(err)}`).toBe(true);
  return err as Error;
}

/** The next n events of a watch; fails (rather than hangs) when they do not come. */
async function take(watch: Watch, n: number): Promise<WatchEvent[]> {
  const iterator = watch[Symbol.asyncIterator]();
  const events: WatchEvent[] = [];
  while (events.length < n) {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`watch delivered only ${JSON.stringify(summary(events))} of ${n} events`)), 5_000);
    });
    try {
      const next = await Promise.race([iterator.next(), timeout]);
      if (next.done) throw new Error(`watch ended after ${events.length} of ${n} events`);
      events.push(next.value);
    } finally {
      clearTimeout(timer);
    }
  }
  return events;
}

const summary = (events: WatchEvent[]) => events.map((e) => `${e.type} ${e.object.metadata?.name}`);

describe('CRUD', () => {
  it('creates with system fields assigned, gets, lists, updates and deletes', async () => {
    const store = await open();
    const created = await store.create(obj('Container', 'web-1'));
    expect(created.metadata.namespace).toBe('default');
    expect(created.metadata.uid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(created.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(created.metadata.generation).toBe(1);
    expect(created.metadata.resourceVersion).toBe(store.resourceVersion);

    expect(await store.get('Container', undefined, 'web-1')).toEqual(created);
    expect(await store.get('Container', 'default', 'web-1')).toEqual(created);
    await expectApiError(store.get('Container', 'other', 'web-1'), 'NotFound');

    const list = await store.list('Container');
    expect(list.kind).toBe('ContainerList');
    expect(list.metadata.resourceVersion).toBe(store.resourceVersion);
    expect(list.items.map((o) => o.metadata.name)).toEqual(['web-1']);

    const updated = await store.update({ ...created, spec: { image: 'nginx' } });
    expect(Number(updated.metadata.resourceVersion)).toBeGreaterThan(Number(created.metadata.resourceVersion));
    expect((await store.get('Container', undefined, 'web-1')).spec).toEqual({ image: 'nginx' });

    const deleted = await store.delete('Container', undefined, 'web-1');
    expect(deleted.metadata.uid).toBe(created.metadata.uid);
    await expectApiError(store.get('Container', undefined, 'web-1'), 'NotFound');
    expect((await store.list('Container')).items).toEqual([]);
  });

  it('reports AlreadyExists and NotFound as Kubernetes does', async () => {
    const store = await open();
    await store.create(obj('Volume', 'data'));
    const exists = await expectApiError(store.create(obj('Volume', 'data')), 'AlreadyExists');
    expect(exists.message).toContain('default/data');
    await expectApiError(store.update(obj('Volume', 'nope')), 'NotFound');
    await expectApiError(store.delete('Volume', undefined, 'nope'), 'NotFound');
  });

  it('hands out copies: changing a returned object does not change the store', async () => {
    const store = await open();
    const created = await store.create(obj('Volume', 'data', { labels: { a: 'b' } }));
    created.metadata.labels!.a = 'changed';
    const got = await store.get('Volume', undefined, 'data');
    expect(got.metadata.labels).toEqual({ a: 'b' });
    got.metadata.labels!.a = 'changed';
    expect((await store.list('Volume')).items[0].metadata.labels).toEqual({ a: 'b' });
  });

  it('lists by namespace, label and field selector, sorted by namespace then name', async () => {
    const store = await open();
    await store.create(obj('Container', 'b', { namespace: 'shop', labels: { app: 'web' } }));
    await store.create(obj('Container', 'a', { namespace: 'shop', labels: { app: 'db' } }));
    await store.create(obj('Container', 'c', { namespace: 'blog', labels: { app: 'web' } }));
    await store.create(obj('Network', 'a', { namespace: 'shop' }));
    const names = async (opts: Parameters<EmbeddedStore['list']>[1]) =>
      (await store.list('Container', opts)).items.map((o) => `${o.metadata.namespace}/${o.metadata.name}`);
    expect(await names({})).toEqual(['blog/c', 'shop/a', 'shop/b']);
    expect(await names({ namespace: 'shop' })).toEqual(['shop/a', 'shop/b']);
    expect(await names({ labelSelector: 'app=web' })).toEqual(['blog/c', 'shop/b']);
    expect(await names({ labelSelector: 'app!=web', namespace: 'shop' })).toEqual(['shop/a']);
    expect(await names({ fieldSelector: 'metadata.name=b' })).toEqual(['shop/b']);
    await expectApiError(store.list('Container', { labelSelector: 'app in (' }), 'BadRequest');
    await expectApiError(store.list('Gadget'), 'BadRequest');
  });

  it('rejects a resourceVersion on create and bad identities, and never writes outside its directory', async () => {
    const store = await open();
    const withVersion = obj('Volume', 'v');
    withVersion.metadata.resourceVersion = '5';
    await expectApiError(store.create(withVersion), 'BadRequest');
    for (const name of ['../x', '..', '.hidden', 'a/b', '', 'x'.repeat(254)]) {
      const err = await expectApiError(store.create(obj('Volume', name)), 'Invalid');
      expect(err.message).toContain('metadata.name');
      await expectApiError(store.get('Volume', undefined, name || '-'), 'BadRequest');
      await expectApiError(store.delete('Volume', undefined, name || '-'), 'BadRequest');
    }
    await expectApiError(store.create(obj('Volume', 'v', { namespace: '../etc' })), 'Invalid');
    await expectApiError(store.get('Volume', '..', 'v'), 'BadRequest');
    await expectApiError(store.create({ ...obj('Volume', 'v'), apiVersion: 'v1' }), 'Invalid');
    await expectApiError(store.create({ ...obj('Volume', 'v'), kind: 'Gadget' }), 'BadRequest');
    expect(fs.readdirSync(dir)).toEqual(['store']);
    expect(fs.existsSync(path.join(dir, 'store', 'objects', 'x'))).toBe(false);
    // The longest valid name still fits in a file name.
    const longest = 'n' + 'x'.repeat(252);
    await store.create(obj('Volume', longest));
    expect((await store.get('Volume', undefined, longest)).metadata.name).toBe(longest);
  });

  it('stores Event objects with their top-level fields, without a status subresource', async () => {
    const store = await open();
    const event = {
      apiVersion: API_VERSION,
      kind: 'Event',
      metadata: { name: 'web-1.17a', namespace: 'shop' },
      involvedObject: { kind: 'Container', namespace: 'shop', name: 'web-1' },
      type: 'Warning',
      reason: 'BackOff',
      message: 'restarting',
      count: 1,
    } as unknown as ApiObject;
    const created = await store.create(event);
    expect(created).toMatchObject({ reason: 'BackOff', involvedObject: { name: 'web-1' } });
    const updated = await store.update({ ...created, count: 2 } as ApiObject);
    expect((updated as unknown as { count: number }).count).toBe(2);
    expect(updated.metadata.generation).toBe(1);
    await expectApiError(store.updateStatus(created), 'MethodNotAllowed');
    const found = await store.list('Event', { fieldSelector: 'involvedObject.name=web-1' });
    expect(found.items).toHaveLength(1);
  });
});

describe('lists for a response', () => {
  const runningStatus: ApiObject['status'] = { observedGeneration: 1 };
  it('lists what list lists, and items already handed out stay as they were through later writes', async () => {
    const store = await open();
    const created = await store.create(obj('Container', 'web-1', { labels: { app: 'web' } }));
    await store.create(obj('Container', 'db-1', { labels: { app: 'db' } }));
    const shared = await store.listForResponse('Container', { labelSelector: 'app=web' });
    expect(shared).toEqual(await store.list('Container', { labelSelector: 'app=web' }));
    const before = JSON.stringify(shared.items);

    await store.update({ ...created, spec: { image: 'nginx' } });
    await store.updateStatus({ ...(await store.get('Container', undefined, 'web-1')), status: runningStatus });
    await store.delete('Container', undefined, 'web-1');
    expect(JSON.stringify(shared.items)).toBe(before);
  });
});

describe('dry run', () => {
  it('checks and computes every write without persisting, emitting or moving resourceVersion', async () => {
    const store = await open();
    const live = await store.create(obj('Container', 'web', { finalizers: ['d2p.dev/x'] }));
    const version = store.resourceVersion;
    const watch = store.watch('Container', { resourceVersion: version });

    const created = await store.create(obj('Container', 'api'), { dryRun: true });
    expect(created.metadata.uid).toBeDefined();
    const updated = await store.update({ ...live, spec: { image: 'nginx' } }, { dryRun: true });
    expect(updated.metadata.generation).toBe(2);
    const marked = await store.delete('Container', 'default', 'web', { dryRun: true });
    expect(marked.metadata.deletionTimestamp).toBeDefined();
    await expectApiError(store.create(obj('Container', 'web'), { dryRun: true }), 'AlreadyExists');
    await expectApiError(store.update({ ...live, metadata: { ...live.metadata, resourceVersion: '999999' } }, { dryRun: true }), 'Conflict');

    expect(store.resourceVersion).toBe(version);
    expect(await store.get('Container', 'default', 'web')).toEqual(live);
    await expectApiError(store.get('Container', 'default', 'api'), 'NotFound');
    await store.update({ ...live, metadata: { ...live.metadata, labels: { seen: 'yes' } } });
    const [first] = await take(watch, 1);
    expect(first.object.metadata.labels).toEqual({ seen: 'yes' });
    watch.stop();
    const reopened = await reopen(store);
    expect((await reopened.list('Container')).items.map((o) => o.metadata.name)).toEqual(['web']);
  });
});

describe('optimistic concurrency, generation and status', () => {
  it('rejects a stale resourceVersion with Conflict; a missing one is unconditional', async () => {
    const store = await open();
    const v1 = await store.create(obj('Service', 'web'));
    const v2 = await store.update({ ...v1, spec: { replicas: 2 } });
    const stale = await expectApiError(store.update({ ...v1, spec: { replicas: 3 } }), 'Conflict');
    expect(stale.message).toContain('the object has been modified');
    await expectApiError(store.updateStatus({ ...v1, status: { observedGeneration: 1 } }), 'Conflict');
    const unconditional = { ...v1, metadata: { ...v1.metadata, resourceVersion: undefined }, spec: { replicas: 4 } };
    const v3 = await store.update(unconditional);
    expect(Number(v3.metadata.resourceVersion)).toBeGreaterThan(Number(v2.metadata.resourceVersion));
    expect(v3.spec).toEqual({ replicas: 4 });
  });

  it('lets exactly one of several concurrent updates from the same version win', async () => {
    const store = await open();
    const base = await store.create(obj('Service', 'web', { spec: { replicas: 0 } }));
    const results = await Promise.allSettled([1, 2, 3, 4, 5].map((n) => store.update({ ...base, spec: { replicas: n } })));
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost.every((r) => isApiError(r.reason, 'Conflict'))).toBe(true);
    expect((await store.get('Service', undefined, 'web')).spec).toEqual((won[0] as PromiseFulfilledResult<ApiObject>).value.spec);
  });

  it('moves generation only when spec changes', async () => {
    const store = await open();
    const created = await store.create(obj('Service', 'web', { spec: { replicas: 1, template: { image: 'a' } } }));
    const relabelled = await store.update({ ...created, metadata: { ...created.metadata, labels: { x: 'y' } } });
    expect(relabelled.metadata.generation).toBe(1);
    const sameSpecReordered = await store.update({ ...relabelled, spec: { template: { image: 'a' }, replicas: 1 } });
    expect(sameSpecReordered.metadata.generation).toBe(1);
    expect(sameSpecReordered.metadata.resourceVersion).toBe(relabelled.metadata.resourceVersion); // nothing changed: no write
    const withStatus = await store.updateStatus({ ...relabelled, status: { observedGeneration: 1 } });
    expect(withStatus.metadata.generation).toBe(1);
    const respecced = await store.update({ ...withStatus, spec: { replicas: 2, template: { image: 'a' } } });
    expect(respecced.metadata.generation).toBe(2);
    const again = await store.update({ ...respecced, spec: { replicas: 3, template: { image: 'b' } } });
    expect(again.metadata.generation).toBe(3);
  });

  it('splits spec and status: create drops status, update keeps it, updateStatus changes only it', async () => {
    const store = await open();
    const created = await store.create({ ...obj('Container', 'web'), status: { observedGeneration: 9 } });
    expect(created.status).toBeUndefined();
    const withStatus = await store.updateStatus({
      ...created,
      metadata: { ...created.metadata, labels: { ignored: 'yes' } },
      spec: { image: 'ignored' },
      status: { observedGeneration: 1, conditions: [{ type: 'Ready', status: 'True' }] },
    });
    expect(withStatus.spec).toEqual({ image: 'busybox' });
    expect(withStatus.metadata.labels).toBeUndefined();
    expect(withStatus.status).toEqual({ observedGeneration: 1, conditions: [{ type: 'Ready', status: 'True' }] });
    const updated = await store.update({ ...withStatus, spec: { image: 'nginx' }, status: { observedGeneration: 42 } });
    expect(updated.spec).toEqual({ image: 'nginx' });
    expect(updated.status).toEqual(withStatus.status);
  });

  it('keeps uid and creationTimestamp: a different uid is a Conflict, a different timestamp is ignored', async () => {
    const store = await open();
    const created = await store.create(obj('Volume', 'data'));
    const otherUid = { ...created, metadata: { ...created.metadata, uid: '00000000-0000-4000-8000-000000000000' } };
    const err = await expectApiError(store.update(otherUid), 'Conflict');
    expect(err.message).toContain('UID in precondition');
    const updated = await store.update({
      ...created,
      metadata: { ...created.metadata, creationTimestamp: '1999-01-01T00:00:00Z', generation: 77, labels: { a: 'b' } },
    });
    expect(updated.metadata.uid).toBe(created.metadata.uid);
    expect(updated.metadata.creationTimestamp).toBe(created.metadata.creationTimestamp);
    expect(updated.metadata.generation).toBe(1);
  });
});

describe('finalizers and deletion', () => {
  it('marks an object with finalizers, refuses new finalizers, and removes it when they are cleared', async () => {
    const store = await open();
    const created = await store.create(obj('Container', 'web', { finalizers: ['d2p.dev/cleanup'] }));
    const watch = store.watch('Container', { resourceVersion: created.metadata.resourceVersion });
    const marked = await store.delete('Container', undefined, 'web');
    expect(marked.metadata.deletionTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(marked.metadata.generation).toBe(2);
    const markedAgain = await store.delete('Container', undefined, 'web');
    expect(markedAgain.metadata.deletionTimestamp).toBe(marked.metadata.deletionTimestamp);
    expect(markedAgain.metadata.resourceVersion).toBe(marked.metadata.resourceVersion);
    expect((await store.get('Container', undefined, 'web')).metadata.deletionTimestamp).toBe(marked.metadata.deletionTimestamp);

    const more = { ...marked, metadata: { ...marked.metadata, finalizers: ['d2p.dev/cleanup', 'd2p.dev/other'] } };
    const err = await expectApiError(store.update(more), 'Invalid');
    expect(err.message).toContain('no new finalizers');
    // A client cannot clear deletionTimestamp either: it is system-owned.
    const undeleted = await store.update({ ...marked, metadata: { ...marked.metadata, deletionTimestamp: undefined, labels: { l: 'v' } } });
    expect(undeleted.metadata.deletionTimestamp).toBe(marked.metadata.deletionTimestamp);

    const gone = await store.update({ ...undeleted, metadata: { ...undeleted.metadata, finalizers: [] } });
    await expectApiError(store.get('Container', undefined, 'web'), 'NotFound');
    expect(summary(await take(watch, 3))).toEqual(['MODIFIED web', 'MODIFIED web', 'DELETED web']);
    expect(gone.metadata.resourceVersion).toBe(store.resourceVersion);
    watch.stop();
  });

  it('honours a uid precondition on delete', async () => {
    const store = await open();
    await store.create(obj('Volume', 'data'));
    await expectApiError(store.delete('Volume', undefined, 'data', { preconditionUid: 'not-the-uid' }), 'Conflict');
    expect((await store.get('Volume', undefined, 'data')).metadata.name).toBe('data');
  });
});

describe('garbage collection', () => {
  it('cascades owner → dependent → dependent of the dependent, across kinds', async () => {
    const store = await open();
    const service = await store.create(obj('Service', 'web', { namespace: 'shop' }));
    const container = await store.create(obj('Container', 'web-1', { namespace: 'shop', owners: [service] }));
    await store.create(obj('Volume', 'web-1-scratch', { namespace: 'shop', owners: [container] }));
    await store.create(obj('Volume', 'unrelated', { namespace: 'shop' }));
    await store.delete('Service', 'shop', 'web');
    await store.waitForGarbageCollection();
    await expectApiError(store.get('Container', 'shop', 'web-1'), 'NotFound');
    await expectApiError(store.get('Volume', 'shop', 'web-1-scratch'), 'NotFound');
    expect((await store.list('Volume')).items.map((o) => o.metadata.name)).toEqual(['unrelated']);
  });

  it('honours a dependent’s finalizers and continues the cascade once they are cleared', async () => {
    const store = await open();
    const service = await store.create(obj('Service', 'web'));
    const container = await store.create(obj('Container', 'web-1', { owners: [service], finalizers: ['d2p.dev/stop'] }));
    await store.create(obj('Volume', 'scratch', { owners: [container] }));
    await store.delete('Service', undefined, 'web');
    await store.waitForGarbageCollection();
    const terminating = await store.get('Container', undefined, 'web-1');
    expect(terminating.metadata.deletionTimestamp).toBeDefined();
    expect((await store.get('Volume', undefined, 'scratch')).metadata.name).toBe('scratch');
    await store.update({ ...terminating, metadata: { ...terminating.metadata, finalizers: [] } });
    await store.waitForGarbageCollection();
    await expectApiError(store.get('Container', undefined, 'web-1'), 'NotFound');
    await expectApiError(store.get('Volume', undefined, 'scratch'), 'NotFound');
  });

  it('keeps a dependent that still has another owner, dropping only the dangling reference', async () => {
    const store = await open();
    const a = await store.create(obj('Network', 'a'));
    const b = await store.create(obj('Network', 'b'));
    await store.create(obj('Container', 'shared', { owners: [a, b] }));
    await store.delete('Network', undefined, 'a');
    await store.waitForGarbageCollection();
    const shared = await store.get('Container', undefined, 'shared');
    expect(shared.metadata.ownerReferences?.map((r) => r.name)).toEqual(['b']);
  });

  it('orphans dependents with propagationPolicy Orphan', async () => {
    const store = await open();
    const service = await store.create(obj('Service', 'web'));
    await store.create(obj('Container', 'web-1', { owners: [service] }));
    await store.delete('Service', undefined, 'web', { propagationPolicy: 'Orphan' });
    await store.waitForGarbageCollection();
    const orphan = await store.get('Container', undefined, 'web-1');
    expect(orphan.metadata.ownerReferences).toBeUndefined();
  });

  it('collects a dependent created for an owner that is already gone', async () => {
    const store = await open();
    const service = await store.create(obj('Service', 'web'));
    await store.delete('Service', undefined, 'web');
    await store.create(obj('Container', 'late', { owners: [service] }));
    await store.waitForGarbageCollection();
    await expectApiError(store.get('Container', undefined, 'late'), 'NotFound');
  });

  it('collects dependents whose owner vanished before a crash, on the next open', async () => {
    let store = await open();
    const service = await store.create(obj('Service', 'web'));
    const container = await store.create(obj('Container', 'web-1', { owners: [service] }));
    await store.create(obj('Volume', 'scratch', { owners: [container] }));
    await store.create(obj('Container', 'independent'));
    await store.close();
    // What a crash right after the owner's file was removed, before GC ran, leaves behind.
    fs.unlinkSync(path.join(dir, 'store', 'objects', 'services', 'default', 'web'));
    store = await open();
    await store.waitForGarbageCollection();
    expect((await store.list('Container')).items.map((o) => o.metadata.name)).toEqual(['independent']);
    expect((await store.list('Volume')).items).toEqual([]);
  });
});

describe('watch', () => {
  it('from "0" starts with ADDED for every matching object, then follows changes', async () => {
    const store = await open();
    await store.create(obj('Container', 'a', { namespace: 'shop' }));
    await store.create(obj('Container', 'b', { namespace: 'shop' }));
    await store.create(obj('Container', 'c', { namespace: 'blog' }));
    await store.create(obj('Volume', 'v', { namespace: 'shop' }));
    const watch = store.watch('Container', { namespace: 'shop', resourceVersion: '0' });
    const b = await store.get('Container', 'shop', 'b');
    await store.update({ ...b, spec: { image: 'nginx' } });
    await store.create(obj('Container', 'd', { namespace: 'blog' }));
    await store.delete('Container', 'shop', 'a');
    const events = await take(watch, 4);
    expect(summary(events)).toEqual(['ADDED a', 'ADDED b', 'MODIFIED b', 'DELETED a']);
    expect(events[2].object.spec).toEqual({ image: 'nginx' });
    const versions = events.slice(2).map((e) => Number(e.object.metadata.resourceVersion));
    expect(versions[1]).toBeGreaterThan(versions[0]);
    watch.stop();
  });

  it('from a resourceVersion delivers every change after it', async () => {
    const store = await open();
    await store.create(obj('Volume', 'a'));
    const mark = store.resourceVersion;
    await store.create(obj('Volume', 'b'));
    await store.delete('Volume', undefined, 'a');
    const watch = store.watch('Volume', { resourceVersion: mark });
    await store.create(obj('Volume', 'c'));
    expect(summary(await take(watch, 3))).toEqual(['ADDED b', 'DELETED a', 'ADDED c']);
    watch.stop();
  });

  it('answers a too-old resourceVersion with one 410 Gone ERROR event, then ends', async () => {
    const store = await open({ historySize: 3 });
    const first = await store.create(obj('Volume', 'v', { labels: { n: '0' } }));
    let current = first;
    for (let i = 1; i <= 5; i++) current = await store.update({ ...current, metadata: { ...current.metadata, labels: { n: String(i) } } });
    const stale = store.watch('Volume', { resourceVersion: first.metadata.resourceVersion });
    const events: WatchEvent[] = [];
    for await (const e of stale) events.push(e);
    expect(events).toHaveLength(1);
    expect(events[0].type).toBe('ERROR');
    expect(events[0].object).toMatchObject({ kind: 'Status', code: 410, reason: 'Gone' });
    // Within the window it still works.
    const recent = store.watch('Volume', { resourceVersion: String(Number(current.metadata.resourceVersion) - 2) });
    expect((await take(recent, 2)).map((e) => e.object.metadata.labels?.n)).toEqual(['4', '5']);
    recent.stop();
  });

  it('answers a resourceVersion from before a restart with 410 Gone', async () => {
    let store = await open();
    const created = await store.create(obj('Volume', 'v'));
    await store.update({ ...created, metadata: { ...created.metadata, labels: { a: 'b' } } });
    store = await reopen(store);
    const events: WatchEvent[] = [];
    for await (const e of store.watch('Volume', { resourceVersion: created.metadata.resourceVersion })) events.push(e);
    expect(events.map((e) => e.type)).toEqual(['ERROR']);
    expect(events[0].object).toMatchObject({ code: 410 });
    // The current version is a valid starting point after a restart.
    const live = store.watch('Volume', { resourceVersion: store.resourceVersion });
    await store.delete('Volume', undefined, 'v');
    expect(summary(await take(live, 1))).toEqual(['DELETED v']);
    live.stop();
  });

  it('turns an object leaving a label selector into DELETED and entering it into ADDED', async () => {
    const store = await open();
    const web = await store.create(obj('Container', 'x', { labels: { app: 'web' } }));
    const watch = store.watch('Container', { labelSelector: 'app=web', resourceVersion: web.metadata.resourceVersion });
    const left = await store.update({ ...web, metadata: { ...web.metadata, labels: { app: 'db' } } });
    await store.update({ ...left, spec: { image: 'db-only' } }); // not seen: matched neither before nor after
    const back = await store.get('Container', undefined, 'x');
    await store.update({ ...back, metadata: { ...back.metadata, labels: { app: 'web' } } });
    const events = await take(watch, 2);
    expect(summary(events)).toEqual(['DELETED x', 'ADDED x']);
    // DELETED carries the last content that matched, at the version of the change.
    expect(events[0].object.metadata.labels).toEqual({ app: 'web' });
    expect(events[0].object.metadata.resourceVersion).toBe(left.metadata.resourceVersion);
    watch.stop();
  });

  it('never blocks writers: a watch nobody reads buffers, and stop() or close() ends iteration', async () => {
    const store = await open();
    const unread = store.watch('Volume');
    for (let i = 0; i < 50; i++) await store.create(obj('Volume', `v${i}`));
    expect((await store.list('Volume')).items).toHaveLength(50);
    expect(await take(unread, 50)).toHaveLength(50);
    unread.stop();
    expect(await unread[Symbol.asyncIterator]().next()).toEqual({ done: true, value: undefined });

    const pending = store.watch('Volume', { resourceVersion: store.resourceVersion });
    const next = pending[Symbol.asyncIterator]().next();
    await store.close();
    expect(await next).toEqual({ done: true, value: undefined });
    await expectApiError(() => store.watch('Volume'), 'ServiceUnavailable');
  });
});

describe('durability and restart', () => {
  it('reloads every object and keeps resourceVersion monotonic across restarts, deletes included', async () => {
    let store = await open();
    const kept = await store.create(obj('Network', 'kept', { labels: { a: 'b' } }));
    await store.create(obj('Network', 'dropped'));
    await store.delete('Network', undefined, 'dropped');
    const beforeRestart = Number(store.resourceVersion);
    expect(beforeRestart).toBeGreaterThan(Number(kept.metadata.resourceVersion));

    store = await reopen(store);
    expect(Number(store.resourceVersion)).toBeGreaterThanOrEqual(beforeRestart);
    expect(await store.get('Network', undefined, 'kept')).toEqual(kept);
    const next = await store.create(obj('Network', 'after'));
    expect(Number(next.metadata.resourceVersion)).toBeGreaterThan(beforeRestart);

    const secondRestart = Number(store.resourceVersion);
    store = await reopen(store);
    expect(Number(store.resourceVersion)).toBeGreaterThanOrEqual(secondRestart);
    expect((await store.list('Network')).items.map((o) => o.metadata.name)).toEqual(['after', 'kept']);
  });

  it('removes temporary files of interrupted writes on open and refuses unknown files', async () => {
    let store = await open();
    await store.create(obj('Volume', 'data'));
    await store.close();
    const nsDir = path.join(dir, 'store', 'objects', 'volumes', 'default');
    fs.writeFileSync(path.join(nsDir, '.tmp-deadbeef'), '{"half": ');
    fs.writeFileSync(path.join(dir, 'store', '.tmp-cafe'), '');
    store = await open();
    expect(fs.readdirSync(nsDir)).toEqual(['data']);
    expect(fs.readdirSync(path.join(dir, 'store')).filter((f) => f.startsWith('.tmp-'))).toEqual([]);
    await store.close();

    fs.writeFileSync(path.join(nsDir, 'torn'), '{"kind": "Volume", "metad');
    const err = await rejection(openStore({ dir: path.join(dir, 'store') }));
    expect(String(err)).toContain(path.join(nsDir, 'torn'));
  });

  it('refuses a second open of the same directory while the first is open', async () => {
    const store = await open();
    const err = await expectApiError(openStore({ dir: path.join(dir, 'store') }), 'ServiceUnavailable');
    expect(err.message).toContain(String(process.pid));
    await store.close();
    const again = await open();
    expect(again.resourceVersion).toBe(store.resourceVersion);
  });

  it('rejects calls after close', async () => {
    const store = await open();
    await store.close();
    await expectApiError(store.get('Volume', undefined, 'x'), 'ServiceUnavailable');
    await expectApiError(store.create(obj('Volume', 'x')), 'ServiceUnavailable');
  });

  it('lists a thousand objects from memory', async () => {
    const store = await open();
    await Promise.all(Array.from({ length: 1000 }, (_, i) => store.create(obj('Container', `c${String(i).padStart(4, '0')}`, { labels: { even: String(i % 2 === 0) } }))));
    // Reads must not depend on the files (a checkpoint writes them later): remove any and list again.
    fs.rmSync(path.join(dir, 'store', 'objects', 'containers'), { recursive: true, force: true });
    const all = await store.list('Container');
    expect(all.items).toHaveLength(1000);
    expect(all.items[0].metadata.name).toBe('c0000');
    expect((await store.list('Container', { labelSelector: 'even=true' })).items).toHaveLength(500);
  });
});
