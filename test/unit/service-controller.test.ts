import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { EventObject } from '../../src/api/meta';
import type { Container, ContainerStatus, Dependency, Image, Service, ServiceSpec } from '../../src/api/types';
import { resolvePaths, type Paths } from '../../src/config';
import { getCondition } from '../../controllers/conditions';
import { TerminalError } from '../../controllers/errors';
import { createJsonLogger } from '../../controllers/logger';
import type { Manager, ReconcileContext } from '../../controllers/manager';
import {
  DependentsIndex,
  SERVICE_LABEL,
  TEMPLATE_HASH_ANNOTATION,
  canonicalJson,
  reconcileService,
  serviceController,
  templateHash,
} from '../../controllers/service';
import { fakeReconcileContext, startFakeManager, stopManagerAndRemoveDir } from '../helpers/controller-context';
import { FakeApi } from '../helpers/fake-client';
import { CONTAINER_FINALIZER } from '../../controllers/finalizers';

const NS = 'shop';
const FINALIZER = 'd2p.dev/test-container-cleanup';

let tmp: string;
let paths: Paths;
let api: FakeApi;
let manager: Manager | undefined;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-service-'));
  paths = resolvePaths({ root: path.join(tmp, 'root') });
  // No Container controller here: its finalizer, which the Service puts on, is let go at once.
  api = new FakeApi({ releasedFinalizers: [CONTAINER_FINALIZER] });
});

afterEach(async () => {
  const started = manager;
  manager = undefined;
  await stopManagerAndRemoveDir(started, tmp);
});

const logger = createJsonLogger({ write: () => undefined });

function directContext(): ReconcileContext {
  return fakeReconcileContext(api, { component: 'service-controller', paths, logger });
}

const ctx = () => directContext();
const reconcile = (name: string) => reconcileService(`${NS}/${name}`, ctx());

interface ServiceOptions {
  replicas?: number;
  image?: string;
  dependsOn?: Dependency[];
  healthcheck?: ServiceSpec['template']['spec']['healthcheck'];
  annotations?: Record<string, string>;
  templateLabels?: Record<string, string>;
}

function service(name: string, opts: ServiceOptions = {}): Service {
  return {
    apiVersion: 'd2p.dev/v1alpha1',
    kind: 'Service',
    metadata: {
      name,
      namespace: NS,
      labels: { 'com.docker.compose.project': NS, 'com.docker.compose.service': name, team: 'not-compose' },
      ...(opts.annotations ? { annotations: opts.annotations } : {}),
    },
    spec: {
      replicas: opts.replicas ?? 1,
      template: {
        metadata: { labels: opts.templateLabels ?? { tier: 'web' } },
        spec: { image: opts.image ?? 'busybox:1.36', command: ['sleep', '3600'], ...(opts.healthcheck ? { healthcheck: opts.healthcheck } : {}) },
      },
      ...(opts.dependsOn ? { dependsOn: opts.dependsOn } : {}),
    },
  };
}

async function createService(name: string, opts: ServiceOptions = {}): Promise<Service> {
  return (await api.for('Service').create(service(name, opts))) as Service;
}

async function updateService(name: string, change: (s: Service) => void): Promise<void> {
  const current = (await api.for('Service').get(NS, name)) as Service;
  change(current);
  await api.for('Service').update(current);
}

const getService = (name: string) => api.peek('Service', NS, name) as Service;
const containersOf = (name: string) =>
  (api.all('Container') as Container[])
    .filter((c) => c.metadata.labels?.[SERVICE_LABEL] === name)
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
const namesOf = (name: string) => containersOf(name).map((c) => c.metadata.name);
const container = (name: string) => api.peek('Container', NS, name) as Container | undefined;
const events = () => api.all('Event') as EventObject[];
const eventsWithReason = (reason: string) => events().filter((e) => e.reason === reason);
const writes = () =>
  (['create', 'update', 'updateStatus', 'delete', 'patch'] as const).reduce(
    (sum, verb) => sum + api.callCount('Container', verb) + api.callCount('Service', verb) + api.callCount('Event', verb),
    0,
  );

/** Plays the Container controller's part: writes a Container's status. */
async function setContainerStatus(name: string, status: ContainerStatus): Promise<void> {
  const current = (await api.for('Container').get(NS, name)) as Container;
  await api.for('Container').updateStatus({ ...current, status });
}

