// The Source object: what d2p knows about one watched manifest directory, and the labels
// and annotations that mark the objects applied from it (the "apply set", in the sense of
// Kubernetes KEP-3659: a parent object plus a label on every member, so that pruning only
// ever considers objects the set itself created or adopted).
import { API_VERSION } from '../api/meta';
import type { Source, SourceSpec } from '../api/types';
import { labelValueProblem } from '../store/labels';
import type { Client } from '../client/types';

/** Every object applied from a directory carries this label; its value is the Source's name. */
export const SOURCE_LABEL = 'd2p.dev/source';
/** The file (relative to the directory) an object was last applied from. */
export const SOURCE_FILE_ANNOTATION = 'd2p.dev/source-file';
/**
 * sha256 of the object as the directory describes it. When the live object still carries the
 * digest of what the directory says now but differs from it, someone changed it through the
 * API: that is drift, not an edit of the file. Kept on the object, so it survives restarts.
 */
export const SOURCE_DIGEST_ANNOTATION = 'd2p.dev/source-digest';

/** Where Source objects live unless told otherwise, as Flux keeps its objects in flux-system. */
export const SOURCE_NAMESPACE = 'd2p-system';
export const DEFAULT_INTERVAL = '30s';

/** What went wrong in GitOps, with a stable code (undici's style). */
export class GitOpsError extends Error {
  readonly code: string;
  constructor(message: string, opts: { code: string; cause?: unknown }) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'GitOpsError';
    this.code = opts.code;
  }
}

// Object names (common.json Name) and label values (the Source name is the label's value)
// must both accept it: alphanumerics, '-', '_', '.', starting and ending alphanumeric, ≤ 63.
const MAX_LABEL_VALUE = 63;

/** "My Manifests/" → "my-manifests": a Source name derived from the directory's base name. */
export function sourceNameFor(dir: string): string {
  const base = dir.replace(/\/+$/, '').split('/').pop() ?? '';
  const cleaned = base
    .toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, '-')
    .slice(0, MAX_LABEL_VALUE)
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '');
  return cleaned === '' ? 'manifests' : cleaned;
}

/** Throws a GitOpsError naming the problem when `name` cannot be a Source name. */
export function checkSourceName(name: string): void {
  const problem = name === '' ? 'must not be empty' : labelValueProblem(name);
  if (problem) {
    throw new GitOpsError(`invalid source name ${JSON.stringify(name)}: it is the value of the ${SOURCE_LABEL} label and ${problem}`, {
      code: 'D2P_GITOPS_INVALID_NAME',
    });
  }
}

export function sourceObject(namespace: string, name: string, spec: SourceSpec): Source {
  return { apiVersion: API_VERSION, kind: 'Source', metadata: { name, namespace }, spec };
}

/** Creates or updates the Source so its spec says what this watcher does; returns it with its status. */
export async function ensureSource(client: Client, desired: Source): Promise<Source> {
  const { object } = await client.for('Source').apply(desired);
  return object;
}
