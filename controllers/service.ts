// The Service reconciler: keeps spec.replicas Containers made from spec.template, with
// Docker Compose v2 semantics on Kubernetes ReplicaSet mechanics.
//  - Containers are named and labelled as Compose names them (service-replicas.ts) and
//    owned through a controller ownerReference, so deleting the Service garbage-collects them.
//  - Scale up creates the lowest free numbers; scale down deletes the highest first.
//  - A template change recreates (Compose does not roll): the old container is deleted,
//    and once it is really gone (its finalizers done) a new one takes the same name.
//  - depends_on (service-dependencies.ts) gates the creation of Containers only: replicas
//    already running are never stopped because a dependency went away (Compose checks
//    dependencies when it starts containers, not afterwards).
// Level-triggered: each reconcile lists what exists and acts on the difference; a
// reconcile that finds everything in place writes nothing.
import { isDeepStrictEqual } from 'node:util';
import { isApiError } from '../src/api/errors';
import { DEFAULT_NAMESPACE, type Condition } from '../src/api/meta';
import type { Container, Image, Service, ServiceStatus } from '../src/api/types';
import { getCondition, isTrue, setCondition } from './conditions';
import { TerminalError } from './errors';
import { splitKey, type Controller, type ReconcileContext, type Result } from './manager';
import { getIfExists } from './objects';
import { DependentsIndex, checkDependencies, type DependencyVerdict, type DependencyWorld } from './service-dependencies';
import {
  buildContainer,
  containerNumber,
  desiredReplicas,
  isAdoptable,
  isControlledBy,
  isTerminating,
  hasSpec,
  isUpToDate,
  ownerReference,
  planReplicas,
  serviceId,
  type DesiredReplicas,
  type ReplicaPlan,
  type ServiceWithSpec,
} from './service-replicas';

export {
  CONTAINER_NAME_ANNOTATION,
  SERVICE_LABEL,
  TEMPLATE_HASH_ANNOTATION,
  canonicalJson,
  composeLabels,
  templateHash,
} from './service-replicas';
export { DependentsIndex } from './service-dependencies';

/**
 * Safety net while Containers are being deleted: their DELETED events enqueue the Service
 * through ownerReferences already, this only bounds the wait if one is missed.
 */
export const SERVICE_DELETION_RECHECK_MS = 2_000;

export const CONDITION_DEPENDENCIES_READY = 'DependenciesReady';
export const CONDITION_AVAILABLE = 'Available';
export const CONDITION_PROGRESSING = 'Progressing';
/** Mirrors Available; also what the manager marks False on a failed reconcile, so it is ours to clear. */
export const CONDITION_READY = 'Ready';

export interface ServiceReconcileHooks {
  /** Called when the Service no longer exists. */
  onGone?: (key: string) => void;
}

export function serviceController(): Controller {
  const index = new DependentsIndex();
  return {
    kind: 'Service',
    owns: ['Container'],
    // Each reconcile is a few API round trips; with two workers `up` of 10 services made
    // their containers two at a time (~200 ms a pair, measured).
    workers: 32,
    // A dependency's Service or Containers changing may let a waiting dependent go on.
    watches: [
      { kind: 'Service', map: (obj) => index.onService(obj) },
      { kind: 'Container', map: (obj) => index.onContainer(obj) },
    ],
    reconcile: (key, ctx) => reconcileService(key, ctx, { onGone: (gone) => index.forget(gone) }),
  };
}

export async function reconcileService(key: string, ctx: ReconcileContext, hooks: ServiceReconcileHooks = {}): Promise<Result | void> {
  const { namespace, name } = splitKey(key);
  const service = await getService(ctx, namespace, name);
  if (!service) {
    hooks.onGone?.(key);
    return;
  }
  // Being deleted: the garbage collector removes the Containers it owns; creating more
  // would only race it (a Kubernetes ReplicaSet stops managing Pods once deleted, too).
  if (service.metadata.deletionTimestamp) return;
  const desired = desiredReplicas(service);
  const containers = (await ctx.client('Container').list({ namespace })).items as Container[];
  const owned = await adoptOrphans(ctx, service, containers);
  const outcome = await converge(ctx, service, desired, planReplicas(owned, desired), containers);
  const before = structuredClone(service.status ?? {});
  const status = buildStatus(service, desired, outcome);
  if (!isDeepStrictEqual(status, before)) await ctx.client('Service').updateStatus({ ...service, status });
  await recordTransitions(ctx, service, before, status, outcome);
  if (outcome.verdict?.state === 'Invalid') throw new TerminalError(outcome.verdict.reason, invalidMessage(service, outcome.verdict));
  if (outcome.terminating.length > 0) return { requeueAfter: SERVICE_DELETION_RECHECK_MS };
}

