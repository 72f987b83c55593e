// Published ports through the userland proxy, to echo servers on loopback.
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { type NatPortRule, type PortNat, PortPublisher } from '../../src/network/port-forward';
import { describePortHolder, socketInodesOnPort } from '../../src/network/port-holder';

async function tcpEchoServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

async function udpEchoServer(): Promise<{ port: number; peers: Set<string>; close(): Promise<void> }> {
  const peers = new Set<string>();
  const socket = dgram.createSocket('udp4');
  socket.on('message', (message, remote) => {
    peers.add(`${remote.address}:${remote.port}`);
    socket.send(Buffer.concat([Buffer.from('echo:'), message]), remote.port, remote.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { port: socket.address().port, peers, close: () => new Promise((resolve) => socket.close(resolve)) };
}

/** Sends `payload`, half-closes, and collects everything until the other side closes. */
function tcpRoundTrip(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.end(payload));
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('end', () => resolve(Buffer.concat(chunks)));
    socket.on('error', reject);
  });
}

async function udpRoundTrip(port: number, payload: string, socket?: dgram.Socket): Promise<string> {
  const own = socket === undefined;
  const client = socket ?? dgram.createSocket('udp4');
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no UDP reply within 3 s')), 3000);
      client.once('message', (message) => {
        clearTimeout(timer);
        resolve(message.toString());
      });
      client.send(payload, port, '127.0.0.1');
    });
  } finally {
    if (own) client.close();
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', (error: NodeJS.ErrnoException) => (error.code === 'EADDRINUSE' ? resolve(false) : reject(error)));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

describe('port publishing through the userland proxy', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  function publisher(options: ConstructorParameters<typeof PortPublisher>[0] = {}): { ports: PortPublisher; errors: Error[] } {
    const errors: Error[] = [];
    const ports = new PortPublisher({ onError: (e) => errors.push(e), ...options });
    cleanups.push(() => ports.closeAll());
    return { ports, errors };
  }

  it('forwards TCP both ways, with half-close, on a random host port it reports', async () => {
    const echo = await tcpEchoServer();
    cleanups.push(() => echo.close());
    const { ports, errors } = publisher();
    const published = await ports.publish({ hostIP: '127.0.0.1', hostPort: 0, protocol: 'tcp', targetIP: '127.0.0.1', targetPort: echo.port });
    expect(published.hostPort).toBeGreaterThan(0);
    expect(published.hostPort).not.toBe(echo.port);
    expect(published.nat).toBe('none');
    const payload = Buffer.alloc(3 * 1024 * 1024, 'abcdefgh');
    const answer = await tcpRoundTrip(published.hostPort, payload);
    expect(answer.equals(payload)).toBe(true);
    expect(errors).toEqual([]);
  });

  it('forwards UDP with one session per client, replies going back to the right client', async () => {
    const echo = await udpEchoServer();
    cleanups.push(() => echo.close());
    const { ports } = publisher();
    const published = await ports.publish({ hostIP: '127.0.0.1', hostPort: 0, protocol: 'udp', targetIP: '127.0.0.1', targetPort: echo.port });
    const clientA = dgram.createSocket('udp4');
    const clientB = dgram.createSocket('udp4');
    cleanups.push(() => void clientA.close(), () => void clientB.close());
    expect(await udpRoundTrip(published.hostPort, 'one', clientA)).toBe('echo:one');
    expect(await udpRoundTrip(published.hostPort, 'two', clientB)).toBe('echo:two');
    expect(await udpRoundTrip(published.hostPort, 'three', clientA)).toBe('echo:three');
    expect(echo.peers.size).toBe(2);
  });

  it('ends an idle UDP session: the next datagram comes from a new source port', async () => {
    const echo = await udpEchoServer();
    cleanups.push(() => echo.close());
    const { ports } = publisher({ udpIdleTimeoutMs: 100 });
    const published = await ports.publish({ hostIP: '127.0.0.1', hostPort: 0, protocol: 'udp', targetIP: '127.0.0.1', targetPort: echo.port });
    const client = dgram.createSocket('udp4');
    cleanups.push(() => void client.close());
    await udpRoundTrip(published.hostPort, 'a', client);
    await new Promise((resolve) => setTimeout(resolve, 400));
    await udpRoundTrip(published.hostPort, 'b', client);
    expect(echo.peers.size).toBe(2);
  });

  it('refuses a second publish of the same port, naming the port and its holder', async () => {
    const { ports } = publisher();
    const first = await ports.publish({ hostIP: '127.0.0.1', hostPort: 0, protocol: 'tcp', targetIP: '127.0.0.1', targetPort: 80, owner: 'shop/web-1' });
    const again = ports.publish({ hostIP: '127.0.0.1', hostPort: first.hostPort, protocol: 'tcp', targetIP: '127.0.0.1', targetPort: 80, owner: 'shop/api-1' });
    await expect(again).rejects.toMatchObject({
      code: 'D2P_NETWORK_PORT_IN_USE',
      context: { holder: 'shop/web-1', errno: 'EADDRINUSE', port: `127.0.0.1:${first.hostPort}/tcp` },
    });
    await expect(again).rejects.toThrow(new RegExp(`shop/api-1: host port 127\\.0\\.0\\.1:${first.hostPort}/tcp is already published by shop/web-1`));
    // A wildcard address collides with a specific one; another protocol does not.
    await expect(ports.publish({ hostIP: '0.0.0.0', hostPort: first.hostPort, protocol: 'tcp', targetIP: '127.0.0.1', targetPort: 80 })).rejects.toMatchObject({ code: 'D2P_NETWORK_PORT_IN_USE' });
    const concurrent = await Promise.allSettled([
      ports.publish({ hostIP: '127.0.0.1', hostPort: first.hostPort + 1, protocol: 'udp', targetIP: '127.0.0.1', targetPort: 53, owner: 'x' }),
      ports.publish({ hostIP: '127.0.0.1', hostPort: first.hostPort + 1, protocol: 'udp', targetIP: '127.0.0.1', targetPort: 53, owner: 'y' }),
    ]);
    expect(concurrent.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
  });

  it('names the process holding a port that d2p did not publish', async () => {
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => squatter.close(() => resolve())));
    const port = (squatter.address() as net.AddressInfo).port;
    const { ports } = publisher();
    const attempt = ports.publish({ hostIP: '127.0.0.1', hostPort: port, protocol: 'tcp', targetIP: '127.0.0.1', targetPort: 80, owner: 'shop/web-1' });
    await expect(attempt).rejects.toMatchObject({ code: 'D2P_NETWORK_PORT_IN_USE', context: { errno: 'EADDRINUSE', holder: `pid ${process.pid} (${fs.readFileSync('/proc/self/comm', 'utf8').trim()})` } });
  });

  it('close() frees the port, ends open connections, and is idempotent', async () => {
    const echo = await tcpEchoServer();
    cleanups.push(() => echo.close());
    const { ports } = publisher();
    const published = await ports.publish({ hostIP: '127.0.0.1', hostPort: 0, protocol: 'tcp', targetIP: '127.0.0.1', targetPort: echo.port });
    const open = net.connect({ host: '127.0.0.1', port: published.hostPort });
    await new Promise<void>((resolve, reject) => open.once('connect', resolve).once('error', reject));
    const closed = new Promise<void>((resolve) => open.once('close', () => resolve()));
    const openErrors: string[] = [];
    open.on('error', (error: NodeJS.ErrnoException) => openErrors.push(error.code ?? error.message));
    expect(await canListen(published.hostPort)).toBe(false);
    await Promise.all([published.close(), published.close()]);
    await closed;
    expect(openErrors.filter((code) => code !== 'ECONNRESET')).toEqual([]);
    expect(await canListen(published.hostPort)).toBe(true);
    expect(ports.published()).toEqual([]);
    const reused = await ports.publish({ hostIP: '127.0.0.1', hostPort: published.hostPort, protocol: 'tcp', targetIP: '127.0.0.1', targetPort: echo.port });
    expect(reused.hostPort).toBe(published.hostPort);
  });

  it('resets the client when the target refuses, without reporting an error', async () => {
    const { ports, errors } = publisher();
    const closedPort = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const published = await ports.publish({ hostIP: '127.0.0.1', hostPort: 0, protocol: 'tcp', targetIP: '127.0.0.1', targetPort: closedPort });
    const outcome = await new Promise<string>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port: published.hostPort });
      socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
      socket.on('close', () => resolve('closed'));
    });
    expect(['ECONNRESET', 'closed']).toContain(outcome);
    expect(errors).toEqual([]);
  });

  it('adds a NAT rule beside the proxy, records what it carries, removes it on close and releases the chains after closeAll', async () => {
    const calls: string[] = [];
    const nat: PortNat = {
      // As IptablesNat: loopback only when the target sits behind a bridge.
      addPortRule: async (rule: NatPortRule) => {
        calls.push(`add ${rule.hostIP}:${rule.hostPort}/${rule.protocol}→${rule.targetIP}:${rule.targetPort}`);
        if (rule.hostIP.startsWith('127.') && rule.targetInterface === undefined) return 'none';
        return rule.targetInterface === undefined ? 'non-loopback' : 'all';
      },
      // Done a turn of the event loop later, as iptables-restore is: the chains may go only after.
      removePortRule: async (rule: NatPortRule) => {
        await new Promise((resolve) => setImmediate(resolve));
        calls.push(`remove ${rule.hostIP}:${rule.hostPort}/${rule.protocol}`);
      },
      removeAllIfUnused: async () => void calls.push('release'),
    };
    const { ports } = publisher({ nat });
    const loopback = await ports.publish({ hostIP: '127.0.0.1', hostPort: 0, protocol: 'tcp', targetIP: '10.0.0.2', targetPort: 80 });
    const wildcard = await ports.publish({ hostIP: '0.0.0.0', hostPort: 0, protocol: 'udp', targetIP: '10.0.0.2', targetPort: 53 });
    const bridged = await ports.publish({ hostIP: '0.0.0.0', hostPort: 0, protocol: 'tcp', targetIP: '10.0.0.3', targetPort: 80, targetInterface: 'd2p-br0' });
    expect([loopback.nat, wildcard.nat, bridged.nat]).toEqual(['none', 'non-loopback', 'all']);
    await wildcard.close();
    await wildcard.close();
    expect(calls.slice(3)).toEqual([`remove 0.0.0.0:${wildcard.hostPort}/udp`]);
    await ports.closeAll();
    // The loopback port had no rule, so nothing to remove for it; the chains go last.
    expect(calls.slice(4)).toEqual([`remove 0.0.0.0:${bridged.hostPort}/tcp`, 'release']);
    expect(ports.published()).toEqual([]);
  });

  it('frees the port when the NAT rule cannot be added', async () => {
    const nat: PortNat = {
      addPortRule: async () => {
        throw new Error('iptables: permission denied');
      },
      removePortRule: async () => undefined,
      removeAllIfUnused: async () => undefined,
    };
    const { ports } = publisher({ nat });
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '0.0.0.0', () => {
        const address = probe.address() as net.AddressInfo;
        probe.close(() => resolve(address.port));
      });
    });
    await expect(ports.publish({ hostIP: '0.0.0.0', hostPort: port, protocol: 'tcp', targetIP: '10.0.0.2', targetPort: 80 })).rejects.toThrow('permission denied');
    expect(await canListen(port)).toBe(true);
  });

  it.each([
    [{ protocol: 'sctp' }, 'unsupported protocol'],
    [{ hostIP: 'localhost' }, 'invalid hostIP'],
    [{ targetPort: 0 }, 'invalid targetPort'],
    [{ hostPort: 70000 }, 'invalid hostPort'],
  ])('rejects bad input %j', async (override, message) => {
    const { ports } = publisher();
    const request = { hostIP: '127.0.0.1', hostPort: 0, protocol: 'tcp', targetIP: '127.0.0.1', targetPort: 80, owner: 'shop/web-1', ...override } as Parameters<PortPublisher['publish']>[0];
    await expect(ports.publish(request)).rejects.toMatchObject({ code: 'D2P_NETWORK_INVALID', message: expect.stringContaining(`shop/web-1: ${message}`) });
  });
});

describe('finding who holds a port', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-ports-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads listening sockets from a proc tree and matches the fd of the owner', () => {
    // proc(5) layout: /proc/net/tcp lines and /proc/PID/fd/N → socket:[inode].
    fs.mkdirSync(path.join(dir, 'net'));
    fs.writeFileSync(
      path.join(dir, 'net', 'tcp'),
      [
        '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
        '   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0',
        '   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0',
      ].join('\n'),
    );
    fs.mkdirSync(path.join(dir, '77', 'fd'), { recursive: true });
    fs.writeFileSync(path.join(dir, '77', 'comm'), 'nginx\n');
    fs.symlinkSync('socket:[4242]', path.join(dir, '77', 'fd', '5'));
    expect(socketInodesOnPort('tcp', 8080, dir)).toEqual(['4242']);
    expect(describePortHolder('tcp', 8080, dir)).toBe('pid 77 (nginx)');
    expect(describePortHolder('tcp', 8081, dir)).toBeUndefined();
  });
});
