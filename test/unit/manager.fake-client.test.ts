// The fake API is what every controller's unit tests stand on, so its store semantics are
// checked here against the contract in src/store/types.ts.
import { describe, expect, it } from 'vitest';
import { isApiError } from '../../src/api/errors';
import type { ApiObject, WatchEvent } from '../../src/api/meta';
import { FakeApi } from '../helpers/fake-client';

const vol = (name: string, spec: Record<string, unknown> = {}, labels?: Record<string, string>): ApiObject => ({
  apiVersion: 'd2p.dev/v1alpha1',
  kind: 'Volume',
  metadata: { name, namespace: 'shop', ...(labels ? { labels } : {}) },
  spec,
});

async function take(iterable: AsyncIterable<WatchEvent>, n: number): Promise<WatchEvent[]> {
  const out: WatchEvent[] = [];
  for await (const ev of iterable) {
    out.push(ev);
    if (out.length === n) break;
  }
  return out;
}

describe('FakeApi', () => {
  it('assigns uid, generation and a store-wide resourceVersion; ignores status on create', async () => {
    const api = new FakeApi();
    const a = await api.for('Volume').create({ ...vol('a'), status: { observedGeneration: 9 } });
    const n = await api.for('Network').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Network', metadata: { name: 'n' }, spec: {} });
    expect(a.metadata).toMatchObject({ generation: 1, resourceVersion: '1', namespace: 'shop' });
    expect(a.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(a.status).toBeUndefined();
    expect(n.metadata).toMatchObject({ resourceVersion: '2', namespace: 'default' });
    await expect(api.for('Volume').create(vol('a'))).rejects.toSatisfy((e) => isApiError(e, 'AlreadyExists'));
    await expect(api.for('Volume').get('shop', 'zz')).rejects.toSatisfy((e) => isApiError(e, 'NotFound'));
  });

  it('bumps generation only on spec changes, keeps status on update, and rejects stale writes', async () => {
    const api = new FakeApi();
    const created = await api.for('Volume').create(vol('a'));
    const withStatus = await api.for('Volume').updateStatus({ ...created, status: { observedGeneration: 1 } });
    expect(withStatus.metadata.generation).toBe(1);
    const labelled = await api.for('Volume').update({ ...withStatus, metadata: { ...withStatus.metadata, labels: { x: '1' } }, status: {} });
    expect(labelled.metadata.generation).toBe(1);
    expect(labelled.status).toEqual({ observedGeneration: 1 });
    const respec = await api.for('Volume').update({ ...labelled, spec: { driver: 'local' } });
    expect(respec.metadata.generation).toBe(2);
    await expect(api.for('Volume').update({ ...created, spec: {} })).rejects.toSatisfy((e) => isApiError(e, 'Conflict'));
    // A write that changes nothing is not a new version.
    const same = await api.for('Volume').update(respec);
    expect(same.metadata.resourceVersion).toBe(respec.metadata.resourceVersion);
  });

  it('holds objects with finalizers until the last one is removed, then collects dependents', async () => {
    const api = new FakeApi();
    const owner = await api.for('Service').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Service', metadata: { name: 's', namespace: 'shop', finalizers: ['f'] }, spec: {} });
    await api.for('Container').create({
      apiVersion: 'd2p.dev/v1alpha1',
      kind: 'Container',
      metadata: { name: 's-1', namespace: 'shop', ownerReferences: [{ apiVersion: 'd2p.dev/v1alpha1', kind: 'Service', name: 's', uid: owner.metadata.uid!, controller: true }] },
      spec: {},
    });
    const terminating = await api.for('Service').delete('shop', 's');
    expect(terminating.metadata.deletionTimestamp).toBeDefined();
    expect(api.peek('Container', 'shop', 's-1')).toBeDefined();
    await api.for('Service').update({ ...terminating, metadata: { ...terminating.metadata, finalizers: [] } });
    expect(api.peek('Service', 'shop', 's')).toBeUndefined();
    expect(api.peek('Container', 'shop', 's-1')).toBeUndefined();
  });

  it('lists with namespace and label selectors', async () => {
    const api = new FakeApi();
    await api.for('Volume').create(vol('a', {}, { tier: 'db', app: 'shop' }));
    await api.for('Volume').create(vol('b', {}, { tier: 'web' }));
    await api.for('Volume').create({ ...vol('c'), metadata: { name: 'c', namespace: 'other' } });
    const names = async (labelSelector?: string, namespace?: string) =>
      (await api.for('Volume').list({ labelSelector, namespace })).items.map((o) => o.metadata.name);
    expect(await names('tier=db')).toEqual(['a']);
    expect(await names('tier!=db', 'shop')).toEqual(['b']);
    expect(await names('tier in (db,web),!app')).toEqual(['b']);
    expect(await names(undefined, 'other')).toEqual(['c']);
  });

  it('watches from a resourceVersion, replays history, and answers 410 once it is compacted', async () => {
    const api = new FakeApi();
    await api.for('Volume').create(vol('a'));
    const { metadata } = await api.for('Volume').list();
    const b = await api.for('Volume').create(vol('b'));
    await api.for('Volume').patch('shop', 'b', 'merge', { spec: { driver: 'local' } });
    const replay = await take(api.for('Volume').watch({ resourceVersion: metadata.resourceVersion }), 2);
    expect(replay.map((e) => [e.type, e.object.metadata.name])).toEqual([
      ['ADDED', 'b'],
      ['MODIFIED', 'b'],
    ]);
    const fromZero = await take(api.for('Volume').watch({ resourceVersion: '0' }), 2);
    expect(fromZero.map((e) => e.type)).toEqual(['ADDED', 'ADDED']);

    api.expireWatches();
    const expired = await take(api.for('Volume').watch({ resourceVersion: b.metadata.resourceVersion }), 1);
    expect(expired[0].type).toBe('ERROR');
    expect(expired[0].object).toMatchObject({ code: 410, reason: 'Gone' });
  });

  it('applies JSON patches and status patches', async () => {
    const api = new FakeApi();
    await api.for('Volume').create(vol('a', { driver: 'local' }));
    const patched = await api.for('Volume').patch('shop', 'a', 'json', [{ op: 'add', path: '/spec/external', value: true }]);
    expect(patched.spec).toEqual({ driver: 'local', external: true });
    const status = await api.for('Volume').patch('shop', 'a', 'merge', { status: { phase: 'Ready' } }, { subresource: 'status' });
    expect(status.status).toEqual({ phase: 'Ready' });
    expect(status.metadata.generation).toBe(2);
  });

  it('honours delete preconditions, ends watches after timeoutSeconds, and refuses dry runs loudly', async () => {
    const api = new FakeApi();
    const a = await api.for('Volume').create(vol('a'));
    await expect(api.for('Volume').delete('shop', 'a', { preconditionUid: 'someone-else' })).rejects.toSatisfy((e) => isApiError(e, 'Conflict'));
    await expect(api.for('Volume').create(vol('b'), { dryRun: true })).rejects.toThrow(/dryRun is not supported/);
    expect(api.peek('Volume', 'shop', 'b')).toBeUndefined();
    await api.for('Volume').delete('shop', 'a', { preconditionUid: a.metadata.uid });
    expect(api.peek('Volume', 'shop', 'a')).toBeUndefined();

    const events: WatchEvent[] = [];
    for await (const ev of api.for('Volume').watch({ resourceVersion: api.resourceVersion, timeoutSeconds: 0.02 })) events.push(ev);
    expect(events).toEqual([]);
    expect(api.openWatches).toBe(0);
  });
});
