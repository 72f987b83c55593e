// The typed client: apply, watch lifecycle, error mapping, and starting a daemon on demand.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../../src/api/errors';
import type { Image, ImageSpec, ObjectMeta } from '../../src/api/types';
import { resolvePaths } from '../../src/config';
import { applyObject } from '../../src/client/apply';
import { ensureDaemon } from '../../src/client/ensure-daemon';
import { createClient } from '../../src/client/index';
import type { Client, ResourceClient } from '../../src/client/types';
import { startApiServer, type ApiServer } from '../../src/server/api-server';
import { openStore } from '../../src/store/index';
import type { Store } from '../../src/store/types';
import { pidExists } from '../helpers/process';

interface Harness {
  dir: string;
  store: Store;
  server: ApiServer;
  client: Client;
  socketPath: string;
}

let dir: string;
let harness: Harness | undefined;
const cleanups: Array<() => Promise<void> | void> = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-client-'));
});
afterEach(async () => {
  try {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  } finally {
    harness = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

async function serve(): Promise<Harness> {
  const store = await openStore({ dir: path.join(dir, 'store') });
  cleanups.push(() => store.close());
  const socketPath = path.join(dir, 'api.sock');
  const server = await startApiServer({ store, socketPath, log: () => undefined });
  cleanups.push(() => server.close());
  const client = createClient({ socketPath });
  cleanups.push(() => client.close());
  harness = { dir, store, server, client, socketPath };
  return harness;
}

function image(name: string, spec: ImageSpec, metadata: Partial<ObjectMeta> = {}): Image {
  return { apiVersion: 'd2p.dev/v1alpha1', kind: 'Image', metadata: { name, namespace: 'shop', ...metadata }, spec };
}

async function failure(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a failure, got success');
}

describe('apply', () => {
  it('creates, then reports unchanged, then configured', async () => {
    const { client, store } = await serve();
    const manifest = image('web', { ref: 'nginx:1' }, { labels: { app: 'web' } });
    const first = await client.images.apply(manifest);
    expect(first.action).toBe('created');
    expect(first.object.metadata.labels).toEqual({ app: 'web' });

    // The stored spec has a defaulted pullPolicy the manifest lacks: still unchanged, and no write.
    const version = store.resourceVersion;
    const second = await client.images.apply(manifest);
    expect(second.action).toBe('unchanged');
    expect(store.resourceVersion).toBe(version);

    const third = await client.images.apply(image('web', { ref: 'nginx:2' }, { labels: { app: 'web' } }));
    expect(third.action).toBe('configured');
    expect(third.object.spec).toEqual({ ref: 'nginx:2', pullPolicy: 'IfNotPresent' });
    expect(third.object.metadata.generation).toBe(2);
  });

  it('keeps status, finalizers, ownerReferences and labels set by others', async () => {
    const { client } = await serve();
    const created = (await client.images.apply(image('web', { ref: 'nginx:1' }, { labels: { app: 'web' } }))).object;
    // A real owner: the store garbage-collects objects whose owner does not exist.
    const ownerObject = await client.volumes.create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name: 'owner', namespace: 'shop' } });
    const owner = { apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', name: 'owner', uid: ownerObject.metadata.uid! };
    const live = await client.images.patch('shop', 'web', 'merge', {
      metadata: { labels: { 'controller/seen': 'yes' }, finalizers: ['d2p.dev/cleanup'], ownerReferences: [owner] },
    });
    await client.images.updateStatus({ ...live, status: { phase: 'Ready' } });

    const result = await client.images.apply(image('web', { ref: 'nginx:2' }, { labels: { app: 'api' } }));
    expect(result.action).toBe('configured');
    expect(result.object.metadata).toMatchObject({
      uid: created.metadata.uid,
      labels: { app: 'api', 'controller/seen': 'yes' },
      finalizers: ['d2p.dev/cleanup'],
      ownerReferences: [owner],
    });
    expect(result.object.status).toEqual({ phase: 'Ready' });
  });

  it('with dryRun previews the result and writes nothing', async () => {
    const { client, store } = await serve();
    const created = await client.images.apply(image('web', { ref: 'nginx:1' }), { dryRun: true });
    expect(created.action).toBe('created');
    expect((await client.images.list()).items).toEqual([]);
    await client.images.apply(image('web', { ref: 'nginx:1' }));
    const version = store.resourceVersion;
    const configured = await client.images.apply(image('web', { ref: 'nginx:9' }), { dryRun: true });
    expect(configured.action).toBe('configured');
    expect(configured.object.spec).toMatchObject({ ref: 'nginx:9' });
    expect(store.resourceVersion).toBe(version);
    expect((await client.images.get('shop', 'web')).spec).toMatchObject({ ref: 'nginx:1' });
  });

  it('retries once when another writer gets in between (409 Conflict)', async () => {
    const { client } = await serve();
    await client.images.apply(image('web', { ref: 'nginx:1' }));
    let interfered = false;
    // A ResourceClient whose first real update is preceded by someone else's write.
    const racing = Object.create(client.images) as ResourceClient<Image>;
    racing.update = async (obj, opts) => {
      if (!opts?.dryRun && !interfered) {
        interfered = true;
        await client.images.patch('shop', 'web', 'merge', { metadata: { labels: { other: 'writer' } } });
      }
      return client.images.update(obj, opts);
    };
    const result = await applyObject(racing, image('web', { ref: 'nginx:2' }));
    expect(interfered).toBe(true);
    expect(result.action).toBe('configured');
    expect(result.object.spec).toMatchObject({ ref: 'nginx:2' });
    expect(result.object.metadata.labels).toEqual({ other: 'writer' });
  });
});

describe('requests', () => {
  it("leave node's agent no TLS server name to derive: it would test the host against its IPv6 pattern each time", async () => {
    const { client } = await serve();
    // The exports object node's own http agent calls isIP through.
    const netExports = createRequire(__filename)('node:net') as typeof net;
    const isIP = vi.spyOn(netExports, 'isIP');
    try {
      for (let i = 0; i < 3; i++) await client.images.list({ namespace: 'shop' });
      expect(isIP).not.toHaveBeenCalled();
    } finally {
      isIP.mockRestore();
    }
  });
});

describe('watch lifecycle', () => {
  it('ends at once when stopped before it is iterated, and when the consumer breaks', async () => {
    const { client } = await serve();
    const unused = client.volumes.watch();
    unused.stop();
    const seen: unknown[] = [];
    for await (const event of unused) seen.push(event);
    expect(seen).toEqual([]);

    await client.volumes.create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name: 'a', namespace: 'shop' } });
    await client.volumes.create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name: 'b', namespace: 'shop' } });
    const names: string[] = [];
    for await (const event of client.volumes.watch({ namespace: 'shop' })) {
      names.push(event.object.metadata.name);
      break;
    }
    expect(names).toEqual(['a']);
  });

  it('is stopped by client.close()', async () => {
    const { client } = await serve();
    const watch = client.volumes.watch({ namespace: 'shop' });
    const seen: string[] = [];
    const consumer = (async () => {
      for await (const event of watch) seen.push(event.object.metadata.name);
    })();
    // One event through proves the stream is open before close() has to end it.
    await client.volumes.create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name: 'a', namespace: 'shop' } });
    const deadline = Date.now() + 5000;
    while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await client.close();
    await consumer;
    expect(seen).toEqual(['a']);
  });
});

