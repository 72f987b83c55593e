import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError, conflict } from '../../src/api/errors';
import type { ApiObject, EventObject } from '../../src/api/meta';
import { resolvePaths, type Paths } from '../../src/config';
import { getCondition } from '../../controllers/conditions';
import { TerminalError } from '../../controllers/errors';
import { createJsonLogger, type Logger } from '../../controllers/logger';
import { Manager, ownerKeys, splitKey, type Controller, type ManagerOptions } from '../../controllers/manager';
import { volumeController } from '../../controllers/volume';
import { startControllers } from '../../controllers/index';
import { FakeApi } from '../helpers/fake-client';

let tmp: string;
let paths: Paths;
let api: FakeApi;
let logLines: string[];
let logger: Logger;
const managers: Manager[] = [];

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-manager-'));
  paths = resolvePaths({ root: tmp });
  api = new FakeApi();
  logLines = [];
  logger = createJsonLogger({ level: 'debug', write: (line) => logLines.push(line) });
});

afterEach(async () => {
  try {
    await Promise.all(managers.splice(0).map((m) => m.stop()));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

function newManager(opts: Partial<ManagerOptions> = {}): Manager {
  const m = new Manager({
    client: api,
    paths,
    logger,
    backoff: { baseDelayMs: 5, maxDelayMs: 50 },
    watchRetry: { baseDelayMs: 5, maxDelayMs: 20, minHealthyWatchMs: 0 },
    ...opts,
  });
  managers.push(m);
  return m;
}

function volume(name: string, extra: Partial<ApiObject['metadata']> = {}, spec: Record<string, unknown> = {}): ApiObject {
  return { apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name, namespace: 'shop', ...extra }, spec };
}

/** A controller that records the keys it reconciles and runs `behaviour` for each. */
function recordingController(
  kind: string,
  behaviour: (key: string) => Promise<unknown> = async () => undefined,
  extra: Partial<Controller> = {},
): Controller & { seen: string[] } {
  const seen: string[] = [];
  return {
    kind,
    name: `${kind.toLowerCase()}-test`,
    seen,
    async reconcile(key) {
      seen.push(key);
      await behaviour(key);
    },
    ...extra,
  };
}

const count = (seen: string[], key: string) => seen.filter((k) => k === key).length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function settle(m: Manager): Promise<void> {
  await vi.waitFor(() => expect(m.idle).toBe(true));
}

describe('Manager', () => {
  it('lists on start and reconciles every existing object once', async () => {
    for (const n of ['a', 'b', 'c']) await api.for('Volume').create(volume(n));
    const ctl = recordingController('Volume');
    const m = newManager();
    m.register(ctl);
    await m.start();
    await settle(m);
    expect([...ctl.seen].sort()).toEqual(['shop/a', 'shop/b', 'shop/c']);
  });

  it('reconciles on watch events: creation, spec change and deletion, but not its own status writes', async () => {
    const ctl = recordingController('Volume');
    const m = newManager();
    m.register(ctl);
    await m.start();
    const created = await api.for('Volume').create(volume('data'));
    await vi.waitFor(() => expect(count(ctl.seen, 'shop/data')).toBe(1));
    await api.for('Volume').update({ ...created, spec: { driver: 'local', driverOpts: { x: '1' } } });
    await vi.waitFor(() => expect(count(ctl.seen, 'shop/data')).toBe(2));

    const latest = await api.for('Volume').get('shop', 'data');
    await api.for('Volume').updateStatus({ ...latest, status: { observedGeneration: 2 } });
    // Events of one kind arrive in order: once "marker" is seen, the status event was handled.
    await api.for('Volume').create(volume('marker'));
    await vi.waitFor(() => expect(count(ctl.seen, 'shop/marker')).toBe(1));
    await settle(m);
    expect(count(ctl.seen, 'shop/data')).toBe(2);

    await api.for('Volume').delete('shop', 'data');
    await vi.waitFor(() => expect(count(ctl.seen, 'shop/data')).toBe(3));
  });

  it('enqueues the owner when an owned object changes', async () => {
    const svc = await api.for('Service').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: {} });
    const other = await api.for('Service').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Service', metadata: { name: 'db', namespace: 'shop' }, spec: {} });
    const ctl = recordingController('Service', async () => undefined, { owns: ['Container'] });
    const m = newManager();
    m.register(ctl);
    await m.start();
    await settle(m);
    expect(count(ctl.seen, 'shop/web')).toBe(1);

    const ref = (o: ApiObject, controller: boolean) => ({ apiVersion: o.apiVersion, kind: 'Service', name: o.metadata.name, uid: o.metadata.uid!, controller });
    await api.for('Container').create({
      apiVersion: 'd2p.dev/v1alpha1',
      kind: 'Container',
      metadata: { name: 'web-1', namespace: 'shop', ownerReferences: [ref(other, false), ref(svc, true)] },
      spec: {},
    });
    await vi.waitFor(() => expect(count(ctl.seen, 'shop/web')).toBe(2));
    await api.for('Container').delete('shop', 'web-1');
    await vi.waitFor(() => expect(count(ctl.seen, 'shop/web')).toBe(3));
    await settle(m);
    // Only the controller reference is followed when there is one.
    expect(count(ctl.seen, 'shop/db')).toBe(1);
  });

  it('maps objects of watched kinds to keys', async () => {
    const ctl = recordingController('Volume', async () => undefined, {
      watches: [{ kind: 'Container', map: (o) => [`${o.metadata.namespace}/${o.metadata.labels?.volume}`] }],
    });
    const m = newManager();
    m.register(ctl);
    await m.start();
    await api.for('Container').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Container', metadata: { name: 'c', namespace: 'shop', labels: { volume: 'cache' } }, spec: {} });
    await vi.waitFor(() => expect(ctl.seen).toContain('shop/cache'));
    // A change away from a key wakes the key it left as well as the new one.
    await settle(m);
    const before = count(ctl.seen, 'shop/cache');
    const c = api.peek('Container', 'shop', 'c')!;
    await api.for('Container').update({ ...c, metadata: { ...c.metadata, labels: { volume: 'data' } } });
    await vi.waitFor(() => expect(ctl.seen).toContain('shop/data'));
    await vi.waitFor(() => expect(count(ctl.seen, 'shop/cache')).toBe(before + 1));
  });

  it('requeues a failing reconcile with back-off and records a Warning event and a Ready=False condition', async () => {
    await api.for('Volume').create(volume('flaky'));
    let failuresLeft = 2;
    const ctl = recordingController('Volume', async () => {
      if (failuresLeft-- > 0) throw Object.assign(new Error('mount failed'), { code: 'EBUSY' });
    });
    const m = newManager();
    m.register(ctl);
    await m.start();
    await vi.waitFor(() => expect(count(ctl.seen, 'shop/flaky')).toBe(3));
    await settle(m);

    const events = api.all('Event') as EventObject[];
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      type: 'Warning',
      reason: 'ReconcileError',
      message: 'mount failed (EBUSY)',
      count: 2,
      involvedObject: { kind: 'Volume', namespace: 'shop', name: 'flaky' },
      source: { component: 'volume-test' },
    });
    const ready = getCondition(api.peek('Volume', 'shop', 'flaky')!.status, 'Ready');
    expect(ready).toMatchObject({ status: 'False', reason: 'ReconcileError', message: 'mount failed (EBUSY)', observedGeneration: 1 });
    // Succeeded on the third attempt: nothing more is queued.
    await sleep(60);
    expect(count(ctl.seen, 'shop/flaky')).toBe(3);
  });

  it('retries a write conflict quietly: no Warning event, no Ready=False', async () => {
    await api.for('Volume').create(volume('contended'));
    let conflictsLeft = 2;
    const ctl = recordingController('Volume', async () => {
      if (conflictsLeft-- > 0) throw conflict('Volume', 'shop', 'contended', 'the object has been modified');
    });
    const m = newManager();
    m.register(ctl);
    await m.start();
    await vi.waitFor(() => expect(count(ctl.seen, 'shop/contended')).toBe(3));
    await settle(m);
    expect(api.all('Event')).toEqual([]);
    expect(getCondition(api.peek('Volume', 'shop', 'contended')!.status, 'Ready')).toBeUndefined();
  });

  it('leaves the conditions alone when the reconciler wrote status itself before failing', async () => {
    await api.for('Volume').create(volume('own'));
    const ctl: Controller = {
      kind: 'Volume',
      async reconcile(key, ctx) {
        const { namespace, name } = splitKey(key);
        const obj = await ctx.client('Volume').get(namespace, name);
        const status = { conditions: [{ type: 'Ready', status: 'False' as const, reason: 'PortTaken', message: 'port 80 is taken', lastTransitionTime: new Date().toISOString() }] };
        await ctx.client('Volume').updateStatus({ ...obj, status });
        throw new TerminalError('PortTaken', 'port 80 is taken by another process');
      },
    };
    const m = newManager();
    m.register(ctl);
    await m.start();
    await vi.waitFor(() => expect(api.all('Event')).toHaveLength(1));
    await settle(m);
    expect(getCondition(api.peek('Volume', 'shop', 'own')!.status, 'Ready')).toMatchObject({ reason: 'PortTaken', message: 'port 80 is taken' });
    expect(api.callCount('Volume', 'updateStatus')).toBe(1);
  });

  it('does not retry a TerminalError, not even on resync, until the object changes', async () => {
    const created = await api.for('Volume').create(volume('bad'));
    const ctl = recordingController('Volume', async () => {
      throw new TerminalError('InvalidSpec', 'spec.driverOpts.size: not a byte size');
    }, { resyncPeriodMs: 20 });
    const m = newManager();
    m.register(ctl);
    await m.start();
    await vi.waitFor(() => expect(getCondition(api.peek('Volume', 'shop', 'bad')?.status, 'Ready')?.reason).toBe('InvalidSpec'));
    const ev = api.all('Event') as EventObject[];
    expect(ev).toHaveLength(1);
    expect(ev[0]).toMatchObject({ type: 'Warning', reason: 'InvalidSpec', message: 'spec.driverOpts.size: not a byte size' });
    // Several back-off periods and resyncs later: still one attempt.
    await sleep(150);
    expect(count(ctl.seen, 'shop/bad')).toBe(1);

    const latest = await api.for('Volume').get('shop', 'bad');
    await api.for('Volume').update({ ...latest, spec: { driverOpts: { size: '1g' } } });
    await vi.waitFor(() => expect(count(ctl.seen, 'shop/bad')).toBe(2));
    expect(created.metadata.generation).toBe(1);
  });

  it('re-enqueues every object on resync', async () => {
    await api.for('Volume').create(volume('steady'));
    const ctl = recordingController('Volume', async () => undefined, { resyncPeriodMs: 15 });
    const m = newManager();
    m.register(ctl);
    await m.start();
    await vi.waitFor(() => expect(count(ctl.seen, 'shop/steady')).toBeGreaterThanOrEqual(3));
    expect(api.callCount('Volume', 'list')).toBe(1);
  });

  it('re-lists when a watch ends and catches changes it never saw', async () => {
    await api.for('Volume').create(volume('gone-soon'));
    const ctl = recordingController('Volume');
    const m = newManager();
    m.register(ctl);
    await m.start();
    await settle(m);
    const listsBefore = m.informer('Volume')!.listCount;
    await api.withoutWatchEvents(async () => {
      await api.for('Volume').create(volume('unseen'));
      await api.for('Volume').delete('shop', 'gone-soon');
    });
    await sleep(20);
    expect(ctl.seen).not.toContain('shop/unseen');
    api.endWatches('Volume');
    await vi.waitFor(() => expect(ctl.seen).toContain('shop/unseen'));
    await vi.waitFor(() => expect(count(ctl.seen, 'shop/gone-soon')).toBe(2));
    expect(m.informer('Volume')!.listCount).toBeGreaterThan(listsBefore);
    expect(m.informer('Volume')!.get('shop/gone-soon')).toBeUndefined();
  });

  it('re-lists after 410 Gone', async () => {
    const ctl = recordingController('Volume');
    const m = newManager();
    m.register(ctl);
    await m.start();
    await api.withoutWatchEvents(() => api.for('Volume').create(volume('after-compaction')));
    api.expireWatches();
    await vi.waitFor(() => expect(ctl.seen).toContain('shop/after-compaction'));
    await vi.waitFor(() => expect(api.openWatches).toBeGreaterThan(0));
  });

  it('retries a failed list and a failed watch with back-off, logging each', async () => {
    api.failNext('Volume', 'list', new ApiError('ServiceUnavailable', 'store is starting'));
    api.failNext('Volume', 'watch', new Error('socket hang up'));
    await api.for('Volume').create(volume('patient'));
    const ctl = recordingController('Volume');
    const m = newManager();
    m.register(ctl);
    await m.start();
    await vi.waitFor(() => expect(ctl.seen).toContain('shop/patient'));
    await api.for('Volume').create(volume('later'));
    await vi.waitFor(() => expect(ctl.seen).toContain('shop/later'));
    expect(logLines.some((l) => l.includes('list failed') && l.includes('store is starting'))).toBe(true);
    expect(logLines.some((l) => l.includes('watch failed') && l.includes('socket hang up'))).toBe(true);
  });

  it('stop() waits for reconciles in flight and aborts their signal', async () => {
    await api.for('Volume').create(volume('slow'));
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let signal: AbortSignal | undefined;
    const m = newManager();
    m.register({
      kind: 'Volume',
      async reconcile(_key, ctx) {
        signal = ctx.signal;
        await held;
      },
    });
    await m.start();
    await vi.waitFor(() => expect(signal).toBeDefined());
    let stopped = false;
    const stopping = m.stop().then(() => (stopped = true));
    await sleep(20);
    expect(signal!.aborted).toBe(true);
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect(api.openWatches).toBe(0);
  });

  it('prunes Events older than the TTL', async () => {
    const old = new Date(Date.now() - 2 * 3600_000).toISOString();
    const fresh = new Date().toISOString();
    const ev = (name: string, at: string): EventObject => ({
      apiVersion: 'd2p.dev/v1alpha1',
      kind: 'Event',
      metadata: { name, namespace: 'shop' },
      involvedObject: { kind: 'Volume', namespace: 'shop', name: 'x' },
      type: 'Normal',
      reason: 'Created',
      message: name,
      count: 1,
      firstTimestamp: at,
      lastTimestamp: at,
    });
    await api.for('Event').create(ev('x.old', old));
    await api.for('Event').create(ev('x.fresh', fresh));
    const m = newManager({ eventTtlMs: 3600_000 });
    m.register(recordingController('Volume'));
    await m.start();
    await vi.waitFor(() => expect(api.all('Event').map((e) => e.metadata.name)).toEqual(['x.fresh']));
  });

  it('adopts on restart: a new manager reconciles every object once and the Volume reconciler redoes nothing', async () => {
    for (const n of ['pg', 'cache']) await api.for('Volume').create(volume(n));
    const first = newManager();
    first.register(volumeController());
    await first.start();
    await vi.waitFor(() => {
      for (const n of ['pg', 'cache']) expect(api.peek('Volume', 'shop', n)?.status).toMatchObject({ phase: 'Ready' });
    });
    await settle(first);
    await first.stop();
    const data = path.join(paths.volumes, 'shop', 'pg', '_data');
    fs.writeFileSync(path.join(data, 'PG_VERSION'), '16\n');
    const rvBefore = api.resourceVersion;
    const writesBefore = api.calls.filter((c) => !['list', 'get', 'watch'].includes(c.verb)).length;

    const second = newManager();
    second.register(volumeController());
    await second.start();
    await vi.waitFor(() => {
      expect(second.reconcileCount('volume-controller', 'shop/pg')).toBe(1);
      expect(second.reconcileCount('volume-controller', 'shop/cache')).toBe(1);
    });
    await settle(second);
    expect(api.resourceVersion).toBe(rvBefore);
    expect(api.calls.filter((c) => !['list', 'get', 'watch'].includes(c.verb)).length).toBe(writesBefore);
    expect(fs.readFileSync(path.join(data, 'PG_VERSION'), 'utf8')).toBe('16\n');
  });

  it('refuses to register after start or twice under one name', async () => {
    const m = newManager();
    m.register(recordingController('Volume'));
    expect(() => m.register(recordingController('Volume'))).toThrow(/registered twice/);
    await m.start();
    expect(() => m.register(recordingController('Network'))).toThrow(/already started/);
  });
});

