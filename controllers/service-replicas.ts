// What a Service's Containers must look like: their names, labels, template hash and owner,
// and which of the existing ones are kept, recreated or removed. Pure functions, so the
// reconciler in service.ts only reads, decides here, and acts.
//
// Naming and labels follow Docker Compose v2 (pkg/compose/convergence.go, getContainerName
// and the com.docker.compose.* labels): `<project>-<service>-<n>`, n counting from 1, or
// `container_name` for a single replica. The hash plays the role of Compose's
// com.docker.compose.config-hash: a container whose hash differs from the Service's is
// recreated (Compose recreates on any configuration change; it does not roll).
import { createHash } from 'node:crypto';
import { API_VERSION, DEFAULT_NAMESPACE, type OwnerReference } from '../src/api/meta';
import { COMPOSE_LABELS, type Container, type Service, type ServiceSpec } from '../src/api/types';
import { TerminalError } from './errors';
import { CONTAINER_FINALIZER } from './finalizers';

/** Label naming the Service a Container belongs to. */
export const SERVICE_LABEL = 'd2p.dev/service';
/** Annotation carrying the hash of the template a Container was made from. */
export const TEMPLATE_HASH_ANNOTATION = 'd2p.dev/template-hash';
/** Annotation on a Service carrying Compose's `container_name`. */
export const CONTAINER_NAME_ANNOTATION = 'd2p.dev/container-name';

const COMPOSE_LABEL_PREFIX = 'com.docker.compose.';
const HASH_LENGTH = 10;
const CONTAINER_NUMBER_PATTERN = /^[1-9][0-9]*$/;

/** What the Service asks for, derived once per reconcile. */
export interface DesiredReplicas {
  replicas: number;
  hash: string;
  nameOf(n: number): string;
}

/** A Service whose spec is present (the schema requires it; the type makes it optional). */
export type ServiceWithSpec = Service & { spec: ServiceSpec };

export function hasSpec(service: Service): service is ServiceWithSpec {
  return service.spec !== undefined;
}

export function serviceId(service: Service): string {
  return `service "${service.metadata.namespace ?? DEFAULT_NAMESPACE}/${service.metadata.name}"`;
}

/** Reads the Service's wishes; a spec Compose would refuse is a TerminalError naming the field. */
export function desiredReplicas(service: ServiceWithSpec): DesiredReplicas {
  const replicas = service.spec.replicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 0) {
    throw new TerminalError('InvalidReplicas', `${serviceId(service)}: spec.replicas must be a non-negative integer, got ${JSON.stringify(replicas)}`);
  }
  if (!service.spec.template?.spec) {
    throw new TerminalError('InvalidTemplate', `${serviceId(service)}: spec.template.spec is required`);
  }
  const fixedName = service.metadata.annotations?.[CONTAINER_NAME_ANNOTATION];
  if (fixedName !== undefined && replicas > 1) {
    // Compose: "can't set container name and scale the service" — names must be unique.
    throw new TerminalError(
      'ContainerNameWithReplicas',
      `${serviceId(service)}: metadata.annotations["${CONTAINER_NAME_ANNOTATION}"] (container_name ${JSON.stringify(fixedName)}) ` +
        `cannot be used with spec.replicas ${replicas}: a container name must be unique`,
    );
  }
  const namespace = service.metadata.namespace ?? DEFAULT_NAMESPACE;
  return {
    replicas,
    hash: templateHash(service),
    nameOf: (n) => (fixedName !== undefined ? fixedName : `${namespace}-${service.metadata.name}-${n}`),
  };
}

/**
 * The com.docker.compose.* labels of the Service, with project and service filled in
 * when a hand-written Service lacks them: Compose puts both on every container it makes.
 */
export function composeLabels(service: Service): Record<string, string> {
  const labels: Record<string, string> = {
    [COMPOSE_LABELS.project]: service.metadata.namespace ?? DEFAULT_NAMESPACE,
    [COMPOSE_LABELS.service]: service.metadata.name,
  };
  for (const [key, value] of Object.entries(service.metadata.labels ?? {})) {
    if (key.startsWith(COMPOSE_LABEL_PREFIX)) labels[key] = value;
  }
  return labels;
}

/** First 10 hex digits of sha256 over the canonical JSON of the template and the compose labels. */
export function templateHash(service: ServiceWithSpec): string {
  const canonical = canonicalJson({ template: service.spec.template, labels: composeLabels(service) });
  return createHash('sha256').update(canonical).digest('hex').slice(0, HASH_LENGTH);
}

