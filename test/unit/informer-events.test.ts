// The informer's events and what the manager makes of them: which changes of an object
// queue its key (spec, labels, deletion) and which do not (status alone, resourceVersion
// alone), and that a terminal failure waits for the object to change.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ApiObject } from '../../src/api/meta';
import { resolvePaths, type Paths } from '../../src/config';
import { TerminalError } from '../../controllers/errors';
import { Informer, type InformerEvent } from '../../controllers/informer';
import { createJsonLogger, type Logger } from '../../controllers/logger';
import { Manager, type Controller } from '../../controllers/manager';
import type { VolumeStatus } from '../../src/api/types';
import { FakeApi } from '../helpers/fake-client';

/** A Volume's status, typed as a Volume's (the generic client takes any kind's). */
const volumeStatus = (status: VolumeStatus): ApiObject['status'] => status;

let tmp: string;
let paths: Paths;
let api: FakeApi;
let logger: Logger;
const stoppables: Array<{ stop(): Promise<void> }> = [];

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-informer-'));
  paths = resolvePaths({ root: tmp });
  api = new FakeApi();
  logger = createJsonLogger({ level: 'error', write: () => undefined });
});

afterEach(async () => {
  try {
    await Promise.all(stoppables.splice(0).map((s) => s.stop()));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

function volume(name: string, spec: Record<string, unknown> = {}, labels?: Record<string, string>): ApiObject {
  return { apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name, namespace: 'shop', ...(labels ? { labels } : {}) }, spec };
}

async function stored(name: string): Promise<ApiObject> {
  return api.for('Volume').get('shop', name);
}

describe('Informer', () => {
  function startInformer(): { informer: Informer; events: InformerEvent[] } {
    const informer = new Informer(api.for('Volume'), { logger, retryBaseDelayMs: 5, retryMaxDelayMs: 20, minHealthyWatchMs: 0 });
    const events: InformerEvent[] = [];
    informer.onEvent((e) => events.push(e));
    stoppables.push(informer);
    return { informer, events };
  }

  it('hands existing objects over as ADDED, then changes as MODIFIED with the previous state', async () => {
    await api.for('Volume').create(volume('data', { driver: 'local' }));
    const { informer, events } = startInformer();
    await informer.start();
    expect(events.map((e) => [e.type, e.object.metadata.name])).toEqual([['ADDED', 'data']]);

    const before = await stored('data');
    await api.for('Volume').update({ ...before, spec: { driver: 'local', labels: { tier: 'db' } } });
    await vi.waitFor(() => expect(events).toHaveLength(2));
    expect(events[1].type).toBe('MODIFIED');
    expect(events[1].previous?.metadata.resourceVersion).toBe(before.metadata.resourceVersion);
    expect(events[1].object.spec).toEqual({ driver: 'local', labels: { tier: 'db' } });
    expect(informer.get('shop/data')).toBe(events[1].object);
  });

  it('reports a deletion missed while no watch was open, found by the re-list', async () => {
    await api.for('Volume').create(volume('kept'));
    await api.for('Volume').create(volume('gone'));
    const { informer, events } = startInformer();
    await informer.start();
    const listsBefore = informer.listCount;
    await api.withoutWatchEvents(() => api.for('Volume').delete('shop', 'gone'));
    api.endWatches('Volume');
    await vi.waitFor(() => expect(events.some((e) => e.type === 'DELETED')).toBe(true));
    const deleted = events.filter((e) => e.type === 'DELETED');
    expect(deleted.map((e) => e.object.metadata.name)).toEqual(['gone']);
    expect(informer.listCount).toBeGreaterThan(listsBefore);
    expect(informer.keys().sort()).toEqual(['shop/kept']);
  });
});

describe('Manager reacting to informer events', () => {
  function startManager(controller: Controller): Manager {
    const manager = new Manager({
      client: api,
      paths,
      logger,
      backoff: { baseDelayMs: 5, maxDelayMs: 20 },
      watchRetry: { baseDelayMs: 5, maxDelayMs: 20, minHealthyWatchMs: 0 },
      resyncPeriodMs: 0,
    });
    manager.register(controller);
    stoppables.push(manager);
    return manager;
  }

  function counting(extra: Partial<Controller> = {}, behaviour: (key: string) => Promise<void> = async () => undefined): Controller & { seen: string[] } {
    const seen: string[] = [];
    return { kind: 'Volume', name: 'volume-test', seen, reconcile: async (key) => { seen.push(key); await behaviour(key); }, ...extra };
  }

  /** A marker object written after `change`: once its event is reconciled, the change's event has been handled too. */
  async function afterEventsOf(manager: Manager, controller: { seen: string[] }, change: () => Promise<unknown>): Promise<void> {
    await change();
    const marker = `marker-${controller.seen.length}`;
    await api.for('Volume').create(volume(marker));
    await vi.waitFor(() => expect(controller.seen).toContain(`shop/${marker}`));
    await vi.waitFor(() => expect(manager.idle).toBe(true));
  }

  const times = (seen: string[], key: string) => seen.filter((k) => k === key).length;

  it('does not reconcile a change of status alone, and does for spec and metadata changes', async () => {
    await api.for('Volume').create(volume('data', {}, { tier: 'web' }));
    const controller = counting();
    const manager = startManager(controller);
    await manager.start();
    await vi.waitFor(() => expect(times(controller.seen, 'shop/data')).toBe(1));

    await afterEventsOf(manager, controller, async () => api.for('Volume').updateStatus({ ...(await stored('data')), status: volumeStatus({ mountpoint: '/x' }) }));
    expect(times(controller.seen, 'shop/data')).toBe(1);

    // A label is metadata, not spec: generation stays, yet the object changed for its controller.
    await afterEventsOf(manager, controller, async () => {
      const current = await stored('data');
      return api.for('Volume').update({ ...current, metadata: { ...current.metadata, labels: { tier: 'db' } } });
    });
    expect(times(controller.seen, 'shop/data')).toBe(2);

    await afterEventsOf(manager, controller, async () => api.for('Volume').update({ ...(await stored('data')), spec: { driver: 'local' } }));
    expect(times(controller.seen, 'shop/data')).toBe(3);
  });

  it('reconciles status-only changes for a controller that asks for them', async () => {
    await api.for('Volume').create(volume('data'));
    const controller = counting({ reconcileOnStatusChange: true });
    const manager = startManager(controller);
    await manager.start();
    await vi.waitFor(() => expect(times(controller.seen, 'shop/data')).toBe(1));

    await afterEventsOf(manager, controller, async () => api.for('Volume').updateStatus({ ...(await stored('data')), status: volumeStatus({ mountpoint: '/x' }) }));
    expect(times(controller.seen, 'shop/data')).toBe(2);
  });

  it('leaves a terminal failure alone until the object itself changes', async () => {
    await api.for('Volume').create(volume('bad', { driver: 'nfs' }));
    const controller = counting({}, async (key) => {
      if (key !== 'shop/bad') return;
      const current = await stored('bad');
      if ((current.spec as { driver?: string }).driver === 'nfs') throw new TerminalError('UnsupportedDriver', 'driver nfs is not supported');
    });
    const manager = startManager(controller);
    await manager.start();
    await vi.waitFor(() => expect(times(controller.seen, 'shop/bad')).toBe(1));
    // The manager's own failure report (Ready=False in status, an Event) must not retry it.
    await vi.waitFor(() => expect((api.peek('Volume', 'shop', 'bad')?.status as { conditions?: unknown[] })?.conditions).toHaveLength(1));

    await afterEventsOf(manager, controller, async () => {
      const current = await stored('bad');
      return api.for('Volume').updateStatus({ ...current, status: volumeStatus({ ...current.status, mountpoint: '/elsewhere' }) });
    });
    expect(times(controller.seen, 'shop/bad')).toBe(1);

    await afterEventsOf(manager, controller, async () => api.for('Volume').update({ ...(await stored('bad')), spec: { driver: 'local' } }));
    expect(times(controller.seen, 'shop/bad')).toBe(2);
  });
});
