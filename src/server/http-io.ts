// Reading request bodies and writing Kubernetes-shaped responses.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError } from '../api/errors';

/** Kubernetes' apiserver caps request bodies at 3 MiB for etcd's sake; we allow more but not unbounded. */
export const MAX_BODY_BYTES = 8 * 1024 * 1024;

export function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: ServerResponse, err: ApiError): void {
  if (res.headersSent) {
    // Nothing sensible can be written into a response already under way; cut it short so
    // the client sees a truncated body rather than a valid-looking one.
    res.destroy(err);
    return;
  }
  // The unread rest of an oversized body would otherwise be parsed as the next request.
  if (err.httpCode === 413) res.setHeader('Connection', 'close');
  sendJson(res, err.httpCode, err.toStatus());
}

/**
 * Collects the body up to `limit` bytes. Beyond it the request is paused rather than read
 * to the end, and the 413 response closes the connection (see sendError).
 */
export function readBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) return Promise.reject(tooLarge(declared, limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (chunk: Buffer): void => {
      total += chunk.length;
      if (total <= limit) {
        chunks.push(chunk);
        return;
      }
      req.pause();
      detach();
      reject(tooLarge(total, limit));
    };
    const onEnd = (): void => {
      detach();
      resolve(Buffer.concat(chunks));
    };
    const onError = (err: Error): void => {
      detach();
      reject(err);
    };
    const detach = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

function tooLarge(bytes: number, limit: number): ApiError {
  return new ApiError('RequestEntityTooLarge', `request body of at least ${bytes} bytes exceeds the limit of ${limit} bytes`);
}

/** The media type without parameters, lower-cased: "application/json; charset=utf-8" → "application/json". */
export function mediaType(req: IncomingMessage): string | undefined {
  const header = req.headers['content-type'];
  if (!header) return undefined;
  return header.split(';')[0].trim().toLowerCase();
}

export function unsupportedMediaType(got: string | undefined, accepted: string[]): ApiError {
  return new ApiError(
    'UnsupportedMediaType',
    `the body of the request was in an unknown format "${got ?? '(none)'}"; accepted media types include: ${accepted.join(', ')}`,
  );
}

export function parseJson(body: Buffer, what: string): unknown {
  if (body.length === 0) throw new ApiError('BadRequest', `${what}: the request body is empty`);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new ApiError('BadRequest', `${what}: the request body is not valid JSON: ${(e as Error).message}`);
  }
}

/** POST and PUT bodies are JSON objects (Kubernetes also takes YAML and protobuf; kubectl sends JSON). */
export async function readJsonObjectBody(req: IncomingMessage, what: string): Promise<Record<string, unknown>> {
  const type = mediaType(req);
  if (type !== undefined && type !== 'application/json') throw unsupportedMediaType(type, ['application/json']);
  const parsed = parseJson(await readBody(req), what);
  if (!isPlainObject(parsed)) throw new ApiError('BadRequest', `${what}: the request body must be a JSON object`);
  return parsed;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
