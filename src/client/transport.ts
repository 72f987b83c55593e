// HTTP over the daemon's unix socket: one keep-alive agent, JSON in and out, Kubernetes
// Status bodies turned back into ApiError values. node:http rather than undici here: every
// CLI command pays for loading its client, and undici's load alone (~100 ms measured on
// this 2-core machine) is most of the 150 ms budget of `d2p get`. The registry client,
// which needs TLS, redirects and connection pools, keeps undici.
import * as http from 'node:http';
import { ApiError, type StatusObject } from '../api/errors';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** The errno codes of connect(2) on a unix socket that mean "no daemon there". */
const UNREACHABLE_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK']);

export class DaemonUnreachableError extends Error {
  readonly code = 'D2P_DAEMON_UNREACHABLE';
  constructor(
    readonly socketPath: string,
    cause: NodeJS.ErrnoException,
  ) {
    super(`cannot reach the d2p daemon on ${socketPath} (${cause.code}): is it running? ("d2p daemon" starts it; "d2p apply" starts it when needed)`, { cause });
    this.name = 'DaemonUnreachableError';
  }
}

/** A non-2xx answer whose body is not a Status (a proxy, a bug): kept with its HTTP status. */
export class UnexpectedResponseError extends Error {
  readonly code = 'D2P_UNEXPECTED_RESPONSE';
  constructor(
    readonly statusCode: number,
    what: string,
    body: string,
  ) {
    super(`${what}: HTTP ${statusCode}: ${body.slice(0, 500) || '(empty body)'}`);
    this.name = 'UnexpectedResponseError';
  }
}

export type Query = Record<string, string | undefined>;

export interface CallOptions {
  query?: Query;
  body?: unknown;
  /** Defaults to application/json when there is a body. */
  contentType?: string;
  signal?: AbortSignal;
}

/** The body of a streamed answer (a watch): chunks as they come, and a way to end it early. */
export interface ResponseBody extends AsyncIterable<Buffer> {
  readonly destroyed: boolean;
  destroy(): void;
}

/** How a client reaches the API: over the socket (Transport) or, inside the daemon, in process (LoopbackTransport). */
export interface ApiTransport {
  call<T>(method: HttpMethod, path: string, opts?: CallOptions): Promise<T>;
  stream(method: HttpMethod, path: string, opts?: CallOptions): Promise<ResponseBody>;
  text(path: string): Promise<{ statusCode: number; text: string }>;
  close(): Promise<void>;
}

export class Transport implements ApiTransport {
  private readonly agent = new http.Agent({ keepAlive: true });
  /** The daemon start under way, shared by the requests that found no daemon. */
  private starting: Promise<void> | undefined;

  /**
   * `startDaemon`: called once when a request finds no daemon (nothing listens on the
   * socket: the request never left), which is then sent again. A running daemon costs no
   * extra round trip to check first.
   */
  constructor(
    readonly socketPath: string,
    private startDaemon?: () => Promise<void>,
  ) {}

  /** A JSON request; resolves with the parsed body of a 2xx answer. */
  async call<T>(method: HttpMethod, path: string, opts: CallOptions = {}): Promise<T> {
    const response = await this.send(method, path, opts);
    const text = await readText(response);
    if (response.statusCode! >= 300) throw responseError(response.statusCode!, `${method} ${path}`, text);
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  /**
   * A request whose body is streamed to the caller (watch); non-2xx answers throw. node:http
   * sets no body timeout, so a quiet watch lasts until the server or stop() ends it.
   */
  async stream(method: HttpMethod, path: string, opts: CallOptions = {}): Promise<http.IncomingMessage> {
    const response = await this.send(method, path, opts);
    if (response.statusCode! >= 300) throw responseError(response.statusCode!, `${method} ${path}`, await readText(response));
    return response;
  }

  /** Plain-text endpoints such as /healthz. */
  async text(path: string): Promise<{ statusCode: number; text: string }> {
    const response = await this.send('GET', path, {});
    return { statusCode: response.statusCode!, text: await readText(response) };
  }

  close(): Promise<void> {
    this.agent.destroy();
    return Promise.resolve();
  }

  private async send(method: HttpMethod, path: string, opts: CallOptions): Promise<http.IncomingMessage> {
    try {
      return await this.sendOnce(method, path, opts);
    } catch (e) {
      if (!(e instanceof DaemonUnreachableError) || (this.startDaemon === undefined && this.starting === undefined)) throw e;
      if (this.startDaemon) {
        this.starting = this.startDaemon();
        // Once: a daemon that goes away later is reported, not restarted behind the caller's back.
        this.startDaemon = undefined;
      }
      await this.starting;
      return this.sendOnce(method, path, opts);
    }
  }

  private sendOnce(method: HttpMethod, path: string, opts: CallOptions): Promise<http.IncomingMessage> {
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    const headers: http.OutgoingHttpHeaders = { accept: 'application/json' };
    if (payload) {
      headers['content-type'] = opts.contentType ?? 'application/json';
      headers['content-length'] = payload.length;
    }
    // An empty servername: node's agent otherwise derives a TLS server name for every
    // request, testing the host against its IPv6 pattern (~1 ms of CPU each time, 4 ms the
    // first, measured: ~9 ms of a 12-request `run --rm`). A unix socket has no TLS.
    const options: http.RequestOptions & { servername: string } = {
      socketPath: this.socketPath,
      path: path + queryString(opts.query),
      method,
      headers,
      agent: this.agent,
      signal: opts.signal,
      servername: '',
    };
    return new Promise((resolve, reject) => {
      const request = http.request(options, resolve);
      request.on('error', (e) => {
        // An abort is the caller's own doing (a watch being stopped); it stays recognisable.
        reject(opts.signal?.aborted ? e : this.connectionError(e, `${method} ${path}`));
      });
      request.end(payload);
    });
  }

  private connectionError(e: unknown, what: string): Error {
    const err = e as NodeJS.ErrnoException;
    if (err.code && UNREACHABLE_CODES.has(err.code)) return new DaemonUnreachableError(this.socketPath, err);
    return Object.assign(new Error(`${what} on ${this.socketPath}: ${err.message}`, { cause: e }), { code: err.code });
  }
}

async function readText(response: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function queryString(query: Query | undefined): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, value);
  const text = params.toString();
  return text ? `?${text}` : '';
}

export function responseError(statusCode: number, what: string, text: string): Error {
  const status = parseStatus(text);
  return status ? ApiError.fromStatus(status) : new UnexpectedResponseError(statusCode, what, text);
}

function parseStatus(text: string): StatusObject | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    if (e instanceof SyntaxError) return undefined; // not JSON: the caller reports the raw text
    throw e;
  }
  const candidate = parsed as Partial<StatusObject> | null;
  return candidate?.kind === 'Status' && typeof candidate.message === 'string' ? (candidate as StatusObject) : undefined;
}
