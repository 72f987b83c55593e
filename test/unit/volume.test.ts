import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ApiObject, EventObject } from '../../src/api/meta';
import { resolvePaths, type Paths } from '../../src/config';
import { getCondition } from '../../controllers/conditions';
import { TerminalError } from '../../controllers/errors';
import { createJsonLogger } from '../../controllers/logger';
import type { Manager, ReconcileContext } from '../../controllers/manager';
import { VOLUME_FINALIZER, reconcileVolume, volumeController, volumeDirectory, type Volume } from '../../controllers/volume';
import { fakeReconcileContext, startFakeManager, stopManagerAndRemoveDir } from '../helpers/controller-context';
import { FakeApi } from '../helpers/fake-client';

let tmp: string;
let paths: Paths;
let api: FakeApi;
let manager: Manager | undefined;
let savedUmask: number;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-volume-'));
  paths = resolvePaths({ root: path.join(tmp, 'root') });
  api = new FakeApi();
  // A restrictive umask proves the 0755 mode is set explicitly, not inherited.
  savedUmask = process.umask(0o077);
});

afterEach(async () => {
  process.umask(savedUmask);
  const started = manager;
  manager = undefined;
  await stopManagerAndRemoveDir(started, tmp);
});

const logger = createJsonLogger({ write: () => undefined });

async function startManager(): Promise<Manager> {
  manager = await startFakeManager(api, { paths, logger, controllers: [volumeController()], maxBackoffMs: 50 });
  return manager;
}

function directContext(): ReconcileContext {
  return fakeReconcileContext(api, { component: 'volume-controller', paths, logger });
}

function volume(name: string, spec: Volume['spec'] = {}): Volume {
  return { apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name, namespace: 'shop' }, spec };
}

function container(name: string, volumeName: string): ApiObject {
  return {
    apiVersion: 'd2p.dev/v1alpha1',
    kind: 'Container',
    metadata: { name, namespace: 'shop' },
    spec: { image: 'busybox', mounts: [{ type: 'volume', source: volumeName, target: '/data' }] },
  };
}

const peek = (name: string) => api.peek('Volume', 'shop', name) as Volume | undefined;
const eventReasons = () => (api.all('Event') as EventObject[]).map((e) => e.reason).sort();

