// The Network controller and container attachment against the real kernel, inside
// hack/sandbox's private network namespace: bridges, veths, named namespaces, iptables
// rules and the embedded DNS server, each result checked independently with iproute2,
// busybox ping/nslookup run in the containers' namespaces through nsenter(1).
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { createJsonLogger } from '../../controllers/logger';
import type { ReconcileContext } from '../../controllers/manager';
import { reconcileNetwork } from '../../controllers/network';
import type { ApiObject } from '../../src/api/meta';
import type { Container, ContainerSpec, Network } from '../../src/api/types';
import { resolvePaths, type Paths } from '../../src/config';
import { Networking, type AttachRequest } from '../../src/network/attach';
import { realNetHost } from '../../src/network/netns';
import { fakeReconcileContext } from '../helpers/controller-context';
import { FakeApi } from '../helpers/fake-client';
import { requireSandbox } from '../helpers/sandbox-guard';

requireSandbox('test/integration/network.test.ts');

const BUSYBOX = '/usr/bin/busybox';
const logger = createJsonLogger({ write: () => undefined });

let tmp: string;
let paths: Paths;
let api: FakeApi;
let networking: Networking;
let attached: AttachRequest[];

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-network-it-'));
  paths = resolvePaths({ root: path.join(tmp, 'root') });
  api = new FakeApi();
  attached = [];
  // Upstream on loopback where nothing listens: a name that is not ours fails here and
  // never leaves the sandbox.
  networking = new Networking({ paths, host: realNetHost(), dnsUpstreams: ['127.0.0.1:9'], onError: () => undefined });
});

afterEach(async () => {
  try {
    for (const request of attached) await networking.detach(request);
    for (const network of api.all('Network') as Network[]) {
      if (network.metadata.deletionTimestamp === undefined) await api.for('Network').delete(network.metadata.namespace, network.metadata.name);
      await reconcileNetwork(`${network.metadata.namespace}/${network.metadata.name}`, context(), networking);
    }
  } finally {
    await networking.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

function context(): ReconcileContext {
  return fakeReconcileContext(api, { component: 'network-controller', paths, logger });
}

async function readyNetwork(name: string, spec: Network['spec'] = {}): Promise<Network> {
  await api.for('Network').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Network', metadata: { name, namespace: 'it' }, spec } as ApiObject);
  await reconcileNetwork(`it/${name}`, context(), networking);
  const network = api.peek('Network', 'it', name) as Network;
  expect(network.status?.phase).toBe('Ready');
  return network;
}

async function attach(name: string, spec: Partial<ContainerSpec>, service?: string) {
  const container = (await api.for('Container').create({
    apiVersion: 'd2p.dev/v1alpha1',
    kind: 'Container',
    metadata: { name, namespace: 'it', labels: service ? { 'com.docker.compose.service': service } : {} },
    spec: { image: 'busybox', ...spec },
  } as ApiObject)) as Container;
  const request: AttachRequest = { namespace: 'it', name, id: `it_${name}`, spec: container.spec!, labels: container.metadata.labels };
  attached.push(request);
  return networking.attach(request);
}

// ---- independent observation ----

interface IpAddr {
  ifname: string;
  addr_info: { family: string; local: string; prefixlen: number }[];
}

function ipJson<T>(args: string[], netns?: string): T {
  const command = netns ? ['nsenter', `--net=${netns}`, 'ip', '-j', ...args] : ['ip', '-j', ...args];
  return JSON.parse(execFileSync(command[0], command.slice(1), { encoding: 'utf8' })) as T;
}

function ipv4Of(link: string, netns?: string): string[] {
  const [entry] = ipJson<IpAddr[]>(['addr', 'show', 'dev', link], netns);
  return entry.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
}

function linkNames(netns?: string): string[] {
  return ipJson<{ ifname: string }[]>(['link', 'show'], netns).map((l) => l.ifname);
}

function routes(netns: string): { dst: string; gateway?: string }[] {
  return ipJson(['-4', 'route', 'show'], netns);
}

/**
 * Asynchronous on purpose: the DNS server answering these queries runs in this very
 * process, and a synchronous spawn would block the event loop it answers on.
 */
function inNetns(netns: string, args: string[]): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', [`--net=${netns}`, BUSYBOX, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('close', (status) => resolve({ status, output }));
  });
}

async function ping(netns: string, ip: string): Promise<boolean> {
  return (await inNetns(netns, ['ping', '-c1', '-W2', ip])).status === 0;
}

function nslookup(netns: string, name: string, server: string): Promise<{ status: number | null; output: string }> {
  return inNetns(netns, ['nslookup', '-timeout=2', name, server]);
}

function allAddresses(): string[] {
  return ipJson<IpAddr[]>(['addr', 'show']).flatMap((l) => l.addr_info.filter((a) => a.family === 'inet').map((a) => a.local));
}

