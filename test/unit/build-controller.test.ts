// The Build controller against the fake API, with a recording fake builder and a real
// ImageStore (an image "built" is one imported from a generated OCI layout).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EventObject } from '../../src/api/meta';
import type { Build } from '../../src/api/types';
import { resolvePaths, type Paths } from '../../src/config';
import { BuildError, type BuildDeps, type BuildOptions, type BuildResult } from '../../src/build/builder';
import { ImageStore, importOciLayout } from '../../src/images/index';
import { getCondition } from '../../controllers/conditions';
import { TerminalError } from '../../controllers/errors';
import { reconcileBuild } from '../../controllers/build';
import { createJsonLogger } from '../../controllers/logger';
import type { ReconcileContext } from '../../controllers/manager';
import { fakeReconcileContext } from '../helpers/controller-context';
import { FakeApi } from '../helpers/fake-client';
import { fixtures } from '../helpers/test-image';

const TAG = 'docker.io/shop/web:latest';
const logger = createJsonLogger({ write: () => undefined });
let tmp: string;
let paths: Paths;
let api: FakeApi;
let deps: BuildDeps;

/** A builder that "builds" by importing a one-layer image tagged as asked, or fails as told. */
class FakeBuilder {
  readonly calls: BuildOptions[] = [];
  failWith: Error | undefined;
  private n = 0;

  readonly build = async (opts: BuildOptions, d: BuildDeps): Promise<BuildResult> => {
    this.calls.push(opts);
    if (this.failWith) throw this.failWith;
    const layout = fs.mkdtempSync(path.join(tmp, 'layout-'));
    const desc = fixtures.addImage(layout, [fixtures.tarArchive([{ path: 'n', type: 'file', content: String(this.n++) }])]);
    fixtures.writeLayoutIndex(layout, { [opts.tags?.[0] ?? TAG]: desc });
    const [image] = await importOciLayout(d.images, layout);
    return { digest: image!.digest, imageId: image!.id, tags: opts.tags ?? [], steps: [{ id: 1, name: 'FROM', cached: true, seconds: 0 }, { id: 2, name: 'RUN', cached: false, seconds: 0.1 }], cacheHits: 1, warnings: [], image: image! };
  };
}

let builder: FakeBuilder;

beforeEach(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-build-ctl-'));
  paths = resolvePaths({ root: path.join(tmp, 'root') });
  api = new FakeApi();
  // The runtime is never reached: the fake builder runs no container.
  deps = { images: await ImageStore.open(paths.images), runtime: undefined as never, stateDir: path.join(paths.root, 'build-cache') };
  builder = new FakeBuilder();
});

afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function context(): ReconcileContext {
  return fakeReconcileContext(api, { component: 'build-controller', paths, logger });
}

async function createBuild(spec: Partial<NonNullable<Build['spec']>> = {}): Promise<void> {
  await api.for('Build').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Build', metadata: { name: 'web', namespace: 'shop' }, spec: { context: tmp, tags: [TAG], ...spec } } as Build);
}

const peek = () => api.peek('Build', 'shop', 'web') as Build;
const reconcile = () => reconcileBuild('shop/web', context(), deps, builder.build);
const reasons = () => (api.all('Event') as EventObject[]).map((e) => e.reason).sort();

describe('Build controller', () => {
  it('builds once per generation and records digest, steps and cache hits', async () => {
    await createBuild({ args: { V: '1' }, target: 'web' });
    await reconcile();
    const b = peek();
    expect(b.status).toMatchObject({ phase: 'Succeeded', steps: 2, cacheHits: 1, observedGeneration: b.metadata.generation });
    expect(b.status?.imageDigest).toBe((await deps.images.get(TAG))?.digest);
    expect(getCondition(b.status, 'Ready')).toMatchObject({ status: 'True', reason: 'Built' });
    expect(builder.calls[0]).toMatchObject({ contextDir: tmp, target: 'web', buildArgs: { V: '1' }, tags: [TAG] });
    expect(reasons()).toEqual(['Building', 'Built']);
    await reconcile();
    expect(builder.calls).toHaveLength(1);
  });

  it('builds again when the spec changes, or when the image it made is gone', async () => {
    await createBuild();
    await reconcile();
    await api.for('Build').update({ ...peek(), spec: { ...peek().spec!, args: { V: '2' } } });
    await reconcile();
    expect(builder.calls).toHaveLength(2);
    await deps.images.remove(TAG);
    await reconcile();
    expect(builder.calls).toHaveLength(3);
    expect(peek().status?.phase).toBe('Succeeded');
  });

  it('a failing step is Failed with the step in the condition, terminal until the spec changes', async () => {
    await createBuild();
    builder.failWith = new BuildError('D2P_BUILD_STEP_FAILED', 'process "/bin/sh -c false" did not complete successfully: exit code: 1', { step: '[2/2] RUN false' });
    await expect(reconcile()).rejects.toBeInstanceOf(TerminalError);
    const b = peek();
    expect(b.status?.phase).toBe('Failed');
    expect(getCondition(b.status, 'Ready')?.message).toContain('[2/2] RUN false');
    expect(reasons()).toContain('BuildFailed');
    await reconcile();
    expect(builder.calls).toHaveLength(1);
  });

  it('a machine failure is retried: thrown as is, phase Pending', async () => {
    await createBuild();
    builder.failWith = new BuildError('D2P_BUILD_INVALID', 'failed to resolve base image x: connection refused', { user: false });
    await expect(reconcile()).rejects.toThrow(/connection refused/);
    expect(peek().status?.phase).toBe('Pending');
    builder.failWith = undefined;
    await reconcile();
    expect(peek().status?.phase).toBe('Succeeded');
  });

  it('a remote or relative context is a terminal spec problem', async () => {
    await createBuild({ context: 'https://github.com/x/y.git' });
    await expect(reconcile()).rejects.toBeInstanceOf(TerminalError);
    expect(getCondition(peek().status, 'Ready')?.message).toMatch(/remote build contexts are not supported/);
    expect(builder.calls).toHaveLength(0);
  });
});
