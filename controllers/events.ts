// Events: what happened to an object, for `d2p describe` and `d2p get events`.
// Modelled on client-go's EventRecorder (tools/record) and its EventCorrelator: an Event is
// named after the object plus a hash of what happened, and a repeat of the same thing
// bumps `count` and `lastTimestamp` on the existing Event instead of creating another, so a
// reconcile failing every few seconds leaves one Event, not thousands.
// Recording is best effort, as in Kubernetes: a failure to write an Event must never fail
// the reconcile that reported it, so record() logs and counts failures instead of throwing.
import { createHash } from 'node:crypto';
import { API_VERSION, DEFAULT_NAMESPACE, type ApiObject, type EventObject } from '../src/api/meta';
import { isApiError } from '../src/api/errors';
import type { ResourceClient } from '../src/client/types';
import { KeyedMutex } from '../src/store/ordering';
import { describeError } from './errors';
import type { Logger } from './logger';
import { getIfExists } from './objects';

export type EventType = 'Normal' | 'Warning';

/** The object an Event is about; only identity is needed. */
export type InvolvedObject = Pick<ApiObject, 'kind' | 'metadata'>;

// Kubernetes object names are at most 253 characters (RFC 1123 subdomain), and so are ours.
const MAX_NAME_LENGTH = 253;
const HASH_LENGTH = 10;

export interface EventRecorderOptions {
  /** source.component of every Event, e.g. "volume-controller". */
  component: string;
  logger: Logger;
  now?: () => Date;
}

export class EventRecorder {
  private failures = 0;
  // Writes to one Event are serialised, so two quick repeats increment count twice instead
  // of racing into a Conflict or AlreadyExists.
  private readonly writes = new KeyedMutex();

  constructor(
    private readonly events: ResourceClient,
    private readonly opts: EventRecorderOptions,
  ) {}

  /** Number of Events that could not be written since this recorder was made. */
  get failedWrites(): number {
    return this.failures;
  }

  /** Records an Event about `obj`. Never rejects. */
  record(obj: InvolvedObject, type: EventType, reason: string, message: string): Promise<void> {
    const namespace = obj.metadata.namespace ?? DEFAULT_NAMESPACE;
    const name = eventName(obj, reason, message);
    return this.writes.run(`${namespace}/${name}`, () => this.write(obj, namespace, name, type, reason, message));
  }

  private async write(
    obj: InvolvedObject,
    namespace: string,
    name: string,
    type: EventType,
    reason: string,
    message: string,
  ): Promise<void> {
    try {
      await this.createOrIncrement(obj, namespace, name, type, reason, message);
    } catch (error) {
      this.failures++;
      this.opts.logger.warn('could not record event', {
        event: `${namespace}/${name}`,
        involvedObject: `${obj.kind} ${namespace}/${obj.metadata.name}`,
        reason,
        message,
        error: describeError(error),
      });
    }
  }

  private async createOrIncrement(
    obj: InvolvedObject,
    namespace: string,
    name: string,
    type: EventType,
    reason: string,
    message: string,
  ): Promise<void> {
    const now = (this.opts.now?.() ?? new Date()).toISOString();
    // Two attempts: the second covers an Event created or updated by another writer
    // between our read and our write (AlreadyExists / Conflict).
    for (let attempt = 1; ; attempt++) {
      try {
        const existing = await getIfExists<EventObject>(this.events, namespace, name);
        if (existing && sameInvolvedObject(existing, obj)) {
          await this.events.update({ ...existing, count: (existing.count ?? 1) + 1, lastTimestamp: now } as EventObject);
        } else if (existing) {
          // Same name, different object (a deleted object re-created with a new uid):
          // the Event now describes the new one, counting afresh.
          await this.events.update(this.newEvent(obj, namespace, name, type, reason, message, now, existing.metadata));
        } else {
          await this.events.create(this.newEvent(obj, namespace, name, type, reason, message, now));
        }
        return;
      } catch (error) {
        const raced = isApiError(error, 'Conflict') || isApiError(error, 'AlreadyExists');
        if (!raced || attempt >= 2) throw error;
      }
    }
  }

  private newEvent(...args: Parameters<typeof buildEvent> extends [string, ...infer Rest] ? Rest : never): EventObject {
    return buildEvent(this.opts.component, ...args);
  }
}

/** `<object name>.<hash of kind, reason and message>`, shortened to a valid object name. */
export function eventName(obj: InvolvedObject, reason: string, message: string): string {
  // The kind is hashed too: a Volume and a Network may share a name and a reason.
  const hash = createHash('sha256').update(`${obj.kind}\0${reason}\0${message}`).digest('hex').slice(0, HASH_LENGTH);
  const prefix = obj.metadata.name.slice(0, MAX_NAME_LENGTH - HASH_LENGTH - 1);
  return `${prefix}.${hash}`;
}

function sameInvolvedObject(ev: EventObject, obj: InvolvedObject): boolean {
  return (
    ev.involvedObject?.kind === obj.kind &&
    ev.involvedObject?.name === obj.metadata.name &&
    (ev.involvedObject?.uid ?? undefined) === (obj.metadata.uid ?? undefined)
  );
}

function buildEvent(
  component: string,
  obj: InvolvedObject,
  namespace: string,
  name: string,
  type: EventType,
  reason: string,
  message: string,
  now: string,
  replacing?: EventObject['metadata'],
): EventObject {
  return {
    apiVersion: API_VERSION,
    kind: 'Event',
    metadata: { name, namespace, ...(replacing?.resourceVersion ? { resourceVersion: replacing.resourceVersion } : {}) },
    involvedObject: {
      kind: obj.kind,
      namespace,
      name: obj.metadata.name,
      ...(obj.metadata.uid ? { uid: obj.metadata.uid } : {}),
    },
    type,
    reason,
    message,
    count: 1,
    firstTimestamp: now,
    lastTimestamp: now,
    source: { component },
  };
}

/**
 * Deletes Events whose lastTimestamp is older than `maxAgeMs` (Kubernetes keeps Events
 * for one hour by default: kube-apiserver --event-ttl=1h). Returns how many were deleted.
 * An Event deleted by someone else meanwhile is not an error.
 */
export async function pruneEvents(events: ResourceClient, maxAgeMs: number, now: Date = new Date()): Promise<number> {
  const cutoff = now.getTime() - maxAgeMs;
  const list = await events.list();
  let deleted = 0;
  for (const item of list.items as EventObject[]) {
    const last = Date.parse(item.lastTimestamp ?? item.metadata.creationTimestamp ?? '');
    if (Number.isNaN(last) || last >= cutoff) continue;
    try {
      await events.delete(item.metadata.namespace, item.metadata.name);
      deleted++;
    } catch (error) {
      if (!isApiError(error, 'NotFound')) throw error;
    }
  }
  return deleted;
}
