// `d2p daemon --manifests DIR` end to end: a daemon in this process (runDaemon on a temporary
// root, the real controllers, the GitOps watcher through withGitOps as the daemon command
// wires it), a directory changed the ways users change it, and the objects — down to the
// Containers the Service controller makes — following it. Runs in hack/sandbox: the image
// refs point at a registry on the sandbox's loopback, so no pull can leave the machine.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControllers } from '../../controllers';
import type { EventObject } from '../../src/api/meta';
import type { Service, Source } from '../../src/api/types';
import { createClient, type Client } from '../../src/client';
import { withGitOps, type SyncReport } from '../../src/gitops';
import { runDaemon, type Daemon } from '../../src/server/daemon';
import { requireSandbox } from '../helpers/sandbox-guard';
import { poller } from '../helpers/wait';

const IMAGE = '127.0.0.1:5000/d2p/busybox';
let root: string;
let dir: string;
let daemon: Daemon | undefined;
let client: Client;
const reports: SyncReport[] = [];

function git(...args: string[]): string {
  return execFileSync('git', ['-C', dir, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', ...args], { encoding: 'utf8' }).trim();
}

function write(rel: string, text: string): void {
  fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
  fs.writeFileSync(path.join(dir, rel), text);
}

function shopCompose(tag: string, replicas: number): string {
  return `name: shop\nservices:\n  web:\n    image: ${IMAGE}:${tag}\n    command: ["sleep", "1000"]\n    deploy:\n      replicas: ${replicas}\n`;
}

// A sync goes through git, the API and the controllers: allow it longer than the default.
const until = poller({ timeoutMs: 20_000, intervalMs: 100 });

async function names(kind: string, namespace: string): Promise<string[]> {
  const list = await client.for(kind).list({ namespace });
  return list.items.filter((o) => !o.metadata.deletionTimestamp).map((o) => o.metadata.name).sort();
}

const source = async () => (await client.for('Source').get('d2p-system', 'site')) as Source;
const events = async () =>
  ((await client.events.list({ namespace: 'd2p-system' })).items as EventObject[]).filter((e) => e.involvedObject.kind === 'Source');

beforeAll(async () => {
  requireSandbox('gitops');
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-gitops-int-'));
  dir = path.join(root, 'site');
  fs.mkdirSync(dir);
  git('init', '-q');
  write('shop/compose.yaml', shopCompose('v1', 2));
  write('volumes.yaml', 'apiVersion: d2p.dev/v1alpha1\nkind: Volume\nmetadata:\n  name: shared\n');
  git('add', '-A');
  git('commit', '-q', '-m', 'v1');
  daemon = await runDaemon({
    root,
    handleSignals: false,
    log: () => undefined,
    startControllers: withGitOps(({ client: c, paths }) => startControllers({ client: c, paths }), {
      dir,
      interval: '2s',
      onSync: (r) => reports.push(r),
      log: () => undefined,
    }),
  });
  client = createClient({ socketPath: daemon.paths.socket });
});

afterAll(async () => {
  try {
    await client?.close();
    await daemon?.stop();
  } finally {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  }
});

describe('d2p daemon --manifests', () => {
  it('applies the Compose app of the directory and its Containers come into being', async () => {
    const containers = await until('two shop containers', async () => {
      const n = await names('Container', 'shop');
      return n.length === 2 ? n : undefined;
    });
    expect(containers).toEqual(['shop-web-1', 'shop-web-2']);
    const src = await until('Source synced', async () => {
      const s = await source();
      return s.status?.phase === 'Synced' ? s : undefined;
    });
    expect(src.status?.gitCommit).toBe(git('rev-parse', 'HEAD'));
    expect(src.status?.files?.map((f) => f.path)).toEqual(['shop/compose.yaml', 'volumes.yaml']);
  });

  it('follows an edit of replicas and image', async () => {
    write('shop/compose.yaml', shopCompose('v2', 3));
    await until('three containers', async () => ((await names('Container', 'shop')).length === 3 ? true : undefined));
    const web = (await client.services.get('shop', 'web')) as Service;
    expect(web.spec?.template.spec.image).toBe(`${IMAGE}:v2`);
  });

  it('keeps the objects of a broken file and reports it', async () => {
    const before = (await client.services.get('shop', 'web')) as Service;
    write('shop/compose.yaml', 'name: shop\nservices:\n  web:\n    image: [unclosed\n');
    const src = await until('the error in the status', async () => {
      const s = await source();
      return s.status?.files?.find((f) => f.path === 'shop/compose.yaml')?.error ? s : undefined;
    });
    expect(src.status?.phase).toBe('Degraded');
    expect(src.status?.files?.find((f) => f.path === 'volumes.yaml')).toEqual({ path: 'volumes.yaml', objects: 1 });
    expect((await events()).some((e) => e.type === 'Warning' && e.reason === 'InvalidFile' && e.message.startsWith('shop/compose.yaml'))).toBe(true);
    const after = (await client.services.get('shop', 'web')) as Service;
    expect(after.metadata.generation).toBe(before.metadata.generation);
    expect(await names('Container', 'shop')).toHaveLength(3);
  });

  it('returns to the state of the commit checked out', async () => {
    git('checkout', '-q', '--', '.');
    git('checkout', '-q', '--detach', 'HEAD');
    const commit = git('rev-parse', 'HEAD');
    await until('two containers again', async () => ((await names('Container', 'shop')).length === 2 ? true : undefined));
    const src = await until('status at the commit', async () => {
      const s = await source();
      return s.status?.phase === 'Synced' && s.status.gitCommit === commit ? s : undefined;
    });
    expect(src.status?.files?.every((f) => f.error === undefined)).toBe(true);
  });

  it('puts back drift', async () => {
    // A merge patch: no resourceVersion precondition to race the controllers' writes with.
    await client.services.patch('shop', 'web', 'merge', { spec: { replicas: 5 } });
    expect(((await client.services.get('shop', 'web')) as Service).metadata.annotations?.['d2p.dev/source-file']).toBe('shop/compose.yaml');
    await until('replicas 2 again', async () => (((await client.services.get('shop', 'web')) as Service).spec?.replicas === 2 ? true : undefined));
    await until('DriftCorrected', async () => ((await events()).some((e) => e.reason === 'DriftCorrected') ? true : undefined));
  });

  it('coalesces 200 changes in a second and ends in the final state', async () => {
    const start = reports.length;
    for (let i = 1; i <= 200; i++) {
      write('volumes.yaml', `apiVersion: d2p.dev/v1alpha1\nkind: Volume\nmetadata:\n  name: shared-${i}\n`);
      if (i % 40 === 0) await new Promise((r) => setTimeout(r, 150));
    }
    await until('shared-200 only', async () => ((await names('Volume', 'default')).join(',') === 'shared-200' ? true : undefined));
    await new Promise((r) => setTimeout(r, 800));
    // A handful: the debounce windows of the burst plus, at most, a periodic resync or two.
    expect(reports.length - start).toBeLessThanOrEqual(8);
  });

  it('prunes a deleted app and its Containers, keeping what was applied by hand', async () => {
    await client.volumes.create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name: 'by-hand', namespace: 'shop' } });
    fs.rmSync(path.join(dir, 'shop'), { recursive: true });
    await until('service pruned', async () => ((await names('Service', 'shop')).length === 0 ? true : undefined));
    await until('containers collected', async () => ((await names('Container', 'shop')).length === 0 ? true : undefined));
    expect(await names('Volume', 'shop')).toContain('by-hand');
  });
});