async function getService(ctx: ReconcileContext, namespace: string, name: string): Promise<ServiceWithSpec | undefined> {
  const service = await getIfExists<Service>(ctx.client('Service'), namespace, name);
  if (!service) return undefined;
  if (!hasSpec(service)) throw new TerminalError('InvalidSpec', `${serviceId(service)}: spec is required`);
  return service;
}

/** The Containers this Service controls, after adopting orphans labelled for it. */
async function adoptOrphans(ctx: ReconcileContext, service: ServiceWithSpec, containers: Container[]): Promise<Container[]> {
  const owned: Container[] = [];
  for (const container of containers) {
    if (isControlledBy(container, service)) owned.push(container);
    else if (isAdoptable(container, service)) {
      const refs = [...(container.metadata.ownerReferences ?? []), ownerReference(service)];
      owned.push((await ctx.client('Container').update({ ...container, metadata: { ...container.metadata, ownerReferences: refs } })) as Container);
      await ctx.events.record(service, 'Normal', 'Adopted', `adopted orphan container ${container.metadata.name}`);
    }
  }
  return owned;
}

/** What one reconcile did and saw, for status and events. */
interface Outcome {
  /** Replicas that exist and are not being deleted, after acting. */
  live: Container[];
  /** Our Containers still being deleted (finalizers pending), after acting. */
  terminating: Container[];
  scaledDown: string[];
  recreating: string[];
  created: string[];
  /** Set when some Container had to be created or recreated, so dependencies were checked. */
  verdict?: DependencyVerdict;
}

async function converge(
  ctx: ReconcileContext,
  service: ServiceWithSpec,
  desired: DesiredReplicas,
  plan: ReplicaPlan,
  containers: Container[],
): Promise<Outcome> {
  const outcome: Outcome = { live: [...plan.keep], terminating: [...plan.terminating], scaledDown: [], recreating: [], created: [] };
  // Scale down never waits for dependencies: removing replicas needs nothing from them.
  for (const container of plan.surplus) {
    const remains = await deleteContainer(ctx, container);
    if (remains) outcome.terminating.push(remains);
    outcome.scaledDown.push(container.metadata.name);
  }
  if (plan.missing.length === 0 && plan.outdated.length === 0) return outcome;
  outcome.verdict = await checkDependencies(service, await dependencyWorld(ctx, service, containers));
  if (outcome.verdict.state !== 'Satisfied') {
    // The outdated replicas keep running until their replacements may start.
    outcome.live.push(...plan.outdated);
    return outcome;
  }
  for (const container of plan.outdated) {
    const remains = await deleteContainer(ctx, container);
    if (remains) outcome.terminating.push(remains);
    outcome.recreating.push(container.metadata.name);
  }
  const numbers = [...plan.missing, ...plan.outdated.flatMap((c) => containerNumber(c) ?? [])].sort((a, b) => a - b);
  const held = heldNames(containers, outcome.terminating);
  const deletedUids = new Set([...plan.surplus, ...plan.outdated].map((c) => c.metadata.uid));
  for (const n of numbers) {
    const name = desired.nameOf(n);
    if (held.has(name)) continue; // its previous holder is still being deleted
    assertNameFree(service, name, containers, deletedUids);
    outcome.live.push(await createContainer(ctx, service, desired, n));
    outcome.created.push(name);
  }
  return outcome;
}

async function dependencyWorld(ctx: ReconcileContext, service: ServiceWithSpec, containers: Container[]): Promise<DependencyWorld> {
  const services = new Map<string, ServiceWithSpec>();
  if ((service.spec.dependsOn ?? []).length > 0) {
    const list = await ctx.client('Service').list({ namespace: service.metadata.namespace ?? DEFAULT_NAMESPACE });
    for (const item of list.items as Service[]) if (hasSpec(item)) services.set(item.metadata.name, item);
  }
  let images: Promise<Image[]> | undefined;
  const loadImages = async () => (await ctx.client('Image').list({ namespace: service.metadata.namespace ?? DEFAULT_NAMESPACE })).items as Image[];
  return { services, containers, images: () => (images ??= loadImages()) };
}

/** Names still taken by an object in the store, so that a new Container cannot use them yet. */
function heldNames(containers: Container[], terminating: Container[]): Set<string> {
  return new Set([...containers.filter(isTerminating), ...terminating].map((c) => c.metadata.name));
}