/** JSON with object keys sorted at every depth, so equal values always hash alike. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeysDeep(value));
}

function sortKeysDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeysDeep);
  if (value === null || typeof value !== 'object') return value;
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    const child = (value as Record<string, unknown>)[key];
    if (child !== undefined) sorted[key] = sortKeysDeep(child);
  }
  return sorted;
}

export function ownerReference(service: Service): OwnerReference {
  if (!service.metadata.uid) throw new Error(`${serviceId(service)} has no metadata.uid; it cannot own Containers`);
  return {
    apiVersion: service.apiVersion ?? API_VERSION,
    kind: 'Service',
    name: service.metadata.name,
    uid: service.metadata.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** The Container object for replica `n`. */
export function buildContainer(service: ServiceWithSpec, desired: DesiredReplicas, n: number): Container {
  const template = service.spec.template;
  return {
    apiVersion: API_VERSION,
    kind: 'Container',
    metadata: {
      name: desired.nameOf(n),
      namespace: service.metadata.namespace ?? DEFAULT_NAMESPACE,
      labels: {
        ...template.metadata?.labels,
        ...composeLabels(service),
        [COMPOSE_LABELS.containerNumber]: String(n),
        [SERVICE_LABEL]: service.metadata.name,
      },
      annotations: { ...template.metadata?.annotations, [TEMPLATE_HASH_ANNOTATION]: desired.hash },
      ownerReferences: [ownerReference(service)],
      // Born with the Container controller's finalizer, which it would otherwise add first.
      finalizers: [CONTAINER_FINALIZER],
    },
    spec: structuredClone(template.spec),
  };
}

/** The replica number from the container-number label; undefined when missing or malformed. */
export function containerNumber(container: Container): number | undefined {
  const value = container.metadata.labels?.[COMPOSE_LABELS.containerNumber];
  return value !== undefined && CONTAINER_NUMBER_PATTERN.test(value) ? Number(value) : undefined;
}

export function isControlledBy(container: Container, service: Service): boolean {
  return (container.metadata.ownerReferences ?? []).some(
    (ref) => ref.controller === true && ref.kind === 'Service' && ref.uid === service.metadata.uid,
  );
}

/**
 * A Container labelled for this Service that no controller owns (left by an orphaning
 * delete of a previous Service of the same name): adopted, as a Kubernetes ReplicaSet
 * adopts matching orphan Pods, and as Compose reuses containers carrying its labels.
 */
export function isAdoptable(container: Container, service: Service): boolean {
  return (
    container.metadata.labels?.[SERVICE_LABEL] === service.metadata.name &&
    !container.metadata.deletionTimestamp &&
    !(container.metadata.ownerReferences ?? []).some((ref) => ref.controller === true)
  );
}

export const isTerminating = (container: Container): boolean => container.metadata.deletionTimestamp !== undefined;

export function isUpToDate(container: Container, desired: DesiredReplicas): boolean {
  const n = containerNumber(container);
  return (
    n !== undefined &&
    container.metadata.annotations?.[TEMPLATE_HASH_ANNOTATION] === desired.hash &&
    container.metadata.name === desired.nameOf(n)
  );
}

export interface ReplicaPlan {
  /** Live replicas with the right number, name and hash. */
  keep: Container[];
  /** Live replicas within 1..replicas made from another template (or under another name): recreated. */
  outdated: Container[];
  /** Live containers beyond the wanted count, duplicates and unnumbered ones, highest number first. */
  surplus: Container[];
  /** Containers already being deleted: waited for, never counted. */
  terminating: Container[];
  /** Numbers in 1..replicas with no live container, lowest first. */
  missing: number[];
}

/** Sorts the Service's containers into what to keep, recreate, remove and create. */
export function planReplicas(owned: Container[], desired: DesiredReplicas): ReplicaPlan {
  const plan: ReplicaPlan = { keep: [], outdated: [], surplus: [], terminating: [], missing: [] };
  const byNumber = new Map<number, Container[]>();
  for (const container of owned) {
    const n = containerNumber(container);
    if (isTerminating(container)) plan.terminating.push(container);
    else if (n === undefined || n > desired.replicas) plan.surplus.push(container);
    else byNumber.set(n, [...(byNumber.get(n) ?? []), container]);
  }
  for (let n = 1; n <= desired.replicas; n++) {
    const candidates = byNumber.get(n) ?? [];
    if (candidates.length === 0) {
      plan.missing.push(n);
      continue;
    }
    // Two live containers claiming one number: keep the one that is up to date, if any.
    const chosen = candidates.find((c) => isUpToDate(c, desired)) ?? candidates[0];
    (isUpToDate(chosen, desired) ? plan.keep : plan.outdated).push(chosen);
    plan.surplus.push(...candidates.filter((c) => c !== chosen));
  }
  // Scale down removes the highest numbers first (Compose v2 removes the most recent
  // containers first); unnumbered containers (number 0 here) go after.
  plan.surplus.sort((a, b) => (containerNumber(b) ?? 0) - (containerNumber(a) ?? 0));
  return plan;
}
