// The Image controller against the fake API and a real ImageStore in a temp dir. "Pulls"
// import small OCI layouts generated here (hack/test-images/lib.js), so every status field
// comes from a real stored image without a registry; pull errors are injected.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EventObject } from '../../src/api/meta';
import type { Image } from '../../src/api/types';
import { validateObject } from '../../src/api/validate';
import { resolvePaths, type Paths } from '../../src/config';
import { ImageError, ImageStore, importOciLayout, type ImageConfig, type PullOptions, type StoredImage } from '../../src/images/index';
import { getCondition } from '../../controllers/conditions';
import { TerminalError } from '../../controllers/errors';
import {
  NEVER_PULL_RECHECK_MS,
  imageConfigStatus,
  imageController,
  reconcileImage,
  registryAuthFile,
  type LocalImages,
} from '../../controllers/image';
import { createJsonLogger } from '../../controllers/logger';
import type { Manager, ReconcileContext } from '../../controllers/manager';
import { fakeReconcileContext, startFakeManager, stopManagerAndRemoveDir } from '../helpers/controller-context';
import { FakeApi } from '../helpers/fake-client';
import { fixtures } from '../helpers/test-image';

const REF = 'registry.test/shop/web:1.0';
const logger = createJsonLogger({ write: () => undefined });

let tmp: string;
let paths: Paths;
let api: FakeApi;
let store: ImageStore;
let registry: LayoutRegistry;
let manager: Manager | undefined;

/** A registry stand-in: pull(ref) imports the OCI layout the test made for ref. */
class LayoutRegistry implements LocalImages {
  readonly pulls: { ref: string; opts: PullOptions }[] = [];
  private readonly layouts = new Map<string, string>();
  private failures: Error[] = [];

  constructor(private readonly images: ImageStore) {}

  /** What a pull of `ref` now gets: a layout with one image, named `ref`. */
  serve(ref: string, content: string, opts: object = {}): { digest: string; layers: { digest: string; size: number; diffID: string; mediaType: string }[]; configDigest: string } {
    const dir = fs.mkdtempSync(path.join(tmp, 'layout-'));
    const layers = [
      fixtures.tarArchive([{ path: 'etc/', type: 'dir' }, { path: 'etc/os-release', type: 'file', content: 'ID=test\n' }]),
      fixtures.tarArchive([{ path: 'srv/', type: 'dir' }, { path: 'srv/content', type: 'file', content }]),
    ];
    const desc = fixtures.addImage(dir, layers, opts);
    fixtures.writeLayoutIndex(dir, { [ref]: desc });
    this.layouts.set(ref, dir);
    return desc;
  }

  /** The layout a pull of `ref` imports (for loading it into the store directly). */
  layoutFor(ref: string): string {
    const dir = this.layouts.get(ref);
    if (!dir) throw new Error(`no layout served for ${ref}`);
    return dir;
  }

  failNext(error: Error, times = 1): void {
    for (let i = 0; i < times; i++) this.failures.push(error);
  }

  get(query: string): Promise<StoredImage | undefined> {
    return this.images.get(query);
  }

  async pull(ref: string, opts: PullOptions): Promise<StoredImage> {
    this.pulls.push({ ref, opts });
    const failure = this.failures.shift();
    if (failure) throw failure;
    const dir = this.layouts.get(ref);
    if (!dir) throw new ImageError('D2P_IMAGE_NOT_FOUND', `registry.test: manifest unknown: ${ref}`, { reference: ref, status: 404 });
    const [image] = await importOciLayout(this.images, dir);
    if (!image) throw new Error(`layout ${dir} held no image`);
    return image;
  }
}

beforeEach(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-image-ctl-'));
  paths = resolvePaths({ root: path.join(tmp, 'root') });
  api = new FakeApi();
  store = await ImageStore.open(paths.images);
  registry = new LayoutRegistry(store);
});

afterEach(async () => {
  const started = manager;
  manager = undefined;
  await stopManagerAndRemoveDir(started, tmp);
});

function context(): ReconcileContext {
  return fakeReconcileContext(api, { component: 'image-controller', paths, logger });
}

