// `d2p network connect|disconnect` on real containers: a daemon in-process (store, API
// server, every controller), the real Runtime, d2p-shim and netlink, inside hack/sandbox.
// A running client container is connected to the network of a web container: it gets eth1
// with an address there and reaches the web container by name, with the same process (no
// restart); disconnected, eth1 is gone and the name no longer resolves. Connecting to a
// network that does not exist is a clear error naming network and container.
import { execFileSync } from 'node:child_process';
import { describe, expect, it, vi } from 'vitest';

import type { Container, ContainerSpec, Network } from '../../src/api/types';
import { networkCommand } from '../../src/cli/commands/network';
import type { CommandContext } from '../../src/cli/context';
import { CliError, StringWriter } from '../../src/cli/io';
import { resolvePaths } from '../../src/config';
import { useTestDaemon } from '../helpers/daemon';
import { inContainer } from '../helpers/process';
import { requireSandbox } from '../helpers/sandbox-guard';
import { fixtures } from '../helpers/test-image';

requireSandbox('network connect/disconnect integration tests');

const IMAGE = 'd2p.test/netconnect:1';
const NS = 'netc';

function wwwLayer(): Buffer {
  return fixtures.tarArchive([
    { path: 'www/', type: 'dir' },
    { path: 'www/index.html', type: 'file', content: 'hello from web\n' },
  ]);
}

const harness = useTestDaemon('net-connect-it', { cgroupParent: `d2p-netconnect-test-${process.pid}`, images: [{ ref: IMAGE, extraLayers: [wwwLayer()] }] });

/**
 * Internal networks: the embedded DNS then answers names that are not on the client's
 * networks with REFUSED instead of forwarding them upstream (Docker's behaviour too), so
 * the "name no longer resolves" checks send nothing beyond the sandbox's bridges. The
 * attachment itself is the same as on any bridge network.
 */
async function createNetwork(name: string): Promise<Network> {
  await harness.client.for('Network').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Network', metadata: { name, namespace: NS }, spec: { internal: true } });
  await vi.waitFor(async () => expect(((await harness.client.for('Network').get(NS, name)) as Network).status?.phase).toBe('Ready'), { timeout: 30_000, interval: 100 });
  return (await harness.client.for('Network').get(NS, name)) as Network;
}

async function run(name: string, service: string, spec: Partial<ContainerSpec>): Promise<Container> {
  await harness.client.for('Container').create({
    apiVersion: 'd2p.dev/v1alpha1',
    kind: 'Container',
    metadata: { name, namespace: NS, labels: { 'com.docker.compose.service': service } },
    spec: { image: IMAGE, stopSignal: 'SIGKILL', ...spec },
  });
  await vi.waitFor(async () => expect(((await harness.client.for('Container').get(NS, name)) as Container).status?.phase).toBe('Running'), { timeout: 30_000, interval: 100 });
  return (await harness.client.for('Container').get(NS, name)) as Container;
}

const getContainer = async (name: string): Promise<Container> => (await harness.client.for('Container').get(NS, name)) as Container;

/** `d2p network ARGS…` in-process, against the test daemon's client (left open for the other tests). */
async function d2pNetwork(...args: string[]): Promise<number> {
  const ctx: CommandContext = {
    io: { stdout: new StringWriter(), stderr: new StringWriter() },
    paths: resolvePaths({ root: harness.root }),
    debug: false,
    now: () => Date.now(),
    client: async () => harness.client,
    close: async () => undefined,
  };
  return networkCommand({ args, cwd: harness.tmp, waitTimeoutMs: 30_000 }, ctx);
}


