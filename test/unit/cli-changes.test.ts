// The CLI's waits wake on a watch event instead of sleeping out their interval.
import { afterEach, describe, expect, it } from 'vitest';
import { ObjectChanges } from '../../src/cli/changes';
import type { Client } from '../../src/client';
import { createFakeApi } from '../helpers/fake-client';

const volume = (name: string) => ({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name, namespace: 'shop' }, spec: {} });
let open: ObjectChanges[] = [];
afterEach(() => {
  for (const c of open) c.stop();
  open = [];
});

function watchVolumes(api: ReturnType<typeof createFakeApi>, name?: string): ObjectChanges {
  const changes = new ObjectChanges(api as unknown as Client, 'Volume', { namespace: 'shop', name });
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
