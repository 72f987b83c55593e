// HTTP over the daemon's unix socket with undici: one keep-alive pool, JSON in and out,
// Kubernetes Status bodies turned back into ApiError values.
import { Agent, type Dispatcher } from 'undici';
import { ApiError, type StatusObject } from '../api/errors';

/** undici needs an origin even when the socket path decides where bytes go. */
const ORIGIN = 'http://localhost';

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
  /** Milliseconds without body data before undici gives up; 0 disables. */
  bodyTimeout?: number;
}

export class Transport {
  private readonly agent: Agent;

  constructor(readonly socketPath: string) {
    this.agent = new Agent({ connect: { socketPath } });
  }

  /** A JSON request; resolves with the parsed body of a 2xx answer. */
  async call<T>(method: Dispatcher.HttpMethod, path: string, opts: CallOptions = {}): Promise<T> {
    const response = await this.send(method, path, opts);
    const text = await response.body.text();
    if (response.statusCode >= 300) throw responseError(response.statusCode, `${method} ${path}`, text);
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  /** A request whose body is streamed to the caller (watch); non-2xx answers throw. */
  async stream(method: Dispatcher.HttpMethod, path: string, opts: CallOptions = {}): Promise<Dispatcher.ResponseData['body']> {
    // A quiet watch may go minutes without a byte; undici's default body timeout (300 s)
    // would cut it, so streams rely on the server and on stop() to end them.
    const response = await this.send(method, path, { ...opts, bodyTimeout: 0 });
    if (response.statusCode >= 300) throw responseError(response.statusCode, `${method} ${path}`, await response.body.text());
    return response.body;
  }

  /** Plain-text endpoints such as /healthz. */
  async text(path: string): Promise<{ statusCode: number; text: string }> {
    const response = await this.send('GET', path, {});
    return { statusCode: response.statusCode, text: await response.body.text() };
  }

  close(): Promise<void> {
    return this.agent.close();
  }

  private async send(method: Dispatcher.HttpMethod, path: string, opts: CallOptions): Promise<Dispatcher.ResponseData> {
    const hasBody = opts.body !== undefined;
    try {
      return await this.agent.request({
        origin: ORIGIN,
        path: path + queryString(opts.query),
        method,
        headers: {
          accept: 'application/json',
          ...(hasBody ? { 'content-type': opts.contentType ?? 'application/json' } : {}),
        },
        body: hasBody ? JSON.stringify(opts.body) : undefined,
        signal: opts.signal,
        ...(opts.bodyTimeout === undefined ? {} : { bodyTimeout: opts.bodyTimeout }),
      });
    } catch (e) {
      // An abort is the caller's own doing (a watch being stopped); it stays recognisable.
      if (opts.signal?.aborted) throw e;
      throw this.connectionError(e, `${method} ${path}`);
    }
  }

  private connectionError(e: unknown, what: string): Error {
    const err = e as NodeJS.ErrnoException;
    if (err.code && UNREACHABLE_CODES.has(err.code)) return new DaemonUnreachableError(this.socketPath, err);
    return Object.assign(new Error(`${what} on ${this.socketPath}: ${err.message}`, { cause: e }), { code: err.code });
  }
}

function queryString(query: Query | undefined): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, value);
  const text = params.toString();
  return text ? `?${text}` : '';
}

function responseError(statusCode: number, what: string, text: string): Error {
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
