// Shape checks the store makes before it accepts an object: only what the store itself
// depends on (identity, metadata maps, finalizers, owner references). Kind-specific spec
// validation is the JSON Schemas' job (crd-schemas/, enforced by the API server).
import { API_VERSION, DEFAULT_NAMESPACE, KINDS, type ApiObject, type KindInfo } from '../api/meta';
import { ApiError, invalid, type StatusCause } from '../api/errors';

/**
 * Names and namespaces: an alphanumeric first character keeps `.`, `..` and hidden files
 * out, and there is no `/`, so a name is always exactly one path component inside the
 * store (253 characters fits NAME_MAX 255; see path_resolution(7)).
 */
export const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,252}$/;

export const RESOURCE_VERSION_PATTERN = /^(0|[1-9][0-9]*)$/;

export function isValidName(s: unknown): s is string {
  return typeof s === 'string' && NAME_PATTERN.test(s);
}

const NAME_RULE = 'must start with a letter or digit and contain only letters, digits, "_", "." or "-" (at most 253 characters)';

/** For names that arrive as request parameters (get, delete, list): a bad one is a BadRequest. */
export function requireKind(kind: string): KindInfo {
  const info = KINDS.find((k) => k.kind === kind);
  if (!info) {
    throw new ApiError('BadRequest', `unknown kind ${JSON.stringify(kind)}; known kinds: ${KINDS.map((k) => k.kind).join(', ')}`, {
      kind,
    });
  }
  return info;
}

export function requireParamName(what: 'name' | 'namespace', value: string, kind: string): string {
  if (!isValidName(value)) {
    throw new ApiError('BadRequest', `invalid ${what} ${JSON.stringify(value)} for ${kind}: ${NAME_RULE}`, {
      kind,
      causes: [{ field: `metadata.${what}`, reason: 'FieldValueInvalid', message: NAME_RULE }],
    });
  }
  return value;
}