/**
 * A live Container of that name blocks creation unless it is one we deleted during this
 * reconcile (gone now: its name is free). Another Service's or a hand-made Container is
 * a conflict, as in Compose; retried with back-off, since it may be removed.
 */
function assertNameFree(service: ServiceWithSpec, name: string, containers: Container[], deletedUids: Set<string | undefined>): void {
  const occupant = containers.find((c) => c.metadata.name === name && !isTerminating(c));
  if (!occupant || deletedUids.has(occupant.metadata.uid)) return;
  const owner = occupant.metadata.ownerReferences?.find((r) => r.controller)?.name;
  throw new Error(
    `${serviceId(service)}: cannot create container "${name}": a container of that name already exists` +
      (owner ? ` and is controlled by ${owner}` : ' and is not controlled by this service') +
      ' (container names must be unique; remove it or rename one of them)',
  );
}

/** Deletes `container`; returns it if it still exists (finalizers pending), undefined once gone. */
async function deleteContainer(ctx: ReconcileContext, container: Container): Promise<Container | undefined> {
  const namespace = container.metadata.namespace ?? DEFAULT_NAMESPACE;
  try {
    // The uid precondition keeps us from deleting a newer object that took the same name.
    const result = (await ctx.client('Container').delete(namespace, container.metadata.name, {
      preconditionUid: container.metadata.uid,
    })) as Container;
    return result.metadata.deletionTimestamp ? result : undefined;
  } catch (error) {
    if (isApiError(error, 'NotFound')) return undefined;
    throw new Error(`deleting container "${namespace}/${container.metadata.name}"`, { cause: error });
  }
}

async function createContainer(ctx: ReconcileContext, service: ServiceWithSpec, desired: DesiredReplicas, n: number): Promise<Container> {
  const container = buildContainer(service, desired, n);
  try {
    return (await ctx.client('Container').create(container)) as Container;
  } catch (error) {
    throw new Error(`${serviceId(service)}: creating container "${container.metadata.name}" (replica ${n})`, { cause: error });
  }
}

// ------------------------------------------------------------------------------ status

function buildStatus(service: ServiceWithSpec, desired: DesiredReplicas, outcome: Outcome): ServiceStatus {
  const status: ServiceStatus = structuredClone(service.status ?? {});
  const generation = service.metadata.generation;
  status.replicas = outcome.live.length;
  status.readyReplicas = outcome.live.filter((c) => isTrue(c.status, CONDITION_READY)).length;
  status.updatedReplicas = outcome.live.filter((c) => isUpToDate(c, desired)).length;
  status.templateHash = desired.hash;
  if (generation !== undefined) status.observedGeneration = generation;
  const set = (cond: Omit<Condition, 'observedGeneration'>) => setCondition(status, { ...cond, observedGeneration: generation });
  set(dependenciesCondition(service, outcome.verdict));
  const available = availableCondition(desired, status);
  set(available);
  set(progressingCondition(desired, outcome, status));
  if (outcome.verdict?.state === 'Invalid') {
    // Word for word what the manager records for the TerminalError, so that its own
    // Ready=False write finds nothing to change and the two writers never alternate.
    set({ type: CONDITION_READY, status: 'False', reason: outcome.verdict.reason, message: invalidMessage(service, outcome.verdict) });
  } else {
    set({ ...available, type: CONDITION_READY });
  }
  return status;
}

function invalidMessage(service: ServiceWithSpec, verdict: Extract<DependencyVerdict, { state: 'Invalid' }>): string {
  return `${serviceId(service)}: ${verdict.field}: ${verdict.message}`;
}

function dependenciesCondition(service: ServiceWithSpec, verdict: DependencyVerdict | undefined): Omit<Condition, 'observedGeneration'> {
  const type = CONDITION_DEPENDENCIES_READY;
  if ((service.spec.dependsOn ?? []).length === 0) {
    return { type, status: 'True', reason: 'NoDependencies', message: 'service has no dependencies' };
  }
  if (!verdict) {
    // Nothing to create: dependencies are not re-checked for running replicas. A True
    // condition stays as it was; anything else no longer holds anyone back.
    const current = getCondition(service.status, type);
    if (current?.status === 'True') return { type, status: 'True', reason: current.reason, message: current.message };
    return { type, status: 'True', reason: 'NoReplicaWaiting', message: 'no replica is waiting for its dependencies' };
  }
  switch (verdict.state) {
    case 'Satisfied':
      return { type, status: 'True', reason: 'DependenciesSatisfied', message: verdict.message };
    case 'Waiting':
      return { type, status: 'False', reason: 'WaitingForDependencies', message: verdict.message };
    case 'Failed':
      return { type, status: 'False', reason: 'DependencyFailed', message: verdict.message };
    case 'Invalid':
      return { type, status: 'False', reason: verdict.reason, message: `${verdict.field}: ${verdict.message}` };
  }
}

