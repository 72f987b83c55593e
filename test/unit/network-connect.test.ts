// docker network connect|disconnect at run time, in the controller: which spec changes a
// running container takes without a new process (only spec.networks), and what the
// Container controller does for them — against a fake runtime, a fake of the machine's
// links and addresses, and the real Networking and Network reconciler on top of them.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { getCondition } from '../../controllers/conditions';
import { CONDITION_NETWORKS_ATTACHED, containerController, containerId } from '../../controllers/container';
import { appliedSpecPath, isLiveNetworkChange, networkChanges, readAppliedSpec, sameNetworks } from '../../controllers/container-config';
import type { ContainerRuntime, LocalImage } from '../../controllers/container-host';
import { createJsonLogger } from '../../controllers/logger';
import type { Controller, ReconcileContext, Result } from '../../controllers/manager';
import { reconcileNetwork } from '../../controllers/network';
import type { ApiObject, EventObject } from '../../src/api/meta';
import type { Container, ContainerSpec, Network } from '../../src/api/types';
import { resolvePaths, type Paths } from '../../src/config';
import type { ImageConfig } from '../../src/images/index';
import { Networking, hostVethName, netnsPathOf } from '../../src/network/attach';
import { PortPublisher } from '../../src/network/port-forward';
import { ContainerNotFoundError, type ContainerConfig, type ContainerState } from '../../src/runtime/index';
import { fakeReconcileContext } from '../helpers/controller-context';
import { FakeApi } from '../helpers/fake-client';
import { FakeDns, RecordingHost } from '../helpers/fake-net-host';

// ---------------------------------------------------------------------------- pure rules

describe('what a running container can take without a restart', () => {
  const base: ContainerSpec = { image: 'busybox', env: [{ name: 'A', value: '1' }], networks: [{ name: 'front' }] };

  it('a change of spec.networks alone (added, removed, aliases, address, none left) is live', () => {
    expect(isLiveNetworkChange(base, { ...base, networks: [{ name: 'front' }, { name: 'back' }] })).toBe(true);
    expect(isLiveNetworkChange(base, { ...base, networks: [] })).toBe(true);
    expect(isLiveNetworkChange(base, { ...base, networks: undefined })).toBe(true);
    expect(isLiveNetworkChange(base, { ...base, networks: [{ name: 'front', aliases: ['www'], ipv4Address: '10.1.0.9' }] })).toBe(true);
    // The default network mode written out or not is the same spec.
    expect(isLiveNetworkChange(base, { ...base, networkMode: 'bridge', networks: [{ name: 'back' }] })).toBe(true);
  });

  it('any other field, or a mode without a namespace of its own, recreates', () => {
    expect(isLiveNetworkChange(base, { ...base, env: [{ name: 'A', value: '2' }], networks: [{ name: 'back' }] })).toBe(false);
    expect(isLiveNetworkChange(base, { ...base, command: ['sleep', '1'] })).toBe(false);
    expect(isLiveNetworkChange(base, { ...base, networkMode: 'host', networks: [] })).toBe(false);
    expect(isLiveNetworkChange({ ...base, networkMode: 'container:db', networks: [] }, { ...base, networkMode: 'container:db', networks: [{ name: 'back' }] })).toBe(false);
    expect(isLiveNetworkChange({ ...base, networkMode: 'none' }, { ...base, networkMode: 'none', networks: [{ name: 'back' }] })).toBe(false);
  });

  it('networks compare in order, with aliases and addresses; absent is empty', () => {
    expect(sameNetworks(undefined, [])).toBe(true);
    expect(sameNetworks([{ name: 'a' }, { name: 'b' }], [{ name: 'b' }, { name: 'a' }])).toBe(false);
    expect(sameNetworks([{ name: 'a' }], [{ name: 'a', aliases: ['x'] }])).toBe(false);
    expect(sameNetworks([{ name: 'a', aliases: undefined }], [{ name: 'a' }])).toBe(true);
    expect(networkChanges([{ name: 'a' }, { name: 'b' }], [{ name: 'b', aliases: ['x'] }, { name: 'c' }])).toEqual({
      connected: [{ name: 'b', aliases: ['x'] }, { name: 'c' }],
      disconnected: ['a'],
    });
  });
});

