// Reading one container through the API, steering it with the desired-state annotation,
// and waiting on it: what run, exec, up, logs, stats, top and the lifecycle verbs share.
// Kept apart from those commands so that `run` loads none of them (DESIGN.md §9).
import { isApiError } from '../api/errors';
import { COMPOSE_LABELS, type Container } from '../api/types';
import type { Client } from '../client';
import { ObjectChanges } from './changes';
import { CliError } from './io';
import { runtimeId } from './logs-reader';

/** The annotation the Container controller reads to start, stop or pause a container. */
export const DESIRED_STATE_ANNOTATION = 'd2p.dev/desired-state';
export type DesiredState = 'running' | 'stopped' | 'paused';

export const containerId = (c: Container): string => runtimeId(c.metadata.namespace ?? 'default', c.metadata.name);
export const containerRef = (c: Container): string => `${c.metadata.namespace ?? 'default'}/${c.metadata.name}`;

export const serviceOf = (c: Container): string | undefined => c.metadata.labels?.[COMPOSE_LABELS.service];

/** "web-1": how compose prefixes a container's log lines; the object name for other containers. */
export function containerLabel(c: Container): string {
  const service = serviceOf(c);
  const n = c.metadata.labels?.[COMPOSE_LABELS.containerNumber];
  return service !== undefined && n !== undefined ? `${service}-${n}` : c.metadata.name;
}

export async function getIfExists(client: Client, namespace: string, name: string): Promise<Container | undefined> {
  try {
    return await client.containers.get(namespace, name);
  } catch (err) {
    if (isApiError(err, 'NotFound')) return undefined;
    throw err;
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}

/** An AbortSignal fired by Ctrl-C, unless the caller (a test) brings its own. */
export function interruptSignal(given?: AbortSignal): { signal: AbortSignal; dispose(): void } {
  if (given) return { signal: given, dispose: () => undefined };
  const abort = new AbortController();
  const onInterrupt = (): void => abort.abort();
  process.once('SIGINT', onInterrupt);
  return { signal: abort.signal, dispose: () => void process.removeListener('SIGINT', onInterrupt) };
}

const POLL_START_MS = 50;
const POLL_MAX_MS = 500;

/**
 * Reads a container until `done` says so; undefined when it is gone. Each check is a GET,
 * which keeps this correct whatever events were missed (the level-triggered rule the
 * controllers follow too); a watch only wakes it early, and without one it still looks
 * again after 50 ms growing to 500 ms. `target`'s deletion, taken from the watch, is final.
 * `changes`: a watch of the caller's on this container, used (and left open) instead of a
 * new one. It started from a resourceVersion the caller had seen, so it misses nothing:
 * an event newer than the last state looked at stands in for a GET, and a GET is made only
 * when a wait ends without one (a `run --rm` waits for its container's removal with no
 * read at all).
 */
export async function waitForContainer(
  client: Client,
  target: Container,
  done: (c: Container | undefined) => boolean,
  opts: { timeoutMs: number; what: string; signal?: AbortSignal; changes?: ObjectChanges },
): Promise<Container | undefined> {
  const namespace = target.metadata.namespace ?? 'default';
  const uid = target.metadata.uid;
  const changes = opts.changes ?? new ObjectChanges(client, 'Container', { namespace, name: target.metadata.name });
  let lastEvent: Container | undefined;
  const look = async (): Promise<Container | undefined> => {
    if (changes.removed(uid)) return undefined;
    const event = opts.changes && (changes.latest(uid) as Container | undefined);
    if (event !== undefined && event !== lastEvent) return (lastEvent = event);
    return getIfExists(client, namespace, target.metadata.name);
  };
  try {
    const deadline = Date.now() + opts.timeoutMs;
    for (let interval = POLL_START_MS; ; interval = Math.min(interval * 2, POLL_MAX_MS)) {
      const current = await look();
      if (done(current)) return current;
      if (opts.signal?.aborted) throw new CliError(`interrupted while waiting for ${target.metadata.name} to ${opts.what}`, { code: 'D2P_INTERRUPTED', exitCode: 130 });
      if (Date.now() >= deadline) {
        const phase = current?.status?.phase ?? 'unknown';
        const why = current?.status?.message ? `: ${current.status.message}` : '';
        throw new CliError(`timed out after ${Math.round(opts.timeoutMs / 1000)}s waiting for container ${target.metadata.name} to ${opts.what} (phase ${phase}${why})`, {
          code: 'D2P_TIMEOUT',
        });
      }
      await changes.next(Math.min(interval, Math.max(0, deadline - Date.now())), opts.signal);
    }
  } finally {
    if (opts.changes === undefined) changes.stop();
  }
}

export const isRunning = (c: Container | undefined): boolean => c?.status?.phase === 'Running';
/** Not running and not about to (Exited, Failed, or gone). */
export const isStopped = (c: Container | undefined): boolean =>
  c === undefined || c.status?.phase === 'Exited' || c.status?.phase === 'Failed';

/** Sets the desired state; a no-op write is skipped so the object's resourceVersion stays. */
export async function setDesiredState(client: Client, c: Container, state: DesiredState): Promise<Container> {
  if (c.metadata.annotations?.[DESIRED_STATE_ANNOTATION] === state) return c;
  return client.containers.patch(c.metadata.namespace, c.metadata.name, 'merge', { metadata: { annotations: { [DESIRED_STATE_ANNOTATION]: state } } });
}

/**
 * Deletes a container and returns once the object is gone (its finalizer has cleaned the
 * machine). Only that container: another one made since under its name is left alone.
 */
export async function removeContainer(client: Client, c: Container, timeoutMs: number, changes?: ObjectChanges): Promise<void> {
  try {
    await client.containers.delete(c.metadata.namespace, c.metadata.name, { preconditionUid: c.metadata.uid });
  } catch (err) {
    if (!isApiError(err, 'NotFound') && !isApiError(err, 'Conflict')) throw err;
  }
  await waitForContainer(client, c, (now) => now === undefined || now.metadata.uid !== c.metadata.uid, { timeoutMs, what: 'be removed', changes });
}
