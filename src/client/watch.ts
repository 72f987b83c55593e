// The client side of a watch: one streaming GET whose body is newline-delimited
// WatchEvents (Kubernetes' JSON watch framing), exposed as an async iterable with stop().
import type { ApiObject, WatchEvent } from '../api/meta';
import type { ApiTransport, Query } from './transport';

export interface ClientWatch<T extends ApiObject> extends AsyncIterable<WatchEvent<T>> {
  stop(): void;
}

/**
 * The request starts on the first next(), so a watch that is created and stopped without
 * being iterated costs nothing. `registry` holds the open watches so that closing the
 * client can stop them (undici's close waits for running requests).
 */
export function openWatch<T extends ApiObject>(
  transport: ApiTransport,
  path: string,
  query: Query,
  registry: Set<{ stop(): void }>,
): ClientWatch<T> {
  const abort = new AbortController();
  const handle = {
    stop(): void {
      abort.abort();
      registry.delete(handle);
    },
  };
  registry.add(handle);
  const events = streamEvents<T>(transport, path, query, abort.signal, () => {
    registry.delete(handle);
  });
  return {
    [Symbol.asyncIterator]: () => events,
    stop: handle.stop,
  };
}

async function* streamEvents<T extends ApiObject>(
  transport: ApiTransport,
  path: string,
  query: Query,
  signal: AbortSignal,
  onEnd: () => void,
): AsyncGenerator<WatchEvent<T>> {
  if (signal.aborted) {
    onEnd();
    return;
  }
  let body;
  try {
    body = await transport.stream('GET', path, { query: { ...query, watch: 'true' }, signal });
  } catch (e) {
    onEnd();
    if (signal.aborted) return; // stopped while connecting: the abort is the expected outcome
    throw e;
  }
  const decoder = new TextDecoder('utf-8');
  let pending = '';
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      pending += decoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline).trim();
        pending = pending.slice(newline + 1);
        if (signal.aborted) return;
        if (line !== '') yield parseEvent<T>(line, path);
      }
    }
  } catch (e) {
    if (!signal.aborted) throw e; // after stop(), the aborted body read is how the stream ends
  } finally {
    onEnd();
    // Ends the HTTP exchange when the consumer breaks out of its loop early.
    if (!body.destroyed) body.destroy();
  }
}

function parseEvent<T extends ApiObject>(line: string, path: string): WatchEvent<T> {
  try {
    return JSON.parse(line) as WatchEvent<T>;
  } catch (e) {
    throw new Error(`watch on ${path}: the server sent a line that is not JSON (${(e as Error).message}): ${line.slice(0, 200)}`, { cause: e });
  }
}
