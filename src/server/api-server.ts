// The daemon's REST API: Kubernetes' paths, verbs, query parameters, error Status objects
// and watch stream, served by node:http on a unix socket that only root may open.
import * as http from 'node:http';
import { ApiError } from '../api/errors';
import type { ApiObject } from '../api/meta';
import { validateObject } from '../api/validate';
import type { Store, Watch } from '../store/types';
import { applyBatch, applyItems } from './apply-batch';
import { apiGroupList, apiResourceList } from './discovery';
import {
  isPlainObject,
  mediaType,
  parseJson,
  readBody,
  readJsonObjectBody,
  sendError,
  sendJson,
  unsupportedMediaType,
} from './http-io';
import { ObjectOperations, type DeleteRequest, type ObjectAddress, type Outcome, type Validator } from './operations';
import { PATCH_MEDIA_TYPES } from './patch';
import { booleanParam, dryRunParam, propagationPolicy, singleParam, timeoutSecondsParam } from './query';
import { parseRoute, type Route } from './routes';
import { clearStaleSocket, listenPrivately, removeOwnSocket } from './unix-socket';
import { streamWatch } from './watch-stream';

export interface ApiServerOptions {
  store: Store;
  socketPath: string;
  /** Where unexpected failures are reported; defaults to stderr with a timestamp. */
  log?: (line: string) => void;
  /** Defaults to validateObject (src/api/validate.ts). */
  validate?: (obj: unknown) => ApiObject;
}

export interface ApiServer {
  readonly socketPath: string;
  /** The request handler behind the socket, for clients in this process (src/client/loopback-transport.ts). */
  readonly handle: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  /** Ends every watch, finishes in-flight requests, and removes the socket file. Idempotent. */
  close(): Promise<void>;
}

/** In-flight requests get this long after close() before their connections are cut. */
const CLOSE_GRACE_MS = 2000;

interface ServerContext {
  store: Store;
  validate: Validator;
  operations: ObjectOperations;
  watches: Set<Watch>;
  log: (line: string) => void;
}

export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const log = opts.log ?? defaultLog;
  const validate = opts.validate ?? validateObject;
  const ctx: ServerContext = {
    store: opts.store,
    validate,
    operations: new ObjectOperations(opts.store, validate),
    watches: new Set(),
    log,
  };
  let closing: Promise<void> | undefined;
  const server = http.createServer((req, res) => {
    // A response finishing while we close leaves an idle keep-alive connection behind
    // that server.close() would wait for until the keep-alive timeout.
    res.on('finish', () => {
      if (closing) setImmediate(() => server.closeIdleConnections());
    });
    handleRequest(ctx, req, res);
  });
  await clearStaleSocket(opts.socketPath);
  const { ino } = await listenPrivately(server, opts.socketPath);

  const close = async (): Promise<void> => {
    const closed = new Promise<Error | undefined>((resolve) => server.close((err) => resolve(err)));
    for (const watch of ctx.watches) watch.stop();
    server.closeIdleConnections();
    const cutOff = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
    cutOff.unref();
    const err = await closed;
    clearTimeout(cutOff);
    await removeOwnSocket(opts.socketPath, ino);
    if (err) throw new Error(`closing the API server on ${opts.socketPath}: ${err.message}`, { cause: err });
  };
  return {
    socketPath: opts.socketPath,
    handle: (req, res) => handleRequest(ctx, req, res),
    close: () => (closing ??= close()),
  };
}

function defaultLog(line: string): void {
  process.stderr.write(`${new Date().toISOString()} api-server: ${line}\n`);
}

function handleRequest(ctx: ServerContext, req: http.IncomingMessage, res: http.ServerResponse): void {
  dispatch(ctx, req, res).catch((e: unknown) => {
    if (e instanceof ApiError) {
      sendError(res, e);
      return;
    }
    const message = e instanceof Error ? e.message : String(e);
    ctx.log(`${req.method} ${req.url} failed: ${e instanceof Error ? (e.stack ?? message) : message}`);
    sendError(res, new ApiError('InternalError', `Internal error occurred: ${message}`));
  });
}

async function dispatch(ctx: ServerContext, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const route = parseRoute(url.pathname);
  const method = req.method ?? 'GET';
  switch (route.type) {
    case 'healthz':
      requireMethod(method, ['GET'], url.pathname);
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': 2 });
      res.end('ok');
      return;
    case 'groups':
      requireMethod(method, ['GET'], url.pathname);
      return sendJson(res, 200, apiGroupList());
    case 'discovery':
      requireMethod(method, ['GET'], url.pathname);
      return sendJson(res, 200, apiResourceList());
    case 'apply': {
      requireMethod(method, ['POST'], url.pathname);
      const items = applyItems(await readJsonObjectBody(req, 'apply'));
      return sendJson(res, 200, await applyBatch(ctx.store, ctx.validate, items, dryRunParam(url.searchParams.getAll('dryRun'))));
    }
    case 'collection':
      return serveCollection(ctx, route, method, url, req, res);
    case 'object':
      return serveObject(ctx, route, method, url, req, res);
  }
}

function requireMethod(method: string, allowed: string[], pathname: string): void {
  if (!allowed.includes(method)) {
    throw new ApiError('MethodNotAllowed', `the server does not allow method ${method} on ${pathname} (allowed: ${allowed.join(', ')})`);
  }
}

