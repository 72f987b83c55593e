// Query parameters with Kubernetes' meanings (metav1.ListOptions, CreateOptions, DeleteOptions).
import { ApiError } from '../api/errors';

export function singleParam(query: URLSearchParams, name: string): string | undefined {
  const values = query.getAll(name);
  if (values.length > 1) throw new ApiError('BadRequest', `query parameter ${name} is given ${values.length} times; give it once`);
  return values[0];
}

/** `watch=true` or `watch=1`, as Go's strconv.ParseBool accepts them. */
export function booleanParam(query: URLSearchParams, name: string): boolean {
  const value = singleParam(query, name);
  if (value === undefined || value === '') return false;
  if (['true', '1', 't', 'True', 'TRUE'].includes(value)) return true;
  if (['false', '0', 'f', 'False', 'FALSE'].includes(value)) return false;
  throw new ApiError('BadRequest', `query parameter ${name}=${JSON.stringify(value)} is not a boolean (true/false/1/0)`);
}

/** Kubernetes accepts only "All" (KEP 576): validate and compute without persisting. */
export function dryRunParam(values: unknown[]): boolean {
  for (const v of values) {
    if (v !== 'All') throw new ApiError('BadRequest', `unsupported dryRun value ${JSON.stringify(v)}; the only supported value is "All"`);
  }
  return values.length > 0;
}

export function timeoutSecondsParam(query: URLSearchParams): number | undefined {
  const value = singleParam(query, 'timeoutSeconds');
  if (value === undefined || value === '') return undefined;
  const seconds = Number(value);
  if (!Number.isInteger(seconds) || seconds < 0) {
    throw new ApiError('BadRequest', `query parameter timeoutSeconds=${JSON.stringify(value)} must be a non-negative integer`);
  }
  return seconds;
}

export type PropagationPolicy = 'Background' | 'Orphan';

export function propagationPolicy(value: unknown, source: string): PropagationPolicy | undefined {
  if (value === undefined || value === '') return undefined;
  if (value === 'Background' || value === 'Orphan') return value;
  if (value === 'Foreground') {
    throw new ApiError('BadRequest', `${source}: propagationPolicy "Foreground" is not supported by d2p; use "Background" or "Orphan"`);
  }
  throw new ApiError('BadRequest', `${source}: propagationPolicy ${JSON.stringify(value)} is not one of "Background", "Orphan"`);
}
