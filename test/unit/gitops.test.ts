// GitOps against the real API server on a temporary socket, without controllers: the
// objects themselves say whether the directory was applied, pruned and put back.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EventObject } from '../../src/api/meta';
import type { Service, Source } from '../../src/api/types';
import { createClient } from '../../src/client/index';
import type { Client } from '../../src/client/types';
import {
  Coalescer,
  formatSyncLine,
  SOURCE_FILE_ANNOTATION,
  SOURCE_LABEL,
  SOURCE_NAMESPACE,
  sourceNameFor,
  startGitOps,
  type GitOps,
  type GitOpsOptions,
  type SyncReport,
} from '../../src/gitops';
import { startApiServer } from '../../src/server/api-server';
import { openStore } from '../../src/store/index';

let tmp: string;
let manifests: string;
let client: Client;
const cleanups: Array<() => Promise<unknown> | unknown> = [];

beforeEach(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-gitops-'));
  manifests = path.join(tmp, 'manifests');
  fs.mkdirSync(manifests);
  const store = await openStore({ dir: path.join(tmp, 'store') });
  cleanups.push(() => store.close());
  const socketPath = path.join(tmp, 'api.sock');
  const server = await startApiServer({ store, socketPath, log: () => undefined });
  cleanups.push(() => server.close());
  client = createClient({ socketPath });
  cleanups.push(() => client.close());
});

