// The Container reconciler against the in-memory API and a recording fake runtime: one
// reconcile at a time, checking the runtime calls made and the status written (DESIGN.md §10).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { EventObject } from '../../src/api/meta';
import type { Container, ContainerSpec, ContainerStatus, VolumeStatus } from '../../src/api/types';
import { resolvePaths, type Paths } from '../../src/config';
import type { ImageConfig } from '../../src/images/index';
import { ContainerNotFoundError, IncompleteBundleError, type ContainerConfig, type ContainerState, type ExecOptions, type ExecResult, type ExitStatus } from '../../src/runtime/index';
import { getCondition } from '../../controllers/conditions';
import { CONTAINER_FINALIZER, DESIRED_STATE_ANNOTATION, containerController, containerId } from '../../controllers/container';
import type { ContainerRuntime, LocalImage } from '../../controllers/container-host';
import { HealthProber, resolveHealthcheck } from '../../controllers/container-health';
import { resolveInRoot } from '../../controllers/container-mounts';
import { RestartBackoff, shouldRestart } from '../../controllers/container-restart';
import { TerminalError } from '../../controllers/errors';
import { createJsonLogger } from '../../controllers/logger';
import type { Controller, ReconcileContext, Result } from '../../controllers/manager';
import { fakeReconcileContext } from '../helpers/controller-context';
import { FakeApi } from '../helpers/fake-client';

const logger = createJsonLogger({ write: () => undefined });

interface FakeProcess {
  config: ContainerConfig;
  status: ContainerState['status'];
  pid?: number;
  shimPid?: number;
  exitCode?: number;
  startedAt?: string;
  finishedAt?: string;
  waiters: Array<() => void>;
}

/** Records every call; processes live and die only when the test says so. */
class FakeRuntime {
  readonly calls: string[] = [];
  readonly processes = new Map<string, FakeProcess>();
  /** Bundles a crash cut short during create: the real runtime's IncompleteBundleError. */
  readonly incomplete = new Set<string>();
  private nextPid = 1000;
  /** Set: every process started exits with this code at once, before start's caller goes on. */
  exitOnStart: number | undefined;
  /** Set: wait() learns of an exit this much later (the real one's pidfd, not yet polled). */
  exitNoticedAfterMs: number | undefined;

  constructor(private readonly clock: () => number) {}

  async create(config: ContainerConfig): Promise<ContainerState> {
    this.calls.push(`create ${config.id}`);
    if (this.incomplete.has(config.id)) throw new Error(`fake runtime: ${config.id} exists (half made)`);
    this.processes.set(config.id, { config, status: 'created', waiters: [] });
    return this.state(config.id);
  }

  async start(id: string): Promise<ContainerState> {
    this.calls.push(`start ${id}`);
    const p = this.get(id);
    if (p.status === 'running') throw new Error(`fake runtime: ${id} started twice`);
    Object.assign(p, { status: 'running', pid: this.nextPid++, shimPid: this.nextPid++, startedAt: new Date(this.clock()).toISOString() });
    delete p.exitCode;
    delete p.finishedAt;
    const state = await this.state(id);
    const exitCode = this.exitOnStart;
    if (exitCode !== undefined) queueMicrotask(() => this.die(id, exitCode));
    return state;
  }

  async stop(id: string): Promise<ContainerState> {
    this.calls.push(`stop ${id}`);
    if (this.get(id).status === 'running') this.die(id, 143);
    return this.state(id);
  }

  async pause(id: string): Promise<void> {
    this.calls.push(`pause ${id}`);
    this.get(id).status = 'paused';
  }

  async unpause(id: string): Promise<void> {
    this.calls.push(`unpause ${id}`);
    this.get(id).status = 'running';
  }

  async delete(id: string): Promise<void> {
    this.calls.push(`delete ${id}`);
    if (this.incomplete.delete(id)) return;
    this.get(id);
    this.processes.delete(id);
  }

