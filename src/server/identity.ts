// A request body names its object (apiVersion, kind, namespace, name) and so does the URL;
// they must agree. Missing fields are filled from the URL, differing ones are refused with
// Kubernetes' 400 messages (k8s.io/apiserver/pkg/endpoints/handlers/rest.go).
import { ApiError } from '../api/errors';
import { API_VERSION, DEFAULT_NAMESPACE, type ApiObject, type KindInfo, type ObjectMeta } from '../api/meta';
import { isPlainObject } from './http-io';

export interface UrlIdentity {
  kind: KindInfo;
  namespace?: string;
  /** Absent for POST on a collection: the body names the object. */
  name?: string;
}

export function bindToUrl(body: Record<string, unknown>, url: UrlIdentity): ApiObject {
  const apiVersion = agree('apiVersion', body.apiVersion, API_VERSION, 'of the object', 'served at this URL');
  const kind = agree('kind', body.kind, url.kind.kind, 'of the object', 'of the URL');
  if (body.metadata !== undefined && !isPlainObject(body.metadata)) {
    throw new ApiError('BadRequest', `metadata of the ${kind} in the request body must be an object`);
  }
  const metadata = { ...(body.metadata ?? {}) } as Record<string, unknown>;
  if (url.kind.namespaced) {
    metadata.namespace = agree(
      'namespace',
      metadata.namespace,
      url.namespace ?? DEFAULT_NAMESPACE,
      'of the object',
      'on the request',
    );
  } else if (metadata.namespace !== undefined) {
    throw new ApiError('BadRequest', `${kind} is not namespaced, but the object sets metadata.namespace ${JSON.stringify(metadata.namespace)}`);
  }
  if (url.name !== undefined) metadata.name = agree('name', metadata.name, url.name, 'of the object', 'on the URL');
  return { ...body, apiVersion, kind, metadata: metadata as unknown as ObjectMeta } as ApiObject;
}

function agree(field: string, inBody: unknown, inUrl: string, bodySide: string, urlSide: string): string {
  if (inBody === undefined || inBody === '') return inUrl;
  if (inBody !== inUrl) {
    throw new ApiError(
      'BadRequest',
      `the ${field} ${bodySide} (${JSON.stringify(inBody)}) does not match the ${field} ${urlSide} (${JSON.stringify(inUrl)})`,
    );
  }
  return inUrl;
}

/**
 * metadata.generateName as Kubernetes does it: the prefix plus five random characters from
 * an alphabet without vowels or look-alikes (k8s.io/apiserver/pkg/storage/names).
 */
export function applyGenerateName(obj: ApiObject): ApiObject {
  const meta = obj.metadata as ObjectMeta & { generateName?: unknown };
  if (meta.generateName === undefined) return obj;
  const { generateName, ...rest } = meta;
  if (typeof generateName !== 'string') {
    throw new ApiError('BadRequest', `metadata.generateName of the ${obj.kind} must be a string`);
  }
  if (rest.name) return { ...obj, metadata: rest };
  return { ...obj, metadata: { ...rest, name: generateName + randomSuffix(5) } };
}

const SUFFIX_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

function randomSuffix(length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += SUFFIX_ALPHABET[Math.floor(Math.random() * SUFFIX_ALPHABET.length)];
  return out;
}

/** Server-owned metadata a creator may not choose (Kubernetes refuses resourceVersion on create). */
export function refuseServerFieldsOnCreate(obj: ApiObject): ApiObject {
  if (obj.metadata.resourceVersion !== undefined && obj.metadata.resourceVersion !== '') {
    throw new ApiError(
      'BadRequest',
      `resourceVersion should not be set on objects to be created (${obj.kind} "${obj.metadata.name}" has ${JSON.stringify(obj.metadata.resourceVersion)})`,
    );
  }
  const { uid: _uid, creationTimestamp: _created, deletionTimestamp: _deleted, generation: _generation, resourceVersion: _rv, ...settable } = obj.metadata;
  return { ...obj, metadata: settable };
}
