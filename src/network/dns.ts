// The embedded DNS server (DESIGN.md §6, issue 6): answers container names, service names
// (every replica, rotated) and aliases of the networks the ASKING client is attached to,
// and forwards every other name to the upstream resolvers, like Docker's embedded DNS at
// 127.0.0.11 (moby libnetwork/resolver.go). UDP and TCP on each listening address; the wire
// format is RFC 1035's, encoded and decoded with dns-packet.
import * as dgram from 'node:dgram';
import { isIP } from 'node:net';
import * as net from 'node:net';

import * as dnsPacket from 'dns-packet';

import { type DnsRecord, DnsRecords, type LocalAnswer } from './dns-records';
import { type Upstream, forwardQuery, parseUpstream, readUpstreamResolvers, withLengthPrefix } from './dns-upstream';
import { NetworkError, errnoOf } from './errors';

export type { DnsRecord } from './dns-records';

export interface DnsServerOptions {
  /** Networks the client with this source address belongs to, first = preferred. Empty: not a client of ours. */
  networksOf(clientIP: string): string[];
  /**
   * Whether names that are not ours are forwarded for this client. Docker answers only its
   * own names on an internal network; default: always forward.
   */
  forwardFor?(clientIP: string): boolean;
  /** "IP" or "IP:PORT"; default: the host's /etc/resolv.conf without loopback servers. */
  upstreams?: string[];
  /** Domains that may follow a name (from the containers' `search` list): "web.example.com" is "web". */
  searchDomains?: string[];
  /** Per upstream; two of them fit within glibc's 5 s resolver timeout (resolv.conf(5)). Default 2000. */
  upstreamTimeoutMs?: number;
  /** TTL of our answers; Docker's is 600 s (libnetwork/resolver.go respTTL). */
  ttl?: number;
  /** Where socket errors and upstream failures go; default: a line on stderr. */
  onError?(error: Error): void;
}

export interface ListenAddress {
  host: string;
  port: number;
}

interface Listener extends ListenAddress {
  udp: dgram.Socket;
  tcp: net.Server;
  /** Open TCP connections, ended when the listener closes (server.close() alone waits for them). */
  connections: Set<net.Socket>;
}

/** RFC 1035 §4.1.1 RCODEs we send ourselves. */
const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NOTIMP: 4, REFUSED: 5 } as const;
/** A UDP answer without EDNS is limited to 512 bytes (RFC 1035 §4.2.1). */
const CLASSIC_UDP_SIZE = 512;
/** What we advertise and accept at most over UDP with EDNS (DNS flag day 2020). */
const EDNS_UDP_SIZE = 1232;
/** RFC 7766 §6.2.3: servers close idle TCP connections after some seconds. */
const TCP_IDLE_MS = 10_000;

export class DnsServer {
  private readonly records: DnsRecords;
  private readonly upstreams: Upstream[];
  private readonly listenersByAddress = new Map<string, Listener>();

  constructor(private readonly options: DnsServerOptions) {
    this.records = new DnsRecords(options.searchDomains);
    this.upstreams = (options.upstreams ?? readUpstreamResolvers()).map(parseUpstream);
  }

  setRecords(network: string, records: DnsRecord[]): void {
    this.records.setRecords(network, records);
  }

  deleteNetwork(network: string): boolean {
    return this.records.deleteNetwork(network);
  }