describe('errors', () => {
  it('reports a missing socket as D2P_DAEMON_UNREACHABLE naming the socket', async () => {
    const socketPath = path.join(dir, 'nobody.sock');
    const client = createClient({ socketPath });
    cleanups.push(() => client.close());
    const err = await failure(client.volumes.list());
    expect(err.code).toBe('D2P_DAEMON_UNREACHABLE');
    expect(err.message).toContain(socketPath);
    expect(err.message).toContain('ENOENT');
  });

  it('with startDaemon, starts it once when requests find no daemon, then sends them again', async () => {
    const socketPath = path.join(dir, 'api.sock');
    const store = await openStore({ dir: path.join(dir, 'store') });
    cleanups.push(() => store.close());
    let starts = 0;
    const client = createClient({
      socketPath,
      startDaemon: async () => {
        starts++;
        const server = await startApiServer({ store, socketPath, log: () => undefined });
        cleanups.push(() => server.close());
      },
    });
    cleanups.push(() => client.close());
    // Concurrent first requests share the one start; a POST is sent again too (it never left).
    const [created, listed] = await Promise.all([client.images.create(image('web', { ref: 'nginx:1' })), client.volumes.list({ namespace: 'shop' })]);
    expect(created.metadata.name).toBe('web');
    expect(listed.items).toEqual([]);
    expect((await client.images.get('shop', 'web')).spec?.ref).toBe('nginx:1');
    expect(starts).toBe(1);
  });

  it('with startDaemon, reports a start that fails, and never starts twice', async () => {
    let starts = 0;
    const client = createClient({
      socketPath: path.join(dir, 'nobody.sock'),
      startDaemon: async () => {
        starts++;
        throw Object.assign(new Error('the daemon exited at once'), { code: 'D2P_DAEMON_START_FAILED' });
      },
    });
    cleanups.push(() => client.close());
    expect((await failure(client.volumes.list())).message).toBe('the daemon exited at once');
    expect((await failure(client.volumes.list())).message).toBe('the daemon exited at once');
    expect(starts).toBe(1);
  });

  it('reports a socket nobody listens on as D2P_DAEMON_UNREACHABLE (ECONNREFUSED)', async () => {
    const bound = path.join(dir, 'bound.sock');
    const socketPath = path.join(dir, 'stale.sock');
    const listener = net.createServer();
    await new Promise<void>((resolve) => listener.listen(bound, resolve));
    fs.linkSync(bound, socketPath);
    await new Promise<void>((resolve) => listener.close(() => resolve()));
    const client = createClient({ socketPath });
    cleanups.push(() => client.close());
    const err = await failure(client.healthz());
    expect(err.code).toBe('D2P_DAEMON_UNREACHABLE');
    expect(err.message).toContain('ECONNREFUSED');
  });

  it('turns Status answers into ApiError and refuses unknown kinds', async () => {
    const { client } = await serve();
    const err = await failure(client.for('ctr').get('shop', 'nope'));
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).reason).toBe('NotFound');
    expect(client.for('containers').kind).toBe('Container');
    expect(() => client.for('widget')).toThrow(/unknown kind "widget"/);
  });
});