// ---------------------------------------------------------------------------- fakes

/** Processes that start, stop and are deleted only when asked; each call recorded. */
class FakeRuntime {
  readonly calls: string[] = [];
  private readonly containers = new Map<string, { status: ContainerState['status']; pid?: number }>();
  private nextPid = 100;

  async create(config: ContainerConfig): Promise<ContainerState> {
    this.calls.push('create');
    this.containers.set(config.id, { status: 'created' });
    return this.state(config.id);
  }
  async start(id: string): Promise<ContainerState> {
    this.calls.push('start');
    Object.assign(this.get(id), { status: 'running', pid: this.nextPid++ });
    return this.state(id);
  }
  async stop(id: string): Promise<ContainerState> {
    this.calls.push('stop');
    this.exit(id);
    return this.state(id);
  }
  async delete(id: string): Promise<void> {
    this.calls.push('delete');
    this.containers.delete(id);
  }
  async state(id: string): Promise<ContainerState> {
    const c = this.get(id);
    const alive = c.status === 'running';
    return { id, status: c.status, pid: alive ? c.pid : undefined, shimPid: c.pid, startedAt: '2025-01-01T00:00:00.000Z', ...(alive ? {} : { exitCode: 0, finishedAt: '2025-01-01T00:01:00.000Z' }), oomKilled: false, bundle: `/fake/${id}`, logPath: `/fake/${id}/log` };
  }
  wait(): Promise<never> {
    return new Promise(() => undefined);
  }
  exit(id: string): void {
    this.get(id).status = 'stopped';
  }
  private get(id: string): { status: ContainerState['status']; pid?: number } {
    const c = this.containers.get(id);
    if (!c) throw new ContainerNotFoundError(id);
    return c;
  }
}

// ---------------------------------------------------------------------------- fixtures

const IMAGE_CONFIG: ImageConfig = { env: [], cmd: ['sleep', '1000'], entrypoint: null, workingDir: '', user: '', exposedPorts: [], volumes: [], labels: {}, os: 'linux', architecture: 'amd64' };
const NS = 'shop';
const NAME = 'shop-web-1';
const KEY = `${NS}/${NAME}`;
const ID = containerId(NS, NAME);
const logger = createJsonLogger({ write: () => undefined });

let tmp: string;
let paths: Paths;
let api: FakeApi;
let host: RecordingHost;
let dns: FakeDns;
let networking: Networking;
let runtime: FakeRuntime;
let controller: Controller;
let abort: AbortController;

function makeNetworking(): Networking {
  return new Networking({ paths, host, dns: (lookups) => (dns = new FakeDns(lookups)), ports: new PortPublisher({ onError: () => undefined }) });
}

function makeController(): Controller {
  return containerController({
    runtime: () => runtime as unknown as ContainerRuntime,
    images: async () => ({ get: async () => ({ config: IMAGE_CONFIG, layerDirs: [path.join(tmp, 'layer')] }) as LocalImage }),
    imageMounter: () => ({ withImageRoot: (dirs, fn) => fn(dirs[0] as string) }),
    networking: () => networking,
  });
}

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-network-connect-'));
  paths = resolvePaths({ root: path.join(tmp, 'root') });
  api = new FakeApi();
  host = new RecordingHost({ firewall: undefined });
  networking = makeNetworking();
  runtime = new FakeRuntime();
  abort = new AbortController();
  controller = makeController();
});

