// What each REST verb does to the store, independent of HTTP. Every object that is about
// to be stored passes validateObject first; dryRun=All stops just before the write.
import { ApiError, isApiError } from '../api/errors';
import type { ApiObject, KindInfo } from '../api/meta';
import type { Store } from '../store/types';
import { checkUpdatePreconditions, withStatusOf } from './preconditions';
import { isPlainObject } from './http-io';
import { applyGenerateName, bindToUrl, refuseServerFieldsOnCreate } from './identity';
import { applyPatchDocument, type PatchFormat } from './patch';

export type Validator = (obj: unknown) => ApiObject;

export interface ObjectAddress {
  kind: KindInfo;
  namespace?: string;
  name: string;
  subresource?: 'status';
}

export interface Outcome {
  code: number;
  body: unknown;
}

export interface DeleteRequest {
  propagationPolicy?: 'Background' | 'Orphan';
  preconditionUid?: string;
  preconditionResourceVersion?: string;
  dryRun: boolean;
}

/**
 * A patch that does not name a resourceVersion is unconditional for its author, so a
 * Conflict from a concurrent writer is retried on the newer object, as Kubernetes'
 * patcher does (k8s.io/apiserver/pkg/endpoints/handlers/patch.go).
 */
const PATCH_CONFLICT_RETRIES = 5;

export class ObjectOperations {
  constructor(
    private readonly store: Store,
    private readonly validate: Validator,
  ) {}

  async get(at: ObjectAddress): Promise<Outcome> {
    return { code: 200, body: await this.store.get(at.kind.kind, at.namespace, at.name) };
  }

  async list(kind: KindInfo, namespace: string | undefined, selectors: { labelSelector?: string; fieldSelector?: string }): Promise<Outcome> {
    return { code: 200, body: await this.store.listForResponse(kind.kind, { namespace, ...selectors }) };
  }

  async create(kind: KindInfo, namespace: string | undefined, body: Record<string, unknown>, dryRun: boolean): Promise<Outcome> {
    const valid = objectToCreate(kind, namespace, body, this.validate);
    return { code: 201, body: await this.store.create(valid, { dryRun }) };
  }

  /** PUT: on the main resource status is kept as stored, on /status everything but status is. */
  async replace(at: ObjectAddress, body: Record<string, unknown>, dryRun: boolean): Promise<Outcome> {
    const desired = bindToUrl(body, at);
    const live = await this.store.get(at.kind.kind, at.namespace, at.name);
    return { code: 200, body: await this.write(at, live, desired, dryRun) };
  }

  async patch(at: ObjectAddress, format: PatchFormat, patch: unknown, dryRun: boolean): Promise<Outcome> {
    for (let attempt = 1; ; attempt++) {
      const live = await this.store.get(at.kind.kind, at.namespace, at.name);
      const patched = applyPatchDocument(format, live, patch, { kind: at.kind.kind, name: at.name });
      if (!isPlainObject(patched)) {
        throw new ApiError('Invalid', `${at.kind.kind} "${at.name}" is invalid: the patched document is not a JSON object`, {
          kind: at.kind.kind,
          name: at.name,
          causes: [{ message: 'the patched document is not a JSON object' }],
        });
      }
      const desired = bindToUrl(patched, at);
      const conditional = desired.metadata.resourceVersion !== live.metadata.resourceVersion;
      try {
        return { code: 200, body: await this.write(at, live, desired, dryRun) };
      } catch (e) {
        if (!isApiError(e, 'Conflict') || conditional || attempt >= PATCH_CONFLICT_RETRIES) throw e;
      }
    }
  }

  async delete(at: ObjectAddress, request: DeleteRequest): Promise<Outcome> {
    const { kind, namespace, name } = at;
    if (request.preconditionResourceVersion !== undefined) {
      const live = await this.store.get(kind.kind, namespace, name);
      checkUpdatePreconditions(live, {
        ...live,
        metadata: { ...live.metadata, uid: request.preconditionUid, resourceVersion: request.preconditionResourceVersion },
      });
    }
    const removed = await this.store.delete(kind.kind, namespace, name, {
      preconditionUid: request.preconditionUid,
      propagationPolicy: request.propagationPolicy,
      dryRun: request.dryRun,
    });
    return deleteOutcome(removed);
  }

  private async write(at: ObjectAddress, live: ApiObject, desired: ApiObject, dryRun: boolean): Promise<ApiObject> {
    if (at.subresource === 'status') {
      // Checked here too, not only by the store, so that a dry run fails as the write would.
      checkUpdatePreconditions(live, desired);
      const valid = this.validate(withStatusOf(withPrecondition(live, desired), desired));
      return this.store.updateStatus(valid, { dryRun });
    }
    return this.store.update(objectToReplace(live, desired, this.validate), { dryRun });
  }
}

/** What a POST hands the store: bound to its collection, server fields refused, status dropped, validated. */
export function objectToCreate(kind: KindInfo, namespace: string | undefined, body: Record<string, unknown>, validate: Validator): ApiObject {
  let obj = refuseServerFieldsOnCreate(applyGenerateName(bindToUrl(body, { kind, namespace })));
  // Status is the controllers' to write, through /status; Kubernetes drops it on create
  // for every kind with a status subresource.
  if (kind.hasStatus) obj = withoutStatus(obj);
  return validate(obj);
}

/** What a PUT of the main resource hands the store: preconditions checked, the live status kept, validated. */
export function objectToReplace(live: ApiObject, desired: ApiObject, validate: Validator): ApiObject {
  // Checked here too, not only by the store, so that a dry run fails as the write would.
  checkUpdatePreconditions(live, desired);
  return validate(withStatusOf(desired, live));
}

function withoutStatus(obj: ApiObject): ApiObject {
  const { status: _ignored, ...rest } = obj;
  return rest;
}

/** The live object carrying the writer's resourceVersion precondition (or none). */
function withPrecondition(live: ApiObject, desired: ApiObject): ApiObject {
  const { resourceVersion: _live, ...metadata } = live.metadata;
  const wanted = desired.metadata.resourceVersion;
  return { ...live, metadata: wanted ? { ...metadata, resourceVersion: wanted } : metadata };
}

/** 202 Accepted while finalizers hold the object, 200 once it is gone (Kubernetes' DELETE). */
function deleteOutcome(obj: ApiObject): Outcome {
  const pending = obj.metadata.deletionTimestamp !== undefined && (obj.metadata.finalizers ?? []).length > 0;
  return { code: pending ? 202 : 200, body: obj };
}
