// Image references as Docker parses them (github.com/distribution/reference, the grammar
// in its reference.go): [registry[:port]/]path[:tag][@digest], with Docker Hub defaults
// applied the way `docker pull nginx` does: docker.io/library/nginx:latest.
import { ImageError } from './errors';

export const DOCKER_HUB = 'docker.io';
/** docker.io is a name, not a host: its API is served at registry-1.docker.io. */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
export const DEFAULT_TAG = 'latest';

export interface Reference {
  /** Registry host with optional port, e.g. "docker.io", "127.0.0.1:5000", "[::1]:5000". */
  registry: string;
  /** Repository path inside the registry, e.g. "library/nginx". */
  repository: string;
  /** Absent only when the reference names a digest and no tag. */
  tag?: string;
  /** "sha256:<64 hex>" when pinned. */
  digest?: string;
}

// From distribution/reference regexp.go.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const MAX_NAME_LENGTH = 255;

function invalid(input: string, why: string): ImageError {
  return new ImageError('D2P_IMAGE_INVALID_REFERENCE', `invalid reference format ${JSON.stringify(input)}: ${why}`, {
    reference: input,
  });
}

export function isDigest(s: string): boolean {
  return SHA256_DIGEST.test(s);
}

/** Validates a digest we are about to use as a file name or URL part. Only sha256 is supported, as in Docker. */
export function assertDigest(s: string, what: string): string {
  if (!SHA256_DIGEST.test(s)) {
    throw new ImageError('D2P_IMAGE_INVALID', `${what}: ${JSON.stringify(s)} is not a sha256 digest`, { digest: s });
  }
  return s;
}

function isValidDomain(domain: string): boolean {
  const ipv6 = /^\[[0-9a-fA-F:.]+\](?::\d+)?$/;
  if (ipv6.test(domain)) return true;
  const [host, port, ...rest] = domain.split(':');
  if (rest.length > 0 || host === undefined || host === '') return false;
  if (port !== undefined && !/^\d{1,5}$/.test(port)) return false;
  return host.split('.').every((c) => DOMAIN_COMPONENT.test(c));
}

/**
 * Docker's rule (distribution/reference normalize.go splitDockerDomain): the first path
 * component is a registry only if it contains "." or ":", is "localhost", or has an
 * uppercase letter; otherwise the name lives on Docker Hub.
 */
function splitDomain(name: string): { registry: string; path: string } {
  const slash = name.indexOf('/');
  const first = slash === -1 ? '' : name.slice(0, slash);
  const looksLikeDomain =
    slash !== -1 && (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase());
  if (!looksLikeDomain) {
    return { registry: DOCKER_HUB, path: slash === -1 ? `library/${name}` : name };
  }
  let registry = first;
  let path = name.slice(slash + 1);
  if (registry === 'index.docker.io') registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !path.includes('/')) path = `library/${path}`;
  return { registry, path };
}

/** Parses and normalises a reference; a reference with neither tag nor digest gets ":latest". */
export function parseReference(input: string): Reference {
  if (typeof input !== 'string' || input.length === 0) throw invalid(String(input), 'empty');
  if (input !== input.trim()) throw invalid(input, 'leading or trailing whitespace');
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw invalid(input, `bad digest ${JSON.stringify(digest)}`);
    if (!SHA256_DIGEST.test(digest)) throw invalid(input, `unsupported digest ${JSON.stringify(digest)} (only sha256 with 64 hex digits)`);
  }
  let tag: string | undefined;
  // A tag is after the last ":" that comes after the last "/" (a ":" before it is a port).
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > rest.lastIndexOf('/')) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG.test(tag)) throw invalid(input, `bad tag ${JSON.stringify(tag)}`);
  }
  if (rest.length === 0) throw invalid(input, 'missing repository name');
  const { registry, path } = splitDomain(rest);
  if (!isValidDomain(registry)) throw invalid(input, `bad registry ${JSON.stringify(registry)}`);
  if (path !== path.toLowerCase()) throw invalid(input, 'repository name must be lowercase');
  for (const component of path.split('/')) {
    if (!PATH_COMPONENT.test(component)) throw invalid(input, `bad path component ${JSON.stringify(component)}`);
  }
  if (registry.length + 1 + path.length > MAX_NAME_LENGTH) throw invalid(input, `name longer than ${MAX_NAME_LENGTH} characters`);
  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return { registry, repository: path, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** "registry/repository" */
export function referenceName(ref: Reference): string {
  return `${ref.registry}/${ref.repository}`;
}

/** The fully qualified form: docker.io/library/nginx:latest, or name@digest, or name:tag@digest. */
export function formatReference(ref: Reference): string {
  return `${referenceName(ref)}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** The short form Docker prints: "nginx:latest" for Docker Hub official images. */
export function familiarReference(ref: Reference): string {
  let name = referenceName(ref);
  if (ref.registry === DOCKER_HUB) {
    name = ref.repository.startsWith('library/') ? ref.repository.slice('library/'.length) : ref.repository;
  }
  return `${name}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** The host:port that serves a registry's API. */
export function registryApiHost(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_API_HOST : registry;
}

/** Hostname without port or IPv6 brackets. */
export function registryHostname(registry: string): string {
  if (registry.startsWith('[')) return registry.slice(1, registry.indexOf(']'));
  return registry.split(':')[0] ?? registry;
}

/**
 * Docker talks plain HTTP to loopback registries without configuration (daemon/config:
 * 127.0.0.0/8 and ::1 are implicitly insecure; "localhost" too), HTTPS to anything else
 * unless the user lists it as insecure.
 */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registryHostname(registry);
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
