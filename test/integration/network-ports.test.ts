// Published ports, service discovery of replicas and fixed addresses with real Containers:
// a daemon in-process (store, API server, every controller), the real Runtime and d2p-shim,
// inside hack/sandbox's network namespace. Published ports go through the daemon's kernel
// NAT (iptables DNAT beside the userland proxy); the last tests restart the daemon over
// running containers and take everything down, then list what is left: no NAT rule, no
// bridge, no veth, no namespace mount.
import { execFileSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, describe, expect, it, vi } from 'vitest';

import type { Client } from '../../src/client/types';
import type { Container, ContainerSpec, Network, Service } from '../../src/api/types';
import { resolvePaths } from '../../src/config';
import { closeNetworkingFor } from '../../src/network/attach';
import { startTestDaemon, useTestDaemon, type TestDaemon } from '../helpers/daemon';
import { inContainer } from '../helpers/process';
import { requireSandbox } from '../helpers/sandbox-guard';
import { fixtures } from '../helpers/test-image';

requireSandbox('network port and discovery tests with containers');

const IMAGE = 'd2p.test/portbox:1';
const NAT_CHAIN = 'D2P-PORTS';

/**
 * Busybox's nc has no UDP mode, so the UDP workload is a tiny static C program: it echoes
 * each datagram with " from <address>:<port>" of its sender appended, which tells kernel NAT
 * (the client's own source port kept) from the proxy (a socket of its own).
 */
const UDP_ECHO_C = `
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_ANY) };
  if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("udp-echo: bind"); return 1; }
  for (;;) {
    char in[1024], out[1100];
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    ssize_t n = recvfrom(fd, in, sizeof in, 0, (struct sockaddr *)&peer, &len);
    if (n < 0) { perror("udp-echo: recvfrom"); return 1; }
    int m = snprintf(out, sizeof out, "%.*s from %s:%d", (int)n, in, inet_ntoa(peer.sin_addr), ntohs(peer.sin_port));
    sendto(fd, out, m, 0, (struct sockaddr *)&peer, len);
  }
}
`;

