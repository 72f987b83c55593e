// Published ports with kernel NAT beside the userland proxy, to a target in its own network
// namespace behind a veth on a bridge, inside hack/sandbox's private network namespace:
// non-loopback and loopback DNAT, the route_localnet guard (CVE-2020-8558) tested by a
// neighbour that sends to 127.0.0.1 over the bridge, and the complete removal of every NAT
// trace, checked with iptables-save.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { findIptables, iptablesTools, type IptablesTools } from '../../src/network/iptables';
import { IptablesNat } from '../../src/network/nat';
import { PortPublisher, type NatPortRule } from '../../src/network/port-forward';
import { requireSandbox } from '../helpers/sandbox-guard';

requireSandbox('test/integration/network-userland.test.ts');

const iptables = findIptables();
if (iptables === undefined) throw new Error('network-userland: the iptables binary is needed for the NAT tests and was not found (apt-get install iptables)');

const HOST_IP = '10.200.0.1';
const TARGET_IP = '10.200.0.2';
const ATTACKER_IP = '10.200.0.3';
const TARGET_PORT = 7000;

/**
 * Answers every TCP connection and UDP datagram with the peer's "address port", so a test
 * can tell kernel NAT (client's source port kept) from the proxy (a new connection of its own).
 */
const ECHO_SERVER = `
const net = require('node:net'), dgram = require('node:dgram');
const tcp = net.createServer((s) => { s.end(s.remoteAddress + ' ' + s.remotePort); });
const udp = dgram.createSocket('udp4');
udp.on('message', (m, r) => udp.send(r.address + ' ' + r.port, r.port, r.address));
tcp.listen(${TARGET_PORT}, '${TARGET_IP}', () => udp.bind(${TARGET_PORT}, '${TARGET_IP}', () => console.log('ready')));
`;

function sh(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8' });
}

function firewallDump(): string[] {
  // Rules and chains, without the packet counters of the chain lines (":INPUT ACCEPT [3:180]").
  return ['nat', 'filter'].flatMap((table) =>
    sh('iptables-save', ['-t', table])
      .split('\n')
      .filter((line) => line.startsWith('-') || line.startsWith(':'))
      .map((line) => line.replace(/ \[\d+:\d+\]$/, '')),
  );
}

function routeLocalnet(link: string): string {
  return fs.readFileSync(`/proc/sys/net/ipv4/conf/${link}/route_localnet`, 'utf8').trim();
}

interface Answer {
  localPort: number;
  /** Who the target saw: address and port. */
  peer: { address: string; port: number };
}

function parsePeer(text: string): Answer['peer'] {
  const [address, port] = text.split(' ');
  return { address, port: Number(port) };
}

async function tcpAsk(host: string, port: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let answer = '';
    const socket = net.connect({ host, port });
    socket.on('data', (chunk) => (answer += chunk.toString()));
    socket.on('end', () => resolve({ localPort: socket.localPort!, peer: parsePeer(answer) }));
    socket.on('error', reject);
  });
}

