// POST /apis/d2p.dev/v1alpha1/apply[?dryRun=All]: a whole `d2p apply` in one request.
//
// The body is a List of objects (kubectl's `kind: List`). Each object gets the client-side
// apply semantics of src/client/apply.ts (create when missing, else merge into the live
// object keeping what others own; unchanged when nothing would change), computed here from
// the store, then every resulting write goes to the store as one batch: checked all before
// any is made, and atomic on disk (src/store/journal.ts). One refused object means nothing
// is written, and the answer names every refused object with the Status a single write of
// it would have got, so `d2p apply` prints exactly what it printed when it sent one request
// per object.
import { ApiError, isApiError, type StatusObject } from '../api/errors';
import { API_VERSION, DEFAULT_NAMESPACE, KINDS, type ApiObject } from '../api/meta';
import { forCreate, mergeIntoLive, sameDesiredState, type ApplyAction } from '../client/apply';
import type { BatchOutcome, BatchWrite, Store } from '../store/types';
import { isPlainObject } from './http-io';
import { objectToCreate, objectToReplace, type Validator } from './operations';

export const APPLY_RESULT_KIND = 'ApplyResult';

/** One object's answer: what apply did (or, on a dry run or a refused batch, would do), or why it refused it. */
export type ApplyItemResult = { action: ApplyAction; object: ApiObject } | { status: StatusObject };

export interface ApplyResultBody {
  apiVersion: typeof API_VERSION;
  kind: typeof APPLY_RESULT_KIND;
  dryRun: boolean;
  /** True when every object was accepted and (not on a dry run) the batch is on disk. */
  written: boolean;
  items: ApplyItemResult[];
}

/** Reads the List of an apply request: its items, or a BadRequest naming what is wrong. */
export function applyItems(body: Record<string, unknown>): unknown[] {
  if (body.kind !== 'List' || !Array.isArray(body.items)) {
    throw new ApiError('BadRequest', 'the body of an apply must be a List: {"apiVersion": "v1", "kind": "List", "items": [objects…]}');
  }
  return body.items;
}

/**
 * What one object of the batch will do: a write for the store, or nothing (unchanged), or a
 * refusal. An update's action is decided again when the store runs its rebase (the object
 * may have changed since it was read), hence a function.
 */
type Plan =
  | { type: 'write'; action: () => 'created' | 'configured' | 'unchanged'; write: BatchWrite }
  | { type: 'unchanged'; live: ApiObject }
  | { type: 'refused'; error: ApiError };

/**
 * Updates never race: each is merged into the object as stored when the batch is written
 * (BatchWrite.rebase), so controllers writing status or finalizers meanwhile are no
 * Conflict. Only an object created or deleted by someone else between our read and the
 * batch is (AlreadyExists, NotFound): then the whole apply is planned again, a few times.
 */
const RACE_RETRIES = 3;

export async function applyBatch(store: Store, validate: Validator, items: readonly unknown[], dryRun: boolean): Promise<ApplyResultBody> {
  for (let attempt = 1; ; attempt++) {
    const { body, raced } = await applyOnce(store, validate, items, dryRun);
    if (!raced || attempt > RACE_RETRIES) return body;
  }
}

async function applyOnce(store: Store, validate: Validator, items: readonly unknown[], dryRun: boolean): Promise<{ body: ApplyResultBody; raced: boolean }> {
  const plans = await Promise.all(items.map((item) => planItem(store, validate, item)));
  const writes = plans.flatMap((p) => (p.type === 'write' ? [p.write] : []));
  const refusedBeforeStore = plans.some((p) => p.type === 'refused');
  // Always asked, even when a plan was refused already: the answer then names every
  // object the store would refuse too, not only the first kind of problem.
  const batch = await store.writeBatch(writes, { dryRun: dryRun || refusedBeforeStore });
  let next = 0;
  const results = plans.map((p): ApplyItemResult => resultOf(p, p.type === 'write' ? batch.outcomes[next++] : undefined));
  const raced = batch.outcomes.some((o) => !o.ok && (isApiError(o.error, 'AlreadyExists') || isApiError(o.error, 'NotFound')));
  const accepted = results.every((r) => !('status' in r));
  return {
    body: { apiVersion: API_VERSION, kind: APPLY_RESULT_KIND, dryRun, written: accepted && batch.written, items: results },
    raced,
  };
}