afterEach(async () => {
  try {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------------------ helpers

interface Started {
  gitops: GitOps;
  reports: SyncReport[];
  logs: string[];
}

async function start(opts: Partial<GitOpsOptions> = {}): Promise<Started> {
  const reports: SyncReport[] = [];
  const logs: string[] = [];
  const gitops = await startGitOps({
    client,
    dir: manifests,
    name: 'apps',
    // Tests trigger syncs themselves; only file events and object watches run on their own.
    interval: '1h',
    onSync: (r) => reports.push(r),
    log: (line) => logs.push(line),
    ...opts,
  });
  cleanups.push(() => gitops.stop());
  return { gitops, reports, logs };
}

function write(rel: string, text: string): void {
  const file = path.join(manifests, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
}

function compose(project: string, image: string, replicas = 1): string {
  return [
    `name: ${project}`,
    'services:',
    '  web:',
    `    image: ${image}`,
    '    deploy:',
    `      replicas: ${replicas}`,
    '',
  ].join('\n');
}

function volumeManifest(name: string, namespace = 'default'): string {
  return ['apiVersion: d2p.dev/v1alpha1', 'kind: Volume', 'metadata:', `  name: ${name}`, `  namespace: ${namespace}`, ''].join('\n');
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function exists(kind: string, namespace: string, name: string): Promise<boolean> {
  const list = await client.for(kind).list({ namespace });
  return list.items.some((o) => o.metadata.name === name);
}

const service = (ns: string, name: string) => client.services.get(ns, name) as Promise<Service>;
const sourceObject = () => client.for('Source').get(SOURCE_NAMESPACE, 'apps') as Promise<Source>;

async function sourceEvents(): Promise<EventObject[]> {
  const list = await client.events.list({ namespace: SOURCE_NAMESPACE });
  return (list.items as EventObject[]).filter((e) => e.involvedObject.kind === 'Source' && e.involvedObject.name === 'apps');
}

// ------------------------------------------------------------------------------ tests

describe('a watched directory', () => {
  it('applies a Compose file added to it, marking every object with the Source and its file', async () => {
    const { gitops } = await start();
    write('shop/compose.yaml', compose('shop', 'busybox:1.36'));
    const web = await until('service shop/web', async () => ((await exists('Service', 'shop', 'web')) ? service('shop', 'web') : undefined));
    expect(web.spec?.template.spec.image).toBe('busybox:1.36');
    expect(web.metadata.labels?.[SOURCE_LABEL]).toBe('apps');
    expect(web.metadata.annotations?.[SOURCE_FILE_ANNOTATION]).toBe('shop/compose.yaml');

    const report = await gitops.sync();
    expect(report.fileErrors).toEqual([]);
    expect(report.applied).toEqual([]);
    expect(report.unchanged).toBeGreaterThan(0);
    const src = await sourceObject();
    expect(src.spec).toEqual({ path: manifests, prune: true, interval: '1h' });
    expect(src.status?.phase).toBe('Synced');
    expect(src.status?.lastAppliedRevision).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(src.status?.gitCommit).toBeUndefined();
    expect(src.status?.files).toEqual([{ path: 'shop/compose.yaml', objects: report.objects.size }]);
    expect(src.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
  });

  it('updates a service whose image or replicas change in the file', async () => {
    write('shop/compose.yaml', compose('shop', 'busybox:1.36'));
    const { gitops } = await start();
    await gitops.sync();
    const first = (await sourceObject()).status?.lastAppliedRevision;
    write('shop/compose.yaml', compose('shop', 'busybox:1.37', 3));
    const web = await until('the new image', async () => {
      const s = await service('shop', 'web');
      return s.spec?.template.spec.image === 'busybox:1.37' ? s : undefined;
    });
    expect(web.spec?.replicas).toBe(3);
    const report = await gitops.sync();
    expect((await sourceObject()).status?.lastAppliedRevision).not.toBe(first);
    expect(report.driftCorrected).toEqual([]);
    expect((await sourceEvents()).filter((e) => e.reason === 'DriftCorrected')).toEqual([]);
  });

  it('prunes the objects of a deleted file, never a hand-applied object', async () => {
    write('shop/compose.yaml', compose('shop', 'busybox:1.36'));
    write('vols.yaml', volumeManifest('cache'));
    const { gitops } = await start();
    await gitops.sync();
    await client.volumes.create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name: 'by-hand', namespace: 'shop' } });
    expect(await exists('Service', 'shop', 'web')).toBe(true);

    fs.rmSync(path.join(manifests, 'shop'), { recursive: true });
    await until('service shop/web pruned', async () => ((await exists('Service', 'shop', 'web')) ? undefined : true));
    const report = await gitops.sync();
    expect(report.fileErrors).toEqual([]);
    expect(await exists('Volume', 'shop', 'by-hand')).toBe(true);
    expect(await exists('Volume', 'default', 'cache')).toBe(true);
    expect((await sourceObject()).status?.files).toEqual([{ path: 'vols.yaml', objects: 1 }]);
    expect((await sourceEvents()).some((e) => e.reason === 'Pruned' && e.message.includes('service/web -n shop'))).toBe(true);
  });

  it('leaves the objects of a broken file as they were, reports it, and applies the other files', async () => {
    write('a.yaml', volumeManifest('alpha'));
    write('b.yaml', volumeManifest('beta'));
    const { gitops } = await start();
    await gitops.sync();
    const betaBefore = await client.volumes.get('default', 'beta');

    write('b.yaml', 'apiVersion: d2p.dev/v1alpha1\nkind: Volume\nmetadata:\n  name: beta\n   namespace: x: y\n');
    write('c.yaml', volumeManifest('gamma'));
    write('d.yaml', 'apiVersion: d2p.dev/v1alpha1\nkind: Volume\nmetadata:\n  name: delta\nspec:\n  driver: nfs\n');
    const report = await gitops.sync();

    expect(report.fileErrors.map((f) => f.path)).toEqual(['b.yaml', 'd.yaml']);
    expect(report.fileErrors[0].error).toMatch(/^b\.yaml:4:9\b.*: invalid YAML: Nested mappings/);
    expect(report.fileErrors[1].error).toMatch(/^d\.yaml: volume\/delta: .*spec\.driver/);
    const betaAfter = await client.volumes.get('default', 'beta');
    expect(betaAfter.metadata.resourceVersion).toBe(betaBefore.metadata.resourceVersion);
    expect(await exists('Volume', 'default', 'gamma')).toBe(true);
    expect(await exists('Volume', 'default', 'delta')).toBe(false);

    const src = await sourceObject();
    expect(src.status?.phase).toBe('Degraded');
    expect(src.status?.files?.find((f) => f.path === 'b.yaml')).toMatchObject({ objects: 0, error: expect.stringMatching(/^b\.yaml:4:9/) });
    expect(src.status?.files?.find((f) => f.path === 'c.yaml')).toEqual({ path: 'c.yaml', objects: 1 });
    const ready = src.status?.conditions?.find((c) => c.type === 'Ready');
    expect(ready).toMatchObject({ status: 'False', reason: 'FileErrors' });
    const warnings = (await sourceEvents()).filter((e) => e.type === 'Warning' && e.reason === 'InvalidFile');
    expect(warnings.map((e) => e.message.split(':')[0]).sort()).toEqual(['b.yaml', 'd.yaml']);
    expect(formatSyncLine(report)).toMatch(/^synced rev [0-9a-f]{7}: 1 applied, 0 pruned, 2 errors \(b\.yaml:4:9/);

    // Fixed: applied, and the status is clean again.
    write('b.yaml', volumeManifest('beta2'));
    const fixed = await gitops.sync();
    expect(fixed.fileErrors.map((f) => f.path)).toEqual(['d.yaml']);
    expect(await exists('Volume', 'default', 'beta2')).toBe(true);
    expect(await exists('Volume', 'default', 'beta')).toBe(false);
  });

  it('refuses a second definition of one object in another file, keeping the first', async () => {
    write('a.yaml', volumeManifest('same'));
    write('b.yaml', volumeManifest('same'));
    const { gitops } = await start();
    const report = await gitops.sync();
    expect(report.fileErrors).toEqual([{ path: 'b.yaml', error: expect.stringContaining('already defined by a.yaml') }]);
    const vol = await client.volumes.get('default', 'same');
    expect(vol.metadata.annotations?.[SOURCE_FILE_ANNOTATION]).toBe('a.yaml');
  });

  it('follows a git checkout of another commit, and reports the commit', async () => {
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', manifests, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', ...args], { encoding: 'utf8' }).trim();
    git('init', '-q');
    write('app.yaml', volumeManifest('v1'));
    git('add', '-A');
    git('commit', '-q', '-m', 'first');
    const first = git('rev-parse', 'HEAD');
    fs.rmSync(path.join(manifests, 'app.yaml'));
    write('app.yaml', volumeManifest('v2'));
    write('more.yaml', volumeManifest('extra'));
    git('add', '-A');
    git('commit', '-q', '-m', 'second');
    const second = git('rev-parse', 'HEAD');

    const { gitops } = await start();
    const atSecond = await gitops.sync();
    expect(atSecond.gitCommit).toBe(second);
    expect(await exists('Volume', 'default', 'v2')).toBe(true);

    git('checkout', '-q', first);
    await until('the state of the first commit', async () => {
      const names = (await client.volumes.list({ namespace: 'default' })).items.map((v) => v.metadata.name).sort();
      return names.join(',') === 'v1' ? true : undefined;
    });
    const src = await until('status at the first commit', async () => {
      const s = await sourceObject();
      return s.status?.gitCommit === first ? s : undefined;
    });
    expect(src.status?.files).toEqual([{ path: 'app.yaml', objects: 1 }]);
  });

  it('coalesces 200 file changes within one second into a handful of syncs, ending in the final state', async () => {
    write('vols.yaml', volumeManifest('v-0'));
    const { gitops, reports } = await start();
    await gitops.sync();
    const before = gitops.syncCount;
    for (let i = 1; i <= 200; i++) {
      write('vols.yaml', volumeManifest(`v-${i}`));
      if (i % 20 === 0) await new Promise((r) => setTimeout(r, 90));
    }
    await until('v-200 applied', async () => ((await exists('Volume', 'default', 'v-200')) ? true : undefined));
    // Let the debounce window of the last events close before counting.
    await new Promise((r) => setTimeout(r, 800));
    const syncs = gitops.syncCount - before;
    expect(syncs).toBeGreaterThanOrEqual(1);
    expect(syncs).toBeLessThanOrEqual(5);
    expect(reports.length).toBe(gitops.syncCount);
    const names = (await client.volumes.list({ namespace: 'default' })).items.map((v) => v.metadata.name);
    expect(names).toEqual(['v-200']);
  });

  it('puts back an object changed or deleted through the API, and records DriftCorrected', async () => {
    write('shop/compose.yaml', compose('shop', 'busybox:1.36', 2));
    const { gitops } = await start();
    await gitops.sync();

    await client.services.patch('shop', 'web', 'merge', { spec: { replicas: 7 } });
    // The watch on the set's objects notices without waiting for the periodic resync.
    await until('replicas put back', async () => ((await service('shop', 'web')).spec?.replicas === 2 ? true : undefined));
    const drift = await until('a DriftCorrected event', async () => (await sourceEvents()).find((e) => e.reason === 'DriftCorrected'));
    expect(drift.message).toContain('service/web -n shop');

    await client.services.delete('shop', 'web');
    await until('service re-created', async () => ((await exists('Service', 'shop', 'web')) ? true : undefined));
    // The same message again: the Event's count goes up (EventRecorder correlation).
    await until('a second DriftCorrected', async () => ((await sourceEvents()).find((e) => e.reason === 'DriftCorrected' && e.count >= 2) ? true : undefined));
    const report = await gitops.sync();
    expect(report.driftCorrected).toEqual([]);
  });

  it('puts back drift on the periodic resync when object watches are off', async () => {
    write('vols.yaml', volumeManifest('data'));
    const { gitops } = await start({ interval: '1s', watchObjects: false });
    await gitops.sync();
    const vol = await client.volumes.get('default', 'data');
    await client.volumes.update({ ...vol, metadata: { ...vol.metadata, labels: { ...vol.metadata.labels, [SOURCE_LABEL]: 'apps' } }, spec: { driver: 'local', driverOpts: { o: 'x' } } });
    await until('spec put back', async () => ((await client.volumes.get('default', 'data')).spec?.driverOpts === undefined ? true : undefined));
  });

  it('does not prune when prune is false', async () => {
    write('vols.yaml', volumeManifest('keep'));
    const { gitops } = await start({ prune: false });
    await gitops.sync();
    fs.rmSync(path.join(manifests, 'vols.yaml'));
    const report = await gitops.sync();
    expect(report.pruned).toEqual([]);
    expect(await exists('Volume', 'default', 'keep')).toBe(true);
    expect((await sourceObject()).spec?.prune).toBe(false);
  });

  it('refuses a path that is not a directory and a name that cannot be a label value', async () => {
    write('file.yaml', volumeManifest('x'));
    await expect(startGitOps({ client, dir: path.join(manifests, 'file.yaml') })).rejects.toThrow(/not a directory/);
    await expect(startGitOps({ client, dir: manifests, name: 'bad name!' })).rejects.toThrow(/invalid source name "bad name!"/);
    await expect(startGitOps({ client, dir: manifests, interval: 'soon' })).rejects.toThrow(/invalid interval "soon"/);
  });
});

describe('source names', () => {
  it('derive from the directory base name', () => {
    expect(sourceNameFor('/srv/My Manifests/')).toBe('my-manifests');
    expect(sourceNameFor('/srv/--x--')).toBe('x');
    expect(sourceNameFor('/')).toBe('manifests');
    expect(sourceNameFor(`/srv/${'a'.repeat(80)}`)).toHaveLength(63);
  });
});

describe('Coalescer', () => {
  it('runs once for a burst, and once more for triggers during a run', async () => {
    let runs = 0;
    let release: (() => void) | undefined;
    const c = new Coalescer(
      async () => {
        runs++;
        if (runs === 1) await new Promise<void>((r) => (release = r));
      },
      { quietMs: 30, maxWaitMs: 200 },
    );
    cleanups.push(() => c.stop());
    for (let i = 0; i < 50; i++) c.trigger();
    await until('first run', async () => (runs === 1 ? true : undefined));
    for (let i = 0; i < 50; i++) c.trigger();
    release!();
    await until('second run', async () => (runs === 2 ? true : undefined));
    await new Promise((r) => setTimeout(r, 100));
    expect(runs).toBe(2);
  });

  it('runs at maxWait even when triggers never stop', async () => {
    let runs = 0;
    const c = new Coalescer(async () => void runs++, { quietMs: 50, maxWaitMs: 150 });
    cleanups.push(() => c.stop());
    const started = Date.now();
    while (Date.now() - started < 400) {
      c.trigger();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(runs).toBeGreaterThanOrEqual(1);
    await c.stop();
    const after = runs;
    c.trigger();
    await new Promise((r) => setTimeout(r, 100));
    expect(runs).toBe(after);
  });
});