/** The workload's layer: /udp-echo (compiled here, static, so the busybox rootfs needs no libc) and a page for httpd. */
function workloadLayer(): Buffer {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-udp-echo-'));
  try {
    fs.writeFileSync(path.join(dir, 'udp-echo.c'), UDP_ECHO_C);
    execFileSync('cc', ['-static', '-Os', '-o', path.join(dir, 'udp-echo'), path.join(dir, 'udp-echo.c')], { stdio: ['ignore', 'ignore', 'pipe'] });
    return fixtures.tarArchive([
      { path: 'udp-echo', type: 'file', mode: 0o755, content: fs.readFileSync(path.join(dir, 'udp-echo')) },
      { path: 'www/', type: 'dir' },
      { path: 'www/index.html', type: 'file', content: 'hello\n' },
    ]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const WORKLOAD_LAYER = workloadLayer();
const IMAGES = [{ ref: IMAGE, extraLayers: [WORKLOAD_LAYER] }];

// ---------------------------------------------------------------------------- helpers

function objects(client: Client) {
  const containers = client.for('Container');
  const networks = client.for('Network');
  return {
    async network(namespace: string, name: string, spec: Network['spec'] = {}): Promise<void> {
      await networks.create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Network', metadata: { name, namespace }, spec });
    },
    async container(namespace: string, name: string, service: string, spec: Partial<ContainerSpec>): Promise<void> {
      await containers.create({
        apiVersion: 'd2p.dev/v1alpha1',
        kind: 'Container',
        metadata: { name, namespace, labels: { 'com.docker.compose.service': service } },
        spec: { image: IMAGE, stopSignal: 'SIGKILL', ...spec },
      });
    },
    async running(namespace: string, name: string): Promise<Container> {
      await vi.waitFor(async () => expect(((await containers.get(namespace, name)) as Container).status?.phase).toBe('Running'), { timeout: 30_000, interval: 100 });
      return (await containers.get(namespace, name)) as Container;
    },
    async getNetwork(namespace: string, name: string): Promise<Network> {
      return (await networks.get(namespace, name)) as Network;
    },
    async deleteContainer(namespace: string, name: string): Promise<void> {
      await containers.delete(namespace, name);
      await vi.waitFor(async () => expect((await containers.list({ namespace })).items.map((c) => c.metadata.name)).not.toContain(name), { timeout: 30_000, interval: 100 });
    },
  };
}


/** One datagram to host:port; resolves with the reply and the local port it was sent from. */
async function udpAsk(host: string, port: number, payload: string): Promise<{ reply: string; localPort: number }> {
  const socket = dgram.createSocket('udp4');
  try {
    await new Promise<void>((resolve) => socket.bind(0, '0.0.0.0', resolve));
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no UDP reply from ${host}:${port} within 2 s`)), 2000);
      socket.once('message', (message) => {
        clearTimeout(timer);
        resolve({ reply: message.toString(), localPort: socket.address().port });
      });
      socket.send(payload, port, host);
    });
  } finally {
    socket.close();
  }
}

function natRules(): string[] {
  return execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' }).split('\n');
}

function firewallDump(): string {
  return ['nat', 'filter'].map((table) => execFileSync('iptables-save', ['-t', table], { encoding: 'utf8' })).join('\n');
}

function linkNames(): string[] {
  return (JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname);
}

/** The addresses busybox nslookup printed for the name (the server's own line carries ":53"). */
function nslookupAddresses(output: string): string[] {
  return output
    .split('\n')
    .map((line) => /^Address:\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(line)?.[1])
    .filter((ip): ip is string => ip !== undefined)
    .sort();
}

// ---------------------------------------------------------------------------- one daemon

describe('published ports and discovery with containers', () => {
  const NS = 'netports';
  const harness = useTestDaemon('net-ports-it', { cgroupParent: `d2p-netports-test-${process.pid}`, images: IMAGES });
  const made: Array<() => Promise<void>> = [];
  afterEach(async () => {
    // Whatever a test left (it failed midway): containers first, then networks.
    for (const undo of made.splice(0).reverse()) await undo();
  });
  const use = () => objects(harness.client);
  async function container(name: string, service: string, spec: Partial<ContainerSpec>): Promise<void> {
    await use().container(NS, name, service, spec);
    made.push(async () => {
      if ((await harness.client.for('Container').list({ namespace: NS })).items.some((c) => c.metadata.name === name)) await use().deleteContainer(NS, name);
    });
  }

  it('a published UDP port answers from the host, on 127.0.0.1 and on a host address, through kernel NAT; deleting the container removes its rule', async () => {
    await use().network(NS, 'netports_udp');
    await container('netports-udp-1', 'udp', { command: ['/udp-echo', '5353'], networks: [{ name: 'netports_udp' }], ports: [{ containerPort: 5353, hostPort: 18053, protocol: 'udp' }] });
    const echo = await use().running(NS, 'netports-udp-1');
    const ip = echo.status!.ipAddresses!.netports_udp!;
    expect(echo.status?.ports).toEqual([{ hostIP: '0.0.0.0', hostPort: 18053, containerPort: 5353, protocol: 'udp' }]);
    expect(natRules().filter((line) => line.startsWith(`-A ${NAT_CHAIN} `) && line.includes('--dport 18053'))).toEqual([
      expect.stringContaining(`-p udp -m udp --dport 18053 -j DNAT --to-destination ${ip}:5353`),
    ]);
    const gateway = (await use().getNetwork(NS, 'netports_udp')).status!.gateway!;
    // Loopback is masqueraded to the gateway; a host address reaches the container as itself.
    // Either way the client's port is kept: the kernel carried it, not the proxy.
    for (const [host, seenAs] of [['127.0.0.1', gateway], [gateway, gateway]]) {
      const { reply, localPort } = await vi.waitFor(() => udpAsk(host, 18053, `ping ${host}`), { timeout: 10_000, interval: 200 });
      expect(reply).toBe(`ping ${host} from ${seenAs}:${localPort}`);
    }
    await use().deleteContainer(NS, 'netports-udp-1');
    expect(natRules().filter((line) => line.includes('--dport 18053'))).toEqual([]);
    await expect(udpAsk('127.0.0.1', 18053, 'gone?')).rejects.toThrow(/no UDP reply/);
  });

  it('the replicas of a service all answer its name in DNS', async () => {
    await use().network(NS, 'netports_dns');
    const template = { image: IMAGE, stopSignal: 'SIGKILL', networks: [{ name: 'netports_dns' }] };
    await harness.client.for('Service').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Service', metadata: { name: 'web', namespace: NS }, spec: { replicas: 3, template: { spec: template } } } as Service);
    made.push(async () => {
      await harness.client.for('Service').delete(NS, 'web');
      await vi.waitFor(async () => expect((await harness.client.for('Container').list({ namespace: NS })).items.filter((c) => c.metadata.name.startsWith(`${NS}-web-`))).toEqual([]), { timeout: 30_000 });
    });
    await container('netports-client-1', 'client', { networks: [{ name: 'netports_dns' }] });
    const replicas = await Promise.all([1, 2, 3].map((n) => use().running(NS, `${NS}-web-${n}`)));
    const addresses = replicas.map((r) => r.status!.ipAddresses!.netports_dns!).sort();
    expect(new Set(addresses).size).toBe(3);
    const client = await use().running(NS, 'netports-client-1');
    await vi.waitFor(async () => {
      const lookup = await inContainer(client.status!.pid!, ['/bin/nslookup', 'web']);
      expect(nslookupAddresses(lookup.output)).toEqual(addresses);
    }, { timeout: 15_000, interval: 300 });
  });

  it('a recreated container keeps the ipv4Address it asks for', async () => {
    await use().network(NS, 'netports_fixed', { subnet: '172.30.200.0/24' });
    const spec = { command: ['sleep', '3600'], networks: [{ name: 'netports_fixed', ipv4Address: '172.30.200.77' }] };
    for (const round of [1, 2]) {
      await container('netports-fixed-1', 'fixed', spec);
      const fixed = await use().running(NS, 'netports-fixed-1');
      expect(fixed.status?.ipAddresses, `round ${round}`).toEqual({ netports_fixed: '172.30.200.77' });
      const inside = await inContainer(fixed.status!.pid!, ['/bin/ip', '-4', '-o', 'addr', 'show', 'eth0']);
      expect(inside.output).toContain('inet 172.30.200.77/24');
      await vi.waitFor(async () => expect((await use().getNetwork(NS, 'netports_fixed')).status?.allocations).toEqual({ [`${NS}/netports-fixed-1`]: '172.30.200.77' }), { timeout: 10_000 });
      await use().deleteContainer(NS, 'netports-fixed-1');
    }
  });

  it('a second container asking for a published host port fails with a condition naming the first', async () => {
    await use().network(NS, 'netports_clash');
    const spec = { command: ['httpd', '-f', '-p', '80', '-h', '/www'], networks: [{ name: 'netports_clash' }], ports: [{ containerPort: 80, hostPort: 18080 }] };
    await container('netports-first-1', 'first', spec);
    await use().running(NS, 'netports-first-1');
    await container('netports-second-1', 'second', spec);
    await vi.waitFor(async () => {
      const second = (await harness.client.for('Container').get(NS, 'netports-second-1')) as Container;
      const ready = second.status?.conditions?.find((c) => c.type === 'Ready');
      expect(ready).toMatchObject({ status: 'False', message: expect.stringContaining(`0.0.0.0:18080/tcp is already published by container ${NS}/netports-first-1`) });
      expect(second.status?.phase).not.toBe('Running');
    }, { timeout: 20_000, interval: 200 });
    // The first keeps its port: its rule is the only one.
    expect(natRules().filter((line) => line.includes('--dport 18080'))).toHaveLength(1);
  });
});

// ---------------------------------------------------------------------------- restart and down

describe('a daemon restart over running containers, then down', () => {
  const NS = 'netdown';
  const cgroupParent = `d2p-netdown-test-${process.pid}`;

  it('re-adds the NAT rules of adopted containers; down leaves no NAT rule, bridge, veth or netns mount', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-net-down-'));
    let daemon: TestDaemon | undefined;
    let down = false;
    try {
      daemon = await startTestDaemon({ tmp, cgroupParent, images: IMAGES });
      const use = objects(daemon.client);
      await use.network(NS, 'netdown_default');
      await use.container(NS, 'netdown-udp-1', 'udp', { command: ['/udp-echo', '5353'], networks: [{ name: 'netdown_default' }], ports: [{ containerPort: 5353, hostPort: 18153, protocol: 'udp' }] });
      await use.container(NS, 'netdown-web-1', 'web', { command: ['httpd', '-f', '-p', '80', '-h', '/www'], networks: [{ name: 'netdown_default' }], ports: [{ containerPort: 80, hostIP: '127.0.0.1' }] });
      const before = await use.running(NS, 'netdown-udp-1');
      await use.running(NS, 'netdown-web-1');
      const network = await use.getNetwork(NS, 'netdown_default');
      const bridge = network.status!.bridge!;
      const subnet = network.status!.subnet!;
      await vi.waitFor(() => udpAsk('127.0.0.1', 18153, 'first'), { timeout: 10_000, interval: 200 });
      expect(natRules().filter((line) => line.startsWith(`-A ${NAT_CHAIN} `))).toHaveLength(2);

      // Restart: the daemon stops without touching the workloads (shims outlive it); its
      // ports close, and with them every rule and chain. A new daemon adopts the containers.
      await daemon.client.close();
      await daemon.daemon.stop();
      await closeNetworkingFor(resolvePaths({ root: daemon.root }));
      daemon = undefined;
      expect(firewallDump()).not.toContain(NAT_CHAIN);
      daemon = await startTestDaemon({ tmp, cgroupParent });
      const again = objects(daemon.client);
      const adopted = await again.running(NS, 'netdown-udp-1');
      expect(adopted.status?.pid).toBe(before.status?.pid);
      const { reply, localPort } = await vi.waitFor(() => udpAsk('127.0.0.1', 18153, 'again'), { timeout: 15_000, interval: 200 });
      expect(reply).toBe(`again from ${network.status!.gateway}:${localPort}`);
      await vi.waitFor(() => expect(natRules().filter((line) => line.startsWith(`-A ${NAT_CHAIN} `))).toHaveLength(2), { timeout: 15_000 });

      // Down: every workload and network deleted, the daemon stopped.
      const stopping = daemon;
      daemon = undefined;
      await stopping.stop();
      down = true;
      const firewall = firewallDump();
      for (const trace of [NAT_CHAIN, 'DNAT', bridge, subnet]) expect(firewall, trace).not.toContain(trace);
      expect(linkNames().filter((name) => name === bridge || name.startsWith('veth'))).toEqual([]);
      expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(tmp);
    } finally {
      try {
        // A failure midway: a daemon (started again if need be) deletes what is left.
        if (daemon === undefined && !down) daemon = await startTestDaemon({ tmp, cgroupParent });
        await daemon?.stop();
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    }
  });
});