describe('Volume controller', () => {
  it('creates <volumes>/<ns>/<name>/_data (0755), adds its finalizer and reports Ready', async () => {
    await api.for('Volume').create(volume('pgdata'));
    await startManager();
    await vi.waitFor(() => expect(peek('pgdata')?.status?.phase).toBe('Ready'));
    const data = path.join(paths.volumes, 'shop', 'pgdata', '_data');
    expect(fs.statSync(data).isDirectory()).toBe(true);
    expect(fs.statSync(data).mode & 0o777).toBe(0o755);
    const v = peek('pgdata')!;
    expect(v.metadata.finalizers).toEqual([VOLUME_FINALIZER]);
    expect(v.status).toMatchObject({ phase: 'Ready', mountpoint: data, observedGeneration: 1 });
    expect(getCondition(v.status, 'Ready')).toMatchObject({ status: 'True', reason: 'Provisioned', observedGeneration: 1 });
    expect(eventReasons()).toEqual(['Created']);
  });

  it('writes nothing on a reconcile with nothing to do', async () => {
    await api.for('Volume').create(volume('cache'));
    const ctx = directContext();
    await reconcileVolume('shop/cache', ctx);
    const rv = api.resourceVersion;
    const updates = api.callCount('Volume', 'update') + api.callCount('Volume', 'updateStatus');
    const eventWrites = api.callCount('Event', 'create') + api.callCount('Event', 'update');
    expect(updates).toBe(2); // finalizer, then status
    await reconcileVolume('shop/cache', ctx);
    expect(api.resourceVersion).toBe(rv);
    expect(api.callCount('Volume', 'update') + api.callCount('Volume', 'updateStatus')).toBe(updates);
    expect(api.callCount('Event', 'create') + api.callCount('Event', 'update')).toBe(eventWrites);
  });

  it('keeps existing data and mode when the directory already exists', async () => {
    const data = path.join(paths.volumes, 'shop', 'kept', '_data');
    fs.mkdirSync(data, { recursive: true });
    fs.chmodSync(data, 0o700);
    fs.writeFileSync(path.join(data, 'file'), 'x');
    await api.for('Volume').create(volume('kept'));
    await reconcileVolume('shop/kept', directContext());
    expect(fs.readFileSync(path.join(data, 'file'), 'utf8')).toBe('x');
    expect(fs.statSync(data).mode & 0o777).toBe(0o700);
    expect(peek('kept')?.status?.phase).toBe('Ready');
    expect(eventReasons()).toEqual([]);
  });

  it('on deletion removes the directory, then the finalizer, and the object is gone', async () => {
    await api.for('Volume').create(volume('tmp'));
    await startManager();
    await vi.waitFor(() => expect(peek('tmp')?.status?.phase).toBe('Ready'));
    const dir = path.join(paths.volumes, 'shop', 'tmp');
    fs.writeFileSync(path.join(dir, '_data', 'f'), 'data');
    await api.for('Volume').delete('shop', 'tmp');
    await vi.waitFor(() => expect(peek('tmp')).toBeUndefined());
    expect(fs.existsSync(dir)).toBe(false);
    expect(fs.existsSync(path.join(paths.volumes, 'shop'))).toBe(false);
    expect(eventReasons()).toEqual(['Created', 'Deleted']);
  });

  it('waits while a Container mounts the volume, and finishes once it is gone', async () => {
    await api.for('Volume').create(volume('shared'));
    await api.for('Container').create(container('web-1', 'shared'));
    await startManager();
    await vi.waitFor(() => expect(peek('shared')?.status?.phase).toBe('Ready'));
    await api.for('Volume').delete('shop', 'shared');
    await vi.waitFor(() => expect(eventReasons()).toContain('VolumeInUse'));
    const inUse = (api.all('Event') as EventObject[]).find((e) => e.reason === 'VolumeInUse')!;
    expect(inUse.message).toContain('web-1');
    expect(peek('shared')?.metadata.deletionTimestamp).toBeDefined();
    expect(fs.existsSync(path.join(paths.volumes, 'shop', 'shared', '_data'))).toBe(true);

    await api.for('Container').delete('shop', 'web-1');
    await vi.waitFor(() => expect(peek('shared')).toBeUndefined());
    expect(fs.existsSync(path.join(paths.volumes, 'shop', 'shared'))).toBe(false);
  });

  it('external volumes: never created; Failed with a reason while missing, Ready once the directory exists, never removed', async () => {
    await api.for('Volume').create(volume('legacy', { external: true }));
    const ctx = directContext();
    const result = await reconcileVolume('shop/legacy', ctx);
    expect(result).toMatchObject({ requeueAfter: expect.any(Number) });
    const data = path.join(paths.volumes, 'shop', 'legacy', '_data');
    expect(fs.existsSync(data)).toBe(false);
    let v = peek('legacy')!;
    expect(v.metadata.finalizers ?? []).toEqual([]);
    expect(v.status?.phase).toBe('Failed');
    expect(getCondition(v.status, 'Ready')).toMatchObject({ status: 'False', reason: 'ExternalVolumeNotFound' });
    expect(getCondition(v.status, 'Ready')!.message).toContain('legacy');
    expect(eventReasons()).toEqual(['ExternalVolumeNotFound']);

    fs.mkdirSync(data, { recursive: true });
    expect(await reconcileVolume('shop/legacy', ctx)).toBeUndefined();
    v = peek('legacy')!;
    expect(v.status).toMatchObject({ phase: 'Ready', mountpoint: data });

    await api.for('Volume').delete('shop', 'legacy');
    expect(peek('legacy')).toBeUndefined();
    expect(fs.existsSync(data)).toBe(true);
  });

  it('bind volumes (driverOpts type=none,o=bind) mount the device directory and never delete its content', async () => {
    const device = path.join(tmp, 'host-dir');
    fs.mkdirSync(device);
    fs.writeFileSync(path.join(device, 'keep'), 'me');
    await api.for('Volume').create(volume('bound', { driverOpts: { type: 'none', o: 'bind', device } }));
    await startManager();
    await vi.waitFor(() => expect(peek('bound')?.status).toMatchObject({ phase: 'Ready', mountpoint: device }));
    await api.for('Volume').delete('shop', 'bound');
    await vi.waitFor(() => expect(peek('bound')).toBeUndefined());
    expect(fs.readFileSync(path.join(device, 'keep'), 'utf8')).toBe('me');
  });

  it('reports an unsupported driver as a terminal spec error', async () => {
    await api.for('Volume').create(volume('nfs', { driver: 'rexray' }));
    await expect(reconcileVolume('shop/nfs', directContext())).rejects.toThrow(TerminalError);
    await expect(reconcileVolume('shop/nfs', directContext())).rejects.toThrow(/spec\.driver "rexray" is not supported/);
    await api.for('Volume').create(volume('tmpfs', { driverOpts: { type: 'tmpfs', device: 'tmpfs' } }));
    await expect(reconcileVolume('shop/tmpfs', directContext())).rejects.toThrow(/spec\.driverOpts .* are not supported/);
    await api.for('Volume').create(volume('rel', { driverOpts: { type: 'none', o: 'bind', device: 'relative/dir' } }));
    await expect(reconcileVolume('shop/rel', directContext())).rejects.toThrow(/spec\.driverOpts\.device must be an absolute path/);
  });

  it('shows a terminal spec error on the object through the manager', async () => {
    await api.for('Volume').create(volume('nfs', { driver: 'rexray' }));
    await startManager();
    await vi.waitFor(() =>
      expect(getCondition(peek('nfs')?.status, 'Ready')).toMatchObject({ status: 'False', reason: 'UnsupportedDriver' }),
    );
    expect(eventReasons()).toEqual(['UnsupportedDriver']);
  });

  it('never resolves a path outside the volumes directory', () => {
    for (const [ns, name] of [
      ['shop', '..'],
      ['shop', '../../etc'],
      ['..', 'x'],
      ['shop', 'a/b'],
      ['shop', '.hidden'],
      ['shop', ''],
    ]) {
      expect(() => volumeDirectory(paths, ns, name)).toThrow(TerminalError);
    }
    expect(volumeDirectory(paths, 'shop', 'my_vol.v2-x')).toEqual({
      dir: path.join(paths.volumes, 'shop', 'my_vol.v2-x'),
      data: path.join(paths.volumes, 'shop', 'my_vol.v2-x', '_data'),
    });
  });

  it('refuses to follow a symlink planted in the volumes directory', async () => {
    const elsewhere = path.join(tmp, 'elsewhere');
    fs.mkdirSync(elsewhere);
    fs.mkdirSync(paths.volumes, { recursive: true });
    fs.symlinkSync(elsewhere, path.join(paths.volumes, 'shop'));
    await api.for('Volume').create(volume('trap'));
    await expect(reconcileVolume('shop/trap', directContext())).rejects.toThrow(/is a symbolic link/);
    expect(fs.readdirSync(elsewhere)).toEqual([]);
  });

  it('does nothing for a volume that no longer exists', async () => {
    await expect(reconcileVolume('shop/ghost', directContext())).resolves.toBeUndefined();
    expect(api.calls.filter((c) => c.verb !== 'get')).toEqual([]);
  });
});