async function udpAsk(host: string, port: number): Promise<Answer> {
  const socket = dgram.createSocket('udp4');
  try {
    await new Promise<void>((resolve) => socket.bind(0, resolve));
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no UDP answer from ${host}:${port}`)), 3000);
      socket.once('message', (message) => {
        clearTimeout(timer);
        resolve({ localPort: socket.address().port, peer: parsePeer(message.toString()) });
      });
      socket.send('ping', port, host);
    });
  } finally {
    socket.close();
  }
}

/** Packets the guard chain's DROP rule has counted (iptables -L -v -x). */
/** A new network namespace whose eth0 (address ip/24) is a veth peer of hostVeth, enslaved to bridge. */
function plugIntoBridge(netns: string, hostVeth: string, bridge: string, ip: string): void {
  sh('ip', ['netns', 'add', netns]);
  sh('ip', ['link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
  sh('ip', ['link', 'set', hostVeth, 'master', bridge]);
  sh('ip', ['link', 'set', hostVeth, 'up']);
  sh('ip', ['-n', netns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
  sh('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
}

function guardDrops(chain: string): number {
  const lines = sh('iptables', ['-w', '-t', 'filter', '-L', chain, '-v', '-n', '-x']).split('\n').filter((line) => /\bDROP\b/.test(line));
  return lines.reduce((sum, line) => sum + Number(line.trim().split(/\s+/)[0]), 0);
}

describe('published ports with kernel NAT (sandbox)', () => {
  let netns: string;
  let attackerNetns: string | undefined;
  let bridge: string;
  let echo: ChildProcess | undefined;
  let nat: IptablesNat;
  let ports: PortPublisher;
  let tmp: string;
  let before: string[];

  beforeEach(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-netuser-'));
    before = firewallDump();
    const suffix = randomBytes(3).toString('hex');
    netns = `d2p-nat-${suffix}`;
    bridge = `d2pbr${suffix}`;
    const hostVeth = `d2pn${suffix}`;
    sh('ip', ['link', 'add', bridge, 'type', 'bridge']);
    sh('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', bridge]);
    sh('ip', ['link', 'set', bridge, 'up']);
    plugIntoBridge(netns, hostVeth, bridge, TARGET_IP);
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
    await nat?.removeAll();
    if (echo && echo.exitCode === null) {
      const exited = new Promise((resolve) => echo!.once('exit', resolve));
      echo.kill('SIGKILL');
      await exited;
    }
    for (const ns of [netns, attackerNetns]) if (ns !== undefined) sh('ip', ['netns', 'del', ns]);
    attackerNetns = undefined;
    sh('ip', ['link', 'del', bridge]);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('without the target\'s bridge: TCP and UDP to a host address through DNAT (source port kept), loopback through the proxy', async () => {
    const tcp = await ports.publish({ hostPort: 0, protocol: 'tcp', targetIP: TARGET_IP, targetPort: TARGET_PORT, owner: 'test/web' });
    const udp = await ports.publish({ hostPort: 0, protocol: 'udp', targetIP: TARGET_IP, targetPort: TARGET_PORT, owner: 'test/dns' });
    expect([tcp.nat, udp.nat]).toEqual(['non-loopback', 'non-loopback']);
    expect((await nat.listRules()).join('\n')).toContain(`--to-destination ${TARGET_IP}:${TARGET_PORT}`);

    // The host's own non-loopback address: OUTPUT jump → DNAT straight to the target.
    const viaNat = await tcpAsk(HOST_IP, tcp.hostPort);
    expect(viaNat.peer).toEqual({ address: HOST_IP, port: viaNat.localPort });
    const udpViaNat = await udpAsk(HOST_IP, udp.hostPort);
    expect(udpViaNat.peer).toEqual({ address: HOST_IP, port: udpViaNat.localPort });

    // Loopback: the proxy opens its own connection, so the target sees another source port.
    const viaProxy = await tcpAsk('127.0.0.1', tcp.hostPort);
    expect(viaProxy.peer.port).toBeGreaterThan(0);
    expect(viaProxy.peer.port).not.toBe(viaProxy.localPort);
    const udpViaProxy = await udpAsk('127.0.0.1', udp.hostPort);
    expect(udpViaProxy.peer.port).not.toBe(udpViaProxy.localPort);
    expect(routeLocalnet(bridge)).toBe('0');
  });

  it('with the target\'s bridge: 127.0.0.1 goes through DNAT too (route_localnet, MASQUERADE to the bridge address)', async () => {
    const tcp = await ports.publish({ hostPort: 0, protocol: 'tcp', targetIP: TARGET_IP, targetPort: TARGET_PORT, targetInterface: bridge });
    const udp = await ports.publish({ hostIP: '127.0.0.1', hostPort: 0, protocol: 'udp', targetIP: TARGET_IP, targetPort: TARGET_PORT, targetInterface: bridge });
    expect([tcp.nat, udp.nat]).toEqual(['all', 'all']);
    expect(routeLocalnet(bridge)).toBe('1');
    for (const host of ['127.0.0.1', HOST_IP]) {
      const answer = await tcpAsk(host, tcp.hostPort);
      expect(answer.peer).toEqual({ address: HOST_IP, port: answer.localPort });
    }
    const udpAnswer = await udpAsk('127.0.0.1', udp.hostPort);
    expect(udpAnswer.peer).toEqual({ address: HOST_IP, port: udpAnswer.localPort });
    // The last port of the bridge closed: route_localnet back off.
    await tcp.close();
    expect(routeLocalnet(bridge)).toBe('1');
    await udp.close();
    expect(routeLocalnet(bridge)).toBe('0');
  });

  it('guards route_localnet (CVE-2020-8558): a packet to 127.0.0.1 sent over the bridge never reaches a host loopback service', async () => {
    await ports.publish({ hostPort: 0, protocol: 'tcp', targetIP: TARGET_IP, targetPort: TARGET_PORT, targetInterface: bridge });
    expect(routeLocalnet(bridge)).toBe('1');
    // A neighbour on the bridge that routes 127.0.0.0/8 to the host: its lo stays down, so
    // the kernel made no local 127.0.0.0/8 route there, and its eth0 may carry such packets.
    attackerNetns = `${netns}-a`;
    const attackerVeth = `d2pa${netns.slice(-6)}`;
    plugIntoBridge(attackerNetns, attackerVeth, bridge, ATTACKER_IP);
    sh('ip', ['-n', attackerNetns, 'route', 'add', '127.0.0.0/8', 'via', HOST_IP, 'dev', 'eth0']);
    sh('ip', ['netns', 'exec', attackerNetns, 'sysctl', '-qw', 'net.ipv4.conf.eth0.route_localnet=1']);

    const secret = dgram.createSocket('udp4');
    const received: string[] = [];
    secret.on('message', (message) => received.push(message.toString()));
    await new Promise<void>((resolve) => secret.bind(0, '127.0.0.1', resolve));
    const sendFromAttacker = async (text: string) => {
      sh('ip', ['netns', 'exec', attackerNetns!, process.execPath, '-e', `const d = require('node:dgram').createSocket('udp4'); d.send(${JSON.stringify(text)}, ${secret.address().port}, '127.0.0.1', (e) => { if (e) throw e; d.close(); });`]);
      await new Promise((resolve) => setTimeout(resolve, 300));
    };
    try {
      const dropsBefore = guardDrops(nat.guardChain);
      await sendFromAttacker('with the guard');
      expect(received).toEqual([]);
      // The packet did reach the host and was dropped by the guard, not lost elsewhere.
      expect(guardDrops(nat.guardChain)).toBeGreaterThan(dropsBefore);
      // Without the guard, route_localnet alone lets it in: the exposure the guard closes.
      sh('iptables', ['-w', '-t', 'filter', '-F', nat.guardChain]);
      await sendFromAttacker('without the guard');
      expect(received).toEqual(['without the guard']);
    } finally {
      secret.close();
    }
  });

  it('a second instance adding the same rules (a restarted daemon adopting its containers) only reads the tables and adds nothing twice; removing the last rule leaves the tables as before', async () => {
    const calls: string[] = [];
    const real = iptablesTools(iptables);
    const counted: IptablesTools = {
      run: (args) => (calls.push(`iptables ${args.join(' ')}`), real.run(args)),
      save: () => (calls.push('iptables-save'), real.save()),
      restore: (input) => (calls.push('iptables-restore'), real.restore(input)),
    };
    const target = { targetIP: TARGET_IP, targetPort: TARGET_PORT };
    const rules: NatPortRule[] = [
      { hostIP: '0.0.0.0', hostPort: 17001, protocol: 'tcp', ...target, targetInterface: bridge },
      { hostIP: '127.0.0.1', hostPort: 17002, protocol: 'udp', ...target, targetInterface: bridge },
      { hostIP: HOST_IP, hostPort: 17003, protocol: 'tcp', ...target },
    ];
    const first = new IptablesNat({ tools: counted, chain: nat.chain });
    for (const rule of rules) await first.addPortRule(rule);
    const published = firewallDump();
    const ours = published.filter((line) => line.includes(nat.chain));
    expect(ours.filter((line) => line.startsWith(`-A ${nat.chain} `))).toHaveLength(3);
    expect(new Set(ours).size).toBe(ours.length);
    expect(routeLocalnet(bridge)).toBe('1');

    calls.length = 0;
    const adopting = new IptablesNat({ tools: counted, chain: nat.chain });
    for (const rule of rules) await adopting.addPortRule(rule);
    // iptables-save prints every rule as d2p writes it, so no -C is needed to recognise one.
    expect(calls).toEqual(['iptables-save', 'iptables-save', 'iptables-save']);
    expect(firewallDump()).toEqual(published);

    for (const rule of rules.slice(0, 2)) await adopting.removePortRule(rule);
    expect(routeLocalnet(bridge)).toBe('0');
    expect(firewallDump().filter((line) => line.includes(nat.chain))).toEqual([
      `:${nat.chain} -`,
      `-A PREROUTING ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j ${nat.chain}`,
      `-A OUTPUT -m addrtype --dst-type LOCAL -j ${nat.chain}`,
      `-A ${nat.chain} -d ${HOST_IP}/32 -p tcp -m tcp --dport 17003 -j DNAT --to-destination ${TARGET_IP}:${TARGET_PORT}`,
    ]);
    await adopting.removePortRule(rules[2]);
    expect(firewallDump()).toEqual(before);
  });

  it('closeAll removes every rule, chain, jump and route_localnet: the tables are as before', async () => {
    const published = await ports.publish({ hostIP: '0.0.0.0', hostPort: 0, protocol: 'tcp', targetIP: TARGET_IP, targetPort: TARGET_PORT, targetInterface: bridge });
    await ports.publish({ hostIP: '0.0.0.0', hostPort: 0, protocol: 'udp', targetIP: TARGET_IP, targetPort: TARGET_PORT });
    expect(await nat.listRules()).toHaveLength(2);
    await published.close();
    expect(await nat.listRules()).toHaveLength(1);
    // With the rule gone, the host address reaches no one: the port is closed.
    await expect(tcpAsk(HOST_IP, published.hostPort)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await ports.closeAll();
    expect(routeLocalnet(bridge)).toBe('0');
    const after = firewallDump();
    expect(after.join('\n')).not.toContain(nat.chain);
    expect(after).toEqual(before);
  });
});
