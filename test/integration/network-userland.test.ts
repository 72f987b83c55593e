// Published ports with kernel NAT beside the userland proxy, to a target in its own network
// namespace behind a veth, inside hack/sandbox's private network namespace; then the
// complete removal of every NAT trace, checked with iptables-save.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { IptablesNat, findIptables } from '../../src/network/nat';
import { PortPublisher } from '../../src/network/port-forward';
import { requireSandbox } from '../helpers/sandbox-guard';

requireSandbox('test/integration/network-userland.test.ts');

const iptables = findIptables();
if (iptables === undefined) throw new Error('network-userland: the iptables binary is needed for the NAT tests and was not found (apt-get install iptables)');

const HOST_IP = '10.200.0.1';
const TARGET_IP = '10.200.0.2';
const TARGET_PORT = 7000;

/** Answers every TCP connection and UDP datagram with the peer's source port, so a test can tell NAT (port kept) from the proxy (new port). */
const ECHO_SERVER = `
const net = require('node:net'), dgram = require('node:dgram');
const tcp = net.createServer((s) => { s.end(String(s.remotePort)); });
const udp = dgram.createSocket('udp4');
udp.on('message', (m, r) => udp.send(String(r.port), r.port, r.address));
tcp.listen(${TARGET_PORT}, '${TARGET_IP}', () => udp.bind(${TARGET_PORT}, '${TARGET_IP}', () => console.log('ready')));
`;

function sh(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8' });
}

function natTableDump(): string {
  return sh('iptables-save', ['-t', 'nat']);
}

async function tcpAsk(host: string, port: number): Promise<{ localPort: number; answer: string }> {
  return new Promise((resolve, reject) => {
    let answer = '';
    const socket = net.connect({ host, port });
    socket.on('data', (chunk) => (answer += chunk.toString()));
    socket.on('end', () => resolve({ localPort: socket.localPort!, answer }));
    socket.on('error', reject);
  });
}

async function udpAsk(host: string, port: number): Promise<{ localPort: number; answer: string }> {
  const socket = dgram.createSocket('udp4');
  try {
    await new Promise<void>((resolve) => socket.bind(0, resolve));
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no UDP answer from ${host}:${port}`)), 3000);
      socket.once('message', (message) => {
        clearTimeout(timer);
        resolve({ localPort: socket.address().port, answer: message.toString() });
      });
      socket.send('ping', port, host);
    });
  } finally {
    socket.close();
  }
}

describe('published ports with kernel NAT (sandbox)', () => {
  let netns: string;
  let hostVeth: string;
  let echo: ChildProcess | undefined;
  let nat: IptablesNat;
  let ports: PortPublisher;
  let tmp: string;

  beforeEach(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-netuser-'));
    const suffix = randomBytes(3).toString('hex');
    netns = `d2p-nat-${suffix}`;
    hostVeth = `d2pn${suffix}`;
    sh('ip', ['netns', 'add', netns]);
    sh('ip', ['link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    sh('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', hostVeth]);
    sh('ip', ['link', 'set', hostVeth, 'up']);
    sh('ip', ['-n', netns, 'addr', 'add', `${TARGET_IP}/24`, 'dev', 'eth0']);
    sh('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    echo = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', ECHO_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      echo!.stdout!.once('data', () => resolve());
      echo!.once('exit', (code) => reject(new Error(`echo server in ${netns} exited with ${code}`)));
    });
    nat = new IptablesNat({ iptables, chain: `D2P-T${suffix}`.toUpperCase() });
    ports = new PortPublisher({ nat, onError: (error) => fs.appendFileSync(path.join(tmp, 'errors'), `${error.message}\n`) });
  });

  afterEach(async () => {
    await ports?.closeAll();
    nat?.removeAll();
    if (echo && echo.exitCode === null) {
      const exited = new Promise((resolve) => echo!.once('exit', resolve));
      echo.kill('SIGKILL');
      await exited;
    }
    sh('ip', ['netns', 'del', netns]);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('carries TCP and UDP to a host address through DNAT (source port kept), loopback through the proxy', async () => {
    const tcp = await ports.publish({ hostPort: 0, protocol: 'tcp', targetIP: TARGET_IP, targetPort: TARGET_PORT, owner: 'test/web' });
    const udp = await ports.publish({ hostPort: 0, protocol: 'udp', targetIP: TARGET_IP, targetPort: TARGET_PORT, owner: 'test/dns' });
    expect(tcp.nat && udp.nat).toBe(true);
    expect(natTableDump()).toContain(`--to-destination ${TARGET_IP}:${TARGET_PORT}`);

    // The host's own non-loopback address: OUTPUT jump → DNAT straight to the target.
    const viaNat = await tcpAsk(HOST_IP, tcp.hostPort);
    expect(viaNat.answer).toBe(String(viaNat.localPort));
    const udpViaNat = await udpAsk(HOST_IP, udp.hostPort);
    expect(udpViaNat.answer).toBe(String(udpViaNat.localPort));

    // Loopback: the proxy opens its own connection, so the target sees another source port.
    const viaProxy = await tcpAsk('127.0.0.1', tcp.hostPort);
    expect(Number(viaProxy.answer)).toBeGreaterThan(0);
    expect(viaProxy.answer).not.toBe(String(viaProxy.localPort));
    const udpViaProxy = await udpAsk('127.0.0.1', udp.hostPort);
    expect(udpViaProxy.answer).not.toBe(String(udpViaProxy.localPort));
  });

  it('close() removes the port\'s rule and removeAll() leaves no trace in the nat table', async () => {
    const before = natTableDump();
    const published = await ports.publish({ hostIP: '0.0.0.0', hostPort: 0, protocol: 'tcp', targetIP: TARGET_IP, targetPort: TARGET_PORT });
    expect(nat.listRules()).toHaveLength(1);
    await published.close();
    expect(nat.listRules()).toEqual([]);
    // With the rule gone, the host address reaches no one: the port is closed.
    await expect(tcpAsk(HOST_IP, published.hostPort)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    nat.removeAll();
    const after = natTableDump();
    expect(after).not.toContain(nat.chain);
    const rulesOnly = (dump: string) => dump.split('\n').filter((line) => line.startsWith('-') || line.startsWith(':'));
    expect(rulesOnly(after)).toEqual(rulesOnly(before).filter((line) => !line.includes(nat.chain)));
  });
});
