// Published ports (`ports: "8080:80"`): a host address:port that reaches a container's
// address:port. The userland proxy is always there, as Docker's docker-proxy is by default
// (userland-proxy: true): it holds the host port (so a second publisher gets EADDRINUSE
// from the kernel, and a random port 0 is chosen by it), and it carries the traffic that
// kernel NAT cannot (IPv6, hairpin traffic from the target's own bridge, machines without
// iptables). When a NAT backend is given, a DNAT rule is added beside it, so traffic to the
// host's addresses (127.0.0.1 too, when the target sits behind a bridge) bypasses the proxy
// in the kernel: the proxy copies every byte through user space twice and reached 0.3–0.5×
// direct throughput at twice the CPU per byte, DNAT 0.9–1.2× (nat.ts; hack/bench/ports.js).
import * as dgram from 'node:dgram';
import { isIP } from 'node:net';
import * as net from 'node:net';

import { NetworkError, errnoOf } from './errors';
import { describePortHolder } from './port-holder';

export type PortProtocol = 'tcp' | 'udp';

export interface PublishRequest {
  /** Host address to listen on; default 0.0.0.0 (every IPv4 address, as Docker's default). */
  hostIP?: string;
  /** 0 = a free port chosen by the kernel, reported back in PublishedPort.hostPort. */
  hostPort: number;
  protocol: PortProtocol;
  targetIP: string;
  targetPort: number;
  /** The bridge the target sits behind; with NAT, traffic entering from it is left to the proxy (hairpin). */
  targetInterface?: string;
  /** Who publishes ("shop/web-1"): named in the error a second publisher of the port gets. */
  owner?: string;
}

export interface PublishedPort {
  readonly hostIP: string;
  readonly hostPort: number;
  readonly protocol: PortProtocol;
  readonly targetIP: string;
  readonly targetPort: number;
  readonly owner?: string;
  /** Which of the port's traffic a kernel DNAT rule carries past the proxy. */
  readonly nat: NatReach;
  /** Stops forwarding, ends open connections and UDP sessions, frees the port. Idempotent. */
  close(): Promise<void>;
}

/**
 * What a DNAT rule carries: nothing ('none': the proxy carries everything), every
 * destination but 127.0.0.0/8 ('non-loopback': the proxy carries loopback), or every
 * IPv4 destination of the port ('all').
 */
export type NatReach = 'none' | 'non-loopback' | 'all';

/** A kernel NAT backend (nat.ts): one DNAT rule per published port. */
export interface PortNat {
  /** Adds the port's rule (idempotently) and says what it carries; 'none' means it added nothing. */
  addPortRule(rule: NatPortRule): Promise<NatReach>;
  /** Removes the port's rule; one already gone is not an error. */
  removePortRule(rule: NatPortRule): Promise<void>;
  /** Takes the shared chains and jumps away when no port's rule is left in them. */
  removeAllIfUnused(): Promise<void>;
}

export interface NatPortRule {
  hostIP: string;
  hostPort: number;
  protocol: PortProtocol;
  targetIP: string;
  targetPort: number;
  targetInterface?: string;
}

export interface PortPublisherOptions {
  /** UDP "sessions" (one per client address:port) end after this much silence; Docker's UDPConnTrackTimeout is 90 s. */
  udpIdleTimeoutMs?: number;
  nat?: PortNat;
  /** Errors of running proxies (a target that resets is not one); default: a line on stderr. */
  onError?(error: Error): void;
}

interface ProxyHandle {
  port: number;
  close(): Promise<void>;
}

const WILDCARDS = new Set(['0.0.0.0', '::']);

export class PortPublisher {
  private readonly active = new Set<PublishedPort>();
  /** Ports being opened right now: a concurrent second publish must see them as taken too. */
  private readonly opening = new Set<PublishRequest & { hostIP: string }>();

  constructor(private readonly options: PortPublisherOptions = {}) {}

  async publish(request: PublishRequest): Promise<PublishedPort> {
    const hostIP = request.hostIP ?? '0.0.0.0';
    checkRequest(request, hostIP);
    this.checkNotPublished(request, hostIP);
    const claim = { ...request, hostIP };
    this.opening.add(claim);
    let proxy: ProxyHandle;
    try {
      proxy = await this.startProxy(request, hostIP);
    } finally {
      this.opening.delete(claim);
    }
    const rule: NatPortRule = { hostIP, hostPort: proxy.port, protocol: request.protocol, targetIP: request.targetIP, targetPort: request.targetPort };
    if (request.targetInterface !== undefined) rule.targetInterface = request.targetInterface;
    let nat: NatReach = 'none';
    try {
      if (this.options.nat !== undefined) nat = await this.options.nat.addPortRule(rule);
    } catch (error) {
      await proxy.close();
      throw error;
    }
    let closing: Promise<void> | undefined;
    const published: PublishedPort = {
      ...rule,
      owner: request.owner,
      nat,
      close: () => {
        closing ??= this.unpublish(published, rule, proxy);
        return closing;
      },
    };
    this.active.add(published);
    return published;
  }