const running = (extra: ContainerStatus = {}): ContainerStatus => ({ phase: 'Running', ...extra });
const ready = (extra: ContainerStatus = {}): ContainerStatus => ({
  phase: 'Running',
  conditions: [{ type: 'Ready', status: 'True' }],
  ...extra,
});

/** Plays the Container controller's finalizer, so deletion waits until the test releases it. */
async function addFinalizer(name: string): Promise<void> {
  const current = (await api.for('Container').get(NS, name)) as Container;
  await api.for('Container').update({ ...current, metadata: { ...current.metadata, finalizers: [FINALIZER] } });
}

async function releaseFinalizer(name: string): Promise<void> {
  const current = (await api.for('Container').get(NS, name)) as Container;
  await api.for('Container').update({ ...current, metadata: { ...current.metadata, finalizers: [] } });
}

describe('Service controller: replicas', () => {
  it('creates replicas named <project>-<service>-<n> with labels, hash annotation, owner and the template spec', async () => {
    const svc = await createService('web', { replicas: 3 });
    await reconcile('web');
    expect(namesOf('web')).toEqual(['shop-web-1', 'shop-web-2', 'shop-web-3']);
    const hash = templateHash(svc as Service & { spec: ServiceSpec });
    expect(hash).toMatch(/^[0-9a-f]{10}$/);
    for (const [i, c] of containersOf('web').entries()) {
      expect(c.metadata.labels).toEqual({
        tier: 'web',
        'com.docker.compose.project': NS,
        'com.docker.compose.service': 'web',
        'com.docker.compose.container-number': String(i + 1),
        [SERVICE_LABEL]: 'web',
      });
      expect(c.metadata.annotations).toEqual({ [TEMPLATE_HASH_ANNOTATION]: hash });
      expect(c.metadata.ownerReferences).toEqual([
        { apiVersion: 'd2p.dev/v1alpha1', kind: 'Service', name: 'web', uid: svc.metadata.uid, controller: true, blockOwnerDeletion: true },
      ]);
      expect(c.spec).toEqual(svc.spec!.template.spec);
      // Created with the Container controller's finalizer, so it has no write to make first.
      expect(c.metadata.finalizers).toEqual([CONTAINER_FINALIZER]);
    }
    const status = getService('web').status!;
    expect(status).toMatchObject({ replicas: 3, readyReplicas: 0, updatedReplicas: 3, templateHash: hash, observedGeneration: 1 });
    expect(getCondition(status, 'Available')).toMatchObject({ status: 'False', message: '0/3 replicas ready' });
    expect(getCondition(status, 'DependenciesReady')).toMatchObject({ status: 'True', reason: 'NoDependencies' });
    expect(eventsWithReason('ScalingUp').map((e) => e.message)).toEqual(['created shop-web-1, shop-web-2, shop-web-3']);
  });

  it('counts ready replicas from the Containers Ready condition and clears a stale Ready=False', async () => {
    await createService('web', { replicas: 3 });
    await reconcile('web');
    // What the manager leaves after a failed reconcile.
    const svc = getService('web');
    await api.for('Service').updateStatus({
      ...svc,
      status: { ...svc.status, conditions: [...svc.status!.conditions!, { type: 'Ready', status: 'False', reason: 'ReconcileError', message: 'boom' }] },
    });
    await setContainerStatus('shop-web-1', ready());
    await setContainerStatus('shop-web-2', ready());
    await setContainerStatus('shop-web-3', running());
    await reconcile('web');
    let status = getService('web').status!;
    expect(status).toMatchObject({ replicas: 3, readyReplicas: 2, updatedReplicas: 3 });
    expect(getCondition(status, 'Available')).toMatchObject({ status: 'False', reason: 'MinimumReplicasUnavailable', message: '2/3 replicas ready' });
    expect(getCondition(status, 'Ready')).toMatchObject({ status: 'False', reason: 'MinimumReplicasUnavailable' });
    await setContainerStatus('shop-web-3', ready());
    await reconcile('web');
    status = getService('web').status!;
    expect(status.readyReplicas).toBe(3);
    expect(getCondition(status, 'Available')).toMatchObject({ status: 'True', reason: 'MinimumReplicasAvailable', message: '3/3 replicas ready' });
    expect(getCondition(status, 'Ready')).toMatchObject({ status: 'True', reason: 'MinimumReplicasAvailable' });
    expect(getCondition(status, 'Progressing')).toMatchObject({ status: 'True', reason: 'ReplicasUpToDate' });
  });

  it('scales 3 → 1 deleting the highest numbers first, then 1 → 2 creating number 2', async () => {
    await createService('web', { replicas: 3 });
    await reconcile('web');
    const firstUid = container('shop-web-1')!.metadata.uid;
    await updateService('web', (s) => (s.spec!.replicas = 1));
    const deletesBefore = api.calls.filter((c) => c.kind === 'Container' && c.verb === 'delete').length;
    await reconcile('web');
    const deletes = api.calls.filter((c) => c.kind === 'Container' && c.verb === 'delete').slice(deletesBefore);
    expect(deletes.map((c) => c.key)).toEqual(['shop/shop-web-3', 'shop/shop-web-2']);
    expect(namesOf('web')).toEqual(['shop-web-1']);
    expect(container('shop-web-1')!.metadata.uid).toBe(firstUid);
    expect(getService('web').status).toMatchObject({ replicas: 1, observedGeneration: 2 });
    expect(eventsWithReason('ScalingDown').map((e) => e.message)).toEqual(['scaled down to 1: deleted shop-web-3, shop-web-2']);

    await updateService('web', (s) => (s.spec!.replicas = 2));
    await reconcile('web');
    expect(namesOf('web')).toEqual(['shop-web-1', 'shop-web-2']);
    expect(container('shop-web-1')!.metadata.uid).toBe(firstUid);
  });

  it('fills the lowest free number first', async () => {
    await createService('web', { replicas: 3 });
    await reconcile('web');
    const thirdUid = container('shop-web-3')!.metadata.uid;
    await api.for('Container').delete(NS, 'shop-web-1');
    await api.for('Container').delete(NS, 'shop-web-2');
    await updateService('web', (s) => (s.spec!.replicas = 2));
    await reconcile('web');
    // Number 3 is beyond the count and goes; 1 and 2 are made again.
    expect(namesOf('web')).toEqual(['shop-web-1', 'shop-web-2']);
    expect((api.all('Container') as Container[]).some((c) => c.metadata.uid === thirdUid)).toBe(false);
  });

  it('does not count Containers being deleted, and reuses their name only once they are gone', async () => {
    await createService('web', { replicas: 2 });
    await reconcile('web');
    await addFinalizer('shop-web-2');
    const oldUid = container('shop-web-2')!.metadata.uid;
    await api.for('Container').delete(NS, 'shop-web-2');
    const result = await reconcile('web');
    expect(result).toMatchObject({ requeueAfter: expect.any(Number) });
    expect(container('shop-web-2')!.metadata.uid).toBe(oldUid);
    expect(container('shop-web-2')!.metadata.deletionTimestamp).toBeDefined();
    const status = getService('web').status!;
    expect(status).toMatchObject({ replicas: 1, updatedReplicas: 1 });
    expect(getCondition(status, 'Progressing')).toMatchObject({ status: 'True', reason: 'WaitingForDeletion', message: 'waiting for shop-web-2 to be deleted' });

    await releaseFinalizer('shop-web-2');
    expect(container('shop-web-2')).toBeUndefined();
    expect(await reconcile('web')).toBeUndefined();
    expect(container('shop-web-2')!.metadata.uid).not.toBe(oldUid);
    expect(getService('web').status).toMatchObject({ replicas: 2 });
  });

  it('recreates on template change only after the old Container is really gone', async () => {
    await createService('web', { replicas: 2 });
    await reconcile('web');
    const oldHash = getService('web').status!.templateHash;
    const oldUids = containersOf('web').map((c) => c.metadata.uid);
    for (const name of namesOf('web')) await addFinalizer(name);

    await updateService('web', (s) => (s.spec!.template.spec.image = 'busybox:1.37'));
    const result = await reconcile('web');
    expect(result).toMatchObject({ requeueAfter: expect.any(Number) });
    expect(containersOf('web').every((c) => c.metadata.deletionTimestamp !== undefined)).toBe(true);
    let status = getService('web').status!;
    expect(status.templateHash).not.toBe(oldHash);
    expect(status).toMatchObject({ replicas: 0, updatedReplicas: 0 });
    expect(getCondition(status, 'Progressing')).toMatchObject({ reason: 'Recreating' });
    expect(eventsWithReason('Recreating')).toHaveLength(1);

    await releaseFinalizer('shop-web-1');
    await reconcile('web');
    expect(container('shop-web-1')!.spec!.image).toBe('busybox:1.37');
    expect(container('shop-web-1')!.metadata.annotations![TEMPLATE_HASH_ANNOTATION]).toBe(status.templateHash);
    expect(oldUids).not.toContain(container('shop-web-1')!.metadata.uid);
    expect(container('shop-web-2')!.metadata.deletionTimestamp).toBeDefined();

    await releaseFinalizer('shop-web-2');
    await reconcile('web');
    status = getService('web').status!;
    expect(containersOf('web').map((c) => c.spec!.image)).toEqual(['busybox:1.37', 'busybox:1.37']);
    expect(status).toMatchObject({ replicas: 2, updatedReplicas: 2 });
  });

  it('a label change on the template or the Service compose labels changes the hash; key order does not', () => {
    const a = service('web') as Service & { spec: ServiceSpec };
    const reordered = JSON.parse(canonicalJson(a)) as typeof a;
    expect(templateHash(reordered)).toBe(templateHash(a));
    expect(canonicalJson({ b: 1, a: { d: 2, c: [{ f: 1, e: 2 }] } })).toBe('{"a":{"c":[{"e":2,"f":1}],"d":2},"b":1}');
    const relabelled = structuredClone(a);
    relabelled.spec.template.metadata!.labels!.tier = 'front';
    expect(templateHash(relabelled)).not.toBe(templateHash(a));
    const composeLabel = structuredClone(a);
    composeLabel.metadata.labels!['com.docker.compose.version'] = '2.30.0';
    expect(templateHash(composeLabel)).not.toBe(templateHash(a));
    const otherLabel = structuredClone(a);
    otherLabel.metadata.labels!.team = 'other';
    expect(templateHash(otherLabel)).toBe(templateHash(a));
  });

  it('writes nothing when everything is already right', async () => {
    await createService('web', { replicas: 2 });
    await reconcile('web');
    await setContainerStatus('shop-web-1', ready());
    await setContainerStatus('shop-web-2', ready());
    await reconcile('web');
    const rv = api.resourceVersion;
    const before = writes();
    expect(await reconcile('web')).toBeUndefined();
    expect(await reconcile('web')).toBeUndefined();
    expect(api.resourceVersion).toBe(rv);
    expect(writes()).toBe(before);
  });

  it('uses the container_name annotation for a single replica, and refuses it with replicas > 1', async () => {
    await createService('db', { annotations: { 'd2p.dev/container-name': 'postgres' } });
    await reconcile('db');
    expect(namesOf('db')).toEqual(['postgres']);
    expect(container('postgres')!.metadata.labels!['com.docker.compose.container-number']).toBe('1');

    await createService('cache', { replicas: 2, annotations: { 'd2p.dev/container-name': 'redis' } });
    const failure = reconcile('cache');
    await expect(failure).rejects.toThrow(TerminalError);
    await expect(reconcile('cache')).rejects.toThrow(/metadata\.annotations\["d2p\.dev\/container-name"\].*spec\.replicas 2/);
    expect(namesOf('cache')).toEqual([]);
  });

  it('adopts an orphan labelled for the Service, and refuses to take over a foreign Container name', async () => {
    const svc = (await createService('web')) as Service & { spec: ServiceSpec };
    await api.for('Container').create({
      apiVersion: 'd2p.dev/v1alpha1',
      kind: 'Container',
      metadata: {
        name: 'shop-web-1',
        namespace: NS,
        labels: { [SERVICE_LABEL]: 'web', 'com.docker.compose.container-number': '1' },
        annotations: { [TEMPLATE_HASH_ANNOTATION]: templateHash(svc) },
      },
      spec: svc.spec.template.spec,
    } as Container);
    const orphanUid = container('shop-web-1')!.metadata.uid;
    await reconcile('web');
    expect(container('shop-web-1')!.metadata.uid).toBe(orphanUid);
    expect(container('shop-web-1')!.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: 'Service', uid: svc.metadata.uid, controller: true })]);
    expect(eventsWithReason('Adopted')).toHaveLength(1);

    await createService('api');
    await api.for('Container').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Container', metadata: { name: 'shop-api-1', namespace: NS }, spec: { image: 'x' } } as Container);
    await expect(reconcile('api')).rejects.toThrow(/cannot create container "shop-api-1": a container of that name already exists/);
  });

  it('does nothing for a Service that no longer exists; deleting a Service garbage-collects its Containers', async () => {
    await expect(reconcile('ghost')).resolves.toBeUndefined();
    expect(api.calls.filter((c) => c.verb !== 'get')).toEqual([]);
    // The fake API collects dependents by ownerReference uid, as the store does.
    await createService('web', { replicas: 2 });
    await reconcile('web');
    expect(namesOf('web')).toHaveLength(2);
    await api.for('Service').delete(NS, 'web');
    expect(namesOf('web')).toEqual([]);
  });
});

