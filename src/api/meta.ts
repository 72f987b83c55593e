// The object model shared by the store, the API server, the client and the controllers.
// Shapes follow Kubernetes' apimachinery (ObjectMeta, Condition, Status) so that users who
// know kubectl can read our objects, and so that JSON Patch paths mean what they expect.

export const GROUP = 'd2p.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Store-wide monotonic counter, serialised as a decimal string as Kubernetes does. */
  resourceVersion?: string;
  /** Moves only when spec changes. */
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  finalizers?: string[];
  ownerReferences?: OwnerReference[];
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  observedGeneration?: number;
}

export interface BaseStatus {
  observedGeneration?: number;
  conditions?: Condition[];
}

export interface ApiObject<Spec = unknown, Status extends BaseStatus = BaseStatus> {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: Spec;
  status?: Status;
}

export interface ObjectList<T extends ApiObject = ApiObject> {
  apiVersion: string;
  kind: string; // e.g. "ContainerList"
  metadata: { resourceVersion: string };
  items: T[];
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchEvent<T extends ApiObject = ApiObject> {
  type: WatchEventType;
  object: T;
}

/** Everything the API serves, keyed by kind. `namespaced: false` kinds live outside namespaces. */
export interface KindInfo {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  namespaced: boolean;
  /** Kinds without spec/status split (Event) do not bump generation on spec changes. */
  hasStatus: boolean;
}

export const KINDS: readonly KindInfo[] = [
  { kind: 'Image', plural: 'images', singular: 'image', shortNames: ['img'], namespaced: true, hasStatus: true },
  { kind: 'Build', plural: 'builds', singular: 'build', shortNames: ['bld'], namespaced: true, hasStatus: true },
  { kind: 'Volume', plural: 'volumes', singular: 'volume', shortNames: ['vol'], namespaced: true, hasStatus: true },
  { kind: 'Network', plural: 'networks', singular: 'network', shortNames: ['net'], namespaced: true, hasStatus: true },
  { kind: 'Container', plural: 'containers', singular: 'container', shortNames: ['ctr'], namespaced: true, hasStatus: true },
  { kind: 'Service', plural: 'services', singular: 'service', shortNames: ['svc'], namespaced: true, hasStatus: true },
  { kind: 'Event', plural: 'events', singular: 'event', shortNames: ['ev'], namespaced: true, hasStatus: false },
  { kind: 'Source', plural: 'sources', singular: 'source', shortNames: ['src'], namespaced: true, hasStatus: true },
];

export function kindByName(word: string): KindInfo | undefined {
  const w = word.toLowerCase();
  return KINDS.find(
    (k) => k.kind.toLowerCase() === w || k.plural === w || k.singular === w || k.shortNames.includes(w),
  );
}

export function kindInfo(kind: string): KindInfo {
  const info = KINDS.find((k) => k.kind === kind);
  if (!info) throw new Error(`unknown kind ${JSON.stringify(kind)}`);
  return info;
}

export const DEFAULT_NAMESPACE = 'default';

/** "namespace/name", the key controllers queue and the store indexes by. */
export function objectKey(o: { metadata: { namespace?: string; name: string } }): string {
  return `${o.metadata.namespace ?? DEFAULT_NAMESPACE}/${o.metadata.name}`;
}

/** An Event records something that happened to an object, as Kubernetes core/v1 Event does. */
export interface EventObject extends ApiObject<never, never> {
  kind: 'Event';
  involvedObject: { kind: string; namespace?: string; name: string; uid?: string };
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  count: number;
  firstTimestamp: string;
  lastTimestamp: string;
  source?: { component: string };
}