afterEach(async () => {
  abort.abort();
  try {
    await networking.close();
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

function context(component: string): ReconcileContext {
  return fakeReconcileContext(api, { component, paths, logger, signal: abort.signal });
}

async function createNetwork(name: string, spec: Network['spec'] = {}, namespace = NS): Promise<void> {
  await api.for('Network').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Network', metadata: { name, namespace }, spec } as ApiObject);
  await reconcileNetwork(`${namespace}/${name}`, context('network-controller'), networking);
}

async function createContainer(spec: Partial<ContainerSpec>, name = NAME): Promise<void> {
  await api.for('Container').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Container', metadata: { name, namespace: NS }, spec: { image: 'busybox', ...spec } } as ApiObject);
}

const reconcile = (key = KEY): Promise<Result | void> => controller.reconcile(key, context('container-controller'));
const stored = (name = NAME): Container => api.peek('Container', NS, name) as Container;
const netns = (): string => netnsPathOf(paths, ID);
const eventsOf = (reason: string): string[] => (api.all('Event') as EventObject[]).filter((e) => e.reason === reason).map((e) => e.message ?? '');

async function setNetworks(networks: ContainerSpec['networks'], name = NAME): Promise<void> {
  const c = stored(name);
  await api.for('Container').update({ ...c, spec: { ...c.spec!, networks } });
}

// ---------------------------------------------------------------------------- the controller

describe('Container controller: network connect and disconnect at run time', () => {
  beforeEach(async () => {
    await createNetwork('shop_front', { subnet: '10.1.0.0/24' });
    await createNetwork('shop_back', { subnet: '10.2.0.0/24' });
  });

  it('connects a running container to a second network live: eth1, an address, DNS names, hosts file, same process', async () => {
    await createContainer({ networks: [{ name: 'shop_front' }] });
    await reconcile();
    const before = stored();
    expect(before.status).toMatchObject({ phase: 'Running', ipAddresses: { shop_front: '10.1.0.2' } });
    await setNetworks([{ name: 'shop_front' }, { name: 'shop_back', aliases: ['api'] }]);
    expect(await reconcile()).toBeUndefined();
    expect(runtime.calls).toEqual(['create', 'start']);
    const after = stored();
    expect(after.status).toMatchObject({ phase: 'Running', pid: before.status?.pid, observedGeneration: 2, ipAddresses: { shop_front: '10.1.0.2', shop_back: '10.2.0.2' } });
    expect(host.interfaces(netns())).toEqual({ eth0: ['10.1.0.2/24'], eth1: ['10.2.0.2/24'], lo: [] });
    expect(dns.records.get('shop/shop_back')).toEqual([{ name: NAME, ips: ['10.2.0.2'], aliases: ['api'] }]);
    const hosts = fs.readFileSync(path.join(paths.containers, ID, 'hosts'), 'utf8');
    expect(hosts).toContain('10.2.0.2\t');
    expect(eventsOf('NetworkConnected')).toEqual(['Connected to network shop_back (10.2.0.2)']);
    expect(readAppliedSpec(paths.containers, ID)?.networks).toEqual([{ name: 'shop_front' }, { name: 'shop_back', aliases: ['api'] }]);
  });

  it('rewrites hosts in place, so the file bind-mounted into the running container changes too', async () => {
    await createContainer({ networks: [{ name: 'shop_front' }] });
    await reconcile();
    const hostsFile = path.join(paths.containers, ID, 'hosts');
    const inode = fs.statSync(hostsFile).ino;
    await setNetworks([{ name: 'shop_front' }, { name: 'shop_back' }]);
    await reconcile();
    expect(fs.statSync(hostsFile).ino).toBe(inode);
    expect(fs.readFileSync(hostsFile, 'utf8')).toContain('10.2.0.2\t');
  });

  it('disconnects live: the veth and its address go, names leave that network, eth1 keeps its name; the last one leaves only lo', async () => {
    await createContainer({ networks: [{ name: 'shop_front' }, { name: 'shop_back' }] });
    await reconcile();
    await setNetworks([{ name: 'shop_back' }]);
    await reconcile();
    expect(runtime.calls).toEqual(['create', 'start']);
    expect(host.interfaces(netns())).toEqual({ eth1: ['10.2.0.2/24'], lo: [] });
    expect(host.linkList().some((l) => l.name === hostVethName(KEY, 'shop_front'))).toBe(false);
    expect(dns.names('shop/shop_front')).toEqual([]);
    expect(networking.allocations(NS, 'shop_front')).toEqual({});
    // The default route went with eth0; the remaining network carries it now.
    expect(host.routeList(netns()).filter((r) => r.dst === 'default')).toMatchObject([{ gateway: '10.2.0.1', dev: 'eth1' }]);
    expect(stored().status?.ipAddresses).toEqual({ shop_back: '10.2.0.2' });
    // Connecting again takes the lowest free name.
    await setNetworks([{ name: 'shop_back' }, { name: 'shop_front' }]);
    await reconcile();
    expect(host.interfaces(netns())).toEqual({ eth0: ['10.1.0.2/24'], eth1: ['10.2.0.2/24'], lo: [] });
    await setNetworks([]);
    await reconcile();
    expect(host.interfaces(netns())).toEqual({ lo: [] });
    expect(stored().status?.ipAddresses).toBeUndefined();
    expect(stored().status?.phase).toBe('Running');
    // Repeated events are counted on one Event, as Kubernetes' recorder does.
    expect(eventsOf('NetworkDisconnected')).toEqual(['Disconnected from network shop_front', 'Disconnected from network shop_back']);
    expect((api.all('Event') as EventObject[]).find((e) => e.message === 'Disconnected from network shop_front')?.count).toBe(2);
    expect(runtime.calls).toEqual(['create', 'start']);
  });

  it('any other spec change still stops and recreates the container', async () => {
    await createContainer({ networks: [{ name: 'shop_front' }] });
    await reconcile();
    const c = stored();
    await api.for('Container').update({ ...c, spec: { ...c.spec!, env: [{ name: 'A', value: '1' }], networks: [{ name: 'shop_back' }] } });
    await reconcile();
    expect(runtime.calls).toEqual(['create', 'start', 'stop', 'delete', 'create', 'start']);
    // The old namespace went with the old container: the new one is on shop_back only.
    expect(host.interfaces(netns())).toEqual({ eth0: ['10.2.0.2/24'], lo: [] });
    expect(networking.allocations(NS, 'shop_front')).toEqual({});
  });

  it('a missing network is a condition and a Warning naming network and container; the process keeps running, and it attaches once the network exists', async () => {
    await createNetwork('elsewhere', { subnet: '10.9.0.0/24' }, 'other');
    await createContainer({ networks: [{ name: 'shop_front' }] });
    await reconcile();
    await setNetworks([{ name: 'shop_front' }, { name: 'elsewhere' }]);
    const result = await reconcile();
    expect(result).toEqual({ requeueAfter: 1000 });
    expect(runtime.calls).toEqual(['create', 'start']);
    const failed = stored();
    expect(failed.status?.phase).toBe('Running');
    expect(failed.status?.ipAddresses).toEqual({ shop_front: '10.1.0.2' });
    const condition = getCondition(failed.status, CONDITION_NETWORKS_ATTACHED);
    expect(condition).toMatchObject({ status: 'False', reason: 'NetworkNotFound', observedGeneration: 2 });
    expect(condition?.message).toBe('container shop/shop-web-1: network elsewhere not found in namespace shop (a container joins networks of its own namespace; elsewhere exists in namespace other)');
    expect(eventsOf('NetworkNotFound')).toHaveLength(1);
    // The same failure again is not told twice.
    await reconcile();
    expect(eventsOf('NetworkNotFound')).toHaveLength(1);
    // The Network appearing wakes the container (its watch) and the change goes through.
    expect(controller.watches!.find((w) => w.kind === 'Network')!.map({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Network', metadata: { name: 'elsewhere', namespace: NS } })).toEqual([KEY]);
    await createNetwork('elsewhere', { subnet: '10.3.0.0/24' });
    await reconcile();
    expect(stored().status?.ipAddresses).toEqual({ shop_front: '10.1.0.2', elsewhere: '10.3.0.2' });
    expect(getCondition(stored().status, CONDITION_NETWORKS_ATTACHED)).toMatchObject({ status: 'True', reason: 'Attached' });
    expect(runtime.calls).toEqual(['create', 'start']);
  });

  it('an address another container holds is AddressInUse, naming both containers and the network', async () => {
    await createContainer({ networks: [{ name: 'shop_back', ipv4Address: '10.2.0.50' }] }, 'shop-db-1');
    await reconcile(`${NS}/shop-db-1`);
    await createContainer({ networks: [{ name: 'shop_front' }] });
    await reconcile();
    await setNetworks([{ name: 'shop_front' }, { name: 'shop_back', ipv4Address: '10.2.0.50' }]);
    expect(await reconcile()).toEqual({ requeueAfter: 5000 });
    const condition = getCondition(stored().status, CONDITION_NETWORKS_ATTACHED);
    expect(condition).toMatchObject({ status: 'False', reason: 'AddressInUse' });
    expect(condition?.message).toContain('container shop/shop-web-1');
    expect(condition?.message).toContain('already in use by shop/shop-db-1');
    expect(condition?.message).toContain('shop/shop_back');
    expect(host.interfaces(netns())).toEqual({ eth0: ['10.1.0.2/24'], lo: [] });
    // The change taken back (as a failed `d2p network connect` does): the failure is over.
    await setNetworks([{ name: 'shop_front' }]);
    expect(await reconcile()).toBeUndefined();
    expect(getCondition(stored().status, CONDITION_NETWORKS_ATTACHED)).toMatchObject({ status: 'True', reason: 'Attached' });
    expect(stored().status?.ipAddresses).toEqual({ shop_front: '10.1.0.2' });
    // shop-db-1's create and start, then shop-web-1's: nothing since.
    expect(runtime.calls).toEqual(['create', 'start', 'create', 'start']);
  });

  it('a stopped container is not started: its spec changes, its namespace follows, and the next start uses it', async () => {
    await createContainer({ networks: [{ name: 'shop_front' }], restartPolicy: 'no' });
    await reconcile();
    runtime.exit(ID);
    await reconcile();
    expect(stored().status?.phase).toBe('Exited');
    await setNetworks([{ name: 'shop_back' }]);
    await reconcile();
    expect(runtime.calls).toEqual(['create', 'start']);
    expect(stored().status).toMatchObject({ phase: 'Exited', observedGeneration: 2, ipAddresses: { shop_back: '10.2.0.2' } });
    // shop_front left first, so shop_back takes the name it freed.
    expect(host.interfaces(netns())).toEqual({ eth0: ['10.2.0.2/24'], lo: [] });
    expect(dns.names('shop/shop_front')).toEqual([]);
  });

  it('after a daemon restart the applied spec on disk still tells a network change from a new process', async () => {
    await createContainer({ networks: [{ name: 'shop_front' }] });
    await reconcile();
    expect(fs.existsSync(appliedSpecPath(paths.containers, ID))).toBe(true);
    // A new daemon: new Networking (nothing attached in memory) and a new reconciler.
    await networking.close();
    networking = makeNetworking();
    controller = makeController();
    await reconcileNetwork(`${NS}/shop_front`, context('network-controller'), networking);
    await reconcileNetwork(`${NS}/shop_back`, context('network-controller'), networking);
    await setNetworks([{ name: 'shop_back' }]);
    await reconcile();
    expect(runtime.calls).toEqual(['create', 'start']);
    expect(host.interfaces(netns())).toEqual({ eth0: ['10.2.0.2/24'], lo: [] });
    expect(host.linkList().some((l) => l.name === hostVethName(KEY, 'shop_front'))).toBe(false);
    expect(stored().status?.ipAddresses).toEqual({ shop_back: '10.2.0.2' });
  });

  it('without the record of what a container was made from (older d2p), a network change recreates, as before', async () => {
    await createContainer({ networks: [{ name: 'shop_front' }] });
    await reconcile();
    fs.rmSync(appliedSpecPath(paths.containers, ID));
    controller = makeController();
    await setNetworks([{ name: 'shop_back' }]);
    await reconcile();
    expect(runtime.calls).toEqual(['create', 'start', 'stop', 'delete', 'create', 'start']);
  });
});
