// A client for the OCI distribution API v2 (distribution-spec spec.md) on undici.
// Auth follows the distribution token spec (docs/spec/auth/token.md): a 401 carries a
// WWW-Authenticate challenge; for Bearer we fetch a token from `realm` with `service` and
// `scope` (basic-authenticated when we have credentials) and cache it per scope until it
// expires; for Basic we send the credentials directly. Transient failures (5xx, 429,
// connection resets) are retried with bounded exponential back-off.
import * as crypto from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';

// undici is loaded with the first RegistryClient, not with this module: commands that use
// the image store without a registry (build from a cache, image ls) would otherwise pay
// ~80 ms for it at every start (measured on `d2p build`).
// And only the parts used here: undici's index also loads fetch, WebSocket, EventSource,
// the cache stores, the mocks and HTTP/2, and whatever a process loads stays in its heap.
// Measured here (Node 20): the index adds 11 MB of anonymous memory and 9 MB of resident
// node binary; Agent + the request API + the redirect interceptor add 5 + 6.5 MB. A daemon
// that pulled once keeps the difference for good (issue 2's RSS budget). These paths are
// undici's own modules, not its documented API: undici is pinned (package.json), and
// test/integration/images.test.ts pulls through every one of them, redirects included.
type Undici = typeof import('undici');
type UndiciSubset = Pick<Undici, 'Agent'> & { interceptors: Pick<Undici['interceptors'], 'redirect'> };
let undiciModule: UndiciSubset | undefined;
const undici = (): UndiciSubset => (undiciModule ??= loadUndiciSubset());

function loadUndiciSubset(): UndiciSubset {
  // What undici's index.js does for these exports: the request API lives on Dispatcher.prototype.
  const Dispatcher = require('undici/lib/dispatcher/dispatcher') as Undici['Dispatcher'];
  Object.assign(Dispatcher.prototype, require('undici/lib/api') as object);
  return {
    Agent: require('undici/lib/dispatcher/agent') as Undici['Agent'],
    interceptors: { redirect: require('undici/lib/interceptor/redirect') as Undici['interceptors']['redirect'] },
  };
}

/** undici's top-level request() for the one form used here: a URL and an explicit dispatcher. */
function request(url: string | URL, opts: { dispatcher: Dispatcher } & Omit<Dispatcher.RequestOptions, 'origin' | 'path' | 'method'> & { method?: Dispatcher.HttpMethod }): Promise<Dispatcher.ResponseData> {
  undici(); // puts the request API on Dispatcher.prototype, where dispatcher.request comes from
  const { dispatcher, ...rest } = opts;
  const target = new URL(url);
  // As undici's makeDispatcher: origin and path from the URL, GET unless a body says PUT.
  return dispatcher.request({
    ...rest,
    origin: target.origin,
    path: target.search ? `${target.pathname}${target.search}` : target.pathname,
    method: opts.method ?? (opts.body ? 'PUT' : 'GET'),
  });
}
import { basicAuthorization, parseWwwAuthenticate, readCredentials, type Challenge, type Credentials } from './auth';
import { ImageError, errnoCode } from './errors';
import { registryTlsOptions } from './extra-ca';
import { isLoopbackRegistry, registryApiHost, referenceName, type Reference } from './reference';
import { INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES } from './types';

export interface RegistryClientOptions {
  /** A docker config.json-style credential file (`auths`), read per registry. */
  authFile?: string;
  /** Explicit credentials; they win over the file for every registry this client talks to. */
  credentials?: Credentials;
  /** Registries (host[:port]) spoken to over plain HTTP although not loopback (Docker's insecure-registries). */
  insecureRegistries?: readonly string[];
  /** Attempts per request for transient failures, including the first. Default 5. */
  maxAttempts?: number;
  /** First back-off delay; doubles per attempt. Default 200 ms. */
  retryBaseMs?: number;
  dispatcher?: Dispatcher;
  userAgent?: string;
}