async function serveCollection(
  ctx: ServerContext,
  route: Extract<Route, { type: 'collection' }>,
  method: string,
  url: URL,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  const { kind, namespace } = route;
  // Creating needs a namespace in the URL for namespaced kinds, as in Kubernetes.
  const allowed = kind.namespaced && namespace === undefined ? ['GET'] : ['GET', 'POST'];
  requireMethod(method, allowed, url.pathname);
  const query = url.searchParams;
  const selectors = { labelSelector: singleParam(query, 'labelSelector'), fieldSelector: singleParam(query, 'fieldSelector') };
  if (method === 'POST') {
    const body = await readJsonObjectBody(req, `creating a ${kind.kind}`);
    return send(res, await ctx.operations.create(kind, namespace, body, dryRunParam(query.getAll('dryRun'))));
  }
  if (booleanParam(query, 'watch')) return serveWatch(ctx, route, selectors, query, res);
  return send(res, await ctx.operations.list(kind, namespace, selectors));
}

function serveWatch(
  ctx: ServerContext,
  target: { kind: { kind: string }; namespace?: string },
  selectors: { labelSelector?: string; fieldSelector?: string },
  query: URLSearchParams,
  res: http.ServerResponse,
): Promise<void> {
  const timeoutSeconds = timeoutSecondsParam(query);
  const watch = ctx.store.watch(target.kind.kind, {
    namespace: target.namespace,
    ...selectors,
    resourceVersion: singleParam(query, 'resourceVersion'),
  });
  return streamWatch(res, watch, { timeoutSeconds, registry: ctx.watches, log: ctx.log });
}

async function serveObject(
  ctx: ServerContext,
  route: Extract<Route, { type: 'object' }>,
  method: string,
  url: URL,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  requireMethod(method, route.subresource ? ['GET', 'PUT', 'PATCH'] : ['GET', 'PUT', 'PATCH', 'DELETE'], url.pathname);
  const query = url.searchParams;
  const at: ObjectAddress = route;
  const what = `${method} ${route.kind.kind} "${route.name}"${route.subresource ? ' status' : ''}`;
  switch (method) {
    case 'GET':
      if (!route.subresource && booleanParam(query, 'watch')) return watchOneObject(ctx, route, query, res);
      return send(res, await ctx.operations.get(at));
    case 'PUT': {
      const body = await readJsonObjectBody(req, what);
      return send(res, await ctx.operations.replace(at, body, dryRunParam(query.getAll('dryRun'))));
    }
    case 'PATCH': {
      const type = mediaType(req);
      const format = type === undefined ? undefined : PATCH_MEDIA_TYPES[type];
      if (!format) throw unsupportedMediaType(type, Object.keys(PATCH_MEDIA_TYPES));
      const patch = parseJson(await readBody(req), what);
      return send(res, await ctx.operations.patch(at, format, patch, dryRunParam(query.getAll('dryRun'))));
    }
    default:
      return send(res, await ctx.operations.delete(at, await deleteRequest(req, query, what)));
  }
}

/** GET …/{name}?watch=true is Kubernetes' older single-object watch: a collection watch on metadata.name. */
function watchOneObject(ctx: ServerContext, route: Extract<Route, { type: 'object' }>, query: URLSearchParams, res: http.ServerResponse): Promise<void> {
  const byName = `metadata.name=${route.name}`;
  const extra = singleParam(query, 'fieldSelector');
  const fieldSelector = extra ? `${byName},${extra}` : byName;
  return serveWatch(ctx, route, { labelSelector: singleParam(query, 'labelSelector'), fieldSelector }, query, res);
}

/** Options from the query string and/or a DeleteOptions body (kubectl sends the latter). */
async function deleteRequest(req: http.IncomingMessage, query: URLSearchParams, what: string): Promise<DeleteRequest> {
  const raw = await readBody(req);
  const body = raw.length === 0 ? {} : parseJson(raw, what);
  if (!isPlainObject(body)) throw new ApiError('BadRequest', `${what}: the DeleteOptions body must be a JSON object`);
  const fromQuery = propagationPolicy(singleParam(query, 'propagationPolicy'), 'query parameter propagationPolicy');
  const fromBody = propagationPolicy(body.propagationPolicy, 'DeleteOptions.propagationPolicy');
  if (fromQuery && fromBody && fromQuery !== fromBody) {
    throw new ApiError('BadRequest', `${what}: propagationPolicy is ${fromQuery} in the query but ${fromBody} in DeleteOptions`);
  }
  const preconditions = isPlainObject(body.preconditions) ? body.preconditions : {};
  const bodyDryRun = body.dryRun === undefined ? [] : Array.isArray(body.dryRun) ? body.dryRun : [body.dryRun];
  return {
    propagationPolicy: fromQuery ?? fromBody,
    preconditionUid: optionalString(preconditions.uid, 'DeleteOptions.preconditions.uid'),
    preconditionResourceVersion: optionalString(preconditions.resourceVersion, 'DeleteOptions.preconditions.resourceVersion'),
    dryRun: dryRunParam([...query.getAll('dryRun'), ...bodyDryRun]),
  };
}

function optionalString(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new ApiError('BadRequest', `${field} must be a string`);
  return value;
}

function send(res: http.ServerResponse, outcome: Outcome): void {
  sendJson(res, outcome.code, outcome.body);
}
