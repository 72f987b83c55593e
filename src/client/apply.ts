// Client-side apply: create the object if it is missing, otherwise make the live object's
// content (spec, or an Event's fields), labels and annotations what the manifest says,
// keeping what others own: status (controllers), finalizers and ownerReferences (controllers,
// garbage collection), uid and the rest of the server's metadata. Like `kubectl apply`, it
// reports created / configured / unchanged, and writes nothing when nothing would change.
// The merge rules below are also the server's batch apply (src/server/apply-batch.ts), which
// `d2p apply` uses; this per-object form serves ResourceClient.apply (GitOps, diff).
import { isDeepStrictEqual } from 'node:util';
import { isApiError } from '../api/errors';
import type { ApiObject, ObjectMeta } from '../api/meta';
import type { ResourceClient, WriteOptions } from './types';

export type ApplyAction = 'created' | 'configured' | 'unchanged';

/** Fields that say what the object is or what a controller saw, not what the user wants. */
const NON_CONTENT_FIELDS = new Set(['apiVersion', 'kind', 'metadata', 'status']);

export interface ApplyResult<T extends ApiObject> {
  object: T;
  action: ApplyAction;
}

export async function applyObject<T extends ApiObject>(client: ResourceClient<T>, obj: T, opts: WriteOptions = {}): Promise<ApplyResult<T>> {
  return onceMoreIfRaced(() => applyOnce(client, obj, opts.dryRun ?? false));
}

async function onceMoreIfRaced<R>(attempt: () => Promise<R>): Promise<R> {
  try {
    return await attempt();
  } catch (e) {
    // Someone wrote between our read and our write (Conflict), or created the object
    // after we saw it missing (AlreadyExists): once more on the newer state.
    if (isApiError(e, 'Conflict') || isApiError(e, 'AlreadyExists')) return attempt();
    throw e;
  }
}

async function applyOnce<T extends ApiObject>(client: ResourceClient<T>, obj: T, dryRun: boolean): Promise<ApplyResult<T>> {
  const live = await getIfPresent(client, obj);
  if (!live) return { object: await client.create(forCreate(obj), { dryRun }), action: 'created' };
  const change = await previewUpdate(client, live, obj);
  if (!change) return { object: live, action: 'unchanged' };
  return { object: dryRun ? change.preview : await client.update(change.desired), action: 'configured' };
}

/** The merged object to send and the server's dry-run answer for it; undefined when nothing would change. */
async function previewUpdate<T extends ApiObject>(client: ResourceClient<T>, live: T, obj: T): Promise<{ desired: T; preview: T } | undefined> {
  const desired = mergeIntoLive(live, obj);
  if (sameDesiredState(desired, live)) return undefined;
  // The manifest may leave out fields the server defaults; the server's dry-run answer is
  // what the object would become, so compare that before writing.
  const preview = await client.update(desired, { dryRun: true });
  return sameDesiredState(preview, live) ? undefined : { desired, preview };
}

async function getIfPresent<T extends ApiObject>(client: ResourceClient<T>, obj: T): Promise<T | undefined> {
  try {
    return await client.get(obj.metadata.namespace, obj.metadata.name);
  } catch (e) {
    if (isApiError(e, 'NotFound')) return undefined;
    throw e;
  }
}

/** A manifest exported with `get -o yaml` carries server fields a create must not send. */
export function forCreate<T extends ApiObject>(obj: T): T {
  const { resourceVersion: _rv, uid: _uid, creationTimestamp: _c, deletionTimestamp: _d, generation: _g, ...metadata } = obj.metadata;
  const { status: _status, ...rest } = obj;
  return { ...rest, metadata } as T;
}

export function mergeIntoLive<T extends ApiObject>(live: T, obj: T): T {
  const content = Object.fromEntries(Object.entries(obj).filter(([key]) => !NON_CONTENT_FIELDS.has(key)));
  const metadata: ObjectMeta = {
    ...live.metadata,
    labels: mergedMap(live.metadata.labels, obj.metadata.labels),
    annotations: mergedMap(live.metadata.annotations, obj.metadata.annotations),
    finalizers: live.metadata.finalizers ?? obj.metadata.finalizers,
    ownerReferences: live.metadata.ownerReferences ?? obj.metadata.ownerReferences,
  };
  return dropUndefined({ ...content, apiVersion: live.apiVersion, kind: live.kind, metadata: dropUndefined(metadata), status: live.status }) as T;
}

/** Keys from the manifest win; keys only the live object has (set by others) stay. */
function mergedMap(live: Record<string, string> | undefined, wanted: Record<string, string> | undefined): Record<string, string> | undefined {
  const merged = { ...(live ?? {}), ...(wanted ?? {}) };
  return Object.keys(merged).length === 0 ? undefined : merged;
}

export function sameDesiredState(a: ApiObject, b: ApiObject): boolean {
  return (
    isDeepStrictEqual(content(a), content(b)) &&
    isDeepStrictEqual(nonEmpty(a.metadata.labels), nonEmpty(b.metadata.labels)) &&
    isDeepStrictEqual(nonEmpty(a.metadata.annotations), nonEmpty(b.metadata.annotations))
  );
}

function content(obj: ApiObject): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).filter(([key, value]) => !NON_CONTENT_FIELDS.has(key) && value !== undefined));
}

function nonEmpty(map: Record<string, string> | undefined): Record<string, string> | undefined {
  return map && Object.keys(map).length > 0 ? map : undefined;
}

function dropUndefined<T extends object>(obj: T): T {
  return Object.fromEntries(Object.entries(obj).filter(([, value]) => value !== undefined)) as T;
}
