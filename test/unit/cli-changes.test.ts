// The CLI's waits wake on a watch event instead of sleeping out their interval.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Container } from '../../src/api/types';
import { ObjectChanges } from '../../src/cli/changes';
import { removeContainer, waitForContainer } from '../../src/cli/container-state';
import type { Client } from '../../src/client';
import { createFakeApi } from '../helpers/fake-client';

const volume = (name: string) => ({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name, namespace: 'shop' }, spec: {} });
let open: ObjectChanges[] = [];
afterEach(() => {
  for (const c of open) c.stop();
  open = [];
});

function watchVolumes(api: ReturnType<typeof createFakeApi>, name?: string, resourceVersion?: string): ObjectChanges {
  const changes = new ObjectChanges(api as unknown as Client, 'Volume', { namespace: 'shop', name, resourceVersion });
  open.push(changes);
  return changes;
}

async function elapsed(p: Promise<void>): Promise<number> {
  const t0 = Date.now();
  await p;
  return Date.now() - t0;
}

describe('ObjectChanges', () => {
  it('wakes a wait at the change of the watched object, long before its timeout', async () => {
    const api = createFakeApi();
    const changes = watchVolumes(api, 'data');
    await changes.next(50); // the watch's initial listing (or the timeout) settles first
    const waiting = changes.next(10_000);
    setTimeout(() => void api.for('Volume').create(volume('data')), 20);
    expect(await elapsed(waiting)).toBeLessThan(2_000);
  });

  it('times out when nothing changes, and ignores other names', async () => {
    const api = createFakeApi();
    const changes = watchVolumes(api, 'data');
    await changes.next(50);
    await api.for('Volume').create(volume('other'));
    expect(await elapsed(changes.next(150))).toBeGreaterThanOrEqual(140);
  });

  it('gives the object as its deletion left it, also for a deletion made before it was watching', async () => {
    const api = createFakeApi();
    const created = await api.for('Volume').create({ ...volume('gone'), metadata: { ...volume('gone').metadata, labels: { last: 'state' } } });
    await api.for('Volume').delete('shop', 'gone');
    // From the resourceVersion of its creation: the deletion is delivered though it came first.
    const changes = watchVolumes(api, 'gone', created.metadata.resourceVersion);
    const removed = await changes.removedObject(created.metadata.uid, 5_000);
    expect(removed?.metadata).toMatchObject({ uid: created.metadata.uid, labels: { last: 'state' } });
    // Another object's deletion is not this one's: the wait times out empty.
    expect(await changes.removedObject('another-uid', 100)).toBeUndefined();
  });

  it("keeps the newest state its events brought of the object, by uid", async () => {
    const api = createFakeApi();
    const created = await api.for('Volume').create(volume('data'));
    const changes = watchVolumes(api, 'data', created.metadata.resourceVersion);
    expect(changes.latest(created.metadata.uid)).toBeUndefined();
    await api.for('Volume').update({ ...created, metadata: { ...created.metadata, labels: { step: '1' } } });
    const second = await api.for('Volume').get('shop', 'data');
    await api.for('Volume').update({ ...second, metadata: { ...second.metadata, labels: { step: '2' } } });
    await vi.waitFor(() => expect(changes.latest(created.metadata.uid)?.metadata.labels).toEqual({ step: '2' }));
    expect(changes.latest('another-uid')).toBeUndefined();
    expect(changes.removed(created.metadata.uid)).toBeUndefined();
  });

  it('returns at once for a change that came while nobody waited, and on abort', async () => {
    const api = createFakeApi();
    const changes = watchVolumes(api);
    await changes.next(50);
    await api.for('Volume').create(volume('early'));
    await new Promise((r) => setTimeout(r, 50));
    expect(await elapsed(changes.next(10_000))).toBeLessThan(100);
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 20);
    expect(await elapsed(changes.next(10_000, abort.signal))).toBeLessThan(2_000);
  });
});

describe('waiting on a container', () => {
  const FINALIZER = 'd2p.dev/test-teardown';
  /** The fake API as the CLI's Client: `containers` is its Container client. */
  const asClient = (api: ReturnType<typeof createFakeApi>): Client => Object.assign(Object.create(api) as object, { containers: api.for('Container') }) as unknown as Client;
  const container = (name: string) => ({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Container', metadata: { name, namespace: 'default', finalizers: [FINALIZER] }, spec: { image: 'busybox' } });
  const exited = (c: Container): Container => ({ ...c, status: { phase: 'Exited', exitCode: 0 } });
  const gets = (api: ReturnType<typeof createFakeApi>) => api.calls.filter((c) => c.kind === 'Container' && c.verb === 'get').length;

  it("with the caller's watch, takes a removal from its events without reading the container", async () => {
    const api = createFakeApi();
    const created = (await api.for('Container').create(container('rm-me'))) as Container;
    const changes = new ObjectChanges(asClient(api), 'Container', { namespace: 'default', name: 'rm-me', resourceVersion: created.metadata.resourceVersion });
    open.push(changes);
    await api.for('Container').updateStatus(exited(created));
    const removal = removeContainer(asClient(api), created, 5_000, changes);
    // The controller's part: teardown done, finalizer released.
    await vi.waitFor(async () => expect((await api.for('Container').get('default', 'rm-me')).metadata.deletionTimestamp).toBeDefined());
    const getsBefore = gets(api);
    const deleting = await api.for('Container').get('default', 'rm-me');
    await api.for('Container').update({ ...deleting, metadata: { ...deleting.metadata, finalizers: [] } });
    await removal;
    expect(gets(api) - getsBefore).toBe(1); // the test's own read above, none of the wait's
    expect(api.calls.some((c) => c.kind === 'Container' && c.verb === 'delete')).toBe(true);
  });

  it('without a watch of the caller, reads the container at each wake-up', async () => {
    const api = createFakeApi();
    const created = (await api.for('Container').create(container('stop-me'))) as Container;
    const before = gets(api);
    const waiting = waitForContainer(asClient(api), created, (c) => c?.status?.phase === 'Exited', { timeoutMs: 5_000, what: 'stop' });
    await vi.waitFor(() => expect(gets(api)).toBeGreaterThan(before));
    await api.for('Container').updateStatus(exited(created));
    expect((await waiting)?.status?.phase).toBe('Exited');
    expect(gets(api) - before).toBeGreaterThanOrEqual(2);
  });
});
