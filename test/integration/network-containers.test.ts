// Networks with real Containers: a daemon in-process (store, API server, every controller),
// the real Runtime and d2p-shim, an image imported from a locally built OCI layout. Two
// services on one Network reach each other by name (nslookup, then nc → httpd), through the
// embedded DNS on the bridge gateway; deleting everything leaves no bridge or veth.
import { execFileSync } from 'node:child_process';
import * as http from 'node:http';
import { describe, expect, it, vi } from 'vitest';

import type { Container, ContainerSpec, Network } from '../../src/api/types';
import { hostVethName } from '../../src/network/attach';
import { useTestDaemon } from '../helpers/daemon';
import { inContainer } from '../helpers/process';
import { requireSandbox } from '../helpers/sandbox-guard';
import { fixtures } from '../helpers/test-image';

requireSandbox('network integration tests with containers');

const IMAGE = 'd2p.test/netbox:1';
const NS = 'netit';

/** The page the web container serves, on top of the busybox layer. */
function wwwLayer(): Buffer {
  return fixtures.tarArchive([
    { path: 'www/', type: 'dir' },
    { path: 'www/index.html', type: 'file', content: 'hello from web\n' },
  ]);
}

const harness = useTestDaemon('net-ctr-it', { cgroupParent: `d2p-net-test-${process.pid}`, images: [{ ref: IMAGE, extraLayers: [wwwLayer()] }] });

async function run(name: string, service: string, spec: Partial<ContainerSpec>): Promise<void> {
  await harness.client.for('Container').create({
    apiVersion: 'd2p.dev/v1alpha1',
    kind: 'Container',
    metadata: { name, namespace: NS, labels: { 'com.docker.compose.service': service } },
    spec: { image: IMAGE, stopSignal: 'SIGKILL', ...spec },
  });
}

async function waitRunning(name: string): Promise<Container> {
  await vi.waitFor(async () => expect(((await harness.client.for('Container').get(NS, name)) as Container).status?.phase).toBe('Running'), { timeout: 30_000, interval: 100 });
  return (await harness.client.for('Container').get(NS, name)) as Container;
}


describe('containers on a d2p network', () => {
  it('two services reach each other by name (nslookup + nc → httpd), and deletion leaves no bridge or veth', async () => {
    await harness.client.for('Network').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Network', metadata: { name: 'netit_default', namespace: NS }, spec: {} });
    await run('netit-web-1', 'web', { command: ['httpd', '-f', '-p', '80', '-h', '/www'], networks: [{ name: 'netit_default' }] });
    await run('netit-client-1', 'client', { networks: [{ name: 'netit_default', aliases: ['front'] }] });
    const web = await waitRunning('netit-web-1');
    const clientContainer = await waitRunning('netit-client-1');
    const network = (await harness.client.for('Network').get(NS, 'netit_default')) as Network;
    expect(web.status?.ipAddresses?.netit_default).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(clientContainer.status?.ipAddresses?.netit_default).not.toBe(web.status?.ipAddresses?.netit_default);
    await vi.waitFor(async () => {
      const allocations = ((await harness.client.for('Network').get(NS, 'netit_default')) as Network).status?.allocations;
      expect(allocations).toEqual({ [`${NS}/netit-client-1`]: clientContainer.status?.ipAddresses?.netit_default, [`${NS}/netit-web-1`]: web.status?.ipAddresses?.netit_default });
    }, { timeout: 10_000 });
    const resolv = await inContainer(clientContainer.status!.pid!, ['/bin/cat', '/etc/resolv.conf']);
    expect(resolv.output.split('\n')[0]).toBe(`nameserver ${network.status?.gateway}`);
    // By service name, alias and container name, through the embedded DNS. The name is
    // resolved by busybox's own resolver (nslookup, reading the container's resolv.conf):
    // the static glibc busybox segfaults in its NSS lookups (getaddrinfo, getservbyname)
    // without libnss in the rootfs, so even its wget crashes and nc makes the HTTP request
    // to the resolved address. httpd may need a moment to listen.
    for (const name of ['web', 'netit-web-1']) {
      const script = `ip=$(nslookup ${name} | awk '/^Address/ {a=$2} END {print a}'); echo "$ip"; printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 "$ip" 80 | tail -n 1`;
      await vi.waitFor(async () => {
        const fetched = await inContainer(clientContainer.status!.pid!, ['/bin/sh', '-c', script]);
        expect(fetched.output).toBe(`${web.status?.ipAddresses?.netit_default}\nhello from web\n`);
      }, { timeout: 15_000, interval: 300 });
    }
    const reverse = await inContainer(web.status!.pid!, ['/bin/sh', '-c', 'nslookup front']);
    expect(reverse.output).toContain(clientContainer.status?.ipAddresses?.netit_default);
    const bridge = network.status!.bridge!;
    for (const c of ['netit-web-1', 'netit-client-1']) await harness.client.for('Container').delete(NS, c);
    // A Container is gone only once its veths are (their namespace's teardown takes them).
    const names = async () => (await harness.client.for('Container').list({ namespace: NS })).items.map((c) => c.metadata.name);
    await vi.waitFor(async () => expect((await names()).filter((n) => n === 'netit-web-1' || n === 'netit-client-1')).toEqual([]), { timeout: 30_000, interval: 50 });
    const left = (JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname);
    expect(left.filter((n) => ['netit-web-1', 'netit-client-1'].some((c) => n === hostVethName(`${NS}/${c}`, 'netit_default')))).toEqual([]);
    await harness.client.for('Network').delete(NS, 'netit_default');
    await vi.waitFor(async () => expect((await harness.client.for('Network').list({ namespace: NS })).items).toEqual([]), { timeout: 30_000, interval: 100 });
    const links = JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[];
    expect(links.map((l) => l.ifname).filter((n) => n === bridge || n.startsWith('veth'))).toEqual([]);
  });

  it('a published port with no host port gets a random one, reported in status, that answers from the host', async () => {
    await harness.client.for('Network').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Network', metadata: { name: 'netit_ports', namespace: NS }, spec: {} });
    await run('netit-pub-1', 'pub', {
      command: ['httpd', '-f', '-p', '80', '-h', '/www'],
      networks: [{ name: 'netit_ports' }],
      ports: [{ containerPort: 80, hostIP: '127.0.0.1', protocol: 'tcp' }],
    });
    const pub = await waitRunning('netit-pub-1');
    const [port] = pub.status?.ports ?? [];
    expect(port).toMatchObject({ containerPort: 80, hostIP: '127.0.0.1', protocol: 'tcp' });
    expect(port!.hostPort).toBeGreaterThan(0);
    const body = await vi.waitFor(() => httpGet(`http://127.0.0.1:${port!.hostPort}/index.html`), { timeout: 10_000, interval: 200 });
    expect(body).toBe('hello from web\n');
    await harness.client.for('Container').delete(NS, 'netit-pub-1');
    await vi.waitFor(async () => expect((await harness.client.for('Container').list({ namespace: NS })).items.map((c) => c.metadata.name)).not.toContain('netit-pub-1'), { timeout: 30_000 });
    await expect(httpGet(`http://127.0.0.1:${port!.hostPort}/index.html`)).rejects.toThrow(/ECONNREFUSED/);
  });
});

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`GET ${url}: HTTP ${res.statusCode}`))));
      })
      .on('error', reject);
  });
}