// ---- tests ----

describe('bridge networks on the real kernel', () => {
  it('makes a bridge carrying the gateway address of the chosen subnet', async () => {
    const network = await readyNetwork('front');
    const bridge = network.status!.bridge!;
    expect(linkNames()).toContain(bridge);
    expect(ipv4Of(bridge)).toEqual([`${network.status!.gateway}/${network.status!.subnet!.split('/')[1]}`]);
    const [link] = ipJson<{ flags: string[]; linkinfo?: { info_kind: string } }[]>(['-d', 'link', 'show', 'dev', bridge]);
    expect(link.linkinfo?.info_kind).toBe('bridge');
    expect(link.flags).toContain('UP');
  });

  it('two containers on one network reach each other and resolve each other by name; another network sees neither', async () => {
    const front = await readyNetwork('front');
    const other = await readyNetwork('other');
    const gateway = front.status!.gateway!;
    const web = await attach('web-1', { networks: [{ name: 'front', aliases: ['www'] }] }, 'web');
    const api1 = await attach('api-1', { networks: [{ name: 'front' }] }, 'api');
    const stranger = await attach('stranger', { networks: [{ name: 'other' }] });
    const webIP = web.ipAddresses.front;
    const apiIP = api1.ipAddresses.front;
    expect(ipv4Of('eth0', web.netnsPath)).toEqual([`${webIP}/${front.status!.subnet!.split('/')[1]}`]);
    expect(routes(web.netnsPath!)).toContainEqual(expect.objectContaining({ dst: 'default', gateway }));

    expect(await ping(web.netnsPath!, apiIP)).toBe(true);
    expect(await ping(api1.netnsPath!, webIP)).toBe(true);
    for (const name of ['web', 'www', 'web-1']) {
      const answer = await nslookup(api1.netnsPath!, name, gateway);
      expect(answer.status, answer.output).toBe(0);
      expect(answer.output).toContain(webIP);
    }
    const resolv = fs.readFileSync(path.join(paths.containers, 'it_api-1', 'resolv.conf'), 'utf8');
    expect(resolv.split('\n')[0]).toBe(`nameserver ${gateway}`);

    // The stranger is on another bridge: with forwarding on (front masquerades out), only
    // the firewall's isolation rules keep it away; and its DNS server
    // (the same daemon, on its own gateway) does not know front's names.
    expect(fs.readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim()).toBe('1');
    expect(await ping(stranger.netnsPath!, webIP)).toBe(false);
    const foreign = await nslookup(stranger.netnsPath!, 'web', other.status!.gateway!);
    expect(foreign.status).not.toBe(0);
    expect(foreign.output).not.toContain(webIP);
    // Names of front are not served to it through front's gateway either (not its client).
    expect((await nslookup(stranger.netnsPath!, 'web', gateway)).output).not.toContain(webIP);
  });

  it('an internal network gives no default route, and its containers still reach each other', async () => {
    await readyNetwork('private', { internal: true });
    const a = await attach('a', { networks: [{ name: 'private' }] });
    const b = await attach('b', { networks: [{ name: 'private' }] });
    expect(routes(a.netnsPath!).filter((r) => r.dst === 'default')).toEqual([]);
    expect(await ping(a.netnsPath!, b.ipAddresses.private)).toBe(true);
  });

  it('network_mode none has only lo; detach and delete leave no bridge, veth, netns file or address', async () => {
    const front = await readyNetwork('front');
    const none = await attach('isolated', { networkMode: 'none' });
    expect(linkNames(none.netnsPath)).toEqual(['lo']);
    const web = await attach('web', { networks: [{ name: 'front' }] });
    const netnsFiles = [none.netnsPath!, web.netnsPath!];
    expect(netnsFiles.every((f) => fs.existsSync(f))).toBe(true);
    for (const request of attached.splice(0)) await networking.detach(request);
    await api.for('Network').delete('it', 'front');
    expect(await reconcileNetwork('it/front', context(), networking)).toBeUndefined();
    expect(api.peek('Network', 'it', 'front')).toBeUndefined();
    const left = linkNames();
    expect(left.filter((l) => l.startsWith('d2p-') || l.startsWith('veth'))).toEqual([]);
    expect(netnsFiles.filter((f) => fs.existsSync(f))).toEqual([]);
    expect(allAddresses()).not.toContain(front.status!.gateway);
    expect(allAddresses()).not.toContain(web.ipAddresses.front);
    const rules = execFileSync('iptables', ['-w', '-S'], { encoding: 'utf8' }) + execFileSync('iptables', ['-w', '-t', 'nat', '-S'], { encoding: 'utf8' });
    expect(rules).not.toContain(front.status!.bridge!);
  });
});
