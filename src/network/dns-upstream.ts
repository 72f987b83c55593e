// Forwarding of the queries the embedded DNS server does not answer itself, to the host's
// resolvers, over the transport the client used (a truncated UDP answer makes the client
// retry over TCP, RFC 7766 §5, and that retry is then forwarded over TCP too).
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import { isIP } from 'node:net';
import * as net from 'node:net';

import { NetworkError, errnoOf } from './errors';
import { parseResolvConf } from './hosts-files';

export interface Upstream {
  host: string;
  port: number;
}

/** "1.2.3.4", "1.2.3.4:5353", "::1", "[::1]:5353" → { host, port } (53 by default). */
export function parseUpstream(text: string): Upstream {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  const hostPort = /^([^:]+):(\d+)$/.exec(text);
  const [host, port] = bracketed ? [bracketed[1], bracketed[2]] : hostPort ? [hostPort[1], hostPort[2]] : [text, undefined];
  const portNumber = port === undefined ? 53 : Number(port);
  if (isIP(host) === 0 || !(portNumber > 0 && portNumber < 65536)) {
    throw new NetworkError('D2P_NETWORK_INVALID', `invalid upstream DNS server ${JSON.stringify(text)}: expected IP or IP:PORT`);
  }
  return { host, port: portNumber };
}

function isLoopback(ip: string): boolean {
  return ip === '::1' || ip.startsWith('127.');
}

/**
 * The host's resolvers from resolv.conf, without loopback ones: inside a container's
 * network namespace 127.0.0.53 (systemd-resolved) is the container itself, so Docker
 * drops them too (libnetwork/resolvconf FilterResolvDNS). A host without the file has
 * no upstream and forwarded queries get SERVFAIL.
 */
export function readUpstreamResolvers(file = '/etc/resolv.conf'): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return [];
    throw new NetworkError('D2P_NETWORK_SYSTEM', `cannot read upstream resolvers from ${file}: ${(error as Error).message}`, { errno: errnoOf(error), cause: error });
  }
  return parseResolvConf(text).nameservers.filter((ns) => isIP(ns) !== 0 && !isLoopback(ns));
}

/** Sends `query` over UDP to one upstream; resolves with its answer or rejects on error/timeout. */
export function askUdp(upstream: Upstream, query: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // A fresh socket per query gets a fresh random source port, which is what makes
    // forged answers hard to inject (RFC 5452 §4.5).
    const socket = dgram.createSocket(isIP(upstream.host) === 6 ? 'udp6' : 'udp4');
    let closed = false;
    const finish = settleOnce(
      timeoutMs,
      () => {
        closed = true;
        socket.close();
      },
      resolve,
      reject,
    );
    socket.on('error', (error) => finish(error));
    socket.on('message', (answer) => {
      // Only an answer to this very query counts (same id); anything else is ignored as
      // a resolver would (RFC 5452 §9.1).
      if (answer.length >= 12 && answer.readUInt16BE(0) === query.readUInt16BE(0)) finish(null, answer);
    });
    // connect() makes the kernel deliver ICMP port-unreachable as ECONNREFUSED, so a
    // dead upstream fails at once instead of after the timeout.
    // Node calls back with the error when connect(2) fails (ENETUNREACH in a namespace
    // with no route): a send on the unconnected socket would then throw
    // ERR_SOCKET_BAD_PORT out of this callback, uncaught. And a connect that completes
    // after the timeout closed the socket must not send either.
    const sendWhenConnected = (error?: Error): void => {
      if (error) finish(error);
      else if (!closed) socket.send(query, (sendError) => sendError && finish(sendError));
    };
    try {
      socket.connect(upstream.port, upstream.host, sendWhenConnected);
    } catch (error) {
      // Synchronous refusals (ERR_SOCKET_BAD_PORT for a port out of range) fail this query only.
      finish(error as Error);
    }
  });
}

/** Sends `query` over TCP (2-byte length prefix, RFC 1035 §4.2.2) to one upstream. */
export function askTcp(upstream: Upstream, query: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: upstream.host, port: upstream.port });
    let received = Buffer.alloc(0);
    const finish = settleOnce(timeoutMs, () => socket.destroy(), resolve, reject);
    socket.on('error', (error) => finish(error));
    socket.on('connect', () => socket.write(withLengthPrefix(query)));
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      if (received.length >= 2 && received.length >= 2 + received.readUInt16BE(0)) finish(null, received.subarray(2, 2 + received.readUInt16BE(0)));
    });
    socket.on('end', () => finish(new Error('connection closed before a full answer')));
  });
}

/**
 * The one way a query ends: with an answer, an error, or the timeout, whichever comes first;
 * `close` frees the socket then, and later outcomes are ignored.
 */
function settleOnce(
  timeoutMs: number,
  close: () => void,
  resolve: (answer: Buffer) => void,
  reject: (error: Error) => void,
): (error: Error | null, answer?: Buffer) => void {
  let done = false;
  const finish = (error: Error | null, answer?: Buffer): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    close();
    if (error) reject(error);
    else resolve(answer!);
  };
  const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  return finish;
}

export function withLengthPrefix(message: Buffer): Buffer {
  const prefix = Buffer.alloc(2);
  prefix.writeUInt16BE(message.length);
  return Buffer.concat([prefix, message]);
}

export interface ForwardResult {
  answer?: Buffer;
  /** One line per upstream that failed, "1.2.3.4:53: ECONNREFUSED …", for the caller's log. */
  failures: string[];
}

/** Tries each upstream in order; the first answer wins. */
export async function forwardQuery(upstreams: Upstream[], query: Buffer, transport: 'udp' | 'tcp', timeoutMs: number): Promise<ForwardResult> {
  const failures: string[] = [];
  for (const upstream of upstreams) {
    try {
      const answer = await (transport === 'udp' ? askUdp : askTcp)(upstream, query, timeoutMs);
      return { answer, failures };
    } catch (error) {
      failures.push(`${upstream.host}:${upstream.port} (${transport}): ${(error as Error).message}`);
    }
  }
  if (upstreams.length === 0) failures.push('no upstream DNS server configured');
  return { failures };
}