  async state(id: string): Promise<ContainerState> {
    const p = this.get(id);
    return {
      id,
      status: p.status,
      pid: p.status === 'running' || p.status === 'paused' ? p.pid : undefined,
      shimPid: p.shimPid,
      exitCode: p.exitCode,
      startedAt: p.startedAt,
      finishedAt: p.finishedAt,
      oomKilled: false,
      bundle: `/fake/${id}`,
      logPath: `/fake/${id}/log`,
    };
  }

  wait(id: string): Promise<ExitStatus> {
    const p = this.get(id);
    const notice = (resolve: (s: ExitStatus) => void) => {
      const status = { exitCode: p.exitCode ?? 255, oomKilled: false };
      if (this.exitNoticedAfterMs === undefined) resolve(status);
      else setTimeout(() => resolve(status), this.exitNoticedAfterMs);
    };
    // As the real runtime's: a process already gone is reported at once.
    if (p.status === 'stopped') return new Promise(notice);
    return new Promise((resolve) => p.waiters.push(() => notice(resolve)));
  }

  async exec(id: string, _opts: ExecOptions): Promise<ExecResult> {
    this.calls.push(`exec ${id}`);
    return { exitCode: 0, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
  }

  /** The process ends (by itself or killed from outside). */
  die(id: string, exitCode: number): void {
    const p = this.get(id);
    Object.assign(p, { status: 'stopped', exitCode, finishedAt: new Date(this.clock()).toISOString() });
    for (const w of p.waiters.splice(0)) w();
  }

  /** A container some earlier daemon started: already running. */
  adopt(config: ContainerConfig, pid: number): void {
    this.processes.set(config.id, { config, status: 'running', pid, shimPid: pid - 1, startedAt: new Date(this.clock()).toISOString(), waiters: [] });
  }

  private get(id: string): FakeProcess {
    if (this.incomplete.has(id)) throw new IncompleteBundleError(id, `/fake/${id}`);
    const p = this.processes.get(id);
    if (!p) throw new ContainerNotFoundError(id);
    return p;
  }
}

const IMAGE_CONFIG: ImageConfig = {
  env: ['PATH=/bin'],
  cmd: ['sleep', '1000'],
  entrypoint: null,
  workingDir: '',
  user: '',
  exposedPorts: [],
  volumes: [],
  labels: {},
  os: 'linux',
  architecture: 'amd64',
};

let tmp: string;
let paths: Paths;
let api: FakeApi;
let clock: number;
let runtime: FakeRuntime;
let images: Map<string, LocalImage>;
let controller: Controller;
let abort: AbortController;

beforeEach(() => {
  enqueued = [];
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-container-'));
  paths = resolvePaths({ root: path.join(tmp, 'root') });
  api = new FakeApi();
  clock = Date.parse('2025-01-01T00:00:00Z');
  runtime = new FakeRuntime(() => clock);
  images = new Map([['busybox', { config: IMAGE_CONFIG, layerDirs: [path.join(tmp, 'layer')] }]]);
  abort = new AbortController();
  controller = containerController({
    runtime: () => runtime as unknown as ContainerRuntime,
    images: async () => ({ get: async (ref) => images.get(ref) }),
    imageMounter: () => ({ withImageRoot: (dirs, fn) => fn(dirs[0] as string) }),
    now: () => clock,
  });
});

afterEach(() => {
  abort.abort();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Keys the controller queued itself (a process exit), as the manager would reconcile them. */
let enqueued: string[] = [];

function context(): ReconcileContext {
  return fakeReconcileContext(api, { component: 'container-controller', paths, logger, signal: abort.signal, enqueue: (key) => enqueued.push(key) });
}

const KEY = 'shop/web-1';
const ID = containerId('shop', 'web-1');

async function createContainer(spec: Partial<ContainerSpec> = {}, annotations?: Record<string, string>): Promise<void> {
  await api.for('Container').create({
    apiVersion: 'd2p.dev/v1alpha1',
    kind: 'Container',
    metadata: { name: 'web-1', namespace: 'shop', ...(annotations ? { annotations } : {}) },
    spec: { image: 'busybox', ...spec },
  });
}

const reconcile = (): Promise<Result | void> => controller.reconcile(KEY, context());
const peek = () => api.peek('Container', 'shop', 'web-1') as Container | undefined;
const eventReasons = () => (api.all('Event') as EventObject[]).map((e) => e.reason).sort();
const starts = () => runtime.calls.filter((c) => c.startsWith('start')).length;

/** The process dies; waits until the exit watch has queued the key (the manager would then reconcile it). */
async function die(exitCode: number): Promise<void> {
  enqueued = [];
  runtime.die(ID, exitCode);
  await vi.waitFor(() => expect(enqueued).toContain(KEY));
}

/** Death, then reconciles until the container runs again; returns the requeue delays seen. */
async function dieAndRestart(exitCode: number): Promise<number[]> {
  await die(exitCode);
  const delays: number[] = [];
  for (;;) {
    const result = await reconcile();
    if (!result?.requeueAfter) return delays;
    delays.push(result.requeueAfter);
    clock += result.requeueAfter;
  }
}

describe('Container controller', () => {
  it('waits in Pending with ImagePulled=False while the image is not in the store', async () => {
    await createContainer({ image: 'redis:7' });
    const result = await reconcile();
    expect(result).toEqual({ requeueAfter: 2000 });
    expect(runtime.calls).toEqual([]);
    const c = peek()!;
    expect(c.status?.phase).toBe('Pending');
    expect(getCondition(c.status, 'ImagePulled')).toMatchObject({ status: 'False', reason: 'ImageNotPresent' });
    expect(getCondition(c.status, 'Ready')?.status).toBe('False');
    // An Image object for that ref in the namespace wakes the container up.
    const keys = (controller.watches ?? []).find((w) => w.kind === 'Image')!.map({
      apiVersion: 'd2p.dev/v1alpha1',
      kind: 'Image',
      metadata: { name: 'redis', namespace: 'shop' },
      spec: { ref: 'redis:7' },
    });
    expect(keys).toEqual([KEY]);
  });

  it('clears a bundle that a crash cut short during create, then creates and starts it', async () => {
    runtime.incomplete.add(ID);
    await createContainer();
    expect(await reconcile()).toBeUndefined();
    expect(runtime.calls).toEqual([`delete ${ID}`, `create ${ID}`, `start ${ID}`]);
    expect(peek()!.status).toMatchObject({ phase: 'Running' });
  });

  it('creates and starts the container: Running with its pid, finalizer first, events Created and Started', async () => {
    await createContainer({ env: [{ name: 'A', value: '1' }] });
    expect(await reconcile()).toBeUndefined();
    expect(runtime.calls).toEqual([`create ${ID}`, `start ${ID}`]);
    const c = peek()!;
    expect(c.metadata.finalizers).toEqual([CONTAINER_FINALIZER]);
    expect(c.status).toMatchObject({ phase: 'Running', pid: 1000, restartCount: 0, observedGeneration: 1, command: ['sleep', '1000'] });
    expect(getCondition(c.status, 'Ready')).toMatchObject({ status: 'True' });
    expect(getCondition(c.status, 'ImagePulled')).toMatchObject({ status: 'True' });
    expect(eventReasons()).toEqual(['Created', 'Started']);
    const config = runtime.processes.get(ID)!.config;
    expect(config.image).toMatchObject({ env: ['PATH=/bin'], cmd: ['sleep', '1000'] });
    expect(config.env).toEqual([{ name: 'A', value: '1' }]);
    expect(config.rootfs).toEqual({ lowerDirs: [path.join(tmp, 'layer')] });
    // A second reconcile with nothing to do neither calls the runtime nor writes.
    const rv = api.resourceVersion;
    await reconcile();
    expect(runtime.calls).toEqual([`create ${ID}`, `start ${ID}`]);
    expect(api.resourceVersion).toBe(rv);
  });

  it('restart policy no: an exit leaves it Exited with its code, never started again', async () => {
    await createContainer();
    await reconcile();
    await die(3);
    expect(await reconcile()).toBeUndefined();
    await reconcile();
    expect(starts()).toBe(1);
    expect(peek()!.status).toMatchObject({ phase: 'Exited', exitCode: 3, restartCount: 0 });
    expect(peek()!.status?.pid).toBeUndefined();
    expect(eventReasons()).toContain('Died');
  });

  it('autoRemove (run --rm): the exit is written with its code, then the container deletes itself and its finalizer removes the rest', async () => {
    await createContainer({ autoRemove: true });
    await reconcile();
    await die(4);
    await reconcile();
    expect(peek()!.metadata.deletionTimestamp).toBeDefined();
    expect(peek()!.status).toMatchObject({ phase: 'Exited', exitCode: 4 });
    expect(eventReasons()).toContain('Died');
    await reconcile();
    expect(peek()).toBeUndefined();
    expect(runtime.calls).toEqual([`create ${ID}`, `start ${ID}`, `delete ${ID}`]);
  });

  it('autoRemove: when its deletion fails, the next reconcile deletes it again, never starts it anew', async () => {
    await createContainer({ autoRemove: true });
    await reconcile();
    await die(0);
    api.failNext('Container', 'delete', new Error('store unavailable'));
    await expect(reconcile()).rejects.toThrow('store unavailable');
    // What it used went beside the deletion that failed: no runtime container is left.
    expect(runtime.processes.has(ID)).toBe(false);
    expect(peek()!.status?.phase).toBe('Exited');
    await reconcile();
    expect(peek()!.metadata.deletionTimestamp).toBeDefined();
    await reconcile();
    expect(peek()).toBeUndefined();
    expect(runtime.calls.filter((c) => c.startsWith('create'))).toHaveLength(1);
    expect(starts()).toBe(1);
  });

  it('autoRemove: a container the user stops is deleted too, as docker stop deletes a --rm container', async () => {
    await createContainer({ autoRemove: true });
    await reconcile();
    const c = peek()!;
    await api.for('Container').update({ ...c, metadata: { ...c.metadata, annotations: { [DESIRED_STATE_ANNOTATION]: 'stopped' } } });
    await reconcile();
    expect(getCondition(peek()!.status, 'Ready')?.reason).toBe('Stopped');
    expect(peek()!.metadata.deletionTimestamp).toBeDefined();
    await reconcile();
    expect(peek()).toBeUndefined();
    expect(runtime.calls).toEqual([`create ${ID}`, `start ${ID}`, `stop ${ID}`, `delete ${ID}`]);
  });

  it('a process gone before it is recorded as running gets its exit written instead: never Running, one status write fewer', async () => {
    runtime.exitOnStart = 5;
    await createContainer();
    const before = api.calls.length;
    await reconcile();
    expect(peek()!.status).toMatchObject({ phase: 'Exited', exitCode: 5 });
    expect(peek()!.status?.startedAt).toBeDefined();
    const statusWrites = api.calls.slice(before).filter((c) => c.kind === 'Container' && c.verb === 'updateStatus');
    expect(statusWrites).toHaveLength(2); // Creating, then Exited
    expect(eventReasons()).toEqual(expect.arrayContaining(['Created', 'Started', 'Died']));
    expect(starts()).toBe(1);
  });

  it('a process gone before it is recorded as running is written Exited even before its exit watch fires', async () => {
    runtime.exitOnStart = 0;
    runtime.exitNoticedAfterMs = 200;
    await createContainer();
    const before = api.calls.length;
    await reconcile();
    expect(peek()!.status).toMatchObject({ phase: 'Exited', exitCode: 0 });
    const statusWrites = api.calls.slice(before).filter((c) => c.kind === 'Container' && c.verb === 'updateStatus');
    expect(statusWrites).toHaveLength(2); // Creating, then Exited: the runtime's record was read again
  });

  it('a health change is written with the Ready it decides, without waiting for a reconcile', async () => {
    await createContainer({ healthcheck: { test: ['CMD', 'true'], interval: '10ms', startInterval: '10ms' } });
    await reconcile();
    expect(getCondition(peek()!.status, 'Ready')).toMatchObject({ status: 'False', reason: 'HealthcheckStarting' });
    await vi.waitFor(() => {
      expect(peek()!.status?.health).toBe('healthy');
      expect(getCondition(peek()!.status, 'Ready')).toMatchObject({ status: 'True', reason: 'Running' });
    });
  });

  it('on-failure:2 restarts twice, then leaves it Exited', async () => {
    await createContainer({ restartPolicy: 'on-failure', maxRetries: 2 });
    await reconcile();
    expect(await dieAndRestart(1)).toEqual([100]);
    expect(peek()!.status).toMatchObject({ phase: 'Running', restartCount: 1 });
    expect(await dieAndRestart(1)).toEqual([200]);
    expect(peek()!.status).toMatchObject({ phase: 'Running', restartCount: 2 });
    expect(await dieAndRestart(1)).toEqual([]);
    expect(peek()!.status).toMatchObject({ phase: 'Exited', exitCode: 1, restartCount: 2 });
    expect(starts()).toBe(3);
  });

  it('on-failure does not restart a clean exit', async () => {
    await createContainer({ restartPolicy: 'on-failure' });
    await reconcile();
    await die(0);
    await reconcile();
    expect(starts()).toBe(1);
    expect(peek()!.status?.phase).toBe('Exited');
  });

  it('always: back-off 100, 200, 400 ms shown as CrashLoopBackOff, reset after 10 s of running', async () => {
    await createContainer({ restartPolicy: 'always' });
    await reconcile();
    await die(0);
    const first = await reconcile();
    expect(first).toEqual({ requeueAfter: 100 });
    expect(peek()!.status?.phase).toBe('CrashLoopBackOff');
    expect(peek()!.status?.message).toMatch(/back-off 100ms .*next start at 2025-01-01T00:00:00\.100Z/);
    expect(eventReasons()).toContain('BackOff');
    // Reconciling again during the wait does not grow the delay.
    clock += 40;
    expect(await reconcile()).toEqual({ requeueAfter: 60 });
    clock += 60;
    expect(await reconcile()).toBeUndefined();
    expect(peek()!.status).toMatchObject({ phase: 'Running', restartCount: 1 });
    expect(await dieAndRestart(0)).toEqual([200]);
    expect(await dieAndRestart(0)).toEqual([400]);
    expect(await dieAndRestart(0)).toEqual([800]);
    clock += 10_000;
    expect(await dieAndRestart(0)).toEqual([100]);
    expect(peek()!.status?.restartCount).toBe(5);
  });

  it('the back-off stops growing at one minute', () => {
    const backoff = new RestartBackoff();
    const delays = Array.from({ length: 12 }, (_, i) => backoff.plan('k', `death-${i}`, 1, 0).delayMs);
    expect(delays.slice(0, 4)).toEqual([100, 200, 400, 800]);
    expect(delays.at(-1)).toBe(60_000);
    expect(shouldRestart('unless-stopped', undefined, { exitCode: 0, restartCount: 9 })).toBe(true);
    expect(shouldRestart('on-failure', 0, { exitCode: 2, restartCount: 50 })).toBe(true);
  });

  it('a spec change stops and recreates; a label change does nothing', async () => {
    await createContainer();
    await reconcile();
    const c = peek()!;
    await api.for('Container').update({ ...c, metadata: { ...c.metadata, labels: { tier: 'web' } } });
    await reconcile();
    expect(runtime.calls).toEqual([`create ${ID}`, `start ${ID}`]);

    const labelled = peek()!;
    await api.for('Container').update({ ...labelled, spec: { ...labelled.spec!, command: ['sleep', '5'] } });
    await reconcile();
    expect(runtime.calls).toEqual([`create ${ID}`, `start ${ID}`, `stop ${ID}`, `delete ${ID}`, `create ${ID}`, `start ${ID}`]);
    expect(runtime.processes.get(ID)!.config.command).toEqual(['sleep', '5']);
    expect(peek()!.status).toMatchObject({ phase: 'Running', observedGeneration: 2, restartCount: 0 });
    expect(eventReasons()).toContain('Killing');
  });

  it('deletion stops, deletes the runtime container and anonymous volumes, then drops the finalizer', async () => {
    await createContainer({ mounts: [{ type: 'volume', target: '/cache' }] });
    await reconcile();
    const anonymous = path.join(paths.containers, `${ID}.volumes`);
    expect(fs.readdirSync(anonymous)).toHaveLength(1);
    await api.for('Container').delete('shop', 'web-1');
    expect(peek()?.metadata.deletionTimestamp).toBeDefined();
    await reconcile();
    expect(runtime.calls.slice(-2)).toEqual([`stop ${ID}`, `delete ${ID}`]);
    expect(peek()).toBeUndefined();
    expect(fs.existsSync(anonymous)).toBe(false);
    expect(eventReasons()).toContain('Killing');
  });

  it('adopts a container the runtime already runs: no second create or start', async () => {
    await createContainer();
    await reconcile();
    // A new daemon: a new controller, the same runtime state.
    const pid = runtime.processes.get(ID)!.pid!;
    runtime.calls.length = 0;
    controller = containerController({
      runtime: () => runtime as unknown as ContainerRuntime,
      images: async () => ({ get: async (ref) => images.get(ref) }),
      now: () => clock,
    });
    await reconcile();
    expect(runtime.calls).toEqual([]);
    expect(peek()!.status).toMatchObject({ phase: 'Running', pid });
  });

  it('adopts a running container it never saw, keeping its pid', async () => {
    await createContainer();
    const c = peek()!;
    await api.for('Container').updateStatus({ ...c, status: { phase: 'Running', observedGeneration: 1 } as ContainerStatus });
    runtime.adopt({ id: ID, rootfs: { path: '/' } }, 4242);
    await reconcile();
    expect(runtime.calls).toEqual([]);
    expect(peek()!.status).toMatchObject({ phase: 'Running', pid: 4242 });
  });

  it('a container killed from outside is noticed through the exit watch, which queues its key', async () => {
    await createContainer({ restartPolicy: 'always' });
    await reconcile();
    await die(137);
    expect(await reconcile()).toEqual({ requeueAfter: 100 });
  });

  it('desired-state stopped stops it and keeps it stopped whatever the policy; running starts it again', async () => {
    await createContainer({ restartPolicy: 'always' });
    await reconcile();
    let c = peek()!;
    await api.for('Container').update({ ...c, metadata: { ...c.metadata, annotations: { [DESIRED_STATE_ANNOTATION]: 'stopped' } } });
    await reconcile();
    await reconcile();
    expect(runtime.calls).toEqual([`create ${ID}`, `start ${ID}`, `stop ${ID}`]);
    expect(peek()!.status?.phase).toBe('Exited');
    expect(getCondition(peek()!.status, 'Ready')?.reason).toBe('Stopped');

    c = peek()!;
    await api.for('Container').update({ ...c, metadata: { ...c.metadata, annotations: { [DESIRED_STATE_ANNOTATION]: 'running' } } });
    await reconcile();
    expect(starts()).toBe(2);
    expect(peek()!.status?.phase).toBe('Running');
  });

  it('desired-state paused pauses, and unpauses when it goes back to running', async () => {
    await createContainer({}, { [DESIRED_STATE_ANNOTATION]: 'paused' });
    await reconcile();
    expect(runtime.calls).toEqual([`create ${ID}`, `start ${ID}`, `pause ${ID}`]);
    expect(peek()!.status?.phase).toBe('Paused');
    const c = peek()!;
    await api.for('Container').update({ ...c, metadata: { ...c.metadata, annotations: {} } });
    await reconcile();
    expect(runtime.calls.at(-1)).toBe(`unpause ${ID}`);
    expect(peek()!.status?.phase).toBe('Running');
  });

  it('waits for a named volume until the Volume controller gives it a mountpoint, then copies the image content into it', async () => {
    const layer = path.join(tmp, 'layer');
    fs.mkdirSync(path.join(layer, 'srv', 'www'), { recursive: true });
    fs.writeFileSync(path.join(layer, 'srv', 'www', 'index.html'), 'hello');
    fs.symlinkSync('/etc/shadow', path.join(layer, 'srv', 'www', 'link'));
    await createContainer({ mounts: [{ type: 'volume', source: 'site', target: '/srv/www' }] });
    expect(await reconcile()).toEqual({ requeueAfter: 1000 });
    expect(getCondition(peek()!.status, 'VolumesReady')).toMatchObject({ status: 'False', reason: 'VolumeNotReady' });
    expect(runtime.calls).toEqual([]);

    const data = path.join(tmp, 'vol');
    fs.mkdirSync(data);
    await api.for('Volume').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name: 'site', namespace: 'shop' }, spec: {} });
    const v = api.peek('Volume', 'shop', 'site')!;
    await api.for('Volume').updateStatus({ ...v, status: { phase: 'Ready', mountpoint: data } as VolumeStatus });
    await reconcile();
    expect(fs.readFileSync(path.join(data, 'index.html'), 'utf8')).toBe('hello');
    expect(fs.readlinkSync(path.join(data, 'link'))).toBe('/etc/shadow');
    expect(runtime.processes.get(ID)!.config.mounts).toEqual([{ type: 'volume', source: data, target: '/srv/www' }]);
  });

  it('spec problems are terminal errors naming the field', async () => {
    await createContainer({ mounts: [{ type: 'bind', source: 'relative', target: '/x' }] });
    await expect(reconcile()).rejects.toThrow(TerminalError);
    await expect(reconcile()).rejects.toThrow(/spec\.mounts\[0\]\.source "relative" must be an absolute host path/);
  });
});