describe('Service controller: depends_on', () => {
  const depCondition = (name: string) => getCondition(getService(name).status, 'DependenciesReady');

  it('service_started: waits with a message, records the wait once, then proceeds once a dependency container runs', async () => {
    await createService('db');
    await createService('web', { dependsOn: [{ name: 'db', condition: 'service_started' }] });
    await reconcile('web');
    expect(namesOf('web')).toEqual([]);
    expect(depCondition('web')).toMatchObject({ status: 'False', reason: 'WaitingForDependencies', message: 'waiting for service db to be started (0/1 running)' });
    expect(getCondition(getService('web').status, 'Progressing')).toMatchObject({ status: 'False', reason: 'WaitingForDependencies' });
    const before = writes();
    await reconcile('web');
    expect(writes()).toBe(before);
    expect(eventsWithReason('WaitingForDependencies')).toHaveLength(1);
    expect(eventsWithReason('WaitingForDependencies')[0].count).toBe(1);

    await reconcile('db');
    await setContainerStatus('shop-db-1', { phase: 'Creating' });
    await reconcile('web');
    expect(namesOf('web')).toEqual([]);
    await setContainerStatus('shop-db-1', running());
    await reconcile('web');
    expect(namesOf('web')).toEqual(['shop-web-1']);
    expect(depCondition('web')).toMatchObject({ status: 'True', reason: 'DependenciesSatisfied' });
  });

  it('service_started: a dependency that already exited with code 0 counts as started', async () => {
    await createService('init');
    await createService('web', { dependsOn: [{ name: 'init' }] });
    await reconcile('init');
    await setContainerStatus('shop-init-1', { phase: 'Exited', exitCode: 0 });
    await reconcile('web');
    expect(namesOf('web')).toEqual(['shop-web-1']);
  });

  it('waits for a missing required dependency, and ignores a missing optional one with a Normal event', async () => {
    await createService('web', { dependsOn: [{ name: 'cache', condition: 'service_started' }] });
    await reconcile('web');
    expect(namesOf('web')).toEqual([]);
    expect(depCondition('web')).toMatchObject({ status: 'False', message: 'waiting for service cache, which does not exist' });

    await createService('api', { dependsOn: [{ name: 'cache', condition: 'service_healthy', required: false }] });
    await reconcile('api');
    expect(namesOf('api')).toEqual(['shop-api-1']);
    expect(depCondition('api')).toMatchObject({ status: 'True', reason: 'DependenciesSatisfied' });
    const ignored = eventsWithReason('DependencyIgnored');
    expect(ignored).toHaveLength(1);
    expect(ignored[0]).toMatchObject({ type: 'Normal', message: 'optional dependency cache does not exist and is ignored' });
  });

  it('service_healthy: waits until every replica of the dependency is running and healthy', async () => {
    await createService('api', { replicas: 2, healthcheck: { test: ['CMD', 'true'] } });
    await createService('web', { dependsOn: [{ name: 'api', condition: 'service_healthy' }] });
    await reconcile('web');
    expect(depCondition('web')!.message).toBe('waiting for service api to be healthy (0/2 healthy)');
    await reconcile('api');
    await setContainerStatus('shop-api-1', running({ health: 'healthy' }));
    await setContainerStatus('shop-api-2', running({ health: 'starting' }));
    await reconcile('web');
    expect(namesOf('web')).toEqual([]);
    expect(depCondition('web')!.message).toBe('waiting for service api to be healthy (1/2 healthy)');
    await setContainerStatus('shop-api-2', running({ health: 'healthy' }));
    await reconcile('web');
    expect(namesOf('web')).toEqual(['shop-web-1']);
  });

  it('service_healthy: an unhealthy dependency is reported as DependencyFailed with a Warning event', async () => {
    await createService('api', { healthcheck: { test: ['CMD', 'true'] } });
    await createService('web', { dependsOn: [{ name: 'api', condition: 'service_healthy' }] });
    await reconcile('api');
    await setContainerStatus('shop-api-1', running({ health: 'unhealthy' }));
    await reconcile('web');
    await reconcile('web');
    expect(namesOf('web')).toEqual([]);
    expect(depCondition('web')).toMatchObject({ status: 'False', reason: 'DependencyFailed', message: 'service api is not healthy: container shop-api-1 is unhealthy' });
    expect(eventsWithReason('DependencyFailed')).toEqual([expect.objectContaining({ type: 'Warning', count: 1 })]);
  });

  it('service_healthy on a dependency without a healthcheck is a TerminalError', async () => {
    await createService('api', { healthcheck: { test: ['CMD', 'true'], disable: true } });
    await createService('web', { dependsOn: [{ name: 'api', condition: 'service_healthy' }] });
    await expect(reconcile('web')).rejects.toThrow(TerminalError);
    const error = await reconcile('web').then(
      () => undefined,
      (e: unknown) => e as TerminalError,
    );
    expect(error?.message).toMatch(/^service "shop\/web": spec\.dependsOn\[0\]: dependency api has no healthcheck/);
    expect(namesOf('web')).toEqual([]);
    expect(depCondition('web')).toMatchObject({ status: 'False', reason: 'DependencyHasNoHealthcheck' });
    expect(getCondition(getService('web').status, 'Ready')).toMatchObject({ status: 'False', reason: 'DependencyHasNoHealthcheck', message: error?.message });
  });

  it('service_healthy without a template healthcheck follows the image: none in its config is a TerminalError, one makes it wait', async () => {
    await createService('api', { image: 'plain:1' });
    await createService('web', { dependsOn: [{ name: 'api', condition: 'service_healthy' }] });
    // Image not pulled yet: whether it has a HEALTHCHECK is unknown, so wait.
    await reconcile('web');
    expect(depCondition('web')).toMatchObject({ status: 'False', reason: 'WaitingForDependencies' });

    const image = (await api.for('Image').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Image', metadata: { name: 'plain', namespace: NS }, spec: { ref: 'plain:1' } } as Image)) as Image;
    await api.for('Image').updateStatus({ ...image, status: { phase: 'Ready', config: { cmd: ['sh'] } } } as Image);
    await expect(reconcile('web')).rejects.toThrow(/dependency api has no healthcheck/);

    const pulled = (await api.for('Image').get(NS, 'plain')) as Image;
    await api.for('Image').updateStatus({ ...pulled, status: { phase: 'Ready', config: { cmd: ['sh'], healthcheck: { test: ['CMD-SHELL', 'true'] } } } } as Image);
    await reconcile('web');
    expect(depCondition('web')).toMatchObject({ status: 'False', reason: 'WaitingForDependencies', message: 'waiting for service api to be healthy (0/1 healthy)' });
  });

  it('service_healthy: a running dependency that reports no health has no healthcheck (as Compose inspects it)', async () => {
    await createService('api');
    await createService('web', { dependsOn: [{ name: 'api', condition: 'service_healthy' }] });
    await reconcile('api');
    await setContainerStatus('shop-api-1', running());
    await expect(reconcile('web')).rejects.toThrow(/dependency api has no healthcheck/);
  });

  it('service_completed_successfully: a non-zero exit is DependencyFailed, exit 0 lets it proceed', async () => {
    await createService('migrate');
    await createService('web', { dependsOn: [{ name: 'migrate', condition: 'service_completed_successfully' }] });
    await reconcile('migrate');
    await setContainerStatus('shop-migrate-1', running());
    await reconcile('web');
    expect(depCondition('web')!.message).toBe('waiting for service migrate to complete successfully (0/1 completed)');
    await setContainerStatus('shop-migrate-1', { phase: 'Exited', exitCode: 1 });
    await reconcile('web');
    expect(namesOf('web')).toEqual([]);
    expect(depCondition('web')).toMatchObject({
      status: 'False',
      reason: 'DependencyFailed',
      message: 'service migrate did not complete successfully: container shop-migrate-1 exited with code 1',
    });
    expect(eventsWithReason('DependencyFailed')).toEqual([expect.objectContaining({ type: 'Warning' })]);
    await setContainerStatus('shop-migrate-1', { phase: 'Exited', exitCode: 0 });
    await reconcile('web');
    expect(namesOf('web')).toEqual(['shop-web-1']);
  });

  it('does not wait for a dependency scaled to 0, nor re-check dependencies for running replicas', async () => {
    await createService('idle', { replicas: 0, healthcheck: { test: ['CMD', 'true'] } });
    await createService('db');
    await createService('web', {
      dependsOn: [
        { name: 'idle', condition: 'service_healthy' },
        { name: 'db', condition: 'service_started' },
      ],
    });
    await reconcile('db');
    await setContainerStatus('shop-db-1', running());
    await reconcile('web');
    expect(namesOf('web')).toEqual(['shop-web-1']);
    const uid = container('shop-web-1')!.metadata.uid;
    await setContainerStatus('shop-db-1', { phase: 'Exited', exitCode: 137 });
    const before = writes();
    await reconcile('web');
    expect(writes()).toBe(before);
    expect(container('shop-web-1')!.metadata.uid).toBe(uid);
    // A new replica is gated again.
    await updateService('web', (s) => (s.spec!.replicas = 2));
    await reconcile('web');
    expect(namesOf('web')).toEqual(['shop-web-1']);
    expect(depCondition('web')).toMatchObject({ status: 'False', message: 'waiting for service db to be started (0/1 running)' });
  });

  it('keeps outdated replicas running while dependencies do not hold for their replacements', async () => {
    await createService('db');
    await createService('web', { dependsOn: [{ name: 'db' }] });
    await reconcile('db');
    await setContainerStatus('shop-db-1', running());
    await reconcile('web');
    const uid = container('shop-web-1')!.metadata.uid;
    await setContainerStatus('shop-db-1', { phase: 'Pending' });
    await updateService('web', (s) => (s.spec!.template.spec.image = 'busybox:1.37'));
    await reconcile('web');
    expect(container('shop-web-1')!.metadata.uid).toBe(uid);
    expect(getService('web').status).toMatchObject({ replicas: 1, updatedReplicas: 0 });
    await setContainerStatus('shop-db-1', running());
    await reconcile('web');
    expect(container('shop-web-1')!.metadata.uid).not.toBe(uid);
    expect(container('shop-web-1')!.spec!.image).toBe('busybox:1.37');
  });

  it('DependentsIndex maps a dependency Service or its Containers to the Services that depend on it', () => {
    const index = new DependentsIndex();
    expect(index.onService(service('web', { dependsOn: [{ name: 'db' }, { name: 'cache' }] }))).toEqual([]);
    expect(index.onService(service('worker', { dependsOn: [{ name: 'db' }] }))).toEqual([]);
    expect(index.onService(service('db')).sort()).toEqual(['shop/web', 'shop/worker']);
    const dbContainer = { apiVersion: 'd2p.dev/v1alpha1', kind: 'Container', metadata: { name: 'shop-db-1', namespace: NS, ownerReferences: [{ apiVersion: 'd2p.dev/v1alpha1', kind: 'Service', name: 'db', uid: 'u', controller: true }] } };
    expect(index.onContainer(dbContainer).sort()).toEqual(['shop/web', 'shop/worker']);
    // web no longer depends on db.
    index.onService(service('web', { dependsOn: [{ name: 'cache' }] }));
    expect(index.dependentsOf('shop/db')).toEqual(['shop/worker']);
    index.forget('shop/worker');
    expect(index.dependentsOf('shop/db')).toEqual([]);
    expect(index.dependentsOf('other/cache')).toEqual([]);
  });
});

describe('Service controller under the manager', () => {
  async function startManager(): Promise<Manager> {
    manager = await startFakeManager(api, { paths, logger, controllers: [serviceController()], maxBackoffMs: 50 });
    return manager;
  }

  it('starts dependents when a dependency becomes healthy, and follows owned Container changes', async () => {
    await createService('db', { healthcheck: { test: ['CMD', 'pg_isready'] } });
    await createService('web', { replicas: 2, dependsOn: [{ name: 'db', condition: 'service_healthy' }] });
    await startManager();
    await vi.waitFor(() => expect(namesOf('db')).toEqual(['shop-db-1']));
    await vi.waitFor(() => expect(depCondition('web')).toMatchObject({ status: 'False', reason: 'WaitingForDependencies' }));
    expect(namesOf('web')).toEqual([]);

    // No Ready condition yet, so db's own status does not change: only the watch on the
    // dependency's Containers can wake web up.
    await setContainerStatus('shop-db-1', running({ health: 'healthy' }));
    await vi.waitFor(() => expect(namesOf('web')).toEqual(['shop-web-1', 'shop-web-2']));
    await setContainerStatus('shop-db-1', ready({ health: 'healthy' }));
    await vi.waitFor(() => expect(getService('db').status).toMatchObject({ readyReplicas: 1 }));

    await setContainerStatus('shop-web-1', ready());
    await setContainerStatus('shop-web-2', ready());
    await vi.waitFor(() => expect(getCondition(getService('web').status, 'Available')).toMatchObject({ status: 'True' }));

    // An owned Container deleted behind the Service's back is made again.
    const uid = container('shop-web-2')!.metadata.uid;
    await api.for('Container').delete(NS, 'shop-web-2');
    await vi.waitFor(() => expect(container('shop-web-2')?.metadata.uid).toBeDefined());
    expect(container('shop-web-2')!.metadata.uid).not.toBe(uid);
  });

  it('shows a terminal spec error on the Service', async () => {
    await createService('cache', { replicas: 2, annotations: { 'd2p.dev/container-name': 'redis' } });
    await startManager();
    await vi.waitFor(() =>
      expect(getCondition(getService('cache').status, 'Ready')).toMatchObject({ status: 'False', reason: 'ContainerNameWithReplicas' }),
    );
    expect(eventsWithReason('ContainerNameWithReplicas')).toEqual([expect.objectContaining({ type: 'Warning' })]);
    expect(namesOf('cache')).toEqual([]);
    // Fixing the spec clears the error.
    await updateService('cache', (s) => (s.spec!.replicas = 1));
    await vi.waitFor(() => expect(namesOf('cache')).toEqual(['redis']));
    await vi.waitFor(() =>
      expect(getCondition(getService('cache').status, 'Ready')).toMatchObject({ status: 'False', reason: 'MinimumReplicasUnavailable' }),
    );
  });

  it('a dependency-level TerminalError is re-checked on dependency changes without the manager and the controller alternating writes', async () => {
    await createService('api', { healthcheck: { test: ['NONE'] } });
    await createService('front', { dependsOn: [{ name: 'api', condition: 'service_healthy' }] });
    const m = await startManager();
    await vi.waitFor(() => expect(namesOf('api')).toEqual(['shop-api-1']));
    await vi.waitFor(() =>
      expect(getCondition(getService('front').status, 'Ready')).toMatchObject({ status: 'False', reason: 'DependencyHasNoHealthcheck' }),
    );
    await vi.waitFor(() => expect(m.idle).toBe(true));
    const statusWrites = () => api.calls.filter((c) => c.verb === 'updateStatus' && c.key === 'shop/front').length;
    const writesBefore = statusWrites();
    const reconcilesBefore = m.reconcileCount('service-controller', 'shop/front');
    await setContainerStatus('shop-api-1', running());
    await vi.waitFor(() => expect(m.reconcileCount('service-controller', 'shop/front')).toBeGreaterThan(reconcilesBefore));
    await vi.waitFor(() => expect(m.idle).toBe(true));
    expect(statusWrites()).toBe(writesBefore);
    expect(namesOf('front')).toEqual([]);
  });

  it('garbage-collects Containers when the Service is deleted', async () => {
    await createService('web', { replicas: 2 });
    await startManager();
    await vi.waitFor(() => expect(namesOf('web')).toHaveLength(2));
    await api.for('Service').delete(NS, 'web');
    await vi.waitFor(() => expect(namesOf('web')).toEqual([]));
    expect(getService('web')).toBeUndefined();
  });

  function depCondition(name: string) {
    return getCondition(getService(name)?.status, 'DependenciesReady');
  }
});