  /** Starts answering on host:port over UDP and TCP; port 0 picks a free one (the same for both). */
  async listen(host: string, port = 53): Promise<ListenAddress> {
    if (isIP(host) === 0) throw new NetworkError('D2P_NETWORK_INVALID', `DNS listen address ${JSON.stringify(host)} is not an IP address`);
    // With port 0 the kernel picks a free UDP port, which may be taken for TCP: try again.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.listenOnce(host, port);
      } catch (error) {
        if (port !== 0 || attempt >= 5 || !(error instanceof NetworkError && error.code === 'D2P_NETWORK_PORT_IN_USE')) throw error;
      }
    }
  }

  private async listenOnce(host: string, port: number): Promise<ListenAddress> {
    const udp = await this.bindUdp(host, port);
    const boundPort = udp.address().port;
    const connections = new Set<net.Socket>();
    let tcp: net.Server;
    try {
      tcp = await this.listenTcp(host, boundPort, connections);
    } catch (error) {
      udp.close();
      throw error;
    }
    this.listenersByAddress.set(addressKey(host, boundPort), { host, port: boundPort, udp, tcp, connections });
    return { host, port: boundPort };
  }

  listeners(): ListenAddress[] {
    return [...this.listenersByAddress.values()].map(({ host, port }) => ({ host, port }));
  }

  /** Stops answering on one address; false when it was not listening there. */
  async unlisten(host: string, port: number): Promise<boolean> {
    const listener = this.listenersByAddress.get(addressKey(host, port));
    if (listener === undefined) return false;
    this.listenersByAddress.delete(addressKey(host, port));
    await closeListener(listener);
    return true;
  }

  async close(): Promise<void> {
    const all = [...this.listenersByAddress.values()];
    this.listenersByAddress.clear();
    await Promise.all(all.map(closeListener));
  }

  /** Answers one wire-format query from clientIP; undefined = send nothing (not a query). */
  async handle(query: Buffer, clientIP: string, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    let packet: dnsPacket.DecodedPacket;
    try {
      packet = dnsPacket.decode(query);
    } catch (decodeError) {
      // Undecodable input is the client's fault, not ours: it gets FORMERR when at least
      // the header is there to carry the id (RFC 1035 §4.1.1), else nothing.
      return query.length >= 12 ? headerOnlyReply(query, RCODE.FORMERR) : undefined;
    }
    if (packet.type !== 'query') return undefined;
    if (opcodeOf(query) !== 0) return headerOnlyReply(query, RCODE.NOTIMP);
    if (packet.questions?.length !== 1) return this.reply(packet, RCODE.FORMERR, [], transport);
    const networks = this.options.networksOf(clientIP);
    // Not one of our containers: refuse rather than be an open resolver on this address.
    if (networks.length === 0) return this.reply(packet, RCODE.REFUSED, [], transport);
    const question = packet.questions[0];
    const local = question.class === 'IN' || question.class === 'ANY' ? this.records.lookup(question.name, question.type, networks) : undefined;
    if (local !== undefined) return this.reply(packet, RCODE.NOERROR, this.answersFor(question, local), transport);
    if (this.options.forwardFor && !this.options.forwardFor(clientIP)) return this.reply(packet, RCODE.REFUSED, [], transport);
    return this.forward(packet, query, transport);
  }

  private answersFor(question: dnsPacket.Question, local: LocalAnswer): dnsPacket.Answer[] {
    const ttl = this.options.ttl ?? 600;
    if (local.kind === 'A') return local.ips.map((ip) => ({ type: 'A', class: 'IN', name: question.name, ttl, data: ip }));
    if (local.kind === 'PTR') return [{ type: 'PTR', class: 'IN', name: question.name, ttl, data: local.name }];
    return [];
  }

  private async forward(packet: dnsPacket.DecodedPacket, query: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer> {
    const { answer, failures } = await forwardQuery(this.upstreams, query, transport, this.options.upstreamTimeoutMs ?? 2000);
    if (answer !== undefined) return answer;
    const name = packet.questions?.[0]?.name ?? '?';
    this.report(new NetworkError('D2P_NETWORK_SYSTEM', `DNS: forwarding ${name} failed, answering SERVFAIL: ${failures.join('; ')}`));
    return this.reply(packet, RCODE.SERVFAIL, [], transport);
  }

  private reply(query: dnsPacket.DecodedPacket, rcode: number, answers: dnsPacket.Answer[], transport: 'udp' | 'tcp'): Buffer {
    const queryOpt = query.additionals?.find((a): a is dnsPacket.OptAnswer => a.type === 'OPT');
    const limit = transport === 'tcp' ? 65535 : queryOpt ? Math.min(Math.max(queryOpt.udpPayloadSize ?? CLASSIC_UDP_SIZE, CLASSIC_UDP_SIZE), EDNS_UDP_SIZE) : CLASSIC_UDP_SIZE;
    const recursionDesired = query.flag_rd ? dnsPacket.RECURSION_DESIRED : 0;
    // Our own names are authoritative; RA because everything else is resolved for the client.
    const flags = dnsPacket.RECURSION_AVAILABLE | recursionDesired | (rcode === RCODE.NOERROR ? dnsPacket.AUTHORITATIVE_ANSWER : 0) | rcode;
    const additionals: dnsPacket.Answer[] = queryOpt ? [ednsOpt()] : [];
    const response: dnsPacket.Packet = { type: 'response', id: query.id, flags, questions: query.questions, answers, additionals };
    let encoded = dnsPacket.encode(response);
    // Too big for this transport: drop answers until it fits and set TC, so the client
    // retries over TCP (RFC 2181 §9).
    while (encoded.length > limit && answers.length > 0) {
      answers = answers.slice(0, -1);
      encoded = dnsPacket.encode({ ...response, flags: flags | dnsPacket.TRUNCATED_RESPONSE, answers });
    }
    return encoded;
  }

  private report(error: Error): void {
    if (this.options.onError) this.options.onError(error);
    else process.stderr.write(`d2p dns: ${error.message}\n`);
  }

  private bindUdp(host: string, port: number): Promise<dgram.Socket> {
    return new Promise((resolve, reject) => {
      const socket = dgram.createSocket(isIP(host) === 6 ? 'udp6' : 'udp4');
      const onBindError = (error: Error) => {
        socket.close();
        reject(listenError(host, port, 'udp', error));
      };
      socket.once('error', onBindError);
      socket.bind(port, host, () => {
        socket.off('error', onBindError);
        socket.on('error', (error) => this.report(new NetworkError('D2P_NETWORK_SYSTEM', `DNS udp ${host}:${port}: ${error.message}`, { errno: errnoOf(error), cause: error })));
        socket.on('message', (query, remote) => this.onUdpQuery(socket, query, remote));
        resolve(socket);
      });
    });
  }

  private onUdpQuery(socket: dgram.Socket, query: Buffer, remote: dgram.RemoteInfo): void {
    this.handle(query, remote.address, 'udp').then(
      (answer) => {
        if (answer === undefined) return;
        try {
          socket.send(answer, remote.port, remote.address, (error) => error && this.report(error));
        } catch (error) {
          // The network went away (its listener closed) while the answer was being made:
          // the client retries its query, as after any lost datagram.
          if ((error as NodeJS.ErrnoException).code === 'ERR_SOCKET_DGRAM_NOT_RUNNING') return;
          this.report(error as Error);
        }
      },
      (error: Error) => this.report(error),
    );
  }

  private listenTcp(host: string, port: number, connections: Set<net.Socket>): Promise<net.Server> {
    return new Promise((resolve, reject) => {
      const server = net.createServer((socket) => {
        connections.add(socket);
        socket.on('close', () => connections.delete(socket));
        this.onTcpConnection(socket);
      });
      const onListenError = (error: Error) => reject(listenError(host, port, 'tcp', error));
      server.once('error', onListenError);
      server.listen({ host, port, exclusive: true }, () => {
        server.off('error', onListenError);
        server.on('error', (error) => this.report(new NetworkError('D2P_NETWORK_SYSTEM', `DNS tcp ${host}:${port}: ${error.message}`, { errno: errnoOf(error), cause: error })));
        resolve(server);
      });
    });
  }

  /** RFC 7766: several length-prefixed queries may arrive on one connection, in any chunking. */
  private onTcpConnection(socket: net.Socket): void {
    let pending = Buffer.alloc(0);
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    // A client that resets its connection is ordinary traffic, not a server fault.
    socket.on('error', (error) => {
      if (errnoOf(error) !== 'ECONNRESET' && errnoOf(error) !== 'EPIPE') this.report(error);
    });
    socket.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const query = pending.subarray(2, 2 + pending.readUInt16BE(0));
        pending = pending.subarray(2 + query.length);
        this.handle(query, socket.remoteAddress ?? '', 'tcp').then(
          (answer) => {
            if (answer !== undefined && !socket.destroyed) socket.write(withLengthPrefix(answer));
          },
          (error: Error) => this.report(error),
        );
      }
    });
  }
}