describe('healthchecks', () => {
  it('resolves Docker defaults, the image check and CMD-SHELL', () => {
    expect(resolveHealthcheck({ image: 'x', healthcheck: { test: ['CMD-SHELL', 'true'] } }, undefined)).toEqual({
      args: ['/bin/sh', '-c', 'true'],
      intervalMs: 30_000,
      timeoutMs: 30_000,
      retries: 3,
      startPeriodMs: 0,
      startIntervalMs: 5_000,
    });
    const image = { test: ['CMD', 'check'], interval: 2_000_000_000, retries: 5 };
    expect(resolveHealthcheck({ image: 'x' }, image)).toMatchObject({ args: ['check'], intervalMs: 2000, retries: 5 });
    expect(resolveHealthcheck({ image: 'x', healthcheck: { test: ['NONE'] } }, image)).toBeUndefined();
    expect(resolveHealthcheck({ image: 'x', healthcheck: { test: ['CMD', 'a'], disable: true } }, image)).toBeUndefined();
    expect(() => resolveHealthcheck({ image: 'x', healthcheck: { test: ['CMD', 'a'], interval: 'soon' } }, undefined)).toThrow(/healthcheck\.interval/);
  });

  it('goes healthy on a success and unhealthy after `retries` failures; stops cleanly', async () => {
    let exitCode = 0;
    const changes: string[] = [];
    const prober = new HealthProber({
      exec: async () => ({ exitCode, stdout: Buffer.from('out'), stderr: Buffer.alloc(0) }),
      onChange: (c) => changes.push(c.health),
    });
    const check = { args: ['x'], intervalMs: 5, timeoutMs: 1000, retries: 2, startPeriodMs: 0, startIntervalMs: 5 };
    try {
      prober.ensure('k', 'id', 'one', check, Date.now());
      await vi.waitFor(() => expect(changes).toEqual(['healthy']));
      exitCode = 1;
      await vi.waitFor(() => expect(changes).toEqual(['healthy', 'unhealthy']));
      expect(prober.health('k')).toBe('unhealthy');
    } finally {
      prober.stopAll();
    }
    expect(prober.has('k')).toBe(false);
  });
});

describe('resolveInRoot', () => {
  it('follows symlinks inside the root and never above it', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-root-'));
    try {
      fs.mkdirSync(path.join(root, 'real', 'data'), { recursive: true });
      fs.symlinkSync('/real', path.join(root, 'abs'));
      fs.symlinkSync('../../../../real', path.join(root, 'up'));
      expect(await resolveInRoot(root, '/abs/data')).toBe(path.join(root, 'real', 'data'));
      expect(await resolveInRoot(root, '/up/data')).toBe(path.join(root, 'real', 'data'));
      expect(await resolveInRoot(root, '/../../etc')).toBeUndefined();
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
