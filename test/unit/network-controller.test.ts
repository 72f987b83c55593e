// The Network controller and container attachment against a recording fake of the machine
// (DESIGN.md §10): one reconcile, then the calls it made and the state it left are checked.
// No root needed; the real kernel is exercised by test/integration/network.test.ts.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { getCondition } from '../../controllers/conditions';
import { TerminalError } from '../../controllers/errors';
import { createJsonLogger } from '../../controllers/logger';
import type { ReconcileContext } from '../../controllers/manager';
import { NETWORK_FINALIZER, networkController, reconcileNetwork } from '../../controllers/network';
import type { ApiObject, EventObject } from '../../src/api/meta';
import type { Container, ContainerSpec, ContainerStatus, Network } from '../../src/api/types';
import { resolvePaths, type Paths } from '../../src/config';
import { AttachError, Networking, bridgeName, hostVethName, netnsPathOf, type AttachRequest } from '../../src/network/attach';
import { NetworkError } from '../../src/network/errors';
import { PortPublisher } from '../../src/network/port-forward';
import { fakeReconcileContext, startFakeManager } from '../helpers/controller-context';
import { FakeApi } from '../helpers/fake-client';
import { FakeDns, HOST_NS, RecordingHost, errno } from '../helpers/fake-net-host';

// ---------------------------------------------------------------------------- fixtures

let tmp: string;
let paths: Paths;
let api: FakeApi;
let host: RecordingHost;
let dns: FakeDns | undefined;
let networking: Networking;
const logger = createJsonLogger({ write: () => undefined });

function makeNetworking(): Networking {
  return new Networking({
    paths,
    host,
    dns: (lookups) => (dns = new FakeDns(lookups)),
    // A publisher on loopback only: the unit tests never send traffic anywhere.
    ports: new PortPublisher({ onError: () => undefined }),
  });
}

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-network-controller-'));
  paths = resolvePaths({ root: path.join(tmp, 'root') });
  api = new FakeApi();
  host = new RecordingHost();
  host.hostRoute('10.0.2.0/24', 'eth0');
  networking = makeNetworking();
});

