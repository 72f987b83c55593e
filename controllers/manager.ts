// The controller manager: controller-runtime's Manager + Controller in one small file
// (sigs.k8s.io/controller-runtime/pkg/manager, pkg/internal/controller).
// For every registered controller it keeps a rate-limited work queue of "namespace/name"
// keys, fed by informers on the controller's kind, on the kinds it owns (mapped to the
// owner through ownerReferences) and on any kind it watches (mapped by the controller),
// plus a periodic resync. Reconcilers are level-triggered: a key only says "look at this
// object again", so missing or repeated events are harmless and a fresh start (daemon
// restart) simply reconciles everything once more — that is restart adoption.
import { isDeepStrictEqual } from 'node:util';
import { isApiError } from '../src/api/errors';
import { DEFAULT_NAMESPACE, objectKey, type ApiObject, type BaseStatus } from '../src/api/meta';
import type { ResourceClient } from '../src/client/types';
import type { Paths } from '../src/config';
import { setCondition } from './conditions';
import { describeError, isTerminalError } from './errors';
import { EventRecorder, pruneEvents } from './events';
import { Informer, type InformerEvent } from './informer';
import { createJsonLogger, type Logger } from './logger';
import { WorkQueue } from './queue';

export interface Result {
  /** Reconcile this key again after this many milliseconds (polling), even without a change. */
  requeueAfter?: number;
}

/** Anything that hands out a ResourceClient per kind: the HTTP client or the unit tests' fake. */
export interface ClientProvider {
  for(kind: string): ResourceClient;
}

export interface ReconcileContext {
  client: (kind: string) => ResourceClient;
  events: EventRecorder;
  paths: Paths;
  log: Logger;
  /** Aborted when the manager stops; long operations should give up promptly. */
  signal: AbortSignal;
  /**
   * Queues a key of the controller's kind, as a watch event would: for what a controller
   * learns outside any watch (a process exiting), controller-runtime's channel source.
   */
  enqueue(key: string): void;
}

export interface WatchSpec {
  kind: string;
  /** Keys ("namespace/name") of the controller's kind to reconcile when `obj` changes. */
  map(obj: ApiObject): string[];
}

export interface Controller {
  /** Kind reconciled; keys are "namespace/name" of objects of this kind. */
  kind: string;
  /** Used in logs and as the Events' source component. Default "<kind>-controller". */
  name?: string;
  /** Kinds whose objects carry an ownerReference to an object of `kind`. */
  owns?: string[];
  watches?: WatchSpec[];
  /** Every object of `kind` is re-queued this often. Default: the manager's. */
  resyncPeriodMs?: number;
  /** Keys reconciled concurrently (never the same key twice at once). Default: the manager's. */
  workers?: number;
  /**
   * By default a change of the object's status alone does not trigger a reconcile: only
   * the controller writes its kind's status (DESIGN.md §10), so it already knows, and
   * reacting to its own writes would defeat the error back-off.
   */
  reconcileOnStatusChange?: boolean;
  reconcile(key: string, ctx: ReconcileContext): Promise<Result | void>;
}

export interface ManagerOptions {
  client: ClientProvider;
  paths: Paths;
  logger?: Logger;
  /** Default workers per controller. Default 2. */
  workers?: number;
  /** Per-key back-off of failed reconciles. Default 100 ms doubling to 5 min. */
  backoff?: { baseDelayMs?: number; maxDelayMs?: number };
  /** Default resync period. Default 10 min. */
  resyncPeriodMs?: number;
  /** Back-off of failed lists/watches. Default 100 ms doubling to 30 s. */
  watchRetry?: { baseDelayMs?: number; maxDelayMs?: number; minHealthyWatchMs?: number };
  /** Events whose lastTimestamp is older than this are deleted. Default 1 h (kube-apiserver --event-ttl). */
  eventTtlMs?: number;
  /** How often Events are pruned. Default 10 min. */
  eventPruneIntervalMs?: number;
}

const READY = 'Ready';
const RECONCILE_ERROR = 'ReconcileError';

interface RunningController {
  controller: Controller;
  name: string;
  queue: WorkQueue;
  events: EventRecorder;
  log: Logger;
  /** Keys whose last reconcile ended in a TerminalError, with the object fingerprint it failed on. */
  terminal: Map<string, string>;
  /** Keys → reconciles started, for introspection and tests. */
  reconciles: Map<string, number>;
}

export class Manager {
  private readonly controllers: RunningController[] = [];
  private readonly informers = new Map<string, Informer>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private pruning: Promise<void> | undefined;
  private state: 'new' | 'started' | 'stopped' = 'new';

