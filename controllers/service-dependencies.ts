// depends_on for Services, with Docker Compose v2 semantics (pkg/compose/convergence.go,
// waitDependencies / isServiceHealthy / isServiceCompleted):
//  - service_started: the dependency has a container that started (Running, or already
//    Exited with code 0);
//  - service_healthy: every replica of the dependency is Running and healthy; a dependency
//    with no healthcheck is an error ("container X has no healthcheck configured"), an
//    exited or unhealthy one is a failed dependency;
//  - service_completed_successfully: every replica exited with code 0; a non-zero exit is
//    a failed dependency ("service X didn't complete successfully");
//  - a dependency scaled to 0 is not waited for (Compose's shouldWaitForDependency);
//  - a missing dependency with `required: false` is ignored (Compose warns and goes on).
// Unlike `docker compose up`, which gives up on a failed dependency, a controller keeps
// looking: the failure is reported, and creation proceeds if the dependency recovers.
import { DEFAULT_NAMESPACE, type ApiObject } from '../src/api/meta';
import type { Container, Dependency, DependencyCondition, Healthcheck, Image, ImageHealthcheck, Service } from '../src/api/types';
import { ownerKeys } from './manager';
import { isControlledBy, isTerminating, type ServiceWithSpec } from './service-replicas';

export type DependencyVerdict =
  /** Every dependency holds; `ignored` lists optional dependencies that do not exist. */
  | { state: 'Satisfied'; message: string; ignored: string[] }
  | { state: 'Waiting'; message: string }
  | { state: 'Failed'; message: string }
  /** A dependency cannot ever hold as declared (a spec problem: TerminalError). */
  | { state: 'Invalid'; reason: string; message: string; field: string };

/** What the reconciler already read, plus a lazy look at Images (needed only for some healthchecks). */
export interface DependencyWorld {
  services: Map<string, ServiceWithSpec>;
  containers: Container[];
  images: () => Promise<Image[]>;
}

type Check =
  | { state: 'Holds' }
  | { state: 'Ignored'; message: string }
  | { state: 'Waiting'; message: string }
  | { state: 'Failed'; message: string }
  | { state: 'Invalid'; reason: string; message: string };

export async function checkDependencies(service: ServiceWithSpec, world: DependencyWorld): Promise<DependencyVerdict> {
  const dependencies = service.spec.dependsOn ?? [];
  const ignored: string[] = [];
  const waiting: string[] = [];
  const failed: string[] = [];
  for (const [i, dependency] of dependencies.entries()) {
    const check = await checkDependency(dependency, world);
    if (check.state === 'Invalid') return { ...check, field: `spec.dependsOn[${i}]` };
    if (check.state === 'Ignored') ignored.push(check.message);
    if (check.state === 'Waiting') waiting.push(check.message);
    if (check.state === 'Failed') failed.push(check.message);
  }
  if (failed.length > 0) return { state: 'Failed', message: failed.join('; ') };
  if (waiting.length > 0) return { state: 'Waiting', message: waiting.join('; ') };
  const names = dependencies.map((d) => d.name).join(', ');
  const base = dependencies.length === 0 ? 'service has no dependencies' : `dependencies hold: ${names}`;
  return { state: 'Satisfied', message: [base, ...ignored].join('; '), ignored };
}

async function checkDependency(dependency: Dependency, world: DependencyWorld): Promise<Check> {
  const target = world.services.get(dependency.name);
  if (!target || target.metadata.deletionTimestamp) {
    if (dependency.required === false) {
      return { state: 'Ignored', message: `optional dependency ${dependency.name} does not exist and is ignored` };
    }
    return { state: 'Waiting', message: `waiting for service ${dependency.name}, which does not exist` };
  }
  // Compose does not wait for a dependency configured to run no container.
  if ((target.spec.replicas ?? 1) === 0) return { state: 'Holds' };
  const replicas = world.containers.filter((c) => isControlledBy(c, target) && !isTerminating(c));
  const condition: DependencyCondition = dependency.condition ?? 'service_started';
  switch (condition) {
    case 'service_started':
      return checkStarted(dependency.name, target, replicas);
    case 'service_healthy':
      return checkHealthy(dependency.name, target, replicas, world);
    case 'service_completed_successfully':
      return checkCompleted(dependency.name, target, replicas);
  }
}

const exitedOk = (c: Container) => c.status?.phase === 'Exited' && c.status.exitCode === 0;
const exitedBadly = (c: Container) => (c.status?.phase === 'Exited' && c.status.exitCode !== 0) || c.status?.phase === 'Failed';
const exitDescription = (c: Container) =>
  c.status?.phase === 'Failed'
    ? `container ${c.metadata.name} failed${c.status.message ? `: ${c.status.message}` : ''}`
    : `container ${c.metadata.name} exited with code ${c.status?.exitCode ?? 'unknown'}`;

/** "n/m": how many of the replicas (at least the wanted count) satisfy the condition. */
function fraction(count: number, target: ServiceWithSpec, replicas: Container[]): string {
  return `${count}/${Math.max(target.spec.replicas ?? 1, replicas.length)}`;
}

function checkStarted(name: string, target: ServiceWithSpec, replicas: Container[]): Check {
  const started = replicas.filter((c) => c.status?.phase === 'Running' || exitedOk(c));
  if (started.length > 0) return { state: 'Holds' };
  return { state: 'Waiting', message: `waiting for service ${name} to be started (${fraction(0, target, replicas)} running)` };
}