describe('startControllers', () => {
  it('runs the Volume controller until stopped', async () => {
    await api.for('Volume').create(volume('app'));
    const running = await startControllers({ client: api, paths, logger, tuning: { backoff: { baseDelayMs: 5 } } });
    try {
      await vi.waitFor(() => expect(api.peek('Volume', 'shop', 'app')?.status).toMatchObject({ phase: 'Ready' }));
      expect(fs.existsSync(path.join(paths.volumes, 'shop', 'app', '_data'))).toBe(true);
    } finally {
      await running.stop();
    }
    expect(api.openWatches).toBe(0);
  });
});

describe('ownerKeys / splitKey', () => {
  const dependent = (refs: NonNullable<ApiObject['metadata']['ownerReferences']>): ApiObject => ({
    apiVersion: 'd2p.dev/v1alpha1',
    kind: 'Container',
    metadata: { name: 'c', namespace: 'shop', ownerReferences: refs },
  });
  const ref = (kind: string, name: string, controller?: boolean) => ({ apiVersion: 'd2p.dev/v1alpha1', kind, name, uid: name, controller });

  it('prefers the controller reference of the owner kind, else every reference of that kind', () => {
    expect(ownerKeys(dependent([ref('Service', 'a'), ref('Service', 'b', true)]), 'Service')).toEqual(['shop/b']);
    expect(ownerKeys(dependent([ref('Service', 'a'), ref('Build', 'x', true), ref('Service', 'c')]), 'Service')).toEqual(['shop/a', 'shop/c']);
    expect(ownerKeys(dependent([ref('Build', 'x', true)]), 'Service')).toEqual([]);
  });

  it('splits keys at the first slash, defaulting the namespace', () => {
    expect(splitKey('shop/web')).toEqual({ namespace: 'shop', name: 'web' });
    expect(splitKey('web')).toEqual({ namespace: 'default', name: 'web' });
  });
});
