// d2p network ls|inspect|create|rm|connect|disconnect against the in-memory API: argument
// errors, the checks docker network connect makes before it changes anything, the edit of
// spec.networks, and the wait for the Container controller's answer (played here by the
// test writing status, as the controller would).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import type { ApiObject } from '../../src/api/meta';
import type { Container, ContainerSpec, Network } from '../../src/api/types';
import { checkConnect, connectedNetworkName, inspectView, networkCommand, networkFromFlags } from '../../src/cli/commands/network';
import type { CommandContext } from '../../src/cli/context';
import { CliError, ReportedError, StringWriter } from '../../src/cli/io';
import { main } from '../../src/cli/main';
import type { Client } from '../../src/client/types';
import { resolvePaths } from '../../src/config';
import { FakeApi } from '../helpers/fake-client';

let tmp: string;
let api: FakeApi;
let stdout: StringWriter;
let stderr: StringWriter;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-network-cli-'));
  api = new FakeApi();
  stdout = new StringWriter();
  stderr = new StringWriter();
});

afterEach(() => {
  api.endWatches();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The typed Client face over the FakeApi, as the commands use it. */
function clientOf(fake: FakeApi): Client {
  return {
    socketPath: '/nonexistent',
    for: (kind: string) => fake.for(kind),
    images: fake.for('Image'),
    builds: fake.for('Build'),
    volumes: fake.for('Volume'),
    networks: fake.for('Network'),
    containers: fake.for('Container'),
    services: fake.for('Service'),
    events: fake.for('Event'),
    applyAll: async () => {
      throw new Error('not used');
    },
    discovery: async () => {
      throw new Error('not used');
    },
    healthz: async () => undefined,
    close: async () => undefined,
  } as unknown as Client;
}

function context(): CommandContext {
  return {
    io: { stdout, stderr },
    paths: resolvePaths({ root: path.join(tmp, 'root') }),
    debug: false,
    now: () => Date.now(),
    client: async () => clientOf(api),
    close: async () => undefined,
  };
}

/** Runs `d2p network ARGS…` in a directory without a Compose file; a short wait so a test that provokes a timeout ends soon. */
function network(...args: string[]): Promise<number> {
  return networkCommand({ args, cwd: tmp, waitTimeoutMs: 3_000 }, context());
}

async function createNetwork(name: string, namespace: string, status: Network['status'] = { phase: 'Ready', subnet: '10.2.0.0/24', gateway: '10.2.0.1', allocations: {} }, spec: Network['spec'] = {}): Promise<void> {
  const created = await api.for('Network').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Network', metadata: { name, namespace }, spec } as ApiObject);
  await api.for('Network').updateStatus({ ...created, status });
}

async function createContainer(name: string, namespace: string, spec: Partial<ContainerSpec>, status: Container['status'] = { phase: 'Running', observedGeneration: 1 }): Promise<Container> {
  const created = await api.for('Container').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Container', metadata: { name, namespace }, spec: { image: 'busybox', ...spec } } as ApiObject);
  return (await api.for('Container').updateStatus({ ...created, status })) as Container;
}

const stored = (name: string, namespace = 'shop'): Container => api.peek('Container', namespace, name) as Container;

/** Plays the Container controller: once spec.networks changed, writes what `edit` makes of the status. */
async function answerAsController(name: string, edit: (c: Container) => Container['status']): Promise<void> {
  await vi.waitFor(() => expect(stored(name).metadata.generation).toBe(2), { timeout: 2_000, interval: 10 });
  const c = stored(name);
  await api.for('Container').updateStatus({ ...c, status: edit(c) });
}

async function failure(run: Promise<number>): Promise<CliError> {
  const error = await run.catch((e: unknown) => e);
  expect(error).toBeInstanceOf(CliError);
  return error as CliError;
}

describe('d2p network connect', () => {
  beforeEach(async () => {
    await createNetwork('shop_front', 'shop', { phase: 'Ready', subnet: '10.1.0.0/24', gateway: '10.1.0.1', allocations: { 'shop/shop-web-1': '10.1.0.2' } });
    await createNetwork('shop_back', 'shop', { phase: 'Ready', subnet: '10.2.0.0/24', gateway: '10.2.0.1', allocations: { 'shop/shop-db-1': '10.2.0.5' } });
    await createNetwork('private', 'other');
    await createContainer('shop-web-1', 'shop', { networks: [{ name: 'shop_front' }] }, { phase: 'Running', observedGeneration: 1, ipAddresses: { shop_front: '10.1.0.2' } });
  });

  it('adds the network to spec.networks (aliases, address) and returns once the running container has it', async () => {
    const run = network('connect', '--alias', 'api', '--alias', 'v1', '--ip', '10.2.0.9', 'shop_back', 'shop/shop-web-1');
    await answerAsController('shop-web-1', (c) => ({ ...c.status, observedGeneration: 2, ipAddresses: { shop_front: '10.1.0.2', shop_back: '10.2.0.9' } }));
    expect(await run).toBe(0);
    expect(stored('shop-web-1').spec?.networks).toEqual([{ name: 'shop_front' }, { name: 'shop_back', aliases: ['api', 'v1'], ipv4Address: '10.2.0.9' }]);
  });

  it('takes the Compose short name of a project network, and -p for the container', async () => {
    const run = networkCommand({ args: ['connect', '-p', 'shop', 'back', 'shop-web-1'], cwd: tmp, waitTimeoutMs: 3_000 }, context());
    await answerAsController('shop-web-1', (c) => ({ ...c.status, observedGeneration: 2, ipAddresses: { shop_front: '10.1.0.2', shop_back: '10.2.0.2' } }));
    expect(await run).toBe(0);
    expect(stored('shop-web-1').spec?.networks?.map((n) => n.name)).toEqual(['shop_front', 'shop_back']);
  });

  it('prints the controller’s reason naming network and container, and leaves the spec as it was', async () => {
    const run = network('connect', 'shop_back', 'shop/shop-web-1');
    await answerAsController('shop-web-1', (c) => ({
      ...c.status,
      observedGeneration: 2,
      conditions: [{ type: 'NetworksAttached', status: 'False', reason: 'SubnetFull', message: 'network shop/shop_back: no free address', observedGeneration: 2 }],
    }));
    const error = await failure(run);
    expect(error.message).toBe('failed to connect container shop-web-1 to network shop_back: network shop/shop_back: no free address');
    expect(stored('shop-web-1').spec?.networks).toEqual([{ name: 'shop_front' }]);
  });

  it('a stopped container only gets its spec changed, without waiting', async () => {
    await createContainer('shop-job-1', 'shop', { networks: [] }, { phase: 'Exited', observedGeneration: 1 });
    expect(await network('connect', 'shop_back', 'shop/shop-job-1')).toBe(0);
    expect(stored('shop-job-1').spec?.networks).toEqual([{ name: 'shop_back' }]);
  });

  it('refuses, before writing anything, what docker refuses, each time naming network and container', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['connect', 'missing', 'shop/shop-web-1'], /^No such network: missing in namespace shop of container shop-web-1$/],
      [['connect', 'private', 'shop/shop-web-1'], /^No such network: private in namespace shop of container shop-web-1; other\/private is in another namespace/],
      [['connect', 'other/private', 'shop/shop-web-1'], /^network other\/private is in namespace other, but container shop\/shop-web-1 is in namespace shop/],
      [['connect', 'shop_front', 'shop/shop-web-1'], /^endpoint with name shop-web-1 already exists in network shop_front$/],
      [['connect', '--ip', '10.9.0.3', 'shop_back', 'shop/shop-web-1'], /^--ip 10\.9\.0\.3 is not in subnet 10\.2\.0\.0\/24 of network shop_back$/],
      [['connect', '--ip', '10.2.0.5', 'shop_back', 'shop/shop-web-1'], /^Address already in use: 10\.2\.0\.5 on network shop_back belongs to container shop\/shop-db-1$/],
      [['connect', '--ip', 'ten', 'shop_back', 'shop/shop-web-1'], /^--ip "ten": not an IPv4 address$/],
      [['connect', 'shop_back', 'shop/nobody'], /^No such container: shop\/nobody$/],
    ];
    for (const [args, message] of cases) {
      const error = await failure(network(...args));
      expect(error.message, args.join(' ')).toMatch(message);
    }
    expect(stored('shop-web-1').metadata.generation).toBe(1);
  });

  it('refuses containers without a namespace of their own, and networks that are not bridges', async () => {
    await createContainer('shop-host-1', 'shop', { networkMode: 'host' });
    await createNetwork('hostnet', 'shop', { phase: 'Ready' }, { driver: 'host' });
    expect((await failure(network('connect', 'shop_back', 'shop/shop-host-1'))).message).toMatch(/^container shop-host-1 has network mode host: it has no network namespace of its own/);
    expect((await failure(network('connect', 'hostnet', 'shop/shop-web-1'))).message).toBe('network hostnet has driver host: only bridge networks can be connected to a container');
  });

  it('usage errors: a missing operand or an unknown flag is commander’s message and exit status 1', async () => {
    const error = await network('connect', 'shop_back').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReportedError);
    expect(stderr.toString()).toContain("missing required argument 'container'");
    stderr.clear();
    await expect(network('connect', '--ip6', '::1', 'shop_back', 'shop/shop-web-1')).rejects.toBeInstanceOf(ReportedError);
    expect(stderr.toString()).toContain("unknown option '--ip6'");
    stderr.clear();
    await expect(network('frobnicate')).rejects.toBeInstanceOf(ReportedError);
    expect(stderr.toString()).toContain("unknown command 'frobnicate'");
  });

  it('is reachable as `d2p network` from the main program', async () => {
    const err = new StringWriter();
    const status = await main(['network', 'connect', 'shop_back'], { stdout: new StringWriter(), stderr: err }, { load: () => networkCommand as never, context: { startDaemon: false } });
    expect(status).toBe(1);
    expect(err.toString()).toContain("missing required argument 'container'");
  });
});

