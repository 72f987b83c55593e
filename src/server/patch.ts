// The two patch formats the API accepts, chosen by Content-Type as Kubernetes does:
// application/json-patch+json (RFC 6902) and application/merge-patch+json (RFC 7386).
import { applyPatch, JsonPatchError, type Operation } from 'fast-json-patch';
import { ApiError } from '../api/errors';
import { isPlainObject } from './http-io';

export type PatchFormat = 'json' | 'merge';

export const PATCH_MEDIA_TYPES: Record<string, PatchFormat> = {
  'application/json-patch+json': 'json',
  'application/merge-patch+json': 'merge',
};

/**
 * Errors where the patch is well-formed but does not fit this object: Kubernetes answers
 * those with 422 (the request was understood, its result is not acceptable), and malformed
 * patches with 400.
 */
const DOES_NOT_APPLY = new Set<string>([
  'TEST_OPERATION_FAILED',
  'OPERATION_PATH_UNRESOLVABLE',
  'OPERATION_FROM_UNRESOLVABLE',
  'OPERATION_PATH_CANNOT_ADD',
  'OPERATION_PATH_ILLEGAL_ARRAY_INDEX',
  'OPERATION_VALUE_OUT_OF_BOUNDS',
]);

export interface PatchTarget {
  kind: string;
  name: string;
}

export function applyPatchDocument(format: PatchFormat, document: unknown, patch: unknown, target: PatchTarget): unknown {
  return format === 'json' ? applyJsonPatch(document, patch, target) : applyMergePatch(document, patch);
}

export function applyJsonPatch(document: unknown, patch: unknown, target: PatchTarget): unknown {
  if (!Array.isArray(patch)) {
    throw new ApiError('BadRequest', `json patch for ${target.kind} "${target.name}" must be an array of operations (RFC 6902 §3)`);
  }
  try {
    // validateOperation=true checks each operation against the document before applying it;
    // mutateDocument=false leaves the live object untouched; prototype edits are refused.
    return applyPatch(document, patch as Operation[], true, false, true).newDocument;
  } catch (e) {
    if (!(e instanceof JsonPatchError)) throw e;
    throw jsonPatchFailure(e, target);
  }
}

function jsonPatchFailure(e: InstanceType<typeof JsonPatchError>, target: PatchTarget): ApiError {
  const op = describeOperation(e.operation);
  const where = e.index === undefined ? 'json patch' : `json patch operation ${e.index}${op}`;
  const message = `${where}: ${firstLine(e.message)} (${e.name})`;
  if (DOES_NOT_APPLY.has(e.name)) {
    return new ApiError('Invalid', `${target.kind} "${target.name}" is invalid: ${message}`, {
      kind: target.kind,
      name: target.name,
      causes: [{ field: e.index === undefined ? 'patch' : `patch[${e.index}]`, reason: e.name, message }],
    });
  }
  return new ApiError('BadRequest', `${target.kind} "${target.name}": ${message}`);
}

function describeOperation(operation: unknown): string {
  if (!isPlainObject(operation)) return '';
  const op = typeof operation.op === 'string' ? operation.op : '?';
  const path = typeof operation.path === 'string' ? operation.path : '?';
  return ` (${op} ${path})`;
}

// fast-json-patch appends a multi-line dump of the operation and tree; the first line says it.
function firstLine(message: string): string {
  return message.split('\n')[0].trim();
}

/**
 * RFC 7386 §2: a non-object patch replaces the target; in an object patch, null removes the
 * member and any other value is merged recursively. Arrays are replaced wholesale.
 */
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return structuredClone(patch);
  // A Map then Object.fromEntries defines "__proto__" as an ordinary key instead of
  // changing the prototype of the result.
  const members = new Map<string, unknown>(isPlainObject(target) ? Object.entries(target) : []);
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) members.delete(key);
    else members.set(key, applyMergePatch(members.get(key), value));
  }
  return Object.fromEntries(members);
}