  published(): PublishedPort[] {
    return [...this.active];
  }

  /**
   * Closes every published port (rules and proxies); then, with no rule of anyone left, the
   * NAT chains go too, so a stopped daemon leaves no trace in the firewall. A later publish
   * creates them again.
   */
  async closeAll(): Promise<void> {
    await Promise.all([...this.active].map((port) => port.close()));
    await this.options.nat?.removeAllIfUnused();
  }

  private async unpublish(published: PublishedPort, rule: NatPortRule, proxy: ProxyHandle): Promise<void> {
    this.active.delete(published);
    try {
      if (published.nat !== 'none') await this.options.nat!.removePortRule(rule);
    } finally {
      await proxy.close();
    }
  }

  /** Our own ports first, so the error names the d2p owner rather than "pid of the daemon". */
  private checkNotPublished(request: PublishRequest, hostIP: string): void {
    if (request.hostPort === 0) return;
    for (const other of [...this.active, ...this.opening]) {
      const sameAddress = other.hostIP === hostIP || WILDCARDS.has(other.hostIP) || WILDCARDS.has(hostIP);
      if (other.protocol === request.protocol && other.hostPort === request.hostPort && sameAddress) {
        const holder = other.owner ?? `${other.targetIP}:${other.targetPort}`;
        throw new NetworkError(
          'D2P_NETWORK_PORT_IN_USE',
          `${request.owner ?? 'publish'}: host port ${portLabel(hostIP, request.hostPort, request.protocol)} is already published by ${holder} (${portLabel(other.hostIP, other.hostPort, other.protocol)}): EADDRINUSE`,
          { port: portLabel(hostIP, request.hostPort, request.protocol), holder, errno: 'EADDRINUSE' },
        );
      }
    }
  }

  private async startProxy(request: PublishRequest, hostIP: string): Promise<ProxyHandle> {
    try {
      return request.protocol === 'tcp' ? await startTcpProxy(request, hostIP, this.report) : await startUdpProxy(request, hostIP, this.options.udpIdleTimeoutMs ?? 90_000, this.report);
    } catch (error) {
      throw bindError(request, hostIP, error);
    }
  }

  private readonly report = (error: Error): void => {
    if (this.options.onError) this.options.onError(error);
    else process.stderr.write(`d2p ports: ${error.message}\n`);
  };
}

function checkRequest(request: PublishRequest, hostIP: string): void {
  const who = request.owner ?? 'publish';
  const fail = (message: string) => {
    throw new NetworkError('D2P_NETWORK_INVALID', `${who}: ${message}`);
  };
  if (request.protocol !== 'tcp' && request.protocol !== 'udp') fail(`unsupported protocol ${JSON.stringify(request.protocol)} (tcp or udp)`);
  if (isIP(hostIP) === 0) fail(`invalid hostIP ${JSON.stringify(hostIP)}`);
  if (isIP(request.targetIP) === 0) fail(`invalid targetIP ${JSON.stringify(request.targetIP)}`);
  if (!Number.isInteger(request.hostPort) || request.hostPort < 0 || request.hostPort > 65535) fail(`invalid hostPort ${request.hostPort}`);
  if (!Number.isInteger(request.targetPort) || request.targetPort < 1 || request.targetPort > 65535) fail(`invalid targetPort ${request.targetPort}`);
}

function portLabel(hostIP: string, port: number, protocol: PortProtocol): string {
  return `${isIP(hostIP) === 6 ? `[${hostIP}]` : hostIP}:${port}/${protocol}`;
}

function bindError(request: PublishRequest, hostIP: string, error: unknown): NetworkError {
  const errno = errnoOf(error);
  const port = portLabel(hostIP, request.hostPort, request.protocol);
  const who = request.owner ?? 'publish';
  if (errno === 'EADDRINUSE') {
    const holder = describePortHolder(request.protocol, request.hostPort) ?? 'another process';
    return new NetworkError('D2P_NETWORK_PORT_IN_USE', `${who}: cannot publish ${port}: the port is already in use by ${holder}: EADDRINUSE`, { port, holder, errno, cause: error });
  }
  return new NetworkError('D2P_NETWORK_SYSTEM', `${who}: cannot publish ${port}: ${(error as Error).message}`, { port, errno, cause: error });
}