describe('d2p network disconnect', () => {
  beforeEach(async () => {
    await createNetwork('shop_front', 'shop');
    await createNetwork('shop_back', 'shop');
    await createContainer('shop-web-1', 'shop', { networks: [{ name: 'shop_front' }, { name: 'shop_back' }] }, { phase: 'Running', observedGeneration: 1, ipAddresses: { shop_front: '10.1.0.2', shop_back: '10.2.0.2' } });
  });

  it('removes the entry and returns once the running container lost the address', async () => {
    const run = network('disconnect', 'shop_front', 'shop/shop-web-1');
    await answerAsController('shop-web-1', (c) => ({ ...c.status, observedGeneration: 2, ipAddresses: { shop_back: '10.2.0.2' } }));
    expect(await run).toBe(0);
    expect(stored('shop-web-1').spec?.networks).toEqual([{ name: 'shop_back' }]);
  });

  it('a network the container is not on is an error naming both, unless -f', async () => {
    const error = await failure(network('disconnect', 'elsewhere', 'shop/shop-web-1'));
    expect(error.message).toBe('container shop-web-1 is not connected to network elsewhere');
    expect(await network('disconnect', '-f', 'elsewhere', 'shop/shop-web-1')).toBe(0);
    expect(stored('shop-web-1').metadata.generation).toBe(1);
  });

  it('times out with a clear error when no controller answers', async () => {
    const error = await failure(networkCommand({ args: ['disconnect', 'shop_back', 'shop/shop-web-1'], cwd: tmp, waitTimeoutMs: 200 }, context()));
    expect(error.message).toMatch(/^timed out after 0s waiting for container shop-web-1 to disconnect from network shop_back$/);
  });

  it('names the networks by their entry: exact, namespace/name or the Compose short name', () => {
    const c = stored('shop-web-1');
    expect(connectedNetworkName(c, 'shop_back')).toBe('shop_back');
    expect(connectedNetworkName(c, 'back')).toBe('shop_back');
    expect(connectedNetworkName(c, 'shop/front')).toBe('shop_front');
    expect(connectedNetworkName(c, 'other/shop_back')).toBeUndefined();
  });
});

