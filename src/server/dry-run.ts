// dryRun=All: the answer a write would give, computed without writing (Kubernetes KEP 576).
// The store has no dry-run mode, so the server reproduces what the store contract
// (src/store/types.ts) says a write does to server-owned metadata.
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { conflict } from '../api/errors';
import type { ApiObject, KindInfo } from '../api/meta';

/** RFC 3339 at second precision, as Kubernetes' metav1.Time serialises. */
export function nowTimestamp(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Checks an update's preconditions against the live object: a stale resourceVersion or a
 * different uid means the writer is working from another version of the object (409).
 */
export function checkUpdatePreconditions(live: ApiObject, desired: ApiObject): void {
  const { namespace, name } = live.metadata;
  const wanted = desired.metadata.resourceVersion;
  if (wanted !== undefined && wanted !== '' && wanted !== live.metadata.resourceVersion) {
    throw conflict(
      live.kind,
      namespace,
      name,
      `the object has been modified; please apply your changes to the latest version and try again (resourceVersion ${wanted} is not the current ${live.metadata.resourceVersion})`,
    );
  }
  const uid = desired.metadata.uid;
  if (uid !== undefined && uid !== '' && uid !== live.metadata.uid) {
    throw conflict(live.kind, namespace, name, `Precondition failed: UID in object meta: ${uid}, UID of the stored object: ${live.metadata.uid}`);
  }
}

export function simulateCreate(obj: ApiObject): ApiObject {
  return {
    ...obj,
    metadata: { ...obj.metadata, uid: randomUUID(), creationTimestamp: nowTimestamp(), generation: 1 },
  };
}

export function simulateUpdate(kind: KindInfo, live: ApiObject, desired: ApiObject): ApiObject {
  checkUpdatePreconditions(live, desired);
  const liveGeneration = live.metadata.generation ?? 1;
  const specChanged = !isDeepStrictEqual(live.spec, desired.spec);
  const result: ApiObject = {
    ...desired,
    metadata: {
      ...desired.metadata,
      uid: live.metadata.uid,
      creationTimestamp: live.metadata.creationTimestamp,
      resourceVersion: live.metadata.resourceVersion,
      generation: kind.hasStatus && specChanged ? liveGeneration + 1 : liveGeneration,
      // Only a DELETE sets it; JSON.stringify drops the key when the live object has none.
      deletionTimestamp: live.metadata.deletionTimestamp,
    },
  };
  return withStatusOf(result, live);
}

export function simulateUpdateStatus(live: ApiObject, desired: ApiObject): ApiObject {
  checkUpdatePreconditions(live, desired);
  return withStatusOf(live, desired);
}

/**
 * With finalizers the object stays, marked for deletion once (which moves generation, as
 * Kubernetes' markAsDeleting does); without, it goes as it is.
 */
export function simulateDelete(live: ApiObject): ApiObject {
  if ((live.metadata.finalizers ?? []).length === 0 || live.metadata.deletionTimestamp) return live;
  const generation = (live.metadata.generation ?? 0) + 1;
  return { ...live, metadata: { ...live.metadata, deletionTimestamp: nowTimestamp(), generation } };
}

/** `obj` with the status of `source` (absent if `source` has none). */
export function withStatusOf(obj: ApiObject, source: ApiObject): ApiObject {
  const { status: _dropped, ...rest } = obj;
  return source.status === undefined ? rest : { ...rest, status: source.status };
}