async function createImage(spec: Image['spec'], name = 'web'): Promise<Image> {
  return (await api.for('Image').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Image', metadata: { name, namespace: 'shop' }, spec } as Image)) as Image;
}

async function updateSpec(name: string, spec: Image['spec']): Promise<void> {
  const current = peek(name);
  await api.for('Image').update({ ...current, spec });
}

const peek = (name = 'web') => api.peek('Image', 'shop', name) as Image;
const reconcile = (name = 'web') => reconcileImage(`shop/${name}`, context(), registry);
const events = () => (api.all('Event') as EventObject[]).sort((a, b) => a.firstTimestamp.localeCompare(b.firstTimestamp));
const eventReasons = () => events().map((e) => e.reason).sort();

describe('Image controller: pull policies', () => {
  it('IfNotPresent pulls an absent image once and records everything about it', async () => {
    const served = registry.serve(REF, 'v1', {
      config: {
        Env: ['PATH=/bin', 'MODE=prod'],
        Entrypoint: ['/bin/web'],
        Cmd: ['--port', '8080'],
        WorkingDir: '/srv',
        User: '1000:1000',
        ExposedPorts: { '8080/tcp': {}, '53/udp': {} },
        Volumes: { '/data': {} },
        Labels: { 'org.opencontainers.image.title': 'web' },
        StopSignal: 'SIGQUIT',
        Healthcheck: { Test: ['CMD', 'wget', '-q', 'localhost:8080'], Interval: 30e9, Timeout: 5e9, StartPeriod: 0, Retries: 3 },
      },
    });
    await createImage({ ref: REF });
    expect(await reconcile()).toBeUndefined();

    expect(registry.pulls.map((p) => p.ref)).toEqual([REF]);
    expect(registry.pulls[0]?.opts.authFile).toBe(path.join(paths.root, 'auth.json'));
    expect(registry.pulls[0]?.opts.platform).toBeUndefined();
    const status = peek().status!;
    expect(status.phase).toBe('Ready');
    expect(status.observedGeneration).toBe(1);
    expect(status.digest).toBe(served.digest);
    expect(status.layers).toEqual(served.layers.map((l) => ({ digest: l.digest, size: l.size, diffID: l.diffID, mediaType: l.mediaType })));
    const configSize = fs.statSync(store.blobPath(served.configDigest)).size;
    expect(status.size).toBe(served.layers.reduce((sum, l) => sum + l.size, configSize));
    expect(status.config).toEqual({
      env: ['PATH=/bin', 'MODE=prod'],
      entrypoint: ['/bin/web'],
      cmd: ['--port', '8080'],
      workingDir: '/srv',
      user: '1000:1000',
      exposedPorts: ['8080/tcp', '53/udp'],
      volumes: ['/data'],
      labels: { 'org.opencontainers.image.title': 'web' },
      stopSignal: 'SIGQUIT',
      // StartPeriod 0 means "inherit" in Docker's image config: not shown as "0s".
      healthcheck: { test: ['CMD', 'wget', '-q', 'localhost:8080'], interval: '30s', timeout: '5s', retries: 3 },
    });
    expect(getCondition(status, 'Ready')).toMatchObject({ status: 'True', observedGeneration: 1 });
    expect(getCondition(status, 'Pulled')).toMatchObject({ status: 'True', reason: 'Pulled', observedGeneration: 1 });
    // The API server would store it: the object passes crd-schemas/image.json.
    expect(() => validateObject(peek())).not.toThrow();

    const [pulling, pulled] = events();
    expect(pulling).toMatchObject({ type: 'Normal', reason: 'Pulling', message: `Pulling image "${REF}"` });
    expect(pulled?.reason).toBe('Pulled');
    expect(pulled?.message).toMatch(new RegExp(`^Successfully pulled image "${REF}" \\(${served.digest}\\) in [0-9.]+(ms|s|µs)$`));
  });

  it('IfNotPresent does not pull again, nor rewrite status, on later reconciles', async () => {
    registry.serve(REF, 'v1');
    await createImage({ ref: REF, pullPolicy: 'IfNotPresent' });
    await reconcile();
    const statusWrites = api.callCount('Image', 'updateStatus');
    const rv = peek().metadata.resourceVersion;
    await reconcile();
    await reconcile();
    expect(registry.pulls).toHaveLength(1);
    expect(api.callCount('Image', 'updateStatus')).toBe(statusWrites);
    expect(peek().metadata.resourceVersion).toBe(rv);
  });

  it('IfNotPresent uses an image already in the store without pulling', async () => {
    const served = registry.serve(REF, 'loaded');
    await importOciLayout(store, registry.layoutFor(REF));
    await createImage({ ref: REF });
    await reconcile();
    expect(registry.pulls).toHaveLength(0);
    expect(peek().status).toMatchObject({ phase: 'Ready', digest: served.digest });
    expect(getCondition(peek().status, 'Pulled')).toMatchObject({ status: 'True', reason: 'AlreadyPresent' });
  });

  it('Always pulls once per generation, not on every resync, and follows what the registry serves', async () => {
    const first = registry.serve(REF, 'v1');
    await createImage({ ref: REF, pullPolicy: 'Always' });
    await reconcile();
    await reconcile();
    expect(registry.pulls).toHaveLength(1);
    expect(peek().status?.digest).toBe(first.digest);

    const second = registry.serve(REF, 'v2');
    await updateSpec('web', { ref: REF, pullPolicy: 'Always', platform: 'linux/amd64' });
    expect(peek().metadata.generation).toBe(2);
    await reconcile();
    await reconcile();
    expect(registry.pulls).toHaveLength(2);
    expect(registry.pulls[1]?.opts.platform).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(peek().status).toMatchObject({ phase: 'Ready', digest: second.digest, observedGeneration: 2 });
    expect(getCondition(peek().status, 'Pulled')).toMatchObject({ status: 'True', reason: 'Pulled', observedGeneration: 2 });
  });

  it('Always pulls again when the image was removed from the store behind its back', async () => {
    registry.serve(REF, 'v1');
    await createImage({ ref: REF, pullPolicy: 'Always' });
    await reconcile();
    await store.remove(REF);
    await reconcile();
    expect(registry.pulls).toHaveLength(2);
    expect(peek().status?.phase).toBe('Ready');
  });

  it('Never fails with ErrImageNeverPull while absent, polls slowly, and becomes Ready once the image is loaded', async () => {
    registry.serve(REF, 'v1');
    await createImage({ ref: REF, pullPolicy: 'Never' });
    expect(await reconcile()).toEqual({ requeueAfter: NEVER_PULL_RECHECK_MS });
    expect(registry.pulls).toHaveLength(0);
    const failed = peek().status!;
    expect(failed.phase).toBe('Failed');
    expect(failed.digest).toBeUndefined();
    expect(getCondition(failed, 'Pulled')).toMatchObject({ status: 'False', reason: 'ErrImageNeverPull' });
    expect(getCondition(failed, 'Ready')).toMatchObject({ status: 'False', reason: 'ErrImageNeverPull' });
    expect(eventReasons()).toEqual(['ErrImageNeverPull']);
    // The same state again records no second event and writes nothing.
    const writes = api.callCount('Image', 'updateStatus');
    await reconcile();
    expect(api.callCount('Image', 'updateStatus')).toBe(writes);
    expect(events()[0]?.count).toBe(1);

    await importOciLayout(store, registry.layoutFor(REF));
    expect(await reconcile()).toBeUndefined();
    expect(registry.pulls).toHaveLength(0);
    expect(peek().status?.phase).toBe('Ready');
    expect(getCondition(peek().status, 'Pulled')).toMatchObject({ status: 'True', reason: 'AlreadyPresent' });
  });

  it('an image present for another platform than spec.platform is not used', async () => {
    registry.serve(REF, 'amd64');
    await importOciLayout(store, registry.layoutFor(REF));
    await createImage({ ref: REF, platform: 'linux/arm64' });
    // The "registry" has only amd64 too: the pull brings the wrong platform, which is an error.
    await expect(reconcile()).rejects.toThrow(/pulled for platform linux\/amd64, but spec\.platform is linux\/arm64/);
    expect(registry.pulls).toHaveLength(1);
    expect(peek().status?.phase).toBe('Failed');

    registry.serve(REF, 'arm64', { platform: { os: 'linux', architecture: 'arm64' } });
    await reconcile();
    expect(peek().status?.phase).toBe('Ready');
  });
});

describe('Image controller: failures', () => {
  it('a pull error is recorded (status, Pulled=False ErrImagePull, Failed event) and thrown for a retry', async () => {
    const error = new ImageError('D2P_IMAGE_UNAUTHORIZED', 'registry.test: UNAUTHORIZED: authentication required', { registry: 'registry.test', status: 401 });
    registry.failNext(error);
    await createImage({ ref: REF });
    await expect(reconcile()).rejects.toBe(error);
    const status = peek().status!;
    expect(status.phase).toBe('Failed');
    expect(getCondition(status, 'Pulled')).toMatchObject({ status: 'False', reason: 'ErrImagePull' });
    expect(getCondition(status, 'Pulled')?.message).toContain('UNAUTHORIZED: authentication required');
    const failed = events().find((e) => e.reason === 'Failed');
    expect(failed).toMatchObject({ type: 'Warning', message: `Failed to pull image "${REF}": registry.test: UNAUTHORIZED: authentication required` });
  });

  it('through the manager, failed pulls are retried with back-off until one succeeds', async () => {
    registry.serve(REF, 'v1');
    registry.failNext(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5000'), { code: 'ECONNREFUSED' }), 2);
    manager = await startFakeManager(api, { paths, logger, controllers: [imageController({ openImages: async () => registry })], maxBackoffMs: 20 });
    await createImage({ ref: REF });
    await waitFor(() => peek().status?.phase === 'Ready');
    expect(registry.pulls).toHaveLength(3);
    expect(getCondition(peek().status, 'Ready')?.status).toBe('True');
  });

  it('a reference that cannot parse is a TerminalError, recorded as InvalidImageName, with no pull', async () => {
    await createImage({ ref: 'Shop/WEB:1' });
    const error = await reconcile().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TerminalError);
    expect((error as TerminalError).reason).toBe('InvalidImageName');
    expect((error as TerminalError).message).toMatch(/^image "shop\/web": spec\.ref: invalid reference format "Shop\/WEB:1"/);
    expect(registry.pulls).toHaveLength(0);
    expect(peek().status?.phase).toBe('Failed');
    expect(getCondition(peek().status, 'Pulled')).toMatchObject({ status: 'False', reason: 'InvalidImageName' });
  });

  it('a platform that cannot parse is a TerminalError too', async () => {
    await createImage({ ref: REF, platform: 'amd64' });
    await expect(reconcile()).rejects.toMatchObject({ reason: 'InvalidPlatform' });
    expect(registry.pulls).toHaveLength(0);
  });

  it('an Image that is gone, or being deleted, is left alone', async () => {
    registry.serve(REF, 'v1');
    expect(await reconcile('missing')).toBeUndefined();
    await createImage({ ref: REF });
    await api.for('Image').update({ ...peek(), metadata: { ...peek().metadata, finalizers: ['test/hold'] } });
    await api.for('Image').delete('shop', 'web');
    await reconcile();
    expect(registry.pulls).toHaveLength(0);
    expect(peek().status).toBeUndefined();
  });
});

describe('imageConfigStatus', () => {
  const base: ImageConfig = { env: [], cmd: null, entrypoint: null, workingDir: '', user: '', exposedPorts: [], volumes: [], labels: {}, os: 'linux', architecture: 'amd64' };

  it('leaves out what the image does not set', () => {
    expect(imageConfigStatus(base)).toEqual({ env: [] });
  });

  it('keeps an explicitly empty Cmd, drops ports the schema cannot hold, and turns nanoseconds into durations', () => {
    const status = imageConfigStatus({
      ...base,
      cmd: [],
      exposedPorts: ['80/tcp', '8080', 'bogus/port'],
      healthcheck: { test: ['CMD-SHELL', 'true'], interval: 1_500_000_000, startInterval: 500_000_000, retries: 0 },
    });
    expect(status).toEqual({ env: [], cmd: [], exposedPorts: ['80/tcp', '8080'], healthcheck: { test: ['CMD-SHELL', 'true'], interval: '1.5s', startInterval: '500ms' } });
  });

  it('the credentials file lives in the state root', () => {
    expect(registryAuthFile(paths)).toBe(path.join(paths.root, 'auth.json'));
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