export function namespaceOrDefault(namespace: string | undefined, kind: string): string {
  return requireParamName('namespace', namespace ?? DEFAULT_NAMESPACE, kind);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkStringMap(value: unknown, field: string, causes: StatusCause[]): void {
  if (value === undefined) return;
  if (!isPlainObject(value)) {
    causes.push({ field, reason: 'FieldValueTypeInvalid', message: 'must be a map of string keys to string values' });
    return;
  }
  for (const [key, v] of Object.entries(value)) {
    if (key === '') causes.push({ field, reason: 'FieldValueInvalid', message: 'keys must not be empty' });
    if (typeof v !== 'string') {
      causes.push({ field: `${field}.${key}`, reason: 'FieldValueTypeInvalid', message: 'must be a string' });
    }
  }
}

function checkFinalizers(value: unknown, causes: StatusCause[]): void {
  if (value === undefined) return;
  if (!Array.isArray(value)) {
    causes.push({ field: 'metadata.finalizers', reason: 'FieldValueTypeInvalid', message: 'must be a list of strings' });
    return;
  }
  value.forEach((f, i) => {
    if (typeof f !== 'string' || f === '') {
      causes.push({ field: `metadata.finalizers[${i}]`, reason: 'FieldValueInvalid', message: 'must be a non-empty string' });
    }
  });
}

function checkOwnerReferences(value: unknown, causes: StatusCause[]): void {
  if (value === undefined) return;
  if (!Array.isArray(value)) {
    causes.push({ field: 'metadata.ownerReferences', reason: 'FieldValueTypeInvalid', message: 'must be a list' });
    return;
  }
  let controllers = 0;
  value.forEach((ref, i) => {
    const field = `metadata.ownerReferences[${i}]`;
    if (!isPlainObject(ref)) {
      causes.push({ field, reason: 'FieldValueTypeInvalid', message: 'must be an object' });
      return;
    }
    for (const key of ['apiVersion', 'kind', 'name', 'uid'] as const) {
      if (typeof ref[key] !== 'string' || ref[key] === '') {
        causes.push({ field: `${field}.${key}`, reason: 'FieldValueRequired', message: 'Required value' });
      }
    }
    if (ref.controller === true) controllers++;
  });
  // Kubernetes' ValidateOwnerReferences: "Only one reference can have Controller set to true".
  if (controllers > 1) {
    causes.push({ field: 'metadata.ownerReferences', reason: 'FieldValueInvalid', message: 'only one reference can have controller set to true' });
  }
}

export interface ObjectIdentity {
  info: KindInfo;
  namespace: string;
  name: string;
}

/**
 * Checks an object sent for create/update and returns its identity. A missing apiVersion
 * is accepted (the caller fills it in), as the Kubernetes API server defaults it from the
 * request path.
 */
export function checkObject(obj: unknown): ObjectIdentity {
  if (!isPlainObject(obj)) throw new ApiError('BadRequest', 'object must be a JSON object');
  if (typeof obj.kind !== 'string' || obj.kind === '') throw new ApiError('BadRequest', 'object has no kind');
  const info = requireKind(obj.kind);
  const metadata = obj.metadata;
  const nameForMessage = isPlainObject(metadata) && typeof metadata.name === 'string' ? metadata.name : '';
  const causes: StatusCause[] = [];
  if (obj.apiVersion !== undefined && obj.apiVersion !== API_VERSION) {
    causes.push({ field: 'apiVersion', reason: 'FieldValueNotSupported', message: `must be ${JSON.stringify(API_VERSION)}` });
  }
  if (!isPlainObject(metadata)) {
    causes.push({ field: 'metadata', reason: 'FieldValueRequired', message: 'Required value' });
    throw invalid(info.kind, nameForMessage, causes);
  }
  if (metadata.name === undefined || metadata.name === '') {
    causes.push({ field: 'metadata.name', reason: 'FieldValueRequired', message: 'Required value' });
  } else if (!isValidName(metadata.name)) {
    causes.push({ field: 'metadata.name', reason: 'FieldValueInvalid', message: NAME_RULE });
  }
  if (metadata.namespace !== undefined && !isValidName(metadata.namespace)) {
    causes.push({ field: 'metadata.namespace', reason: 'FieldValueInvalid', message: NAME_RULE });
  }
  if (metadata.resourceVersion !== undefined && (typeof metadata.resourceVersion !== 'string' || !RESOURCE_VERSION_PATTERN.test(metadata.resourceVersion))) {
    causes.push({ field: 'metadata.resourceVersion', reason: 'FieldValueInvalid', message: 'must be a decimal string' });
  }
  if (metadata.uid !== undefined && typeof metadata.uid !== 'string') {
    causes.push({ field: 'metadata.uid', reason: 'FieldValueTypeInvalid', message: 'must be a string' });
  }
  checkStringMap(metadata.labels, 'metadata.labels', causes);
  checkStringMap(metadata.annotations, 'metadata.annotations', causes);
  checkFinalizers(metadata.finalizers, causes);
  checkOwnerReferences(metadata.ownerReferences, causes);
  if (causes.length > 0) throw invalid(info.kind, nameForMessage, causes);
  const namespace = (metadata.namespace as string | undefined) ?? DEFAULT_NAMESPACE;
  return { info, namespace, name: metadata.name as string };
}

/** Structural equality of JSON values; a key holding `undefined` counts as absent, as in JSON. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const other = b as unknown[];
    return a.length === other.length && a.every((v, i) => jsonEqual(v, other[i]));
  }
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  const leftKeys = Object.keys(left).filter((k) => left[k] !== undefined);
  const rightKeys = Object.keys(right).filter((k) => right[k] !== undefined);
  return leftKeys.length === rightKeys.length && leftKeys.every((k) => jsonEqual(left[k], right[k]));
}

/** RFC 3339 at second precision, as Kubernetes' metav1.Time serialises. */
export function nowTimestamp(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function sameObjectIgnoringVersion(a: ApiObject, b: ApiObject): boolean {
  return jsonEqual({ ...a, metadata: { ...a.metadata, resourceVersion: undefined } }, { ...b, metadata: { ...b.metadata, resourceVersion: undefined } });
}