/** Interface name → IPv4 addresses in the container's namespace, read by the host's ip(8). */
function interfacesOf(pid: number): Record<string, string[]> {
  const links = JSON.parse(execFileSync('nsenter', ['-t', String(pid), '-n', 'ip', '-j', '-4', 'addr', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string; addr_info: Array<{ local: string; prefixlen: number }> }>;
  const all = JSON.parse(execFileSync('nsenter', ['-t', String(pid), '-n', 'ip', '-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string }>;
  return Object.fromEntries(all.map((l) => [l.ifname, (links.find((a) => a.ifname === l.ifname)?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`)]));
}

/**
 * Resolves `name` with busybox nslookup (the static busybox's own resolver reads the
 * container's resolv.conf; its getaddrinfo would need libnss) and fetches the page from
 * the address found with nc. Prints "<ip>\n<last line of the reply>".
 */
const fetchByName = (name: string): string =>
  `ip=$(nslookup ${name} | awk '/^Address/ {a=$2} END {print a}'); echo "$ip"; printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 "$ip" 80 | tail -n 1`;

describe('d2p network connect|disconnect on running containers', () => {
  it('connects a running container to a second network live and disconnects it again, with the same process throughout', async () => {
    const front = await createNetwork('netc_front');
    const back = await createNetwork('netc_back');
    const web = await run('netc-web-1', 'web', { command: ['httpd', '-f', '-p', '80', '-h', '/www'], networks: [{ name: 'netc_back' }] });
    const client = await run('netc-client-1', 'client', { networks: [{ name: 'netc_front' }] });
    const pid = client.status!.pid!;
    const webIp = web.status!.ipAddresses!.netc_back!;
    expect(interfacesOf(pid)).toEqual({ lo: ['127.0.0.1/8'], eth0: [`${client.status!.ipAddresses!.netc_front}/${front.status!.subnet!.split('/')[1]}`] });
    // On another network, web is neither resolvable nor reachable.
    const before = await inContainer(pid, ['/bin/sh', '-c', 'nslookup web']);
    expect(before.status).not.toBe(0);

    expect(await d2pNetwork('connect', '--alias', 'shopper', 'netc_back', `${NS}/netc-client-1`)).toBe(0);
    const connected = await getContainer('netc-client-1');
    expect(connected.status?.pid).toBe(pid);
    expect(connected.status?.startedAt).toBe(client.status?.startedAt);
    expect(connected.status?.restartCount ?? 0).toBe(0);
    const clientBackIp = connected.status?.ipAddresses?.netc_back;
    expect(clientBackIp).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(interfacesOf(pid).eth1).toEqual([`${clientBackIp}/${back.status!.subnet!.split('/')[1]}`]);
    await vi.waitFor(async () => {
      const fetched = await inContainer(pid, ['/bin/sh', '-c', fetchByName('web')]);
      expect(fetched.output).toBe(`${webIp}\nhello from web\n`);
    }, { timeout: 15_000, interval: 300 });
    // Both ways: web resolves the client by its alias on the network it joined.
    const reverse = await inContainer(web.status!.pid!, ['/bin/sh', '-c', 'nslookup shopper']);
    expect(reverse.output).toContain(clientBackIp);
    // /etc/hosts of the running process now carries its new address.
    const hosts = await inContainer(pid, ['/bin/cat', '/etc/hosts']);
    expect(hosts.output).toContain(`${clientBackIp}\t`);

    expect(await d2pNetwork('disconnect', 'netc_back', `${NS}/netc-client-1`)).toBe(0);
    const disconnected = await getContainer('netc-client-1');
    expect(disconnected.status?.pid).toBe(pid);
    expect(disconnected.status?.ipAddresses).toEqual({ netc_front: client.status!.ipAddresses!.netc_front });
    expect(Object.keys(interfacesOf(pid)).sort()).toEqual(['eth0', 'lo']);
    const after = await inContainer(pid, ['/bin/sh', '-c', 'nslookup web']);
    expect(after.status).not.toBe(0);
    expect(after.output).not.toContain(webIp);
    const gone = await inContainer(web.status!.pid!, ['/bin/sh', '-c', 'nslookup shopper']);
    expect(gone.output).not.toContain(clientBackIp);
  });

  it('connecting to a network that does not exist is a clear error naming network and container, and changes nothing', async () => {
    const client = await run('netc-lonely-1', 'lonely', { networks: [{ name: 'netc_front' }] });
    const error = await d2pNetwork('connect', 'netc_nowhere', `${NS}/netc-lonely-1`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CliError);
    expect((error as Error).message).toBe('No such network: netc_nowhere in namespace netc of container netc-lonely-1');
    const after = await getContainer('netc-lonely-1');
    expect(after.metadata.generation).toBe(client.metadata.generation);
    expect(after.status?.pid).toBe(client.status?.pid);
  });
});
