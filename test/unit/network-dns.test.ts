// The embedded DNS server against real sockets on loopback. Clients are told apart by
// their source address: Linux routes all of 127.0.0.0/8 to lo, so a client bound to
// 127.0.0.2 and one bound to 127.0.0.3 look like two containers to the injected
// source-IP → networks function.
import * as dgram from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import * as dnsPacket from 'dns-packet';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { DnsServer, type DnsServerOptions } from '../../src/network/dns';
import { askUdp as askUpstreamUdp, readUpstreamResolvers } from '../../src/network/dns-upstream';

const CLIENT_FRONT = '127.0.0.2'; // on shop_front only
const CLIENT_BACK = '127.0.0.3'; // on shop_back only
const CLIENT_BOTH = '127.0.0.4'; // on both
const STRANGER = '127.0.0.5'; // on none

function networksOf(ip: string): string[] {
  return { [CLIENT_FRONT]: ['shop_front'], [CLIENT_BACK]: ['shop_back'], [CLIENT_BOTH]: ['shop_back', 'shop_front'] }[ip] ?? [];
}

/** dns-packet decodes the RCODE too, but its typings leave it out. */
type Decoded = dnsPacket.DecodedPacket & { rcode: string };

let nextId = 1;

/** One query over UDP from `from`, decoded. */
async function askUdp(port: number, name: string, type: dnsPacket.RecordType, from: string, extra: Partial<dnsPacket.Packet> = {}): Promise<Decoded> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, from, resolve));
  try {
    const id = nextId++;
    const answer = new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no DNS answer for ${name} within 5 s`)), 5000);
      socket.on('message', (message) => {
        clearTimeout(timer);
        resolve(message);
      });
    });
    socket.send(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }], ...extra }), port, '127.0.0.1');
    const decoded = dnsPacket.decode(await answer) as Decoded;
    expect(decoded.id).toBe(id);
    return decoded;
  } finally {
    socket.close();
  }
}

/** One query over TCP from `from`, delivered in two chunks to exercise reassembly. */
async function askTcp(port: number, name: string, type: dnsPacket.RecordType, from: string): Promise<Decoded> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress: from });
  try {
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const framed = dnsPacket.streamEncode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });
    socket.write(framed.subarray(0, 5));
    setTimeout(() => socket.write(framed.subarray(5)), 20);
    let received = Buffer.alloc(0);
    return await new Promise((resolve, reject) => {
      socket.on('error', reject);
      socket.on('data', (chunk) => {
        received = Buffer.concat([received, chunk]);
        if (received.length >= 2 && received.length >= 2 + received.readUInt16BE(0)) resolve(dnsPacket.decode(received.subarray(2)) as Decoded);
      });
    });
  } finally {
    socket.destroy();
  }
}

function aRecords(packet: dnsPacket.DecodedPacket): string[] {
  return (packet.answers ?? []).filter((a) => a.type === 'A').map((a) => (a as dnsPacket.StringAnswer).data);
}

/** A fake upstream resolver on loopback: answers every A query with 203.0.113.7 (UDP and TCP). */
async function startFakeUpstream(): Promise<{ port: number; queries: string[]; close(): Promise<void> }> {
  const queries: string[] = [];
  const answerFor = (query: Buffer) => {
    const packet = dnsPacket.decode(query);
    queries.push(packet.questions![0].name);
    return dnsPacket.encode({
      type: 'response',
      id: packet.id,
      flags: dnsPacket.RECURSION_AVAILABLE,
      questions: packet.questions,
      answers: [{ type: 'A', class: 'IN', name: packet.questions![0].name, ttl: 30, data: '203.0.113.7' }],
    });
  };
  const udp = dgram.createSocket('udp4');
  udp.on('message', (query, remote) => udp.send(answerFor(query), remote.port, remote.address));
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  const port = udp.address().port;
  const tcp = net.createServer((socket) => {
    socket.on('data', (chunk) => socket.end(dnsPacket.streamEncode(dnsPacket.decode(answerFor(chunk.subarray(2))))));
  });
  await new Promise<void>((resolve) => tcp.listen(port, '127.0.0.1', resolve));
  return { port, queries, close: () => new Promise((resolve) => udp.close(() => tcp.close(() => resolve()))) };
}

/** A loopback UDP port with nobody on it: queries there get ICMP port unreachable. */
async function deadPort(): Promise<number> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const port = socket.address().port;
  await new Promise<void>((resolve) => socket.close(resolve));
  return port;
}

describe('embedded DNS server', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function start(options: Partial<DnsServerOptions> = {}): Promise<{ server: DnsServer; port: number; errors: Error[] }> {
    const errors: Error[] = [];
    const server = new DnsServer({ networksOf, upstreams: [], onError: (e) => errors.push(e), ...options });
    cleanups.push(() => server.close());
    server.setRecords('shop_front', [
      { name: 'shop-web-1', ips: ['10.1.0.2'], aliases: ['web', 'www'] },
      { name: 'shop-web-2', ips: ['10.1.0.3'], aliases: ['web'] },
      { name: 'shop-web-3', ips: ['10.1.0.4'], aliases: ['web'] },
    ]);
    server.setRecords('shop_back', [
      { name: 'shop-db-1', ips: ['10.2.0.2'], aliases: ['db', 'postgres'] },
      { name: 'shop-web-1', ips: ['10.2.0.9'], aliases: ['web'] },
    ]);
    const { port } = await server.listen('127.0.0.1', 0);
    return { server, port, errors };
  }

  it('answers A records of the client\'s network with TTL 600', async () => {
    const { port } = await start();
    const answer = await askUdp(port, 'www', 'A', CLIENT_FRONT);
    expect(answer.rcode).toBe('NOERROR');
    expect(answer.flag_aa).toBe(true);
    expect(aRecords(answer)).toEqual(['10.1.0.2']);
    expect(answer.answers![0]).toMatchObject({ name: 'www', ttl: 600, class: 'IN' });
  });

  it('hides names of other networks: they are forwarded, never answered with their ips', async () => {
    const upstream = await startFakeUpstream();
    cleanups.push(() => upstream.close());
    const { port } = await start({ upstreams: [`127.0.0.1:${upstream.port}`] });
    const fromFront = await askUdp(port, 'db', 'A', CLIENT_FRONT);
    expect(aRecords(fromFront)).toEqual(['203.0.113.7']);
    expect(upstream.queries).toEqual(['db']);
    expect(aRecords(await askUdp(port, 'db', 'A', CLIENT_BACK))).toEqual(['10.2.0.2']);
  });

  it('answers each client with its own network\'s address for a name on two networks', async () => {
    const { port } = await start();
    expect(aRecords(await askUdp(port, 'shop-web-1', 'A', CLIENT_FRONT))).toEqual(['10.1.0.2']);
    expect(aRecords(await askUdp(port, 'shop-web-1', 'A', CLIENT_BACK))).toEqual(['10.2.0.9']);
    // On both: the first network of the client wins, unless the name says which network.
    expect(aRecords(await askUdp(port, 'shop-web-1', 'A', CLIENT_BOTH))).toEqual(['10.2.0.9']);
    expect(aRecords(await askUdp(port, 'shop-web-1.shop_front', 'A', CLIENT_BOTH))).toEqual(['10.1.0.2']);
  });

  it('rotates the replicas of a service name from one answer to the next', async () => {
    const { port } = await start();
    const firsts: string[] = [];
    for (let i = 0; i < 4; i++) {
      const ips = aRecords(await askUdp(port, 'web', 'A', CLIENT_FRONT));
      expect([...ips].sort()).toEqual(['10.1.0.2', '10.1.0.3', '10.1.0.4']);
      firsts.push(ips[0]);
    }
    expect(firsts).toEqual(['10.1.0.2', '10.1.0.3', '10.1.0.4', '10.1.0.2']);
  });

  it('matches names case-insensitively and echoes the question as asked', async () => {
    const { port } = await start();
    const answer = await askUdp(port, 'PostGres.', 'A', CLIENT_BACK);
    expect(aRecords(answer)).toEqual(['10.2.0.2']);
    expect(answer.answers![0].name).toBe('PostGres');
  });

  it('strips a configured search domain', async () => {
    const { port } = await start({ searchDomains: ['corp.example'] });
    expect(aRecords(await askUdp(port, 'db.corp.example', 'A', CLIENT_BACK))).toEqual(['10.2.0.2']);
  });

  it('answers AAAA for our names with an empty NOERROR, and PTR for our addresses', async () => {
    const { port } = await start();
    const aaaa = await askUdp(port, 'db', 'AAAA', CLIENT_BACK);
    expect(aaaa.rcode).toBe('NOERROR');
    expect(aaaa.answers).toEqual([]);
    const ptr = await askUdp(port, '2.0.2.10.in-addr.arpa', 'PTR', CLIENT_BACK);
    expect(ptr.answers![0]).toMatchObject({ type: 'PTR', data: 'shop-db-1' });
  });

  it('answers over TCP, reassembling a query split across segments', async () => {
    const { port } = await start();
    expect(aRecords(await askTcp(port, 'postgres', 'A', CLIENT_BACK))).toEqual(['10.2.0.2']);
  });

  it('forwards over TCP what it does not know when the client uses TCP', async () => {
    const upstream = await startFakeUpstream();
    cleanups.push(() => upstream.close());
    const { port } = await start({ upstreams: [`127.0.0.1:${upstream.port}`] });
    expect(aRecords(await askTcp(port, 'example.org', 'A', CLIENT_FRONT))).toEqual(['203.0.113.7']);
  });

  it('answers SERVFAIL and reports why when the upstream is dead or silent', async () => {
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => silent.close(resolve)));
    const dead = await deadPort();
    const { port, errors } = await start({ upstreams: [`127.0.0.1:${dead}`, `127.0.0.1:${silent.address().port}`], upstreamTimeoutMs: 200 });
    const answer = await askUdp(port, 'example.org', 'A', CLIENT_FRONT);
    expect(answer.rcode).toBe('SERVFAIL');
    expect(errors.map((e) => e.message).join('\n')).toMatch(new RegExp(`127\\.0\\.0\\.1:${dead} \\(udp\\): .*ECONNREFUSED.*no answer within 200 ms`));
  });

  it('refuses clients that are on none of our networks, and forwarding where it is off', async () => {
    const upstream = await startFakeUpstream();
    cleanups.push(() => upstream.close());
    const { port } = await start({ upstreams: [`127.0.0.1:${upstream.port}`], forwardFor: (ip) => ip !== CLIENT_BACK });
    expect((await askUdp(port, 'web', 'A', STRANGER)).rcode).toBe('REFUSED');
    expect((await askUdp(port, 'example.org', 'A', CLIENT_BACK)).rcode).toBe('REFUSED');
    expect(aRecords(await askUdp(port, 'db', 'A', CLIENT_BACK))).toEqual(['10.2.0.2']);
    expect(upstream.queries).toEqual([]);
  });

  it('truncates an answer too big for UDP, and gives it whole over TCP', async () => {
    const { server, port } = await start();
    const many = Array.from({ length: 40 }, (_, i) => ({ name: `shop-worker-${i + 1}`, ips: [`10.3.0.${i + 2}`], aliases: ['worker-service-with-a-long-name'] }));
    server.setRecords('shop_front', many);
    const udp = await askUdp(port, 'worker-service-with-a-long-name', 'A', CLIENT_FRONT);
    expect(udp.flag_tc).toBe(true);
    expect(aRecords(udp).length).toBeGreaterThan(0);
    expect(aRecords(udp).length).toBeLessThan(40);
    expect(aRecords(await askTcp(port, 'worker-service-with-a-long-name', 'A', CLIENT_FRONT))).toHaveLength(40);
  });

  it('sees record updates and deleted networks at once', async () => {
    const { server, port } = await start();
    server.setRecords('shop_back', [{ name: 'shop-db-2', ips: ['10.2.0.3'], aliases: ['db'] }]);
    expect(aRecords(await askUdp(port, 'db', 'A', CLIENT_BACK))).toEqual(['10.2.0.3']);
    expect(server.deleteNetwork('shop_back')).toBe(true);
    expect((await askUdp(port, 'db', 'A', CLIENT_BACK)).rcode).toBe('SERVFAIL');
  });

  it('interoperates with node\'s own resolver (c-ares)', async () => {
    const { port } = await start();
    const resolver = new Resolver({ timeout: 2000, tries: 1 });
    resolver.setLocalAddress(CLIENT_BACK);
    resolver.setServers([`127.0.0.1:${port}`]);
    expect(await resolver.resolve4('postgres')).toEqual(['10.2.0.2']);
    await expect(resolver.resolve4('www')).rejects.toMatchObject({ code: 'ESERVFAIL' });
  });

  it('answers FORMERR to garbage with a header and NOTIMP to other opcodes', async () => {
    const { server } = await start();
    const garbage = Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00, 0x00, 0x01]), Buffer.alloc(6), Buffer.from([0xff, 0xff])]);
    const formerr = dnsPacket.decode((await server.handle(garbage, CLIENT_FRONT, 'udp'))!) as Decoded;
    expect(formerr).toMatchObject({ id: 0x1234, rcode: 'FORMERR', type: 'response' });
    const notify = dnsPacket.encode({ type: 'query', id: 9, questions: [{ type: 'SOA', name: 'x', class: 'IN' }] });
    notify.writeUInt16BE(4 << 11, 2);
    expect((dnsPacket.decode((await server.handle(notify, CLIENT_FRONT, 'udp'))!) as Decoded).rcode).toBe('NOTIMP');
  });

  it('listens on several addresses and stops on one', async () => {
    const { server, port } = await start();
    const second = await server.listen('127.0.0.1', 0);
    expect(server.listeners()).toHaveLength(2);
    expect(aRecords(await askUdp(second.port, 'db', 'A', CLIENT_BACK))).toEqual(['10.2.0.2']);
    expect(await server.unlisten('127.0.0.1', port)).toBe(true);
    expect(server.listeners()).toEqual([second]);
    await expect(server.listen('127.0.0.1', second.port)).rejects.toMatchObject({ code: 'D2P_NETWORK_PORT_IN_USE' });
  });
});

describe('upstream resolvers from resolv.conf', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-dns-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('keeps non-loopback nameservers in order and drops loopback ones, as Docker does', () => {
    const file = path.join(dir, 'resolv.conf');
    fs.writeFileSync(file, '# generated\nnameserver 127.0.0.53\nnameserver 192.0.2.1 ; office\nsearch corp.example\nnameserver ::1\nnameserver 2001:db8::1\noptions edns0\n');
    expect(readUpstreamResolvers(file)).toEqual(['192.0.2.1', '2001:db8::1']);
  });

  it('has no upstream when the file does not exist', () => {
    expect(readUpstreamResolvers(path.join(dir, 'missing'))).toEqual([]);
  });
});

describe('asking an upstream over UDP', () => {
  const query = dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'example.test' }] });

  it('a connect that fails ends the query with its error instead of sending on the unconnected socket', async () => {
    // connect(2) to the broadcast address without SO_BROADCAST is EACCES (ip(7)): a failed
    // connect that puts no packet on any wire.
    await expect(askUpstreamUdp({ host: '255.255.255.255', port: 53 }, query, 1000)).rejects.toMatchObject({ code: 'EACCES' });
  });

  it('a port out of range fails the query instead of throwing', async () => {
    await expect(askUpstreamUdp({ host: '127.0.0.1', port: 70000 }, query, 1000)).rejects.toMatchObject({ code: 'ERR_SOCKET_BAD_PORT' });
  });
});