afterEach(async () => {
  try {
    await networking.close();
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

function context(): ReconcileContext {
  return fakeReconcileContext(api, { component: 'network-controller', paths, logger });
}

async function createNetwork(name: string, spec: Network['spec'] = {}, namespace = 'shop'): Promise<Network> {
  return (await api.for('Network').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Network', metadata: { name, namespace }, spec } as ApiObject)) as Network;
}

async function createContainer(name: string, spec: Partial<ContainerSpec>, labels: Record<string, string> = {}, namespace = 'shop'): Promise<Container> {
  return (await api.for('Container').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Container', metadata: { name, namespace, labels }, spec: { image: 'busybox', ...spec } } as ApiObject)) as Container;
}

async function reconcile(name: string, namespace = 'shop'): Promise<unknown> {
  return reconcileNetwork(`${namespace}/${name}`, context(), networking);
}

function stored(name: string, namespace = 'shop'): Network {
  return api.peek('Network', namespace, name) as Network;
}

function attachRequest(container: Container): AttachRequest {
  const namespace = container.metadata.namespace ?? 'default';
  return { namespace, name: container.metadata.name, id: `${namespace}_${container.metadata.name}`, spec: container.spec!, labels: container.metadata.labels };
}

function events(): EventObject[] {
  return api.all('Event') as EventObject[];
}

// ---------------------------------------------------------------------------- the controller

describe('Network controller: bridge networks', () => {
  it('creates a bridge with the first free pool subnet, its gateway address, and reports it in status', async () => {
    await createNetwork('shop_default');
    await reconcile('shop_default');
    const bridge = bridgeName('shop', 'shop_default');
    expect(bridge).toMatch(/^d2p-[0-9a-f]{11}$/);
    expect(host.mutations()).toEqual([`addBridge ${bridge}`, `addAddress ${bridge} 172.17.0.1/16`, `setLinkUp ${bridge}`]);
    const network = stored('shop_default');
    expect(network.metadata.finalizers).toEqual([NETWORK_FINALIZER]);
    expect(network.status).toMatchObject({ phase: 'Ready', bridge, subnet: '172.17.0.0/16', gateway: '172.17.0.1', allocations: {}, observedGeneration: 1 });
    expect(getCondition(network.status, 'Ready')).toMatchObject({ status: 'True', reason: 'BridgeReady' });
    expect(getCondition(network.status, 'Outbound')).toMatchObject({ status: 'True', reason: 'Masquerading' });
    expect(host.firewall!.rules.get(bridge)).toEqual({ bridge, subnet: '172.17.0.0/16', internal: false });
    expect(host.firewall!.forwarding).toBe(true);
    expect(dns!.listening).toEqual([{ host: '172.17.0.1', port: 53 }]);
    expect(getCondition(network.status, 'DNSReady')).toMatchObject({ status: 'True' });
  });

  it('never overlaps another Network or a host route, and keeps its own route out of the check', async () => {
    host.hostRoute('172.17.0.0/16', 'eth1');
    await createNetwork('a');
    await reconcile('a');
    expect(stored('a').status?.subnet).toBe('172.18.0.0/16');
    await createNetwork('b', {}, 'other');
    await reconcile('b', 'other');
    expect(stored('b', 'other').status?.subnet).toBe('172.19.0.0/16');
    // A later reconcile sees the kernel route of a's own bridge and must not move a away.
    await reconcile('a');
    expect(stored('a').status?.subnet).toBe('172.18.0.0/16');
  });

  it('honours spec subnet and gateway, and refuses a subnet overlapping another network as a spec error', async () => {
    await createNetwork('a', { subnet: '10.10.0.0/24', gateway: '10.10.0.254' });
    await reconcile('a');
    expect(stored('a').status).toMatchObject({ subnet: '10.10.0.0/24', gateway: '10.10.0.254' });
    await createNetwork('b', { subnet: '10.10.0.128/25' });
    const error = await reconcile('b').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TerminalError);
    expect((error as TerminalError).reason).toBe('SubnetOverlap');
    expect((error as Error).message).toContain('10.10.0.0/24');
  });

  it('is idempotent, and a restarted daemon adopts the bridge and keeps every address', async () => {
    await createNetwork('net');
    await reconcile('net');
    const container = await createContainer('web', { networks: [{ name: 'net' }] });
    const first = await networking.attach(attachRequest(container));
    await reconcile('net');
    expect(stored('net').status?.allocations).toEqual({ 'shop/web': first.ipAddresses.net });
    const callsBefore = host.mutations().length;
    await reconcile('net');
    expect(host.mutations().slice(callsBefore)).toEqual([]);
    // Restart: a new Networking, the kernel state unchanged.
    await networking.close();
    networking = makeNetworking();
    await reconcile('net');
    expect(host.mutations().slice(callsBefore)).toEqual([]);
    const other = await createContainer('api', { networks: [{ name: 'net' }] });
    const second = await networking.attach(attachRequest(other));
    expect(second.ipAddresses.net).not.toBe(first.ipAddresses.net);
    const again = await networking.attach(attachRequest(container));
    expect(again.ipAddresses).toEqual(first.ipAddresses);
  });

  it('rebuilds an allocation a crash kept out of status from the Container status', async () => {
    await createNetwork('net');
    await reconcile('net');
    const container = await createContainer('web', { networks: [{ name: 'net' }] });
    await api.for('Container').updateStatus({ ...container, status: { phase: 'Running', ipAddresses: { net: '172.17.0.9' } } as ContainerStatus });
    await networking.close();
    networking = makeNetworking();
    await reconcile('net');
    expect(stored('net').status?.allocations).toEqual({ 'shop/web': '172.17.0.9' });
  });

  it('releases addresses of containers that are gone', async () => {
    await createNetwork('net');
    await reconcile('net');
    const container = await createContainer('web', { networks: [{ name: 'net' }] });
    await networking.attach(attachRequest(container));
    await reconcile('net');
    expect(Object.keys(stored('net').status?.allocations ?? {})).toEqual(['shop/web']);
    await networking.detach(attachRequest(container));
    await api.for('Container').delete('shop', 'web');
    await reconcile('net');
    expect(stored('net').status?.allocations).toEqual({});
  });

  it('internal networks get isolation rules, no forwarding and no masquerade', async () => {
    await createNetwork('private', { internal: true });
    await reconcile('private');
    const bridge = bridgeName('shop', 'private');
    expect(host.firewall!.rules.get(bridge)?.internal).toBe(true);
    expect(host.firewall!.forwarding).toBe(false);
    expect(getCondition(stored('private').status, 'Outbound')).toMatchObject({ status: 'False', reason: 'Internal' });
  });

  it('without iptables says in status and in an event that nothing is masqueraded', async () => {
    host.firewall = undefined;
    await createNetwork('net');
    await reconcile('net');
    expect(getCondition(stored('net').status, 'Outbound')).toMatchObject({ status: 'False', reason: 'NoFirewallTool' });
    expect(getCondition(stored('net').status, 'Ready')?.status).toBe('True');
    expect(events().map((e) => [e.type, e.reason])).toEqual([['Warning', 'NoFirewallTool']]);
  });

  it('host and none networks need nothing on the machine', async () => {
    await createNetwork('hostnet', { driver: 'host' });
    await createNetwork('nonet', { driver: 'none' });
    await reconcile('hostnet');
    await reconcile('nonet');
    expect(host.mutations()).toEqual([]);
    expect(stored('hostnet').status?.phase).toBe('Ready');
    expect(stored('nonet').status?.phase).toBe('Ready');
    expect(stored('nonet').metadata.finalizers).toBeUndefined();
  });

  it('reports a DNS listener that cannot start as a False condition without failing the network', async () => {
    await createNetwork('net');
    networking = new Networking({
      paths,
      host,
      dns: (lookups) => {
        const fake = new FakeDns(lookups);
        fake.listen = async () => {
          throw new NetworkError('D2P_NETWORK_PORT_IN_USE', 'DNS server cannot listen on 172.17.0.1:53/udp: EADDRINUSE');
        };
        return fake;
      },
    });
    await reconcile('net');
    expect(getCondition(stored('net').status, 'DNSReady')).toMatchObject({ status: 'False', reason: 'ListenFailed' });
    expect(getCondition(stored('net').status, 'DNSReady')?.message).toContain('EADDRINUSE');
    expect(stored('net').status?.phase).toBe('Ready');
  });
});

describe('Network controller: deletion', () => {
  it('waits while a running Container lists the network, then removes bridge, rules, DNS and finalizer', async () => {
    await createNetwork('net');
    await reconcile('net');
    const bridge = bridgeName('shop', 'net');
    const container = await createContainer('web', { networks: [{ name: 'net' }] });
    await api.for('Container').updateStatus({ ...container, status: { phase: 'Running' } as ContainerStatus });
    await api.for('Network').delete('shop', 'net');
    const waiting = await reconcile('net');
    expect(waiting).toEqual({ requeueAfter: expect.any(Number) });
    expect(host.linkList().some((l) => l.name === bridge)).toBe(true);
    expect(events().find((e) => e.reason === 'NetworkInUse')?.message).toContain('web');
    await api.for('Container').updateStatus({ ...(api.peek('Container', 'shop', 'web') as Container), status: { phase: 'Exited' } as ContainerStatus });
    expect(await reconcile('net')).toBeUndefined();
    expect(host.linkList().some((l) => l.name === bridge)).toBe(false);
    expect(host.firewall!.rules.size).toBe(0);
    expect(dns!.listening).toEqual([]);
    expect(stored('net')).toBeUndefined();
  });

  it('a manager reconciles a new Network to Ready through its watch', async () => {
    const manager = await startFakeManager(api, { paths, logger, controllers: [networkController({ networking: () => networking })], maxBackoffMs: 20 });
    try {
      await createNetwork('net');
      await expect.poll(() => stored('net').status?.phase, { timeout: 5000 }).toBe('Ready');
    } finally {
      await manager.stop();
    }
  });
});

// ---------------------------------------------------------------------------- attachment

describe('attach and detach', () => {
  beforeEach(async () => {
    await createNetwork('front');
    await createNetwork('back', { internal: true, subnet: '10.20.0.0/24' });
    await reconcile('front');
    await reconcile('back');
  });

  it('gives each network a veth into a named netns, an address, a default route through the first non-internal gateway, and DNS names', async () => {
    const c = await createContainer('shop-web-1', { hostname: 'webhost', networks: [{ name: 'back', aliases: ['db-client'] }, { name: 'front' }] }, { 'com.docker.compose.service': 'web' });
    const calls = host.mutations().length;
    const attachment = await networking.attach(attachRequest(c));
    const netns = netnsPathOf(paths, 'shop_shop-web-1');
    expect(attachment).toMatchObject({ networkMode: 'bridge', netnsPath: netns, ipAddresses: { back: '10.20.0.2', front: '172.17.0.2' }, ports: [] });
    const vethBack = hostVethName('shop/shop-web-1', 'back');
    const vethFront = hostVethName('shop/shop-web-1', 'front');
    expect(host.mutations().slice(calls)).toEqual([
      `createNetns ${netns}`,
      `addVeth ${vethBack} eth0@${netns}`,
      `setMaster ${vethBack} ${bridgeName('shop', 'back')}`,
      `setLinkUp ${vethBack}`,
      `addAddress eth0 10.20.0.2/24@${netns}`,
      `setLinkUp eth0@${netns}`,
      `addVeth ${vethFront} eth1@${netns}`,
      `setMaster ${vethFront} ${bridgeName('shop', 'front')}`,
      `setLinkUp ${vethFront}`,
      `addAddress eth1 172.17.0.2/16@${netns}`,
      `setLinkUp eth1@${netns}`,
      `addRoute default via 172.17.0.1@${netns}`,
    ]);
    expect(dns!.records.get('shop/back')).toEqual([{ name: 'shop-web-1', ips: ['10.20.0.2'], aliases: ['web', 'db-client', 'webhost'] }]);
    expect(dns!.records.get('shop/front')).toEqual([{ name: 'shop-web-1', ips: ['172.17.0.2'], aliases: ['web', 'webhost'] }]);
    expect(dns!.lookups.networksOf('172.17.0.2')).toEqual(['shop/back', 'shop/front']);
    expect(dns!.lookups.networksOf('172.17.0.99')).toEqual([]);
    expect(dns!.lookups.forwardFor('10.20.0.2')).toBe(true);
    const dir = path.join(paths.containers, 'shop_shop-web-1');
    expect(fs.readFileSync(path.join(dir, 'resolv.conf'), 'utf8')).toMatch(/^nameserver 10\.20\.0\.1\n(search .*\n)?options ndots:0\n$/);
    const hosts = fs.readFileSync(path.join(dir, 'hosts'), 'utf8');
    expect(hosts).toContain('10.20.0.2\twebhost shop-web-1 web db-client\n');
    expect(hosts).toContain('172.17.0.2\twebhost shop-web-1 web db-client\n');
    // A second attach changes nothing.
    const settled = host.mutations().length;
    expect(await networking.attach(attachRequest(c))).toEqual(attachment);
    expect(host.mutations().slice(settled)).toEqual([]);
  });

  it('gives a container on internal networks only no default route and no forwarding of foreign names', async () => {
    const c = await createContainer('db', { networks: [{ name: 'back' }] });
    const attachment = await networking.attach(attachRequest(c));
    expect(host.routeList(attachment.netnsPath).filter((r) => r.dst === 'default')).toEqual([]);
    expect(dns!.lookups.forwardFor(attachment.ipAddresses.back)).toBe(false);
  });

  it('honours ipv4Address and refuses an address already taken', async () => {
    const a = await createContainer('a', { networks: [{ name: 'back', ipv4Address: '10.20.0.50' }] });
    const b = await createContainer('b', { networks: [{ name: 'back', ipv4Address: '10.20.0.50' }] });
    expect((await networking.attach(attachRequest(a))).ipAddresses.back).toBe('10.20.0.50');
    const error = await networking.attach(attachRequest(b)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as NetworkError).code).toBe('D2P_NETWORK_ADDRESS_IN_USE');
    expect((error as Error).message).toContain('shop/a');
  });

  it('refuses to attach to a network that is not ready, naming it', async () => {
    const c = await createContainer('web', { networks: [{ name: 'missing' }] });
    const error = await networking.attach(attachRequest(c)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AttachError);
    expect((error as AttachError).code).toBe('D2P_NETWORK_NOT_READY');
    expect((error as Error).message).toContain('shop/missing');
  });

  it('repairs half a veth pair left by a crash', async () => {
    const c = await createContainer('web', { networks: [{ name: 'front' }] });
    const attachment = await networking.attach(attachRequest(c));
    host.deleteLink('eth0', attachment.netnsPath);
    await networking.attach(attachRequest(c));
    expect(host.linkList(attachment.netnsPath).map((l) => l.name).sort()).toEqual(['eth0', 'lo']);
    expect(host.addrList('eth0', attachment.netnsPath).map((a) => a.cidr)).toEqual([`${attachment.ipAddresses.front}/16`]);
  });

  it('detach removes veths, names, addresses and the namespace file, even for a fresh Networking', async () => {
    const c = await createContainer('web', { networks: [{ name: 'front' }, { name: 'back' }] });
    const attachment = await networking.attach(attachRequest(c));
    await networking.detach(attachRequest(c));
    expect(host.linkList().filter((l) => l.type === 'veth')).toEqual([]);
    expect(host.netnsExists(attachment.netnsPath!)).toBe(false);
    expect(dns!.records.get('shop/front')).toEqual([]);
    expect(networking.allocations('shop', 'front')).toEqual({});
    // After a restart the in-memory endpoints are gone: detach works from the spec alone.
    await networking.attach(attachRequest(c));
    networking = makeNetworking();
    await reconcile('front');
    await reconcile('back');
    await networking.detach(attachRequest(c));
    expect(host.linkList().filter((l) => l.type === 'veth')).toEqual([]);
    expect(host.netnsExists(attachment.netnsPath!)).toBe(false);
  });

  it('detach leaves the veths to the namespace teardown, and deletes those a namespace kept alive outlives', async () => {
    const c = await createContainer('web', { networks: [{ name: 'front' }] });
    await networking.attach(attachRequest(c));
    const before = host.mutations().length;
    await networking.detach(attachRequest(c));
    // Removing the namespace took the pair with it: no deleteLink of its own.
    expect(host.mutations().slice(before).filter((m) => m.startsWith('deleteLink'))).toEqual([]);
    expect(host.linkExists(hostVethName('shop/web', 'front'))).toBe(false);

    // A namespace something still holds keeps its veths: after a while they are deleted, and said so.
    const errors: Error[] = [];
    const keeping = new (class extends RecordingHost {
      override removeNetns(file: string): void {
        this.calls.push(`removeNetns ${file} (kept alive)`);
      }
    })();
    keeping.hostRoute('10.0.2.0/24', 'eth0');
    host = keeping;
    networking = new Networking({ paths, host, dns: (lookups) => (dns = new FakeDns(lookups)), ports: new PortPublisher({ onError: () => undefined }), onError: (e) => errors.push(e) });
    await reconcile('front');
    await networking.attach(attachRequest(c));
    const started = Date.now();
    await networking.detach(attachRequest(c));
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_900);
    expect(keeping.mutations()).toContain(`deleteLink ${hostVethName('shop/web', 'front')}`);
    expect(keeping.linkExists(hostVethName('shop/web', 'front'))).toBe(false);
    expect(errors.map((e) => e.message)).toEqual([expect.stringContaining('outlived its network namespace')]);
  });

  it('network_mode host needs nothing, none gets a namespace with lo only, container: joins the peer', async () => {
    const hostMode = await createContainer('h', { networkMode: 'host' });
    const calls = host.mutations().length;
    expect(await networking.attach(attachRequest(hostMode))).toEqual({ networkMode: 'host', ipAddresses: {}, ports: [] });
    expect(host.mutations().slice(calls)).toEqual([]);
    const none = await createContainer('n', { networkMode: 'none' });
    const isolated = await networking.attach(attachRequest(none));
    expect(isolated.networkMode).toBe('none');
    expect(host.linkList(isolated.netnsPath).map((l) => l.name)).toEqual(['lo']);
    const sidecar = await createContainer('s', { networkMode: 'container:n' });
    await expect(networking.attach(attachRequest(sidecar))).rejects.toMatchObject({ code: 'D2P_NETWORK_PEER_NOT_READY' });
    expect(await networking.attach({ ...attachRequest(sidecar), peerId: 'shop_n' })).toEqual({ networkMode: 'container', netnsPath: isolated.netnsPath, ipAddresses: {}, ports: [] });
    const bad = await createContainer('bad', { networkMode: 'host', networks: [{ name: 'front' }] });
    await expect(networking.attach(attachRequest(bad))).rejects.toMatchObject({ code: 'D2P_NETWORK_INVALID_ATTACHMENT' });
  });

  it('publishes ports on a random host port, and a second container asking for the same port gets a clear error', async () => {
    const a = await createContainer('a', { networks: [{ name: 'front' }], ports: [{ containerPort: 80, hostIP: '127.0.0.1', protocol: 'tcp' }] });
    const published = await networking.attach(attachRequest(a));
    expect(published.ports).toHaveLength(1);
    const [port] = published.ports;
    expect(port).toMatchObject({ hostIP: '127.0.0.1', containerPort: 80, protocol: 'tcp' });
    expect(port.hostPort).toBeGreaterThan(0);
    // The port is really held: the kernel refuses a second listener.
    const probe = net.createServer();
    const bindError = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      probe.once('error', resolve);
      probe.listen(port.hostPort, '127.0.0.1', () => probe.close(() => resolve(undefined)));
    });
    expect(bindError?.code).toBe('EADDRINUSE');
    const b = await createContainer('b', { networks: [{ name: 'front' }], ports: [{ containerPort: 80, hostPort: port.hostPort, hostIP: '127.0.0.1' }] });
    const error = await networking.attach(attachRequest(b)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as NetworkError).code).toBe('D2P_NETWORK_PORT_IN_USE');
    expect((error as Error).message).toContain('container shop/a');
    await networking.detach(attachRequest(a));
    const freed = await networking.attach(attachRequest(b));
    expect(freed.ports[0].hostPort).toBe(port.hostPort);
  });
});