function addressKey(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

function listenError(host: string, port: number, protocol: string, error: Error): NetworkError {
  const errno = errnoOf(error);
  const code = errno === 'EADDRINUSE' ? 'D2P_NETWORK_PORT_IN_USE' : 'D2P_NETWORK_SYSTEM';
  return new NetworkError(code, `DNS server cannot listen on ${addressKey(host, port)}/${protocol}: ${error.message}`, { port: `${addressKey(host, port)}/${protocol}`, errno, cause: error });
}

function closeListener(listener: Listener): Promise<void> {
  return new Promise((resolve) => {
    listener.udp.close(() => listener.tcp.close(() => resolve()));
    for (const socket of listener.connections) socket.destroy();
  });
}

function opcodeOf(message: Buffer): number {
  return (message.readUInt16BE(2) >> 11) & 0xf;
}

/** A reply that repeats only the header's id and opcode, for queries we cannot (or will not) decode. */
function headerOnlyReply(query: Buffer, rcode: number): Buffer {
  const reply = Buffer.alloc(12);
  reply.writeUInt16BE(query.readUInt16BE(0), 0);
  const QR = 0x8000;
  reply.writeUInt16BE(QR | (opcodeOf(query) << 11) | rcode, 2);
  return reply;
}

/** Our OPT pseudo-record (RFC 6891 §6.1.2): EDNS version 0, no DO bit, no options. */
function ednsOpt(): dnsPacket.OptAnswer {
  return { type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_SIZE, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] };
}