function checkCompleted(name: string, target: ServiceWithSpec, replicas: Container[]): Check {
  const bad = replicas.find(exitedBadly);
  if (bad) return { state: 'Failed', message: `service ${name} did not complete successfully: ${exitDescription(bad)}` };
  const done = replicas.filter(exitedOk).length;
  if (done >= (target.spec.replicas ?? 1) && done === replicas.length) return { state: 'Holds' };
  return { state: 'Waiting', message: `waiting for service ${name} to complete successfully (${fraction(done, target, replicas)} completed)` };
}

async function checkHealthy(name: string, target: ServiceWithSpec, replicas: Container[], world: DependencyWorld): Promise<Check> {
  const healthcheck = await healthcheckOf(target, replicas, world);
  if (healthcheck === 'none') {
    return {
      state: 'Invalid',
      reason: 'DependencyHasNoHealthcheck',
      message: `dependency ${name} has no healthcheck, so condition service_healthy can never hold`,
    };
  }
  const exited = replicas.find((c) => c.status?.phase === 'Exited' || c.status?.phase === 'Failed');
  if (exited) return { state: 'Failed', message: `service ${name} is not healthy: ${exitDescription(exited)}` };
  const unhealthy = replicas.find((c) => c.status?.health === 'unhealthy');
  if (unhealthy) return { state: 'Failed', message: `service ${name} is not healthy: container ${unhealthy.metadata.name} is unhealthy` };
  const healthy = replicas.filter((c) => c.status?.phase === 'Running' && c.status.health === 'healthy').length;
  if (healthy >= (target.spec.replicas ?? 1) && healthy === replicas.length) return { state: 'Holds' };
  return { state: 'Waiting', message: `waiting for service ${name} to be healthy (${fraction(healthy, target, replicas)} healthy)` };
}

/**
 * Whether the dependency's containers run a healthcheck. As in Docker, the template's
 * healthcheck overrides the image's (HEALTHCHECK in its config), and `disable`/["NONE"]
 * turns it off. "unknown" while the answer depends on an image not pulled yet.
 */
async function healthcheckOf(target: ServiceWithSpec, replicas: Container[], world: DependencyWorld): Promise<'yes' | 'none' | 'unknown'> {
  const declared = target.spec.template.spec.healthcheck;
  if (declared) return isActive(declared) ? 'yes' : 'none';
  if (replicas.some((c) => c.status?.health !== undefined)) return 'yes';
  const imageRef = target.spec.template.spec.image;
  const namespace = target.metadata.namespace ?? DEFAULT_NAMESPACE;
  const images = (await world.images()).filter((i) => (i.metadata.namespace ?? DEFAULT_NAMESPACE) === namespace && i.spec?.ref === imageRef);
  if (images.some((i) => i.status?.config?.healthcheck && isActive(i.status.config.healthcheck))) return 'yes';
  if (images.some((i) => i.status?.config !== undefined)) return 'none';
  // A running container without a health state has no healthcheck: Compose inspects it
  // and fails with "has no healthcheck configured".
  if (replicas.some((c) => c.status?.phase === 'Running')) return 'none';
  return 'unknown';
}

function isActive(healthcheck: Healthcheck | ImageHealthcheck): boolean {
  if ('disable' in healthcheck && healthcheck.disable === true) return false;
  const test = healthcheck.test ?? [];
  return test.length > 0 && test[0] !== 'NONE';
}

/**
 * Which Services depend on which, learnt from the Service events the manager passes to
 * the watch map functions (which are synchronous, so they cannot list). A deleted
 * Service looks like any other event there; its stale entries only cause a needless
 * reconcile of a dependent, and are dropped when the deleted Service's own reconcile
 * finds it gone (forget).
 */
export class DependentsIndex {
  /** "ns/dependency" → keys ("ns/name") of the Services depending on it. */
  private readonly dependents = new Map<string, Set<string>>();
  /** key → the "ns/dependency" keys it depends on, to undo them when it changes. */
  private readonly dependencies = new Map<string, string[]>();

  observe(service: Service): void {
    const namespace = service.metadata.namespace ?? DEFAULT_NAMESPACE;
    const key = `${namespace}/${service.metadata.name}`;
    this.forget(key);
    const targets = (service.spec?.dependsOn ?? []).map((d) => `${namespace}/${d.name}`);
    if (targets.length === 0) return;
    this.dependencies.set(key, targets);
    for (const target of targets) {
      const set = this.dependents.get(target) ?? new Set<string>();
      set.add(key);
      this.dependents.set(target, set);
    }
  }

  forget(key: string): void {
    for (const target of this.dependencies.get(key) ?? []) {
      const set = this.dependents.get(target);
      set?.delete(key);
      if (set?.size === 0) this.dependents.delete(target);
    }
    this.dependencies.delete(key);
  }

  /** Keys of the Services that depend on the Service `key`. */
  dependentsOf(key: string): string[] {
    return [...(this.dependents.get(key) ?? [])];
  }

  /** Watch map for Service events: learns the Service's own dependencies, returns its dependents. */
  onService(obj: ApiObject): string[] {
    const service = obj as Service;
    this.observe(service);
    return this.dependentsOf(`${service.metadata.namespace ?? DEFAULT_NAMESPACE}/${service.metadata.name}`);
  }

  /** Watch map for Container events: the dependents of the Service owning the Container. */
  onContainer(obj: ApiObject): string[] {
    return ownerKeys(obj, 'Service').flatMap((owner) => this.dependentsOf(owner));
  }
}
