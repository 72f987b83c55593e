// A real registry for tests: Debian's docker-registry (distribution 2.8) on a loopback
// port with its storage in a temp dir, behind a small proxy of ours. The proxy is where
// tests observe and misbehave: it counts blob requests, can demand Bearer tokens that its
// own /token endpoint issues against a user/password (the distribution token flow,
// docs/spec/auth/token.md, without the registry needing a signing certificate), can
// redirect blob GETs elsewhere as S3-backed registries do, can corrupt a blob's bytes,
// and can throttle blob bodies so a test can kill a pull halfway.
import { spawn, type ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface TestRegistryOptions {
  /** Require Bearer tokens, issued by the proxy's /token for these Basic credentials. */
  auth?: { username: string; password: string };
  /** Answer blob GETs with a 307 to another path of the proxy (which then serves them). */
  redirectBlobs?: boolean;
}

export interface TestRegistry {
  /** host:port clients use (the proxy). */
  host: string;
  /** host:port of docker-registry itself (for skopeo checks that bypass the proxy). */
  directHost: string;
  /** Digests of blob GETs that reached the proxy, in order. */
  blobGets: string[];
  /** Token requests the proxy answered, with the scope asked for. */
  tokenRequests: { user: string | undefined; scope: string | null; granted: boolean }[];
  /** Requests that arrived at the redirect target still carrying an Authorization header. */
  leakedAuthorization: number;
  /** Blob digests whose bytes the proxy alters (one byte flipped in the first chunk). */
  corrupt: Set<string>;
  /** When set, blob bodies are sent at most this many bytes per 50 ms. */
  throttleBytesPer50ms: number | undefined;
  /** Blob body bytes sent so far. */
  blobBytesSent: number;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address() as net.AddressInfo;
      srv.close(() => resolve(addr.port));
    });
  });
}

async function waitForHttp(url: string, proc: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`docker-registry exited with ${proc.exitCode}: ${log()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get(url, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        // Not listening yet is the expected failure while it starts; anything else is not.
        if (e.code !== 'ECONNREFUSED' && e.code !== 'ECONNRESET') throw e;
        resolve(false);
      });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`docker-registry did not answer on ${url} within 15 s: ${log()}`);
}

const BLOB_PATH = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/;
const REDIRECT_PREFIX = '/_storage';

export async function startRegistry(opts: TestRegistryOptions = {}): Promise<TestRegistry> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-registry-'));
  const registryPort = await freePort();
  const config = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${path.join(dir, 'storage')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${registryPort}`,
    '  relativeurls: true',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'config.yml'), config);
  let registryLog = '';
  const proc = spawn('docker-registry', ['serve', path.join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout?.on('data', (d: Buffer) => (registryLog += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (registryLog += d.toString()));
  const stopRegistry = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForHttp(`http://127.0.0.1:${registryPort}/v2/`, proc, () => registryLog);
  } catch (e) {
    await stopRegistry();
    throw e;
  }

  const tokens = new Set<string>();
  const state: TestRegistry = {
    host: '',
    directHost: `127.0.0.1:${registryPort}`,
    blobGets: [],
    tokenRequests: [],
    leakedAuthorization: 0,
    corrupt: new Set(),
    throttleBytesPer50ms: undefined,
    blobBytesSent: 0,
    stop: async () => undefined,
  };

  const issueToken = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const header = req.headers.authorization ?? '';
    let user: string | undefined;
    let granted = false;
    if (header.startsWith('Basic ')) {
      const [u, ...p] = Buffer.from(header.slice(6), 'base64').toString('utf8').split(':');
      user = u;
      granted = u === opts.auth?.username && p.join(':') === opts.auth?.password;
    }
    state.tokenRequests.push({ user, scope: url.searchParams.get('scope'), granted });
    if (!granted) {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Basic realm="d2p-test-token"' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad username or password' }] }));
      return;
    }
    const token = crypto.randomBytes(16).toString('hex');
    tokens.add(token);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token, expires_in: 300 }));
  };

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, upstreamPath: string, blobDigest: string | undefined) => {
    const headers = { ...req.headers };
    delete headers.authorization;
    const upstream = http.request(
      { host: '127.0.0.1', port: registryPort, method: req.method, path: upstreamPath, headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        if (!blobDigest || req.method !== 'GET' || up.statusCode !== 200) {
          up.pipe(res);
          return;
        }
        let first = true;
        up.on('data', (chunk: Buffer) => {
          if (first && state.corrupt.has(blobDigest)) {
            chunk = Buffer.from(chunk);
            chunk[chunk.length - 1] = (chunk[chunk.length - 1] as number) ^ 0xff;
          }
          first = false;
          send(chunk);
        });
        const send = (c: Buffer): void => {
          const limit = state.throttleBytesPer50ms;
          if (limit === undefined) {
            state.blobBytesSent += c.length;
            if (!res.write(c)) {
              up.pause();
              res.once('drain', () => up.resume());
            }
            return;
          }
          up.pause();
          const part = c.subarray(0, limit);
          state.blobBytesSent += part.length;
          res.write(part);
          setTimeout(() => (c.length > limit ? send(c.subarray(limit)) : up.resume()), 50);
        };
        // A client that went away (killed mid-pull) must not leave the upstream paused forever.
        res.on('close', () => up.destroy());
        up.on('end', () => res.end());
      },
    );
    upstream.on('error', (e) => {
      res.destroy(e);
    });
    req.pipe(upstream);
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    if (url.pathname === '/token') return issueToken(req, res);
    if (url.pathname.startsWith(REDIRECT_PREFIX)) {
      if (req.headers.authorization) state.leakedAuthorization++;
      return forward(req, res, (req.url ?? '').slice(REDIRECT_PREFIX.length), BLOB_PATH.exec(url.pathname.slice(REDIRECT_PREFIX.length))?.[2]);
    }
    if (opts.auth) {
      const header = req.headers.authorization ?? '';
      if (!header.startsWith('Bearer ') || !tokens.has(header.slice(7))) {
        const repo = /^\/v2\/(.+)\/(?:blobs|manifests|tags)\//.exec(url.pathname)?.[1];
        const scope = repo ? `,scope="repository:${repo}:${req.method === 'GET' || req.method === 'HEAD' ? 'pull' : 'pull,push'}"` : '';
        res.writeHead(401, {
          'content-type': 'application/json',
          'www-authenticate': `Bearer realm="http://${state.host}/token",service="d2p-test"${scope}`,
        });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
        return;
      }
    }
    const blob = BLOB_PATH.exec(url.pathname);
    if (blob && req.method === 'GET') {
      state.blobGets.push(blob[2] as string);
      if (opts.redirectBlobs) {
        res.writeHead(307, { location: `http://${storageHost}${REDIRECT_PREFIX}${req.url ?? ''}` });
        res.end();
        return;
      }
    }
    forward(req, res, req.url ?? '/', blob?.[2]);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.host = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  // Redirected blobs are served from another origin (127.0.0.2, still loopback), as a
  // registry's S3 or CDN would be: a client must not send it the registry's token.
  const storage = http.createServer(server.listeners('request')[0] as http.RequestListener);
  await new Promise<void>((resolve) => storage.listen(0, '127.0.0.2', resolve));
  const storageHost = `127.0.0.2:${(storage.address() as net.AddressInfo).port}`;
  state.stop = async () => {
    server.closeAllConnections();
    storage.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await new Promise<void>((resolve) => storage.close(() => resolve()));
    await stopRegistry();
  };
  return state;
}
