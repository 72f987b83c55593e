// The Container controller end to end: a daemon in-process (store, API server, manager
// with the real controllers), the real Runtime and d2p-shim, and an image imported into the
// ImageStore from an OCI layout built locally (hack/test-images/lib.js), no registry.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it, vi } from 'vitest';

import type { EventObject } from '../../src/api/meta';
import type { Container, ContainerSpec } from '../../src/api/types';
import { CgroupManager } from '../../src/runtime/index';
import { containerId } from '../../controllers/container';
import { useTestDaemon } from '../helpers/daemon';
import { requireSandbox } from '../helpers/sandbox-guard';
import { fixtures } from '../helpers/test-image';
import { runsNotZombie } from '../helpers/process';

requireSandbox('container controller integration tests');

const IMAGE = 'd2p.test/box:1';
const NS = 'itest';

const cgroupParent = `d2p-ctl-test-${process.pid}`;

function contentLayer(): Buffer {
  return fixtures.tarArchive([
    { path: 'srv/', type: 'dir' },
    { path: 'srv/www/', type: 'dir', mode: 0o750, uid: 33, gid: 33 },
    { path: 'srv/www/index.html', type: 'file', content: 'from the image\n', uid: 33, gid: 33 },
  ]);
}

const harness = useTestDaemon('ctrl-it', { cgroupParent, images: [{ ref: IMAGE, extraLayers: [contentLayer()] }] });

async function run(name: string, spec: Partial<ContainerSpec>): Promise<void> {
  // `sleep` as pid 1 of its pid namespace has no default SIGTERM action (pid_namespaces(7)),
  // so `docker stop` would wait the whole grace period; SIGKILL keeps the tests quick.
  const stop = spec.stopGracePeriod ? {} : { stopSignal: 'SIGKILL' };
  await harness.client.for('Container').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Container', metadata: { name, namespace: NS }, spec: { image: IMAGE, ...stop, ...spec } });
}

const get = async (name: string) => (await harness.client.for('Container').get(NS, name)) as Container;

async function events(name: string): Promise<EventObject[]> {
  const list = await harness.client.for('Event').list({ namespace: NS, fieldSelector: `involvedObject.name=${name}` });
  return (list.items as EventObject[]).sort((a, b) => Date.parse(a.firstTimestamp ?? '') - Date.parse(b.firstTimestamp ?? ''));
}

async function waitRunning(name: string): Promise<Container> {
  await vi.waitFor(async () => expect((await get(name)).status?.phase).toBe('Running'), { timeout: 20_000, interval: 50 });
  return get(name);
}

async function deleteAndWait(name: string): Promise<void> {
  await harness.client.for('Container').delete(NS, name);
  await vi.waitFor(async () => expect((await harness.client.for('Container').list({ namespace: NS, fieldSelector: `metadata.name=${name}` })).items).toEqual([]), {
    timeout: 20_000,
    interval: 50,
  });
}