function resultOf(plan: Plan, outcome: BatchOutcome | undefined): ApplyItemResult {
  if (plan.type === 'refused') return { status: plan.error.toStatus() };
  if (plan.type === 'unchanged') return { action: 'unchanged', object: plan.live };
  if (!outcome!.ok) return { status: outcome!.error.toStatus() };
  return { action: plan.action(), object: outcome!.object };
}

/**
 * Whether an object exists is read without the store's locks; what an update writes is
 * computed again under them (rebase), from the object as it is then.
 */
async function planItem(store: Store, validate: Validator, item: unknown): Promise<Plan> {
  try {
    const { obj, kind, namespace } = identify(item);
    const live = await getIfPresent(store, kind.kind, namespace, obj.metadata.name);
    if (!live) {
      const object = objectToCreate(kind, namespace, forCreate(obj) as unknown as Record<string, unknown>, validate);
      return { type: 'write', action: () => 'created', write: { verb: 'create', object } };
    }
    const valid = updateOf(live, obj, validate);
    if (!valid) return { type: 'unchanged', live };
    let action: 'configured' | 'unchanged' = 'configured';
    const rebase = (stored: ApiObject): ApiObject | undefined => {
      const next = updateOf(stored, obj, validate);
      action = next ? 'configured' : 'unchanged';
      return next;
    };
    return { type: 'write', action: () => action, write: { verb: 'update', object: valid, rebase } };
  } catch (err) {
    if (err instanceof ApiError) return { type: 'refused', error: err };
    throw err;
  }
}

/** The manifest merged into the live object and validated, or undefined when that changes nothing. */
function updateOf(live: ApiObject, manifest: ApiObject, validate: Validator): ApiObject | undefined {
  const desired = mergeIntoLive(live, manifest);
  if (sameDesiredState(desired, live)) return undefined;
  // Compared after validation too: the manifest may leave out fields the schemas default,
  // and the object as it would be stored is what says whether anything changes.
  const valid = objectToReplace(live, desired, validate);
  return sameDesiredState(valid, live) ? undefined : valid;
}

function identify(item: unknown): { obj: ApiObject; kind: (typeof KINDS)[number]; namespace: string | undefined } {
  if (!isPlainObject(item)) throw new ApiError('BadRequest', 'every item of an apply must be a JSON object');
  const kind = KINDS.find((k) => k.kind === item.kind);
  if (!kind) throw new ApiError('BadRequest', `unknown kind ${JSON.stringify(item.kind)}; the API serves ${KINDS.map((k) => k.kind).join(', ')}`);
  const metadata = item.metadata;
  if (!isPlainObject(metadata) || typeof metadata.name !== 'string' || metadata.name === '') {
    throw new ApiError('BadRequest', `a ${kind.kind} to apply needs metadata.name`, { kind: kind.kind });
  }
  if (metadata.namespace !== undefined && typeof metadata.namespace !== 'string') {
    throw new ApiError('BadRequest', `metadata.namespace of ${kind.kind} "${metadata.name}" must be a string`, { kind: kind.kind, name: metadata.name });
  }
  const obj = { ...item, apiVersion: item.apiVersion ?? API_VERSION } as unknown as ApiObject;
  // An object without a namespace is in "default", as kubectl assumes.
  return { obj, kind, namespace: kind.namespaced ? (metadata.namespace ?? DEFAULT_NAMESPACE) : undefined };
}

/** The live object, or undefined when there is none. */
async function getIfPresent(store: Store, kind: string, namespace: string | undefined, name: string): Promise<ApiObject | undefined> {
  try {
    return await store.get(kind, namespace, name);
  } catch (err) {
    if (isApiError(err, 'NotFound')) return undefined;
    throw err;
  }
}
