// End to end through the built CLI: apply a Compose app (the daemon starts on demand),
// inspect it, survive a kill -9 of the daemon, refuse a bad file without applying
// anything, and delete with dependents. No kernel objects are made here, but a daemon
// process is, so this runs in the sandbox with the other integration tests.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { poller } from '../helpers/wait';
import { pidExists } from '../helpers/process';

const repo = path.resolve(__dirname, '..', '..');
const bin = path.join(repo, 'bin', 'd2p');
const shop = path.join(repo, 'manifests', 'examples', 'shop', 'compose.yml');
let root: string;

function d2p(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8',
    env: { ...process.env, D2P_ROOT: root, D2P_REGISTRY: '127.0.0.1:5000' },
    timeout: 30_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function daemonPid(): number {
  return Number(fs.readFileSync(path.join(root, 'daemon.pid'), 'utf8').split('\n')[0]);
}

// Each probe may spawn bin/d2p: poll at a gentler pace than the default.
const until = poller({ intervalMs: 100 });

function getJson(...args: string[]) {
  const r = d2p('get', ...args, '-o', 'json');
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.out);
}

beforeAll(() => {
  if (process.env.D2P_SANDBOX !== '1') throw new Error('integration tests run inside hack/sandbox (npm run test:integration)');
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-cp-'));
});

afterAll(async () => {
  const pidFile = path.join(root, 'daemon.pid');
  if (fs.existsSync(pidFile)) {
    const pid = daemonPid();
    if (pidExists(pid)) process.kill(pid, 'SIGKILL');
  }
  fs.rmSync(root, { recursive: true, force: true });
});

describe('control plane end to end', () => {
  it('apply starts the daemon and creates every object of the Compose app', () => {
    const r = d2p('apply', '-f', shop);
    expect(r.err).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    for (const line of [
      'service/web created', 'service/api created', 'service/worker created',
      'network/shop_front created', 'network/shop_back created', 'volume/shop_orders created',
    ]) expect(r.out).toContain(line);
    expect(pidExists(daemonPid())).toBe(true);
    const st = fs.statSync(path.join(root, 'd2p.sock'));
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
  });

  it('get all lists them and get -o json carries the converted spec', () => {
    const r = d2p('get', 'all', '-n', 'shop');
    expect(r.code).toBe(0);
    for (const name of ['service/web', 'service/api', 'service/worker', 'network/shop_back', 'volume/shop_orders']) {
      expect(r.out).toContain(name);
    }
    const worker = getJson('svc', 'worker', '-n', 'shop');
    expect(worker.spec.replicas).toBe(3);
    expect(worker.spec.template.spec.resources).toMatchObject({ cpus: 0.25, memory: 32 * 1024 * 1024 });
    expect(worker.spec.dependsOn).toEqual([expect.objectContaining({ name: 'api', condition: 'service_healthy' })]);
    expect(worker.metadata.labels['com.docker.compose.project']).toBe('shop');
  });

  it('the Volume controller provisions the named volume and describe shows it', async () => {
    const vol = await until('volume Ready', () => {
      const v = getJson('vol', 'shop_orders', '-n', 'shop');
      return v.status?.phase === 'Ready' ? v : undefined;
    });
    expect(fs.statSync(vol.status.mountpoint).isDirectory()).toBe(true);
    expect(vol.status.mountpoint.startsWith(root)).toBe(true);
    const d = d2p('describe', 'vol', 'shop_orders', '-n', 'shop');
    expect(d.code).toBe(0);
    expect(d.out).toMatch(/Name:\s+shop_orders/);
    expect(d.out).toMatch(/Ready\s+True/);
    expect(d.out).toContain(vol.status.mountpoint);
  });

  it('a second apply changes nothing', () => {
    const r = d2p('apply', '-f', shop);
    expect(r.code).toBe(0);
    expect(r.out).not.toMatch(/created|configured/);
    expect(r.out).toContain('service/web unchanged');
  });

  it('an invalid Compose file is refused with file and line, and nothing is applied', () => {
    const dir = fs.mkdtempSync(path.join(root, 'bad-'));
    const bad = path.join(dir, 'compose.yml');
    fs.writeFileSync(bad, 'name: shop\nservices:\n  web:\n    image: busybox\n    replicas_typo: 3\n  extra:\n    image: busybox\n');
    const before = getJson('svc', '-n', 'shop').items.length;
    const r = d2p('apply', '-f', bad);
    expect(r.code).toBe(1);
    expect(r.err).toContain('compose.yml:5');
    expect(r.err).toContain('replicas_typo');
    expect(getJson('svc', '-n', 'shop').items.length).toBe(before);
    expect(d2p('get', 'svc', 'extra', '-n', 'shop').code).not.toBe(0);
  });

  it('a kill -9 of the daemon loses nothing; the next apply starts a new one that adopts the state', async () => {
    const old = daemonPid();
    const volBefore = getJson('vol', 'shop_orders', '-n', 'shop');
    process.kill(old, 'SIGKILL');
    await until('daemon gone', () => (pidExists(old) ? undefined : true));
    const r = d2p('apply', '-f', shop);
    expect(r.code).toBe(0);
    expect(r.out).toContain('service/api unchanged');
    expect(daemonPid()).not.toBe(old);
    const volAfter = getJson('vol', 'shop_orders', '-n', 'shop');
    expect(volAfter.metadata.uid).toBe(volBefore.metadata.uid);
    expect(volAfter.status.mountpoint).toBe(volBefore.status.mountpoint);
  });

  it('delete of an owner removes its dependents', async () => {
    const api = getJson('svc', 'api', '-n', 'shop');
    const dir = fs.mkdtempSync(path.join(root, 'owned-'));
    const file = path.join(dir, 'owned.yaml');
    fs.writeFileSync(file, JSON.stringify({
      apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume',
      metadata: {
        name: 'api-scratch', namespace: 'shop',
        ownerReferences: [{ apiVersion: 'd2p.dev/v1alpha1', kind: 'Service', name: 'api', uid: api.metadata.uid, controller: true }],
      },
      spec: {},
    }));
    expect(d2p('apply', '-f', file).code).toBe(0);
    const del = d2p('delete', 'svc', 'api', '-n', 'shop');
    expect(del.code).toBe(0);
    expect(del.out).toContain('service "api" deleted');
    await until('dependent volume gone', () => (d2p('get', 'vol', 'api-scratch', '-n', 'shop').code !== 0 ? true : undefined));
  });

  it('delete -f removes the rest of the app, volume directory included', async () => {
    const mountpoint = getJson('vol', 'shop_orders', '-n', 'shop').status.mountpoint;
    const r = d2p('delete', '-f', shop);
    expect(r.code).toBe(0);
    expect(r.out).toContain('service "web" deleted');
    const left = d2p('get', 'all', '-n', 'shop', '-o', 'json');
    expect(left.code).toBe(0);
    expect(JSON.parse(left.out).items).toEqual([]);
    expect(fs.existsSync(mountpoint)).toBe(false);
  });
});