  constructor(private readonly opts: ManagerOptions) {
    this.log = opts.logger ?? createJsonLogger({ fields: { component: 'controller-manager' } });
  }

  register(controller: Controller): void {
    if (this.state !== 'new') throw new Error(`cannot register controller for ${controller.kind}: manager already started`);
    const name = controller.name ?? `${controller.kind.toLowerCase()}-controller`;
    if (this.controllers.some((c) => c.name === name)) throw new Error(`controller ${name} registered twice`);
    const log = this.log.child({ controller: name });
    const running: RunningController = {
      controller,
      name,
      log,
      events: new EventRecorder(this.opts.client.for('Event'), { component: name, logger: log }),
      terminal: new Map(),
      reconciles: new Map(),
      queue: new WorkQueue((key) => this.reconcileKey(running, key), {
        workers: controller.workers ?? this.opts.workers ?? 2,
        baseDelayMs: this.opts.backoff?.baseDelayMs,
        maxDelayMs: this.opts.backoff?.maxDelayMs,
        onHandlerError: (key, error) => log.error('reconcile handler failed', { key, error: describeError(error) }),
      }),
    };
    this.controllers.push(running);
  }

  /**
   * Starts queues and informers. Resolves once every watched kind has been listed (or its
   * first list failed and is being retried), i.e. once every existing object is queued.
   */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`manager cannot start: it is ${this.state}`);
    this.state = 'started';
    for (const running of this.controllers) {
      running.queue.start();
      this.connect(running);
    }
    await Promise.all([...this.informers.values()].map((informer) => informer.start()));
    for (const running of this.controllers) this.scheduleResync(running);
    this.scheduleEventPruning();
  }

  /** Stops informers and timers, aborts the context signal, and waits for running reconciles. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.abort.abort(new Error('controller manager stopping'));
    for (const timer of this.timers) clearInterval(timer);
    await Promise.all([...this.informers.values()].map((informer) => informer.stop()));
    await Promise.all(this.controllers.map((running) => running.queue.shutdown()));
    await this.pruning;
  }

  /** How many reconciles of `key` the controller named `controllerName` has started. */
  reconcileCount(controllerName: string, key: string): number {
    return this.running(controllerName).reconciles.get(key) ?? 0;
  }

  /** True when no controller has work queued, delayed or running. */
  get idle(): boolean {
    return this.controllers.every((c) => c.queue.idle);
  }

  /** The informer of `kind` (for tests and introspection); undefined if nobody watches it. */
  informer(kind: string): Informer | undefined {
    return this.informers.get(kind);
  }

  private running(controllerName: string): RunningController {
    const running = this.controllers.find((c) => c.name === controllerName);
    if (!running) throw new Error(`no controller named ${controllerName}`);
    return running;
  }

  private informerFor(kind: string): Informer {
    let informer = this.informers.get(kind);
    if (!informer) {
      informer = new Informer(this.opts.client.for(kind), {
        logger: this.log,
        retryBaseDelayMs: this.opts.watchRetry?.baseDelayMs,
        retryMaxDelayMs: this.opts.watchRetry?.maxDelayMs,
        minHealthyWatchMs: this.opts.watchRetry?.minHealthyWatchMs,
      });
      this.informers.set(kind, informer);
    }
    return informer;
  }

  private connect(running: RunningController): void {
    const { controller } = running;
    this.informerFor(controller.kind).onEvent((event) => this.onPrimaryEvent(running, event));
    for (const kind of controller.owns ?? []) {
      this.informerFor(kind).onEvent((event) => {
        for (const key of ownerKeys(event.object, controller.kind)) running.queue.add(key);
      });
    }
    for (const spec of controller.watches ?? []) {
      this.informerFor(spec.kind).onEvent((event) => this.onWatchedEvent(running, spec, event));
    }
  }

  private onPrimaryEvent(running: RunningController, event: InformerEvent): void {
    const key = objectKey(event.object);
    if (event.type === 'DELETED') {
      running.terminal.delete(key);
      running.queue.add(key);
      return;
    }
    const statusOnly = event.type === 'MODIFIED' && event.previous !== undefined && sameIgnoringStatus(event.previous, event.object);
    if (statusOnly && !running.controller.reconcileOnStatusChange) return;
    // Only a key that failed terminally has a fingerprint to compare; the others need none
    // (each one is a JSON text of the whole object, garbage on every event otherwise).
    const terminalFingerprint = running.terminal.get(key);
    if (terminalFingerprint !== undefined && terminalFingerprint === objectFingerprint(event.object)) return;
    running.terminal.delete(key);
    running.queue.add(key);
  }

  private onWatchedEvent(running: RunningController, spec: WatchSpec, event: InformerEvent): void {
    let keys: string[];
    try {
      // The object before the change too (controller-runtime maps old and new on update):
      // a Container leaving a network must wake the network it left, not only its new ones.
      keys = [...new Set([...spec.map(event.object), ...(event.previous ? spec.map(event.previous) : [])])];
    } catch (error) {
      running.log.error('watch map function failed', {
        kind: spec.kind,
        object: objectKey(event.object),
        error: describeError(error),
      });
      return;
    }
    for (const key of keys) running.queue.add(key);
  }

  private scheduleResync(running: RunningController): void {
    const period = running.controller.resyncPeriodMs ?? this.opts.resyncPeriodMs ?? 10 * 60_000;
    if (period <= 0) return;
    const informer = this.informerFor(running.controller.kind);
    const timer = setInterval(() => {
      for (const key of informer.keys()) {
        const cached = informer.get(key);
        // A spec problem stays a spec problem until the object changes; resync does not retry it.
        if (cached && running.terminal.get(key) === objectFingerprint(cached)) continue;
        running.queue.add(key);
      }
    }, period);
    timer.unref();
    this.timers.push(timer);
  }

  private scheduleEventPruning(): void {
    const ttl = this.opts.eventTtlMs ?? 60 * 60_000;
    const prune = () => {
      if (this.pruning || this.state !== 'started') return;
      this.pruning = pruneEvents(this.opts.client.for('Event'), ttl)
        .then(
          (deleted) => {
            if (deleted > 0) this.log.info('pruned old events', { deleted });
          },
          (error: unknown) => this.log.warn('event pruning failed', { error: describeError(error) }),
        )
        .finally(() => {
          this.pruning = undefined;
        });
    };
    prune();
    const timer = setInterval(prune, this.opts.eventPruneIntervalMs ?? 10 * 60_000);
    timer.unref();
    this.timers.push(timer);
  }

  private async reconcileKey(running: RunningController, key: string): Promise<void> {
    running.reconciles.set(key, (running.reconciles.get(key) ?? 0) + 1);
    const log = running.log.child({ key });
    let wroteOwnStatus = false;
    const ctx: ReconcileContext = {
      client: (kind) => {
        const client = this.opts.client.for(kind);
        return kind === running.controller.kind ? noteStatusWrites(client, key, () => (wroteOwnStatus = true)) : client;
      },
      events: running.events,
      paths: this.opts.paths,
      log,
      signal: this.abort.signal,
      enqueue: (queued) => running.queue.add(queued),
    };
    let result: Result | void;
    try {
      result = await running.controller.reconcile(key, ctx);
    } catch (error) {
      await this.onReconcileError(running, key, error, wroteOwnStatus, log);
      return;
    }
    running.queue.forget(key);
    running.terminal.delete(key);
    if (result?.requeueAfter !== undefined && result.requeueAfter > 0) running.queue.addAfter(key, result.requeueAfter);
  }

  private async onReconcileError(
    running: RunningController,
    key: string,
    error: unknown,
    wroteOwnStatus: boolean,
    log: Logger,
  ): Promise<void> {
    const message = describeError(error);
    if (this.abort.signal.aborted) {
      // The queue is shutting down; the next manager's start reconciles this key again.
      log.info('reconcile interrupted by shutdown', { error: message });
      return;
    }
    if (isApiError(error, 'Conflict')) {
      // Optimistic concurrency, not a failure: the reconciler read an older version than it
      // wrote against. Read again soon, quietly, as controller-runtime does; a Warning event
      // and Ready=False here would tell users something is wrong when nothing is.
      running.queue.addRateLimited(key);
      log.debug('reconcile hit a write conflict; requeued', { error: message });
      return;
    }
    const terminal = isTerminalError(error);
    const reason = terminal ? error.reason : RECONCILE_ERROR;
    if (terminal) {
      running.queue.forget(key);
      log.warn('reconcile failed with a terminal error; not retrying until the object changes', { reason, error: message });
    } else {
      running.queue.addRateLimited(key);
      log.error('reconcile failed; requeued with back-off', { error: message, requeues: running.queue.numRequeues(key) });
    }
    const current = await this.getIfExists(running, key, log);
    if (terminal && current) running.terminal.set(key, objectFingerprint(current));
    const involved = current ?? { kind: running.controller.kind, metadata: splitKey(key) };
    await running.events.record(involved, 'Warning', reason, message);
    if (current && !wroteOwnStatus) await this.setNotReady(running, current, reason, message, log);
  }

  private async getIfExists(running: RunningController, key: string, log: Logger): Promise<ApiObject | undefined> {
    const { namespace, name } = splitKey(key);
    try {
      return await this.opts.client.for(running.controller.kind).get(namespace, name);
    } catch (error) {
      if (!isApiError(error, 'NotFound')) log.warn('could not read object to record its failure', { error: describeError(error) });
      return undefined;
    }
  }

  /** Records the failure as Ready=False on the object, unless that is already what it says. */
  private async setNotReady(running: RunningController, obj: ApiObject, reason: string, message: string, log: Logger): Promise<void> {
    const status: BaseStatus = structuredClone(obj.status ?? {});
    const changed = setCondition(status, {
      type: READY,
      status: 'False',
      reason,
      message,
      observedGeneration: obj.metadata.generation,
    });
    if (!changed) return;
    try {
      await this.opts.client.for(running.controller.kind).updateStatus({ ...obj, status });
    } catch (error) {
      // A Conflict or NotFound means the object moved on; its watch event queues it again.
      const level = isApiError(error, 'Conflict') || isApiError(error, 'NotFound') ? 'debug' : 'warn';
      log[level]('could not record failure condition', { error: describeError(error) });
    }
  }
}