describe('d2p network create, ls, inspect, rm', () => {
  it('create turns docker flags into a Network spec, and refuses bad ones naming the flag', () => {
    expect(networkFromFlags('n', 'shop', { driver: 'bridge', subnet: '10.5.0.0/24', gateway: '10.5.0.254', internal: true, opt: ['com.docker.network.driver.mtu=1400', 'x=y'], label: ['tier=db'] })).toEqual({
      apiVersion: 'd2p.dev/v1alpha1',
      kind: 'Network',
      metadata: { name: 'n', namespace: 'shop', labels: { tier: 'db' } },
      spec: { driver: 'bridge', subnet: '10.5.0.0/24', gateway: '10.5.0.254', internal: true, mtu: 1400, driverOpts: { x: 'y' } },
    });
    expect(() => networkFromFlags('n', 'shop', { driver: 'overlay' })).toThrow(/--driver "overlay": d2p has the bridge, host and none drivers/);
    expect(() => networkFromFlags('n', 'shop', { driver: 'bridge', gateway: '10.5.0.1' })).toThrow(/--gateway and --ip-range need --subnet/);
    expect(() => networkFromFlags('n', 'shop', { driver: 'bridge', opt: ['novalue'] })).toThrow(/--opt "novalue": expected key=value/);
    expect(() => networkFromFlags('n', 'shop', { driver: 'host', internal: true })).toThrow(/need the bridge driver, not host/);
  });

  it('create waits for the Network controller, and a refused network is removed again with the reason printed', async () => {
    const run = network('create', '-n', 'shop', '--subnet', '10.5.0.0/24', 'dup');
    await vi.waitFor(() => expect(api.peek('Network', 'shop', 'dup')).toBeDefined(), { timeout: 2_000, interval: 10 });
    const created = api.peek('Network', 'shop', 'dup') as Network;
    await api.for('Network').updateStatus({ ...created, status: { conditions: [{ type: 'Ready', status: 'False', reason: 'SubnetOverlap', message: 'subnet 10.5.0.0/24 overlaps network shop/a', observedGeneration: 1 }] } });
    const error = await failure(run);
    expect(error.message).toBe('network shop/dup could not be created: subnet 10.5.0.0/24 overlaps network shop/a');
    expect(api.peek('Network', 'shop', 'dup')).toBeUndefined();
  });

  it('ls lists every namespace unless one is named; -q prints names', async () => {
    await createNetwork('shop_default', 'shop');
    await createNetwork('bridge2', 'default', { phase: 'Pending' }, { internal: true });
    expect(await network('ls')).toBe(0);
    const lines = stdout.toString().trim().split('\n');
    expect(lines[0]).toMatch(/^NAMESPACE\s+NAME\s+DRIVER\s+SUBNET\s+GATEWAY\s+INTERNAL\s+STATUS$/);
    expect(lines[1]).toMatch(/^default\s+bridge2\s+bridge\s+true\s+Pending$/);
    expect(lines[2]).toMatch(/^shop\s+shop_default\s+bridge\s+10\.2\.0\.0\/24\s+10\.2\.0\.1\s+false\s+Ready$/);
    stdout.clear();
    expect(await network('ls', '-q', '-n', 'shop')).toBe(0);
    expect(stdout.toString()).toBe('shop_default\n');
  });

  it('inspect shows docker’s shape with the attached containers; a missing one is an error after the others', async () => {
    await createNetwork('shop_default', 'shop');
    await createContainer('shop-web-1', 'shop', { networks: [{ name: 'shop_default', aliases: ['web'] }] }, { phase: 'Running', ipAddresses: { shop_default: '10.2.0.3' } });
    await expect(network('inspect', 'shop_default', 'nope')).rejects.toBeInstanceOf(ReportedError);
    const [view] = JSON.parse(stdout.toString()) as Array<Record<string, unknown>>;
    expect(view).toMatchObject({ Name: 'shop_default', Namespace: 'shop', Driver: 'bridge', IPAM: { Config: [{ Subnet: '10.2.0.0/24', Gateway: '10.2.0.1' }] } });
    expect(view.Containers).toEqual({ 'shop-web-1': { IPv4Address: '10.2.0.3/24', Aliases: ['web'], State: 'Running' } });
    expect(stderr.toString()).toContain('No such network: nope');
  });

  it('rm refuses a network running containers are on, naming them; -f ignores missing networks', async () => {
    await createNetwork('shop_default', 'shop');
    await createContainer('shop-web-1', 'shop', { networks: [{ name: 'shop_default' }] });
    await expect(network('rm', 'shop/shop_default')).rejects.toBeInstanceOf(ReportedError);
    expect(stderr.toString()).toBe('error: error while removing network: network shop/shop_default has active endpoints (container shop-web-1): stop them or disconnect them first\n');
    expect(api.peek('Network', 'shop', 'shop_default')).toBeDefined();
    expect(await network('rm', '-f', 'shop/nothing')).toBe(0);
  });

  it('connect refuses the gateway address and an alias with spaces; inspect of an unused network lists no containers', () => {
    const c: Container = { apiVersion: 'd2p.dev/v1alpha1', kind: 'Container', metadata: { name: 'a', namespace: 'shop' }, spec: { image: 'x', networks: [] } };
    const n: Network = { apiVersion: 'd2p.dev/v1alpha1', kind: 'Network', metadata: { name: 'n', namespace: 'shop' }, spec: {}, status: { subnet: '10.7.0.0/24', gateway: '10.7.0.1' } };
    expect(() => checkConnect(c, n, { ip: '10.7.0.1' })).toThrow('--ip 10.7.0.1 is the gateway address of network n');
    expect(() => checkConnect(c, n, { alias: ['two words'] })).toThrow(/--alias "two words"/);
    expect(() => checkConnect(c, n, { ip: '10.7.0.8', alias: ['ok'] })).not.toThrow();
    expect(inspectView(n, [c])).toMatchObject({ Containers: {} });
  });
});