function availableCondition(desired: DesiredReplicas, status: ServiceStatus): Omit<Condition, 'observedGeneration'> {
  const ready = status.readyReplicas ?? 0;
  const message = `${ready}/${desired.replicas} replicas ready`;
  const available = ready >= desired.replicas && status.replicas === desired.replicas;
  // Reasons as a Kubernetes Deployment's Available condition.
  return available
    ? { type: CONDITION_AVAILABLE, status: 'True', reason: 'MinimumReplicasAvailable', message }
    : { type: CONDITION_AVAILABLE, status: 'False', reason: 'MinimumReplicasUnavailable', message };
}

/**
 * As a Kubernetes Deployment's Progressing condition: True while converging and once
 * converged; False only when progress is blocked (here: by dependencies).
 */
function progressingCondition(desired: DesiredReplicas, outcome: Outcome, status: ServiceStatus): Omit<Condition, 'observedGeneration'> {
  const type = CONDITION_PROGRESSING;
  const verdict = outcome.verdict;
  if (verdict && verdict.state !== 'Satisfied') {
    const reason = verdict.state === 'Waiting' ? 'WaitingForDependencies' : verdict.state === 'Failed' ? 'DependencyFailed' : verdict.reason;
    return { type, status: 'False', reason, message: verdict.message };
  }
  const converged =
    status.replicas === desired.replicas && status.updatedReplicas === desired.replicas && outcome.terminating.length === 0;
  if (converged) return { type, status: 'True', reason: 'ReplicasUpToDate', message: `${desired.replicas} replicas up to date (template ${desired.hash})` };
  const names = (list: string[]) => list.join(', ');
  if (outcome.recreating.length > 0) return { type, status: 'True', reason: 'Recreating', message: `recreating ${names(outcome.recreating)} from template ${desired.hash}` };
  if (outcome.scaledDown.length > 0) return { type, status: 'True', reason: 'ScalingDown', message: `deleted ${names(outcome.scaledDown)}` };
  if (outcome.created.length > 0) return { type, status: 'True', reason: 'ScalingUp', message: `created ${names(outcome.created)}` };
  const waitingFor = names(outcome.terminating.map((c) => c.metadata.name));
  return { type, status: 'True', reason: 'WaitingForDeletion', message: `waiting for ${waitingFor} to be deleted` };
}

// ------------------------------------------------------------------------------ events

/** Events for what was done now, and for dependency state transitions (not every reconcile). */
async function recordTransitions(ctx: ReconcileContext, service: ServiceWithSpec, before: ServiceStatus, after: ServiceStatus, outcome: Outcome): Promise<void> {
  if (outcome.scaledDown.length > 0) {
    await ctx.events.record(service, 'Normal', 'ScalingDown', `scaled down to ${desiredCount(service)}: deleted ${outcome.scaledDown.join(', ')}`);
  }
  if (outcome.recreating.length > 0) {
    await ctx.events.record(service, 'Normal', 'Recreating', `template changed to ${after.templateHash}: deleting ${outcome.recreating.join(', ')} to recreate`);
  }
  if (outcome.created.length > 0) {
    await ctx.events.record(service, 'Normal', 'ScalingUp', `created ${outcome.created.join(', ')}`);
  }
  const was = getCondition(before, CONDITION_DEPENDENCIES_READY);
  const now = getCondition(after, CONDITION_DEPENDENCIES_READY);
  if (!now || (was?.status === now.status && was.reason === now.reason)) return;
  if (now.reason === 'WaitingForDependencies') await ctx.events.record(service, 'Normal', 'WaitingForDependencies', now.message ?? '');
  if (now.reason === 'DependencyFailed') await ctx.events.record(service, 'Warning', 'DependencyFailed', now.message ?? '');
  if (outcome.verdict?.state === 'Satisfied' && outcome.verdict.ignored.length > 0) {
    await ctx.events.record(service, 'Normal', 'DependencyIgnored', outcome.verdict.ignored.join('; '));
  }
}

const desiredCount = (service: ServiceWithSpec) => service.spec.replicas ?? 1;