/** "namespace/name" → its parts; a key without "/" is in the default namespace. */
export function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  if (slash < 0) return { namespace: DEFAULT_NAMESPACE, name: key };
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/**
 * Keys of the owners of `obj` of kind `ownerKind`: the controller reference if it is of
 * that kind (controller-runtime's EnqueueRequestForOwner with OnlyControllerOwner),
 * otherwise every ownerReference of that kind. Owners live in the dependent's namespace,
 * as Kubernetes requires of namespaced owners.
 */
export function ownerKeys(obj: ApiObject, ownerKind: string): string[] {
  const refs = (obj.metadata.ownerReferences ?? []).filter((ref) => ref.kind === ownerKind);
  const controllerRef = refs.find((ref) => ref.controller === true);
  const namespace = obj.metadata.namespace ?? DEFAULT_NAMESPACE;
  return (controllerRef ? [controllerRef] : refs).map((ref) => `${namespace}/${ref.name}`);
}

/**
 * Whether two versions of an object differ only in status and resourceVersion, i.e. in
 * nothing objectFingerprint covers. Compared in place: the manager asks this on every
 * watch event, and building two fingerprints each time made garbage of both objects.
 */
function sameIgnoringStatus(a: ApiObject, b: ApiObject): boolean {
  return sameExcept(a, b, 'status', (key, x, y) =>
    key === 'metadata' ? sameExcept(x as object, y as object, 'resourceVersion', (_key, p, q) => isDeepStrictEqual(p, q)) : isDeepStrictEqual(x, y),
  );
}

