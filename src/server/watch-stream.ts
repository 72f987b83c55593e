// A watch is one long chunked response of newline-delimited WatchEvents, Kubernetes'
// JSON watch encoding (k8s.io/apimachinery/pkg/watch, metav1.WatchEvent). Each event is
// written as soon as the store yields it; the store watch is stopped the moment the
// client goes away, the timeout expires or the server shuts down.
import type { ServerResponse } from 'node:http';
import { ApiError } from '../api/errors';
import type { WatchEvent } from '../api/meta';
import type { Watch } from '../store/types';

export interface WatchStreamOptions {
  /** Kubernetes' timeoutSeconds: end the stream after this long; the client re-watches. */
  timeoutSeconds?: number;
  /** Live watches, so that the server can end them all on close. */
  registry: Set<Watch>;
  log: (line: string) => void;
}

/** `watch` must already be open: a synchronous refusal from the store is then still an ordinary error response. */
export async function streamWatch(res: ServerResponse, watch: Watch, opts: WatchStreamOptions): Promise<void> {
  opts.registry.add(watch);
  const stop = (): void => watch.stop();
  res.on('close', stop);
  const timer = opts.timeoutSeconds ? setTimeout(stop, opts.timeoutSeconds * 1000) : undefined;
  res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
  // Headers now, so the client's request resolves before the first change happens.
  res.flushHeaders();
  try {
    for await (const event of watch) {
      if (res.destroyed) break;
      await writeEvent(res, event);
    }
  } catch (e) {
    await reportFailure(res, e, opts.log);
  } finally {
    if (timer) clearTimeout(timer);
    watch.stop();
    opts.registry.delete(watch);
    res.off('close', stop);
    if (!res.destroyed) res.end();
  }
}

/** Resolves once the event is handed to the socket, or the client is gone (backpressure, not buffering). */
function writeEvent(res: ServerResponse, event: WatchEvent | { type: 'ERROR'; object: unknown }): Promise<void> {
  if (res.write(`${JSON.stringify(event)}\n`)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** Mid-stream failures become an ERROR event carrying a Status, as Kubernetes sends (e.g. 410 Gone). */
async function reportFailure(res: ServerResponse, e: unknown, log: (line: string) => void): Promise<void> {
  let status;
  if (e instanceof ApiError) {
    status = e.toStatus();
  } else {
    log(`watch failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    status = new ApiError('InternalError', `watch failed: ${e instanceof Error ? e.message : String(e)}`).toStatus();
  }
  if (!res.destroyed) await writeEvent(res, { type: 'ERROR', object: status });
}
