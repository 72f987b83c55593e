// URL → route. The paths are Kubernetes' (k8s.io/apiserver endpoints/installer.go):
//   /apis/{group}/{version}/{plural}                                  every namespace
//   /apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}[/status]]
//   /apis/{group}/{version}/{plural}/{name}[/status]                  cluster-scoped kinds
//   /apis/{group}/{version}/apply                                     d2p's batch apply (POST)
import { ApiError } from '../api/errors';
import { GROUP, KINDS, VERSION, type KindInfo } from '../api/meta';

export const API_PREFIX = `/apis/${GROUP}/${VERSION}`;
/** Not a plural of any kind, so it cannot shadow a collection. */
export const APPLY_PATH = `${API_PREFIX}/apply`;

export type Route =
  | { type: 'healthz' }
  | { type: 'groups' }
  | { type: 'discovery' }
  /** POST: a batch apply of a List of objects of any kinds and namespaces (src/server/apply-batch.ts). */
  | { type: 'apply' }
  /** namespace undefined: across all namespaces (or a cluster-scoped kind). */
  | { type: 'collection'; kind: KindInfo; namespace?: string }
  | { type: 'object'; kind: KindInfo; namespace?: string; name: string; subresource?: 'status' };

/** The message Kubernetes gives for an unknown path, so kubectl users recognise it. */
export function unknownPath(pathname: string): ApiError {
  return new ApiError('NotFound', `the server could not find the requested resource (${pathname})`);
}

export function parseRoute(pathname: string): Route {
  const trimmed = pathname.length > 1 ? pathname.replace(/\/+$/, '') : pathname;
  if (trimmed === '/healthz' || trimmed === '/livez' || trimmed === '/readyz') return { type: 'healthz' };
  if (trimmed === '/apis') return { type: 'groups' };
  if (trimmed === API_PREFIX) return { type: 'discovery' };
  if (trimmed === APPLY_PATH) return { type: 'apply' };
  if (!trimmed.startsWith(`${API_PREFIX}/`)) throw unknownPath(pathname);
  const segments = trimmed.slice(API_PREFIX.length + 1).split('/').map((s) => decodeSegment(s, pathname));
  return segments[0] === 'namespaces' ? parseNamespaced(segments, pathname) : parseClusterWide(segments, pathname);
}

function decodeSegment(segment: string, pathname: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(segment);
  } catch (e) {
    throw new ApiError('BadRequest', `malformed percent-encoding in path ${JSON.stringify(pathname)}: ${(e as Error).message}`);
  }
  if (decoded === '' || decoded === '.' || decoded === '..' || decoded.includes('/')) {
    throw new ApiError('BadRequest', `invalid path segment ${JSON.stringify(decoded)} in ${JSON.stringify(pathname)}`);
  }
  return decoded;
}

function kindForPlural(plural: string, pathname: string): KindInfo {
  const kind = KINDS.find((k) => k.plural === plural);
  if (!kind) throw unknownPath(pathname);
  return kind;
}

// namespaces/{ns}/{plural}[/{name}[/status]]
function parseNamespaced(segments: string[], pathname: string): Route {
  if (segments.length < 3 || segments.length > 5) throw unknownPath(pathname);
  const [, namespace, plural, name, subresource] = segments;
  const kind = kindForPlural(plural, pathname);
  if (!kind.namespaced) throw unknownPath(pathname);
  if (name === undefined) return { type: 'collection', kind, namespace };
  return objectRoute(kind, namespace, name, subresource, pathname);
}

// {plural}[/{name}[/status]]: a name is only addressable this way for cluster-scoped kinds.
function parseClusterWide(segments: string[], pathname: string): Route {
  if (segments.length > 3) throw unknownPath(pathname);
  const [plural, name, subresource] = segments;
  const kind = kindForPlural(plural, pathname);
  if (name === undefined) return { type: 'collection', kind };
  if (kind.namespaced) throw unknownPath(pathname);
  return objectRoute(kind, undefined, name, subresource, pathname);
}

function objectRoute(
  kind: KindInfo,
  namespace: string | undefined,
  name: string,
  subresource: string | undefined,
  pathname: string,
): Route {
  if (subresource === undefined) return { type: 'object', kind, namespace, name };
  if (subresource === 'status' && kind.hasStatus) return { type: 'object', kind, namespace, name, subresource };
  throw unknownPath(pathname);
}
