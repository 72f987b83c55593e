// The controllers' way to the API inside the daemon: the same requests, handled by the same
// server code (routing, validation, preconditions, the store, watch framing), handed to the
// server's request handler in memory instead of through the unix socket. Bodies are still
// JSON text both ways, so a controller sees exactly what a client over the socket sees,
// and never shares an object with the store. What it saves is the socket and the HTTP
// framing on both sides: `up` of 10 services makes ~270 API calls from the controllers,
// and the daemon's event loop, which runs both ends of each, was the bottleneck.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { PassThrough, Writable } from 'node:stream';
import { queryString, responseError, type ApiTransport, type CallOptions, type HttpMethod, type ResponseBody } from './transport';

/** The API server's handler (ApiServer.handle); it takes node:http's request and response. */
export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

export class LoopbackTransport implements ApiTransport {
  constructor(private readonly handle: RequestHandler) {}

  async call<T>(method: HttpMethod, path: string, opts: CallOptions = {}): Promise<T> {
    const { statusCode, text } = await this.exchange(method, path, opts);
    if (statusCode >= 300) throw responseError(statusCode, `${method} ${path}`, text);
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  async stream(method: HttpMethod, path: string, opts: CallOptions = {}): Promise<ResponseBody> {
    const response = this.send(method, path, opts, { streaming: true });
    const statusCode = await response.headers;
    if (statusCode >= 300) throw responseError(statusCode, `${method} ${path}`, await response.text);
    return response.body!;
  }

  text(path: string): Promise<{ statusCode: number; text: string }> {
    return this.exchange('GET', path, {});
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private async exchange(method: HttpMethod, path: string, opts: CallOptions): Promise<{ statusCode: number; text: string }> {
    const response = this.send(method, path, opts, { streaming: false });
    return { statusCode: await response.headers, text: await response.text };
  }

  private send(method: HttpMethod, path: string, opts: CallOptions, mode: { streaming: boolean }): LoopbackResponse {
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    const headers: IncomingHttpHeaders = { accept: 'application/json' };
    if (payload) {
      headers['content-type'] = opts.contentType ?? 'application/json';
      headers['content-length'] = String(payload.length);
    }
    const request = Object.assign(new PassThrough(), { method, url: path + queryString(opts.query), headers });
    request.end(payload);
    const response = new LoopbackResponse(mode.streaming);
    if (opts.signal) {
      const signal = opts.signal;
      const abort = (): void => response.abort(signal.reason);
      if (signal.aborted) abort();
      else signal.addEventListener('abort', abort, { once: true });
      response.once('close', () => signal.removeEventListener('abort', abort));
    }
    // The handler answers every failure with a Status response of its own; it only needs
    // the parts of a request and a response that node:http's have and these do.
    this.handle(request as unknown as IncomingMessage, response as unknown as ServerResponse);
    return response;
  }
}

/**
 * node:http's ServerResponse as far as the API server uses it (writeHead, setHeader,
 * flushHeaders, write with backpressure, end, destroy, and its events). A plain answer is
 * collected as text; a streamed one flows into `body`, and when the consumer destroys
 * `body` the response is destroyed too, which is how the server learns the client left.
 */
class LoopbackResponse extends Writable {
  statusCode = 200;
  headersSent = false;
  readonly body: PassThrough | undefined;
  /** The status code, once the head is written. */
  readonly headers: Promise<number>;
  /** The whole body (a plain answer, or an error answer to a stream request). */
  readonly text: Promise<string>;
  private readonly chunks: Buffer[] = [];
  private resolveHeaders!: (code: number) => void;
  private rejectHeaders!: (error: Error) => void;
  private rejectText!: (error: Error) => void;

  constructor(private readonly streaming: boolean) {
    super();
    this.headers = new Promise((resolve, reject) => {
      this.resolveHeaders = resolve;
      this.rejectHeaders = reject;
    });
    this.text = new Promise((resolve, reject) => {
      this.once('finish', () => resolve(Buffer.concat(this.chunks).toString('utf8')));
      this.rejectText = reject;
    });
    // Awaited by whoever needs them; a failure must not also surface as unhandled here.
    this.headers.catch(() => undefined);
    this.text.catch(() => undefined);
    if (streaming) {
      this.body = new PassThrough();
      this.body.once('close', () => {
        if (!this.destroyed) this.destroy();
      });
    }
  }

  setHeader(_name: string, _value: unknown): this {
    return this;
  }

  writeHead(statusCode: number, _headers?: unknown): this {
    this.statusCode = statusCode;
    this.flushHeaders();
    return this;
  }

  flushHeaders(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.resolveHeaders(this.statusCode);
  }

  /** The caller gave up (its AbortSignal): the body read fails with that reason, and the server sees the client gone. */
  abort(reason: unknown): void {
    const error = reason instanceof Error ? reason : new Error('the request was aborted', { cause: reason });
    this.rejectHeaders(error);
    this.body?.destroy(error);
    this.destroy();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.flushHeaders();
    // A stream answered with an error status is read whole, as text.
    if (!this.streaming || this.statusCode >= 300) {
      this.chunks.push(chunk);
      callback();
      return;
    }
    if (this.body!.write(chunk)) callback();
    else this.body!.once('drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.flushHeaders();
    this.body?.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Also reached after a normal end (autoDestroy): then the body keeps what it holds for
    // its reader, and the settled promises ignore these rejections.
    const cut = error ?? new Error('the response ended before it was complete');
    this.rejectHeaders(cut);
    this.rejectText(cut);
    if (this.body && !this.body.destroyed && !this.writableFinished) this.body.destroy(cut);
    callback(error);
  }
}
