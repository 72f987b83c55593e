// Applying the directory as an apply set: each file all or nothing (a server dry run of all
// its objects first, as `d2p apply` does for its whole input), every object marked with the
// Source label and its file, and pruning of marked objects the directory no longer has.
import { createHash } from 'node:crypto';
import { isApiError } from '../api/errors';
import type { ApiObject } from '../api/meta';
import type { ApplyAction } from '../client/apply';
import type { Client } from '../client/types';
import { REQUEST_CONCURRENCY, settleAll } from '../cli/concurrency';
import { errorLines } from '../cli/format-error';
import { qualifiedName } from '../cli/kinds';
import type { FileRead } from './read-dir';
import { objectKeyOf } from './read-dir';
import { SOURCE_DIGEST_ANNOTATION, SOURCE_FILE_ANNOTATION, SOURCE_LABEL } from './source';

/** Kinds an apply set may hold. Events are records, not desired state; Sources are the sets themselves. */
export const SET_KINDS: readonly string[] = ['Image', 'Build', 'Volume', 'Network', 'Service', 'Container'];

export interface DesiredObject {
  key: string;
  file: string;
  object: ApiObject;
  digest: string;
}

export interface AppliedObject extends DesiredObject {
  action: ApplyAction;
  /** The object as the server holds it after the apply. */
  live: ApiObject;
}

export interface ApplyOutcome {
  applied: AppliedObject[];
  /** Files refused by the server's dry run or whose write failed: relative path → message. */
  failedFiles: Map<string, string>;
}

// ------------------------------------------------------------------------------ marking

/** Key-sorted JSON, so that the digest does not depend on the order keys were written in. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function objectDigest(obj: ApiObject): string {
  return createHash('sha256').update(canonicalJson(obj)).digest('hex').slice(0, 32);
}

/** The object as it is applied: the directory's version plus the apply-set label and annotations. */
export function markForSource(obj: ApiObject, sourceName: string, file: string): DesiredObject {
  const digest = objectDigest(obj);
  const object: ApiObject = {
    ...obj,
    metadata: {
      ...obj.metadata,
      labels: { ...obj.metadata.labels, [SOURCE_LABEL]: sourceName },
      annotations: { ...obj.metadata.annotations, [SOURCE_FILE_ANNOTATION]: file, [SOURCE_DIGEST_ANNOTATION]: digest },
    },
  };
  return { key: objectKeyOf(object), file, object, digest };
}

export function desiredObjects(files: readonly FileRead[], sourceName: string): DesiredObject[] {
  return files.filter((f) => !f.error).flatMap((f) => f.objects.map((m) => markForSource(m.object, sourceName, f.path)));
}

// ------------------------------------------------------------------------------ applying

/**
 * Dry-runs every object through the ResourceClient's apply (a read and a server dry run, as
 * `d2p apply` checks its input), then writes the objects of the files whose objects all
 * passed. A file with a refused object is left entirely as it was (none of its objects written).
 */
export async function applyDesired(client: Client, desired: readonly DesiredObject[]): Promise<ApplyOutcome> {
  const failedFiles = new Map<string, string>();
  const apply = (d: DesiredObject, dryRun: boolean) => client.for(d.object.kind).apply(d.object, { dryRun });

  const previews = await settleAll(desired, REQUEST_CONCURRENCY, (d) => apply(d, true));
  previews.forEach((p, i) => {
    if (!p.ok) noteFailure(failedFiles, desired[i], p.error);
  });
  const accepted = desired.filter((d) => !failedFiles.has(d.file));
  const results = await settleAll(accepted, REQUEST_CONCURRENCY, (d) => apply(d, false));
  const applied: AppliedObject[] = [];
  results.forEach((r, i) => {
    // Only a race with another writer between dry run and write gets here; the file's
    // other objects may be written already, and the next sync retries the file.
    if (!r.ok) return noteFailure(failedFiles, accepted[i], r.error);
    applied.push({ ...accepted[i], action: r.value.action, live: r.value.object });
  });
  return { applied: applied.filter((a) => !failedFiles.has(a.file)), failedFiles };
}

function noteFailure(failed: Map<string, string>, d: DesiredObject, error: unknown): void {
  // Without a daemon nothing can be applied: that is the sync's failure, not the file's.
  if ((error as { code?: unknown }).code === 'D2P_DAEMON_UNREACHABLE') throw error;
  const line = `${qualifiedName(d.object.kind, d.object.metadata.name)}: ${errorLines(error).join(' ')}`;
  const previous = failed.get(d.file);
  failed.set(d.file, previous ? `${previous}; ${line}` : `${d.file}: ${line}`);
}

// ------------------------------------------------------------------------------ the set as it is

/** Every object carrying this Source's label, by key. */
export async function listSet(client: Client, sourceName: string): Promise<Map<string, ApiObject>> {
  const lists = await Promise.all(
    SET_KINDS.map(async (kind) => {
      const list = await client.for(kind).list({ labelSelector: `${SOURCE_LABEL}=${sourceName}` });
      return list.items.map((o) => (o.kind ? o : { ...o, kind }));
    }),
  );
  return new Map(lists.flat().map((o) => [objectKeyOf(o), o]));
}

/**
 * What pruning deletes: marked objects the directory no longer describes, except those
 * whose file failed this time (we cannot know what it describes now), those being deleted
 * already, and those a controller owns (a label copied onto a dependent must not make us
 * delete what its owner manages; garbage collection follows the owner).
 */
export function pruneCandidates(live: ReadonlyMap<string, ApiObject>, desiredKeys: ReadonlySet<string>, keptFiles: ReadonlySet<string>): ApiObject[] {
  return [...live.entries()]
    .filter(([key, obj]) => {
      if (desiredKeys.has(key) || obj.metadata.deletionTimestamp) return false;
      const file = obj.metadata.annotations?.[SOURCE_FILE_ANNOTATION];
      if (file === undefined || keptFiles.has(file)) return false;
      return !(obj.metadata.ownerReferences ?? []).some((ref) => ref.controller);
    })
    .map(([, obj]) => obj);
}

/** Deletes `objects`; one deleted meanwhile (NotFound) or replaced by a new one (uid Conflict) is not ours to delete. */
export async function prune(client: Client, objects: readonly ApiObject[]): Promise<{ pruned: ApiObject[]; errors: string[] }> {
  const results = await settleAll(objects, REQUEST_CONCURRENCY, (obj) =>
    client.for(obj.kind).delete(obj.metadata.namespace, obj.metadata.name, { preconditionUid: obj.metadata.uid }),
  );
  const pruned: ApiObject[] = [];
  const errors: string[] = [];
  results.forEach((r, i) => {
    if (r.ok) pruned.push(objects[i]);
    else if (!isApiError(r.error, 'NotFound') && !isApiError(r.error, 'Conflict')) {
      errors.push(`pruning ${qualifiedName(objects[i].kind, objects[i].metadata.name)}: ${errorLines(r.error).join(' ')}`);
    }
  });
  return { pruned, errors };
}