// ---------------------------------------------------------------------------- TCP

function startTcpProxy(request: PublishRequest, hostIP: string, report: (error: Error) => void): Promise<ProxyHandle> {
  const connections = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    const pair = pipeToTarget(client, request, report);
    for (const socket of pair) {
      connections.add(socket);
      socket.on('close', () => connections.delete(socket));
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // exclusive: never share the port with a cluster worker; the kernel must refuse a second binder.
    server.listen({ host: hostIP, port: request.hostPort, exclusive: true }, () => {
      server.off('error', reject);
      server.on('error', report);
      const close = () =>
        new Promise<void>((done) => {
          server.close(() => done());
          for (const socket of connections) socket.destroy();
        });
      resolve({ port: (server.address() as net.AddressInfo).port, close });
    });
  });
}

/**
 * Joins a client connection to a new one to the target. Half-close is passed through
 * (allowHalfOpen + pipe's end()), so request/response protocols that shut down their
 * write side keep working; an error on one side resets the other, as docker-proxy does.
 */
function pipeToTarget(client: net.Socket, request: PublishRequest, report: (error: Error) => void): [net.Socket, net.Socket] {
  const target = net.connect({ host: request.targetIP, port: request.targetPort, allowHalfOpen: true, noDelay: true });
  client.pipe(target);
  target.pipe(client);
  const resetBoth = (side: string) => (error: Error) => {
    // Peers resetting or refusing are ordinary network events; anything else is worth a line.
    if (!['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH'].includes(errnoOf(error) ?? '')) {
      report(new NetworkError('D2P_NETWORK_SYSTEM', `proxy ${request.hostPort}/tcp → ${request.targetIP}:${request.targetPort}: ${side}: ${error.message}`, { errno: errnoOf(error), cause: error }));
    }
    client.destroy();
    target.destroy();
  };
  client.on('error', resetBoth('client'));
  target.on('error', resetBoth('target'));
  return [client, target];
}

// ---------------------------------------------------------------------------- UDP

interface UdpSession {
  socket: dgram.Socket;
  timer: NodeJS.Timeout;
}

/**
 * UDP has no connections, so each client address:port gets its own socket towards the
 * target (the target's replies come back on it and are sent to that client), closed after
 * `idleMs` without traffic either way, as docker-proxy's UDP proxy does.
 */
function startUdpProxy(request: PublishRequest, hostIP: string, idleMs: number, report: (error: Error) => void): Promise<ProxyHandle> {
  const family = isIP(hostIP) === 6 ? 'udp6' : 'udp4';
  const server = dgram.createSocket(family);
  const sessions = new Map<string, UdpSession>();
  const endSession = (key: string) => {
    const session = sessions.get(key);
    if (session === undefined) return;
    sessions.delete(key);
    clearTimeout(session.timer);
    session.socket.close();
  };
  const sessionFor = (client: dgram.RemoteInfo): UdpSession => {
    const key = `${client.address}:${client.port}`;
    const existing = sessions.get(key);
    if (existing !== undefined) return existing;
    const socket = dgram.createSocket(isIP(request.targetIP) === 6 ? 'udp6' : 'udp4');
    const session: UdpSession = { socket, timer: setTimeout(() => endSession(key), idleMs) };
    socket.on('message', (reply, from) => {
      // Only the target may answer through this session; anything else reaching the
      // session's ephemeral port is not traffic of this published port.
      if (from.address !== request.targetIP || from.port !== request.targetPort) return;
      session.timer.refresh();
      server.send(reply, client.port, client.address);
    });
    socket.on('error', (error) => {
      report(new NetworkError('D2P_NETWORK_SYSTEM', `proxy ${request.hostPort}/udp → ${request.targetIP}:${request.targetPort}, client ${key}: ${error.message}`, { errno: errnoOf(error), cause: error }));
      endSession(key);
    });
    sessions.set(key, session);
    return session;
  };
  server.on('message', (datagram, client) => {
    const session = sessionFor(client);
    session.timer.refresh();
    session.socket.send(datagram, request.targetPort, request.targetIP);
  });
  return new Promise((resolve, reject) => {
    server.once('error', (error) => {
      server.close();
      reject(error);
    });
    server.bind({ address: hostIP, port: request.hostPort, exclusive: true }, () => {
      server.removeAllListeners('error');
      server.on('error', report);
      const close = () =>
        new Promise<void>((done) => {
          for (const key of [...sessions.keys()]) endSession(key);
          server.close(() => done());
        });
      resolve({ port: server.address().port, close });
    });
  });
}