describe('Container controller (real runtime)', () => {
  it('runs sleep with a real pid; a kill -9 from outside is noticed and restarted (restartCount 1, new pid)', async () => {
    await run('sleeper', { command: ['sleep', '1000'], restartPolicy: 'always' });
    const first = await waitRunning('sleeper');
    const pid = first.status!.pid!;
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toContain('sleep');
    process.kill(pid, 'SIGKILL');
    // Docker restarts after 100 ms; the generous timeout only keeps a loaded machine from failing the test.
    await vi.waitFor(
      async () => {
        const c = await get('sleeper');
        expect(c.status).toMatchObject({ phase: 'Running', restartCount: 1 });
        expect(c.status?.pid).not.toBe(pid);
      },
      { timeout: 5_000, interval: 20 },
    );
    const second = (await get('sleeper')).status!.pid!;
    expect(runsNotZombie(second)).toBe(true);
    expect(runsNotZombie(pid)).toBe(false);
    const reasons = (await events('sleeper')).map((e) => e.reason);
    expect(reasons).toEqual(expect.arrayContaining(['Created', 'Started', 'Died', 'BackOff']));
    const died = (await events('sleeper')).find((e) => e.reason === 'Died')!;
    expect(died.message).toContain('137');

    const id = containerId(NS, 'sleeper');
    const cgroups = new CgroupManager({ parent: cgroupParent }).dirsOf(id);
    await deleteAndWait('sleeper');
    expect(runsNotZombie(second)).toBe(false);
    for (const dir of cgroups) expect(fs.existsSync(dir)).toBe(false);
    expect(fs.existsSync(path.join(harness.daemon.paths.containers, id))).toBe(false);
    expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(path.join(harness.daemon.paths.containers, id));
  });

  it('a passing healthcheck makes it healthy and Ready; a failing one unhealthy with an event', async () => {
    await run('good', { command: ['sleep', '1000'], healthcheck: { test: ['CMD', 'true'], interval: '200ms', startInterval: '100ms' } });
    await run('bad', { command: ['sleep', '1000'], healthcheck: { test: ['CMD-SHELL', 'exit 1'], interval: '200ms', retries: 2 } });
    await vi.waitFor(async () => expect((await get('good')).status?.health).toBe('healthy'), { timeout: 20_000, interval: 50 });
    await vi.waitFor(async () => expect((await get('bad')).status?.health).toBe('unhealthy'), { timeout: 20_000, interval: 50 });
    await vi.waitFor(async () => {
      const good = await get('good');
      expect(good.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    });
    // The prober writes health; the Ready condition follows on the next reconcile.
    await vi.waitFor(async () => {
      const bad = await get('bad');
      expect(bad.status?.phase).toBe('Running');
      expect(bad.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'Unhealthy' });
    }, { timeout: 20_000, interval: 50 });
    expect((await events('bad')).map((e) => e.reason)).toContain('Unhealthy');
    await deleteAndWait('good');
    await deleteAndWait('bad');
  });

  it('stop ignores a trapped SIGTERM for the grace period, then kills with SIGKILL', async () => {
    await run('stubborn', { command: ['sh', '-c', "trap '' TERM; while true; do sleep 0.1; done"], stopGracePeriod: '1s' });
    const pid = (await waitRunning('stubborn')).status!.pid!;
    // Give sh time to install its trap before the stop signal arrives.
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    await harness.client.for('Container').delete(NS, 'stubborn');
    await vi.waitFor(async () => expect((await events('stubborn')).map((e) => e.reason)).toContain('Stopped'), { timeout: 20_000, interval: 50 });
    const elapsed = Date.now() - started;
    const evs = await events('stubborn');
    const killing = evs.findIndex((e) => e.reason === 'Killing');
    const stopped = evs.findIndex((e) => e.reason === 'Stopped');
    expect(killing).toBeGreaterThanOrEqual(0);
    expect(stopped).toBeGreaterThan(killing);
    expect(evs[stopped]!.message).toContain('SIGKILL');
    // It survived SIGTERM: the kill came only after the grace period.
    expect(elapsed).toBeGreaterThanOrEqual(900);
    await vi.waitFor(() => expect(runsNotZombie(pid)).toBe(false));
  });

  it('populates an empty named volume from the image path on first use, and only then', async () => {
    await harness.client.for('Volume').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name: 'site', namespace: NS }, spec: {} });
    await run('web', { command: ['sleep', '1000'], mounts: [{ type: 'volume', source: 'site', target: '/srv/www' }] });
    const c = await waitRunning('web');
    const data = path.join(harness.daemon.paths.volumes, NS, 'site', '_data');
    expect(fs.readFileSync(path.join(data, 'index.html'), 'utf8')).toBe('from the image\n');
    expect(fs.statSync(data).uid).toBe(33);
    expect(fs.statSync(path.join(data, 'index.html')).uid).toBe(33);
    // The container sees the volume's content at the target.
    expect(fs.readFileSync(`/proc/${c.status!.pid}/root/srv/www/index.html`, 'utf8')).toBe('from the image\n');
    fs.writeFileSync(path.join(data, 'index.html'), 'changed\n');
    await deleteAndWait('web');
    await run('web2', { command: ['sleep', '1000'], mounts: [{ type: 'volume', source: 'site', target: '/srv/www' }] });
    await waitRunning('web2');
    expect(fs.readFileSync(path.join(data, 'index.html'), 'utf8')).toBe('changed\n');
    await deleteAndWait('web2');
    await harness.client.for('Volume').delete(NS, 'site');
  });
});