export type RepoRef = Pick<Reference, 'registry' | 'repository'>;

export interface FetchedManifest {
  mediaType: string;
  digest: string;
  bytes: Buffer;
}

/** Manifests are small; containerd caps them at 4 MiB too (remotes/docker/fetcher.go). */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MANIFEST_ACCEPT = [...MANIFEST_MEDIA_TYPES, ...INDEX_MEDIA_TYPES].join(', ');

const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/** True for failures worth another attempt: the network, not the request, was at fault. */
export function isTransientError(e: unknown): boolean {
  if (e instanceof ImageError) return e.code === 'D2P_IMAGE_REGISTRY' && e.context.status !== undefined && isTransientStatus(e.context.status);
  const code = errnoCode(e);
  if (code !== undefined && TRANSIENT_CODES.has(code)) return true;
  const cause = (e as { cause?: unknown } | null)?.cause;
  return cause !== undefined && cause !== e && isTransientError(cause);
}

function isTransientStatus(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface CachedToken {
  token: string;
  expiresAt: number;
}

interface SendOptions {
  method: Dispatcher.HttpMethod;
  /** Path and query on the registry (e.g. "/v2/library/nginx/manifests/latest"), or an absolute URL. */
  target: string;
  headers?: Record<string, string>;
  /** A factory, so a retried request gets a fresh body stream. */
  body?: () => Readable | Buffer | string;
  /** "pull" or "pull,push"; undefined for the /v2/ ping. */
  actions?: string;
  what: string;
  /** HEAD of a blob: 404 is an answer ("absent"), not an error. */
  allow404?: boolean;
}

async function readErrorBody(body: Dispatcher.ResponseData['body']): Promise<string> {
  const text = await body.text();
  try {
    const parsed = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    if (Array.isArray(parsed.errors) && parsed.errors.length > 0) {
      return parsed.errors.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ');
    }
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
  }
  return text.slice(0, 200).trim();
}

function headerValue(headers: Dispatcher.ResponseData['headers'], name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export class RegistryClient {
  private readonly opts: RegistryClientOptions;
  private readonly dispatcher: Dispatcher;
  private readonly tokens = new Map<string, CachedToken>();
  /** Registries that answered with a Basic challenge: we send credentials up front from then on. */
  private readonly basicRegistries = new Set<string>();

  constructor(opts: RegistryClientOptions = {}) {
    this.opts = opts;
    // Blob GETs may redirect to storage (S3, a CDN); undici's redirect handler drops
    // Authorization when the origin changes, as a token must not leak to the storage host.
    const { Agent, interceptors } = undici();
    const agent = opts.dispatcher ?? new Agent({ connections: 16, connect: registryTlsOptions() });
    this.dispatcher = agent.compose(interceptors.redirect({ maxRedirections: 5 }));
  }

  baseUrl(registry: string): string {
    const plain = isLoopbackRegistry(registry) || (this.opts.insecureRegistries ?? []).includes(registry);
    return `${plain ? 'http' : 'https'}://${registryApiHost(registry)}`;
  }

  credentialsFor(registry: string): Credentials | undefined {
    if (this.opts.credentials) return this.opts.credentials;
    return this.opts.authFile ? readCredentials(this.opts.authFile, registry) : undefined;
  }

  async getManifest(ref: Reference): Promise<FetchedManifest> {
    const wanted = ref.digest ?? ref.tag;
    if (wanted === undefined) throw new ImageError('D2P_IMAGE_INVALID_REFERENCE', `${referenceName(ref)}: neither tag nor digest`);
    const res = await this.send(ref.registry, ref.repository, {
      method: 'GET',
      target: `/v2/${ref.repository}/manifests/${wanted}`,
      headers: { accept: MANIFEST_ACCEPT },
      actions: 'pull',
      what: `manifest ${referenceName(ref)}:${wanted}`,
    });
    const bytes = await readLimited(res.body, MAX_MANIFEST_BYTES, `manifest ${referenceName(ref)}:${wanted}`);
    const digest = `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;
    if (ref.digest !== undefined && digest !== ref.digest) {
      throw new ImageError('D2P_IMAGE_DIGEST_MISMATCH', `manifest ${referenceName(ref)}@${ref.digest}: the registry sent content with digest ${digest}`, {
        registry: ref.registry,
        digest: ref.digest,
      });
    }
    const contentType = headerValue(res.headers, 'content-type')?.split(';')[0]?.trim();
    let mediaType = contentType ?? '';
    // Some registries answer application/json; the document's own mediaType then decides.
    if (![...MANIFEST_MEDIA_TYPES, ...INDEX_MEDIA_TYPES].includes(mediaType)) {
      const parsed = JSON.parse(bytes.toString('utf8')) as { mediaType?: string; manifests?: unknown };
      mediaType = parsed.mediaType ?? (parsed.manifests !== undefined ? INDEX_MEDIA_TYPES[0] : MANIFEST_MEDIA_TYPES[0]) ?? '';
    }
    return { mediaType, digest, bytes };
  }

  /** Streams a blob; the caller verifies size and digest. */
  async openBlob(repo: RepoRef, digest: string): Promise<{ body: Readable; contentLength?: number }> {
    const res = await this.send(repo.registry, repo.repository, {
      method: 'GET',
      target: `/v2/${repo.repository}/blobs/${digest}`,
      actions: 'pull',
      what: `blob ${digest} of ${referenceName(repo)}`,
    });
    const length = headerValue(res.headers, 'content-length');
    return { body: res.body, ...(length !== undefined ? { contentLength: Number(length) } : {}) };
  }

  async blobExists(repo: RepoRef, digest: string): Promise<boolean> {
    const res = await this.send(repo.registry, repo.repository, {
      method: 'HEAD',
      target: `/v2/${repo.repository}/blobs/${digest}`,
      actions: 'pull,push',
      what: `blob ${digest} of ${referenceName(repo)}`,
      allow404: true,
    });
    await res.body.dump();
    return res.statusCode !== 404;
  }

  /** Monolithic upload (distribution-spec "POST then PUT"): one request carries the whole blob. */
  async uploadBlob(repo: RepoRef, digest: string, size: number, open: () => Readable): Promise<void> {
    const what = `upload of blob ${digest} to ${referenceName(repo)}`;
    const start = await this.send(repo.registry, repo.repository, {
      method: 'POST',
      target: `/v2/${repo.repository}/blobs/uploads/`,
      headers: { 'content-length': '0' },
      actions: 'pull,push',
      what,
    });
    await start.body.dump();
    const location = headerValue(start.headers, 'location');
    if (!location) throw new ImageError('D2P_IMAGE_REGISTRY', `${what}: the registry gave no upload Location`, { registry: repo.registry });
    const url = new URL(location, this.baseUrl(repo.registry));
    url.searchParams.set('digest', digest);
    const done = await this.send(repo.registry, repo.repository, {
      method: 'PUT',
      target: url.toString(),
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      body: open,
      actions: 'pull,push',
      what,
    });
    await done.body.dump();
  }

  async putManifest(ref: Reference, mediaType: string, bytes: Buffer): Promise<void> {
    const target = ref.tag ?? ref.digest;
    const res = await this.send(ref.registry, ref.repository, {
      method: 'PUT',
      target: `/v2/${ref.repository}/manifests/${target}`,
      headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
      body: () => bytes,
      actions: 'pull,push',
      what: `manifest ${referenceName(ref)}:${target}`,
    });
    await res.body.dump();
  }

  /**
   * Checks credentials the way `docker login` does: GET /v2/, answer the challenge with
   * them, and succeed only if the registry (or its token server) accepts them.
   */
  async checkLogin(registry: string, credentials: Credentials): Promise<void> {
    const url = `${this.baseUrl(registry)}/v2/`;
    const first = await this.attempt(registry, `login to ${registry}`, () => request(url, { method: 'GET', dispatcher: this.dispatcher }));
    await first.body.dump();
    if (first.statusCode === 200) return;
    if (first.statusCode !== 401) throw this.statusError(registry, `login to ${registry}`, first.statusCode, '');
    const challenge = this.challengeOf(registry, first.headers, `login to ${registry}`);
    let authorization: string;
    if (challenge.scheme === 'bearer') authorization = `Bearer ${await this.fetchToken(registry, challenge, undefined, credentials)}`;
    else authorization = basicAuthorization(credentials);
    const second = await this.attempt(registry, `login to ${registry}`, () =>
      request(url, { method: 'GET', headers: { authorization }, dispatcher: this.dispatcher }),
    );
    const detail = second.statusCode === 200 ? '' : await readErrorBody(second.body);
    if (second.statusCode === 200) {
      await second.body.dump();
      return;
    }
    throw this.unauthorized(registry, credentials, `login to ${registry}`, detail);
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  // --- internals ---

  private unauthorized(registry: string, creds: Credentials | undefined, what: string, detail: string): ImageError {
    const who = creds ? `user ${JSON.stringify(creds.username)}` : 'anonymous access (no credentials)';
    return new ImageError('D2P_IMAGE_UNAUTHORIZED', `${what}: registry ${registry} refused ${who}: 401 Unauthorized${detail ? ` (${detail})` : ''}`, {
      registry,
      status: 401,
    });
  }

  private statusError(registry: string, what: string, status: number, detail: string): ImageError {
    const code = status === 404 ? 'D2P_IMAGE_NOT_FOUND' : status === 403 ? 'D2P_IMAGE_UNAUTHORIZED' : 'D2P_IMAGE_REGISTRY';
    return new ImageError(code, `${what}: registry ${registry} answered ${status}${detail ? `: ${detail}` : ''}`, { registry, status });
  }

  private challengeOf(registry: string, headers: Dispatcher.ResponseData['headers'], what: string): Challenge {
    const header = headerValue(headers, 'www-authenticate');
    if (!header) throw new ImageError('D2P_IMAGE_REGISTRY', `${what}: registry ${registry} answered 401 without a WWW-Authenticate challenge`, { registry });
    const challenges = parseWwwAuthenticate(header);
    const usable = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
    if (!usable) {
      throw new ImageError('D2P_IMAGE_UNSUPPORTED', `${what}: registry ${registry} asks for ${challenges.map((c) => c.scheme).join(', ')} authentication, which d2p does not speak`, {
        registry,
      });
    }
    return usable;
  }

  private scopeOf(repository: string | undefined, actions: string | undefined): string | undefined {
    return repository !== undefined && actions !== undefined ? `repository:${repository}:${actions}` : undefined;
  }

  private cachedAuthorization(registry: string, scope: string | undefined): string | undefined {
    const cached = this.tokens.get(`${registry} ${scope ?? ''}`);
    if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`;
    if (this.basicRegistries.has(registry)) {
      const creds = this.credentialsFor(registry);
      if (creds) return basicAuthorization(creds);
    }
    return undefined;
  }

  /** The token dance of distribution's docs/spec/auth/token.md. */
  private async fetchToken(registry: string, challenge: Challenge, scope: string | undefined, creds: Credentials | undefined): Promise<string> {
    const realm = challenge.params.realm;
    if (!realm) throw new ImageError('D2P_IMAGE_REGISTRY', `registry ${registry}: Bearer challenge without realm`, { registry });
    const url = new URL(realm);
    if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
    const wantedScope = challenge.params.scope ?? scope;
    if (wantedScope) url.searchParams.set('scope', wantedScope);
    const headers: Record<string, string> = creds ? { authorization: basicAuthorization(creds) } : {};
    const what = `token for ${registry}${wantedScope ? ` (${wantedScope})` : ''} from ${url.origin}${url.pathname}`;
    const res = await this.attempt(registry, what, () => request(url, { method: 'GET', headers, dispatcher: this.dispatcher }));
    if (res.statusCode === 401 || res.statusCode === 403) {
      throw this.unauthorized(registry, creds, what, await readErrorBody(res.body));
    }
    if (res.statusCode !== 200) throw this.statusError(registry, what, res.statusCode, await readErrorBody(res.body));
    const body = (await res.body.json()) as { token?: string; access_token?: string; expires_in?: number };
    const token = body.token ?? body.access_token;
    if (!token) throw new ImageError('D2P_IMAGE_REGISTRY', `${what}: the answer holds no token`, { registry });
    // The spec's default lifetime is 60 s; keep a margin so a token never expires mid-request.
    const lifetime = Math.max((body.expires_in ?? 60) - 10, 5) * 1000;
    this.tokens.set(`${registry} ${scope ?? ''}`, { token, expiresAt: Date.now() + lifetime });
    return token;
  }

  /** Runs one HTTP exchange, retrying transient network errors and statuses with back-off. */
  private async attempt(registry: string, what: string, exchange: () => Promise<Dispatcher.ResponseData>): Promise<Dispatcher.ResponseData> {
    const maxAttempts = this.opts.maxAttempts ?? 5;
    const base = this.opts.retryBaseMs ?? 200;
    for (let attempt = 1; ; attempt++) {
      let res: Dispatcher.ResponseData;
      try {
        res = await exchange();
      } catch (e) {
        if (attempt < maxAttempts && isTransientError(e)) {
          await sleep(base * 2 ** (attempt - 1));
          continue;
        }
        throw new ImageError('D2P_IMAGE_REGISTRY', `${what}: registry ${registry}: ${(e as Error).message} (${errnoCode(e) ?? 'no code'})`, {
          registry,
          cause: e,
        });
      }
      if (isTransientStatus(res.statusCode) && attempt < maxAttempts) {
        await res.body.dump();
        await sleep(base * 2 ** (attempt - 1));
        continue;
      }
      return res;
    }
  }

  private async send(registry: string, repository: string | undefined, o: SendOptions): Promise<Dispatcher.ResponseData> {
    const url = /^https?:\/\//.test(o.target) ? o.target : `${this.baseUrl(registry)}${o.target}`;
    const scope = this.scopeOf(repository, o.actions);
    const headers = { 'user-agent': this.opts.userAgent ?? 'd2p', ...(o.headers ?? {}) };
    const exchange = (authorization: string | undefined) => () =>
      request(url, {
        method: o.method,
        headers: authorization ? { ...headers, authorization } : headers,
        ...(o.body ? { body: o.body() } : {}),
        dispatcher: this.dispatcher,
      });
    let authorization = this.cachedAuthorization(registry, scope);
    let res = await this.attempt(registry, o.what, exchange(authorization));
    if (res.statusCode === 401) {
      await res.body.dump();
      const challenge = this.challengeOf(registry, res.headers, o.what);
      const creds = this.credentialsFor(registry);
      if (challenge.scheme === 'bearer') {
        authorization = `Bearer ${await this.fetchToken(registry, challenge, scope, creds)}`;
      } else {
        if (!creds) throw this.unauthorized(registry, undefined, o.what, 'the registry wants Basic credentials');
        this.basicRegistries.add(registry);
        authorization = basicAuthorization(creds);
      }
      res = await this.attempt(registry, o.what, exchange(authorization));
      if (res.statusCode === 401) throw this.unauthorized(registry, creds, o.what, await readErrorBody(res.body));
    }
    if (res.statusCode === 404 && o.allow404) return res;
    if (res.statusCode >= 400) throw this.statusError(registry, o.what, res.statusCode, await readErrorBody(res.body));
    return res;
  }
}

async function readLimited(body: Readable, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    total += buf.length;
    if (total > limit) {
      body.destroy();
      throw new ImageError('D2P_IMAGE_INVALID', `${what}: larger than ${limit} bytes`);
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}