describe('ensureDaemon', () => {
  /**
   * A stand-in for `d2p daemon`: records that it was started, then serves /healthz on the
   * socket (or fails / hangs, as told by its mode).
   */
  function writeFakeDaemon(mode: 'serve' | 'fail' | 'hang'): string {
    const script = path.join(dir, `fake-daemon-${mode}.js`);
    fs.writeFileSync(
      script,
      `
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const args = process.argv.slice(2);
const root = args[args.indexOf('--root') + 1];
const socket = args[args.indexOf('--socket') + 1];
if (args[0] !== 'daemon') { console.error('expected the daemon subcommand, got ' + args[0]); process.exit(3); }
fs.appendFileSync(path.join(root, 'starts'), process.pid + '\\n');
console.log('starting on ' + socket);
if (${JSON.stringify(mode)} === 'fail') { console.error('fatal: cannot open store: EACCES'); process.exit(2); }
if (${JSON.stringify(mode)} === 'hang') { setInterval(() => {}, 1000); return; }
http.createServer((req, res) => res.end('ok')).listen(socket);
process.on('SIGTERM', () => process.exit(0));
`,
    );
    return script;
  }

  function startedPids(root: string): number[] {
    const file = path.join(root, 'starts');
    if (!fs.existsSync(file)) return [];
    return fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map(Number);
  }

  function killStarted(root: string): void {
    for (const pid of startedPids(root)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
      }
    }
  }

  it('starts a daemon when none answers, and not when one does', async () => {
    const paths = resolvePaths({ root: path.join(dir, 'root') });
    cleanups.push(() => killStarted(paths.root));
    const entry = writeFakeDaemon('serve');
    await ensureDaemon(paths, { daemonEntry: entry });
    expect(startedPids(paths.root)).toHaveLength(1);
    const client = createClient({ socketPath: paths.socket });
    cleanups.push(() => client.close());
    await client.healthz();
    expect(fs.readFileSync(paths.daemonLog, 'utf8')).toContain(`starting on ${paths.socket}`);

    await ensureDaemon(paths, { daemonEntry: entry });
    expect(startedPids(paths.root)).toHaveLength(1);
  });

  it('fails with the tail of the daemon log when the daemon dies', async () => {
    const paths = resolvePaths({ root: path.join(dir, 'root') });
    cleanups.push(() => killStarted(paths.root));
    fs.mkdirSync(paths.root, { recursive: true });
    fs.writeFileSync(paths.daemonLog, 'an earlier run that is not this failure\n');
    const err = await failure(ensureDaemon(paths, { daemonEntry: writeFakeDaemon('fail') }));
    expect(err.code).toBe('D2P_DAEMON_START_FAILED');
    expect(err.message).toContain('exited with code 2');
    expect(err.message).toContain('fatal: cannot open store: EACCES');
    expect(err.message).not.toContain('an earlier run');
  });

  it('fails, and stops the daemon, when it never answers', async () => {
    const paths = resolvePaths({ root: path.join(dir, 'root') });
    cleanups.push(() => killStarted(paths.root));
    const err = await failure(ensureDaemon(paths, { daemonEntry: writeFakeDaemon('hang'), timeoutMs: 300 }));
    expect(err.code).toBe('D2P_DAEMON_START_FAILED');
    expect(err.message).toContain('did not answer');
    expect(err.message).toContain(`starting on ${paths.socket}`);
    const [pid] = startedPids(paths.root);
    const deadline = Date.now() + 5000;
    while (pidExists(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(pidExists(pid)).toBe(false);
  });
});