/** Same own keys (but `ignored`) with values `same` calls equal. */
function sameExcept(a: object, b: object, ignored: string, same: (key: string, x: unknown, y: unknown) => boolean): boolean {
  const aEntries = Object.entries(a).filter(([key]) => key !== ignored);
  const bRecord = b as Record<string, unknown>;
  const bCount = Object.keys(b).filter((key) => key !== ignored).length;
  return aEntries.length === bCount && aEntries.every(([key, value]) => Object.hasOwn(b, key) && same(key, value, bRecord[key]));
}

/** Everything but status and resourceVersion: what a user (or another controller) changes. */
function objectFingerprint(obj: ApiObject): string {
  const { status: _status, metadata, ...rest } = obj;
  const { resourceVersion: _rv, ...identity } = metadata;
  return JSON.stringify({ ...rest, metadata: identity });
}

/** Wraps the reconciler's own-kind client to learn whether it wrote the object's status itself. */
function noteStatusWrites(client: ResourceClient, key: string, onWrite: () => void): ResourceClient {
  const isKey = (namespace: string | undefined, name: string) => `${namespace ?? DEFAULT_NAMESPACE}/${name}` === key;
  return {
    kind: client.kind,
    list: (...args) => client.list(...args),
    get: (...args) => client.get(...args),
    create: (...args) => client.create(...args),
    update: (...args) => client.update(...args),
    updateStatus: async (obj, ...rest) => {
      const written = await client.updateStatus(obj, ...rest);
      if (isKey(obj.metadata.namespace, obj.metadata.name)) onWrite();
      return written;
    },
    patch: async (namespace, name, type, body, opts) => {
      const written = await client.patch(namespace, name, type, body, opts);
      if (opts?.subresource === 'status' && isKey(namespace, name)) onWrite();
      return written;
    },
    delete: (...args) => client.delete(...args),
    apply: (...args) => client.apply(...args),
    watch: (...args) => client.watch(...args),
  };
}
