// The Container reconciler: one Container object ↔ one process tree run by the runtime
// (src/runtime), with Docker's lifecycle and Kubernetes' way of reporting it.
//  - Level-triggered: every reconcile asks the runtime what really runs (its shim state is
//    the truth), so a daemon restart adopts running containers instead of starting them
//    again, and a process killed from outside is seen for what it is.
//  - A death is noticed at once: a runtime.wait() per running process queues the key when
//    it fires (ReconcileContext.enqueue); the reconcile it starts writes what the exit
//    means (Exited, a restart, back-off) in one status write.
//  - Restart policies and back-off as Docker's restartmanager (container-restart.ts);
//    while waiting the phase is CrashLoopBackOff, as kubectl shows it.
//  - A spec change (generation moved past status.observedGeneration, which is written just
//    before the runtime container is created) stops and recreates; metadata changes don't.
//    Except a change of spec.networks alone (`d2p network connect|disconnect`): as Docker
//    does, it is applied to the container's namespace without a new process. What the
//    process was made from is kept beside its bundle (container-config.ts appliedSpec), so
//    the difference is known after a daemon restart too.
//  - The annotation d2p.dev/desired-state (running | stopped | paused), set by `d2p stop`,
//    `start` and `pause`, overrides the restart policy.
//  - Deletion is guarded by a finalizer: process, mounts, cgroup and anonymous volumes go
//    first (DESIGN.md §3).
import { isDeepStrictEqual } from 'node:util';
import * as path from 'node:path';
import { isApiError } from '../src/api/errors';
import { DEFAULT_NAMESPACE, type ApiObject } from '../src/api/meta';
import type { Container, ContainerSpec, ContainerStatus, HealthState, Image } from '../src/api/types';
import type { Paths } from '../src/config';
import { ContainerNotFoundError, IncompleteBundleError, InvalidSpecError, type ContainerConfig, type ContainerState } from '../src/runtime/index';
import { resolveArgs } from '../src/runtime/oci';
import { getCondition, setCondition } from './conditions';
import {
  buildRuntimeConfig,
  containerId,
  isLiveNetworkChange,
  networkChanges,
  readAppliedSpec,
  sameNetworks,
  writeAppliedSpec,
} from './container-config';
import { HealthProber, resolveHealthcheck, type HealthChange, type ResolvedHealthcheck } from './container-health';
import {
  overlayImageMounter,
  realImageLookup,
  realRuntime,
  type ContainerRuntime,
  type ImageLookup,
  type LocalImage,
} from './container-host';
import { anonymousVolumesDir, prepareMounts, removeAnonymousVolumes, type ImageContentMounter } from './container-mounts';
import { RestartBackoff, shouldRestart } from './container-restart';
import { isAttachError, netnsPathOf, networkingFor, type Attachment, type AttachRequest, type Networking } from '../src/network/attach';
import { isNetworkError, type NetworkErrorCode } from '../src/network/errors';
import { describeError, TerminalError } from './errors';
import { splitKey, type Controller, type ReconcileContext, type Result } from './manager';
import { ensureFinalizer, getIfExists } from './objects';
import { CONTAINER_FINALIZER } from './finalizers';

export { containerId } from './container-config';

export { CONTAINER_FINALIZER } from './finalizers';
export const DESIRED_STATE_ANNOTATION = 'd2p.dev/desired-state';
/** How often a Container waiting for its image looks again, besides the Image watch. */
export const IMAGE_RECHECK_MS = 2_000;
/** How often a Container waiting for a volume or another container's network looks again. */
export const DEPENDENCY_RECHECK_MS = 1_000;

export const CONDITION_READY = 'Ready';
export const CONDITION_IMAGE_PULLED = 'ImagePulled';
export const CONDITION_VOLUMES_READY = 'VolumesReady';
/** False while spec.networks could not be applied to an existing container (the process keeps running). */
export const CONDITION_NETWORKS_ATTACHED = 'NetworksAttached';
/** How often a container whose network change failed (an address taken…) tries again. */
export const NETWORK_RETRY_MS = 5_000;

type DesiredState = 'running' | 'stopped' | 'paused';
/** A Container whose spec was checked to be there (the schema requires it). */
type SpecContainer = Container & { spec: ContainerSpec };

export interface ContainerControllerOptions {
  /** Makes the runtime (default: a Runtime over paths.containers). */
  runtime?: (paths: Paths) => ContainerRuntime;
  /** Opens the image store (default: ImageStore.open(paths.images)). */
  images?: (paths: Paths) => Promise<ImageLookup>;
  /** Shows an image's merged content for volume copy-up (default: a read-only overlay mount). */
  imageMounter?: (paths: Paths) => ImageContentMounter;
  /** cgroup parent of the default runtime. Default "d2p". */
  cgroupParent?: string;
  /** Milliseconds since the epoch; tests inject a clock to drive the back-off. */
  now?: () => number;
  /**
   * Network attachment (src/network/attach.ts). Default: the daemon's shared Networking when
   * the runtime is the real one; none when a test injects a fake runtime (no netns to make).
   */
  networking?: (paths: Paths) => Networking | undefined;
}

export function containerController(opts: ContainerControllerOptions = {}): Controller {
  const reconciler = new ContainerReconciler(opts);
  return {
    kind: 'Container',
    // Its reconciles mostly wait (a shim starting, a grace period running out), so many
    // run at once: `down` of 100 containers then takes about one grace period, as Docker
    // stops them in parallel, not seven (16 workers: 11.8 s, 128: 5.8 s, measured).
    workers: 128,
    watches: [
      { kind: 'Image', map: (obj) => reconciler.keysWaitingForImage(obj as Image) },
      { kind: 'Volume', map: (obj) => reconciler.keysWaitingForVolume(obj) },
      { kind: 'Network', map: (obj) => reconciler.keysWaitingForNetwork(obj) },
    ],
    reconcile: (key, ctx) => reconciler.reconcile(key, ctx),
  };
}

interface Waiting {
  namespace: string;
  names: string[];
}

/** Keys of the containers waiting for `obj` (an object they need, named in `waiting`). */
function keysWaitingFor(waiting: Map<string, Waiting>, obj: ApiObject): string[] {
  const namespace = obj.metadata.namespace ?? DEFAULT_NAMESPACE;
  return [...waiting].filter(([, w]) => w.namespace === namespace && w.names.includes(obj.metadata.name)).map(([key]) => key);
}

export class ContainerReconciler {
  private runtimeInstance: ContainerRuntime | undefined;
  private imagesInstance: Promise<ImageLookup> | undefined;
  private mounterInstance: ImageContentMounter | undefined;
  private readonly backoff = new RestartBackoff();
  /** key → incarnation ("shimPid:startedAt") whose exit is being watched. */
  private readonly exitWatches = new Map<string, string>();
  private readonly waitingForImage = new Map<string, Waiting>();
  private readonly waitingForVolume = new Map<string, Waiting>();
  private readonly waitingForNetwork = new Map<string, Waiting>();
  /** Runtime id → the spec its runtime container was made from (a cache of readAppliedSpec). */
  private readonly appliedSpecs = new Map<string, ContainerSpec>();
  private readonly prober: HealthProber;
  private boundSignal: AbortSignal | undefined;
  /** The latest context, for writes made outside a reconcile (exit watch, health changes). */
  private ctx: ReconcileContext | undefined;

  constructor(private readonly opts: ContainerControllerOptions) {
    this.prober = new HealthProber({
      exec: (id, args) => this.runtime().exec(id, { args }),
      onChange: (change) => void this.onHealthChange(change),
      onProbeError: (key, error) => this.ctx?.log.debug('healthcheck could not run', { key, error: describeError(error) }),
      now: opts.now,
    });
  }

  keysWaitingForImage(image: Image): string[] {
    const ref = image.spec?.ref;
    const namespace = image.metadata.namespace ?? DEFAULT_NAMESPACE;
    return [...this.waitingForImage].filter(([, w]) => w.namespace === namespace && ref !== undefined && w.names.includes(ref)).map(([key]) => key);
  }

  keysWaitingForVolume(volume: ApiObject): string[] {
    return keysWaitingFor(this.waitingForVolume, volume);
  }

  keysWaitingForNetwork(network: ApiObject): string[] {
    return keysWaitingFor(this.waitingForNetwork, network);
  }

  /** A Network of the container becoming ready wakes it (the recheck timer is only the safety net). */
  private waitForNetworks(key: string, c: SpecContainer): void {
    const names = (c.spec.networks ?? []).map((n) => n.name);
    if (names.length > 0) this.waitingForNetwork.set(key, { namespace: c.metadata.namespace ?? DEFAULT_NAMESPACE, names });
  }

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  private runtime(): ContainerRuntime {
    if (!this.runtimeInstance) {
      const paths = this.requireCtx().paths;
      const onBackgroundError = (error: Error) => this.requireCtx().log.error('runtime background work failed', { error: describeError(error) });
      this.runtimeInstance = this.opts.runtime ? this.opts.runtime(paths) : realRuntime(paths, { cgroupParent: this.opts.cgroupParent, onBackgroundError });
    }
    return this.runtimeInstance;
  }

  private images(paths: Paths): Promise<ImageLookup> {
    this.imagesInstance ??= (this.opts.images ?? realImageLookup)(paths);
    return this.imagesInstance;
  }

  private mounter(paths: Paths): ImageContentMounter {
    this.mounterInstance ??= this.opts.imageMounter ? this.opts.imageMounter(paths) : overlayImageMounter(path.join(paths.containers, '.image-roots'));
    return this.mounterInstance;
  }

  private requireCtx(): ReconcileContext {
    if (!this.ctx) throw new Error('container reconciler used before its first reconcile');
    return this.ctx;
  }

  /** Timers and watches end with the manager: its signal aborts when it stops. */
  private bind(ctx: ReconcileContext): void {
    this.ctx = ctx;
    if (this.boundSignal === ctx.signal) return;
    this.boundSignal = ctx.signal;
    ctx.signal.addEventListener('abort', () => {
      this.prober.stopAll();
      this.exitWatches.clear();
    }, { once: true });
  }

  async reconcile(key: string, ctx: ReconcileContext): Promise<Result | void> {
    this.bind(ctx);
    const { namespace, name } = splitKey(key);
    const container = await getIfExists<Container>(ctx.client('Container'), namespace, name);
    if (!container) {
      this.forget(key);
      return;
    }
    const id = containerId(namespace, name);
    if (container.metadata.deletionTimestamp) return this.finalize(ctx, key, id, container);
    if (!container.spec?.image) throw new TerminalError('InvalidSpec', `container ${key}: spec.image is required`);
    let c = (await ensureFinalizer(ctx.client('Container'), container, CONTAINER_FINALIZER)) as SpecContainer;
    let state = await this.observe(id);
    if (state && c.status?.observedGeneration !== c.metadata.generation) {
      if (!this.isLiveNetworkChange(ctx, id, c)) {
        await this.remove(ctx, key, id, c, `spec changed (generation ${c.metadata.generation}); recreating`);
        state = undefined;
      } else if (state.status === 'stopped') {
        // Running containers change in whileAlive, created ones when they start.
        c = await this.changeNetworksWhileStopped(ctx, key, id, c);
      }
    }
    const desired = desiredState(c);
    // Exited with autoRemove, and its runtime container already gone: it is being removed,
    // never started again.
    if (!state && c.spec.autoRemove && c.status?.phase === 'Exited') return this.autoRemove(ctx, key, id, c);
    let createdEvent: Promise<void> | undefined;
    if (!state) {
      if (desired === 'stopped') return void (await this.writeStatus(ctx, c, stoppedByUser(c.status)));
      const created = await this.create(ctx, key, id, c);
      if ('result' in created) return created.result;
      c = created.container as SpecContainer;
      state = created.state;
      createdEvent = created.event;
    }
    try {
      switch (state.status) {
        case 'created':
          if (desired === 'stopped') return void (await this.writeStatus(ctx, c, stoppedByUser(c.status)));
          return await this.start(ctx, key, id, c, desired, false);
        case 'running':
        case 'paused':
          return await this.whileAlive(ctx, key, id, c, state, desired);
        case 'stopped':
          return await this.afterExit(ctx, key, id, c, state, desired);
      }
    } finally {
      // Written while the container starts (recording never rejects), and done by the
      // time this reconcile is.
      await createdEvent;
    }
  }

  private forget(key: string): void {
    const { namespace, name } = splitKey(key);
    this.appliedSpecs.delete(containerId(namespace, name));
    this.prober.stop(key);
    this.exitWatches.delete(key);
    this.backoff.reset(key);
    this.waitingForImage.delete(key);
    this.waitingForVolume.delete(key);
    this.waitingForNetwork.delete(key);
  }

  private async observe(id: string): Promise<ContainerState | undefined> {
    try {
      return await this.runtime().state(id);
    } catch (error) {
      // Left by a crash during create: cleared, so the create that follows does not meet it.
      if (error instanceof IncompleteBundleError) await this.runtime().delete(id);
      if (error instanceof ContainerNotFoundError) return undefined;
      throw error;
    }
  }

  // --- creation -------------------------------------------------------------------------

  private async create(
    ctx: ReconcileContext,
    key: string,
    id: string,
    c: SpecContainer,
  ): Promise<{ result: Result | void } | { container: SpecContainer; state: ContainerState; event: Promise<void> }> {
    const { namespace, name } = splitKey(key);
    const image = await this.findImage(ctx, c);
    if (!image) {
      this.waitingForImage.set(key, { namespace, names: [c.spec.image] });
      const status = pendingStatus(c, CONDITION_IMAGE_PULLED, 'ImageNotPresent', `image ${c.spec.image} is not present yet; waiting for it to be pulled`);
      await this.writeStatus(ctx, c, status);
      return { result: { requeueAfter: IMAGE_RECHECK_MS } };
    }
    this.waitingForImage.delete(key);
    const mounts = await prepareMounts(c.spec.mounts, {
      ctx,
      namespace,
      containerName: name,
      anonymousVolumesDir: anonymousVolumesDir(ctx.paths.containers, id),
      layerDirs: image.layerDirs,
      imageRoot: this.mounter(ctx.paths),
    });
    if (!mounts.ready) {
      this.waitingForVolume.set(key, { namespace, names: mounts.waitingFor });
      const status = pendingStatus(c, CONDITION_VOLUMES_READY, mounts.reason, mounts.message);
      setCondition(status, { type: CONDITION_IMAGE_PULLED, status: 'True', reason: 'ImagePresent', observedGeneration: c.metadata.generation });
      await this.writeStatus(ctx, c, status);
      return { result: { requeueAfter: DEPENDENCY_RECHECK_MS } };
    }
    this.waitingForVolume.delete(key);
    const netns = await this.joinedNetns(ctx, c);
    const networkWait = netns.waiting ?? this.networksNotReady(ctx, c);
    if (networkWait) {
      this.waitForNetworks(key, c);
      await this.writeStatus(ctx, c, pendingStatus(c, CONDITION_READY, 'NetworkNotReady', networkWait));
      return { result: { requeueAfter: DEPENDENCY_RECHECK_MS } };
    }
    this.waitingForNetwork.delete(key);
    const config = buildRuntimeConfig({ id, spec: c.spec, image, mounts: mounts.mounts, netnsPath: netns.path ?? this.ownNetnsPath(ctx, c, id) });
    // observedGeneration is written before the runtime container exists, so a container
    // found later with an older observedGeneration was certainly made from an older spec.
    const creating = freshStatus(c, 'Creating');
    const command = processArgs(config);
    if (command) creating.command = command;
    setCondition(creating, { type: CONDITION_IMAGE_PULLED, status: 'True', reason: 'ImagePresent', observedGeneration: c.metadata.generation });
    if (c.spec.mounts?.some((m) => m.type === 'volume')) {
      setCondition(creating, { type: CONDITION_VOLUMES_READY, status: 'True', reason: 'VolumesReady', observedGeneration: c.metadata.generation });
    }
    setCondition(creating, { type: CONDITION_READY, status: 'False', reason: 'Creating', observedGeneration: c.metadata.generation });
    const container = await this.writeStatus(ctx, c, creating);
    const state = await runtimeCall(id, () => this.runtime().create(config));
    this.recordAppliedSpec(ctx, id, c.spec);
    const event = ctx.events.record(container, 'Normal', 'Created', `Created container ${name}`);
    return { container, state, event };
  }

  private async findImage(ctx: ReconcileContext, c: SpecContainer): Promise<LocalImage | undefined> {
    const images = await this.images(ctx.paths);
    try {
      return await images.get(c.spec.image);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === 'D2P_IMAGE_INVALID_REFERENCE') throw new TerminalError('InvalidImageReference', `spec.image: ${describeError(error)}`, { cause: error });
      throw error;
    }
  }

  /** networkMode container:NAME / service:NAME: the network namespace of that running container. */
  private async joinedNetns(ctx: ReconcileContext, c: SpecContainer): Promise<{ path?: string; waiting?: string }> {
    const mode = c.spec.networkMode ?? '';
    const namespace = c.metadata.namespace ?? DEFAULT_NAMESPACE;
    let peers: Container[];
    if (mode.startsWith('container:')) {
      const name = mode.slice('container:'.length);
      const peer = await getIfExists<Container>(ctx.client('Container'), namespace, name);
      peers = peer ? [peer] : [];
    } else if (mode.startsWith('service:')) {
      const service = mode.slice('service:'.length);
      const list = await ctx.client('Container').list({ namespace, labelSelector: `com.docker.compose.service=${service}` });
      peers = list.items as Container[];
    } else return {};
    const running = peers.find((p) => p.status?.phase === 'Running' && p.status.pid);
    if (!running) return { waiting: `waiting for ${mode} to be running, to join its network namespace` };
    return { path: `/proc/${running.status?.pid}/ns/net` };
  }

  // --- network (src/network/attach.ts) ----------------------------------------------------

  private networkingOf(ctx: ReconcileContext): Networking | undefined {
    if (this.opts.networking) return this.opts.networking(ctx.paths);
    return this.opts.runtime ? undefined : networkingFor(ctx.paths);
  }

  /** Bridge and none containers join a namespace of their own, made by attach before the process starts. */
  private ownNetnsPath(ctx: ReconcileContext, c: SpecContainer, id: string): string | undefined {
    const mode = c.spec.networkMode ?? 'bridge';
    return this.networkingOf(ctx) && (mode === 'bridge' || mode === 'none') ? netnsPathOf(ctx.paths, id) : undefined;
  }

  private networksNotReady(ctx: ReconcileContext, c: SpecContainer): string | undefined {
    const networking = this.networkingOf(ctx);
    const namespace = c.metadata.namespace ?? DEFAULT_NAMESPACE;
    const missing = (c.spec.networks ?? []).filter((n) => networking && !networking.network(namespace, n.name)).map((n) => n.name);
    return missing.length > 0 ? `waiting for network(s) ${missing.join(', ')} to be ready` : undefined;
  }

  /**
   * Attaches (idempotently) and returns addresses and published ports; container:/service:
   * modes join a peer and need nothing. Networks the namespace had under the applied spec
   * and the spec no longer lists are detached on the way.
   */
  private async attachNetwork(ctx: ReconcileContext, id: string, c: SpecContainer): Promise<Pick<Attachment, 'ipAddresses' | 'ports'> | undefined> {
    const networking = this.networkingOf(ctx);
    const mode = c.spec.networkMode ?? 'bridge';
    if (!networking || mode.startsWith('container:') || mode.startsWith('service:')) return undefined;
    const applied = this.appliedSpec(ctx, id);
    try {
      const { ipAddresses, ports } = await networking.attach({ ...attachRequestOf(id, c), previousNetworks: applied?.networks });
      if (!applied || !sameNetworks(applied.networks, c.spec.networks)) {
        // The process part stays what the process was made from; only the networks moved.
        this.recordAppliedSpec(ctx, id, applied ? { ...applied, networks: c.spec.networks } : c.spec);
      }
      return { ipAddresses, ports };
    } catch (error) {
      if (isNetworkError(error, 'D2P_NETWORK_PORT_IN_USE')) {
        await ctx.events.record(c, 'Warning', 'PortInUse', describeError(error));
      }
      throw error;
    }
  }

  // --- live network changes (docker network connect|disconnect) -------------------------

  private appliedSpec(ctx: ReconcileContext, id: string): ContainerSpec | undefined {
    let spec = this.appliedSpecs.get(id);
    if (spec === undefined) {
      spec = readAppliedSpec(ctx.paths.containers, id);
      if (spec !== undefined) this.appliedSpecs.set(id, spec);
    }
    return spec;
  }

  private recordAppliedSpec(ctx: ReconcileContext, id: string, spec: ContainerSpec): void {
    writeAppliedSpec(ctx.paths.containers, id, spec);
    this.appliedSpecs.set(id, structuredClone(spec));
  }

  /** A spec change the existing runtime container can take without a new process; unknown (no record) recreates. */
  private isLiveNetworkChange(ctx: ReconcileContext, id: string, c: SpecContainer): boolean {
    const applied = this.appliedSpec(ctx, id);
    return applied !== undefined && isLiveNetworkChange(applied, c.spec);
  }

  /**
   * Brings an existing container's namespace to spec.networks when it differs from what
   * was applied, or (`adopt`) when this daemon has not attached it yet. Failures the user
   * can fix (a network missing, an address taken) are returned, not thrown: the process
   * keeps running on its current networks, and the caller records them.
   */
  private async syncNetworks(ctx: ReconcileContext, key: string, id: string, c: SpecContainer, opts: { adopt: boolean }): Promise<NetworkSync | undefined> {
    const networking = this.networkingOf(ctx);
    const mode = c.spec.networkMode ?? 'bridge';
    if (!networking || mode.startsWith('container:') || mode.startsWith('service:')) return undefined;
    const { namespace, name } = splitKey(key);
    const applied = this.appliedSpec(ctx, id);
    const changed = applied !== undefined && !sameNetworks(applied.networks, c.spec.networks);
    if (!changed && !(opts.adopt && !networking.isAttached(namespace, name))) {
      // A failed change the user took back (`network connect` undoes its edit): nothing is
      // left to apply, so the failure no longer holds.
      const failed = getCondition(c.status, CONDITION_NETWORKS_ATTACHED)?.status === 'False';
      return failed && networking.isAttached(namespace, name) ? { ipAddresses: networking.addressesOf(namespace, name) } : undefined;
    }
    try {
      const attached = await this.attachNetwork(ctx, id, c);
      this.waitingForNetwork.delete(key);
      if (changed && attached) await recordNetworkEvents(ctx, c, networkChanges(applied.networks, c.spec.networks), attached.ipAddresses);
      return attached && { ipAddresses: attached.ipAddresses, ports: attached.ports };
    } catch (error) {
      const failure = await networkFailure(ctx, c, error);
      if (!failure) throw error;
      if (failure.waitForNetwork) this.waitForNetworks(key, c);
      return { ipAddresses: networking.addressesOf(namespace, name), failure };
    }
  }

  /** A stopped container keeps its namespace: its networks change now, its process at the next start. */
  private async changeNetworksWhileStopped(ctx: ReconcileContext, key: string, id: string, c: SpecContainer): Promise<SpecContainer> {
    const networks = await this.syncNetworks(ctx, key, id, c, { adopt: false });
    const status = structuredClone(c.status ?? {});
    status.observedGeneration = c.metadata.generation;
    applyNetworkSync(status, networks, c.metadata.generation);
    const written = await this.writeStatus(ctx, c, status);
    await this.afterNetworkSync(ctx, c, written, networks);
    return written;
  }

  /** A failure's Warning event, once per new reason or message; then a retry, sooner when a Network watch may wake it. */
  private async afterNetworkSync(ctx: ReconcileContext, before: Container, written: Container, networks: NetworkSync | undefined): Promise<Result | void> {
    const failure = networks?.failure;
    if (!failure) return undefined;
    const previous = getCondition(before.status, CONDITION_NETWORKS_ATTACHED);
    if (previous?.status !== 'False' || previous.reason !== failure.reason || previous.message !== failure.message) {
      await ctx.events.record(written, 'Warning', failure.reason, failure.message);
    }
    return { requeueAfter: failure.waitForNetwork ? DEPENDENCY_RECHECK_MS : NETWORK_RETRY_MS };
  }

  // --- running --------------------------------------------------------------------------

  private async start(ctx: ReconcileContext, key: string, id: string, c: SpecContainer, desired: DesiredState, restart: boolean): Promise<Result | void> {
    let attached: Pick<Attachment, 'ipAddresses' | 'ports'> | undefined;
    try {
      attached = await this.attachNetwork(ctx, id, c);
    } catch (error) {
      if (!isAttachError(error, 'D2P_NETWORK_NOT_READY')) {
        await this.recordStartFailure(ctx, c, error);
        throw error;
      }
      this.waitForNetworks(key, c);
      await this.writeStatus(ctx, c, pendingStatus(c, CONDITION_READY, 'NetworkNotReady', error.message));
      return { requeueAfter: DEPENDENCY_RECHECK_MS };
    }
    let state: ContainerState;
    try {
      state = await runtimeCall(id, () => this.runtime().start(id));
    } catch (error) {
      if (error instanceof TerminalError) throw error;
      await this.recordStartFailure(ctx, c, error);
      throw error;
    }
    const status = structuredClone(c.status ?? {});
    if (restart) status.restartCount = (status.restartCount ?? 0) + 1;
    delete status.health;
    if (attached && Object.keys(attached.ipAddresses).length > 0) status.ipAddresses = attached.ipAddresses;
    if (attached && attached.ports.length > 0) status.ports = attached.ports;
    else delete status.ports;
    // One status write takes the container to Running (whileAlive's), and the Started event
    // is written beside it, not after it: each write here was a store round trip between
    // the process starting and `up --wait` seeing it Ready, and the reconcile of a quick
    // exit waits for this one to end. Recording never rejects.
    const [result] = await Promise.all([
      this.whileAlive(ctx, key, id, { ...c, status }, state, desired, c),
      ctx.events.record(c, 'Normal', 'Started', `Started container ${c.metadata.name}`),
    ]);
    return result;
  }

  private async recordStartFailure(ctx: ReconcileContext, c: SpecContainer, error: unknown): Promise<void> {
    const message = describeError(error);
    const status = structuredClone(c.status ?? {});
    status.phase = 'Failed';
    status.message = message;
    delete status.pid;
    setCondition(status, { type: CONDITION_READY, status: 'False', reason: 'StartFailed', message, observedGeneration: c.metadata.generation });
    await this.writeStatus(ctx, c, status);
    await ctx.events.record(c, 'Warning', 'Failed', `Error starting container: ${message}`);
  }

  private async whileAlive(
    ctx: ReconcileContext,
    key: string,
    id: string,
    c: SpecContainer,
    state: ContainerState,
    desired: DesiredState,
    /** The object as stored, when `c` carries a status not written yet (start's). */
    stored: SpecContainer = c,
  ): Promise<Result | void> {
    if (desired === 'stopped') {
      const stopped = await this.stopProcess(ctx, key, id, c, 'stopped by the user');
      const status = stoppedByUser(c.status);
      applyExit(status, stopped, this.now());
      await this.writeStatus(ctx, stored, status);
      return this.autoRemove(ctx, key, id, c);
    }
    let current = state;
    if (desired === 'paused' && state.status === 'running') {
      await runtimeCall(id, () => this.runtime().pause(id));
      await ctx.events.record(c, 'Normal', 'Paused', `Paused container ${c.metadata.name}`);
      current = { ...state, status: 'paused' };
    } else if (desired !== 'paused' && state.status === 'paused') {
      await runtimeCall(id, () => this.runtime().unpause(id));
      await ctx.events.record(c, 'Normal', 'Unpaused', `Unpaused container ${c.metadata.name}`);
      current = { ...state, status: 'running' };
    }
    // Adoption after a daemon restart (DNS names and published ports live in the daemon), and
    // networks connected or disconnected while the process runs.
    const networks = await this.syncNetworks(ctx, key, id, c, { adopt: true });
    const incarnation = `${current.shimPid ?? current.pid}:${current.startedAt ?? ''}`;
    this.watchExit(key, id, incarnation);
    const check = await this.healthcheckOf(ctx, c);
    // A one-shot process (`run --rm IMG true`, a Compose job) may be gone already: its exit
    // is written in place of a Running that is over, one status write instead of two. The
    // shim's record is read again rather than waiting for the exit watch, whose pidfd the
    // event loop may not have polled yet (a read is ~0.1 ms; the write it saves, a store
    // round trip and a second reconcile).
    const exited = await this.observe(id);
    if (exited?.status === 'stopped') return this.afterExit(ctx, key, id, { ...stored, status: c.status }, exited, desired);
    if (check) {
      const startedAt = current.startedAt ? Date.parse(current.startedAt) : this.now();
      this.prober.ensure(key, id, incarnation, check, startedAt, c.status?.health ?? 'starting');
    } else this.prober.stop(key);
    const status = runningStatus(c, current, check ? (this.prober.health(key) ?? 'starting') : undefined);
    applyNetworkSync(status, networks, c.metadata.generation);
    const written = await this.writeStatus(ctx, stored, status);
    return this.afterNetworkSync(ctx, c, written, networks);
  }

  private async healthcheckOf(ctx: ReconcileContext, c: SpecContainer): Promise<ResolvedHealthcheck | undefined> {
    const wantsImageCheck = !c.spec.healthcheck?.disable && !c.spec.healthcheck?.test?.length;
    const image = wantsImageCheck || c.spec.healthcheck ? await this.findImage(ctx, c) : undefined;
    return resolveHealthcheck(c.spec, image?.config.healthcheck);
  }

  /** Queues `key` as soon as this incarnation's process exits. */
  private watchExit(key: string, id: string, incarnation: string): void {
    if (this.exitWatches.get(key) === incarnation) return;
    this.exitWatches.set(key, incarnation);
    this.runtime()
      .wait(id)
      .then(
        () => this.onExit(key, incarnation),
        (error: unknown) => this.ctx?.log.warn('watching the container process failed', { key, error: describeError(error) }),
      )
      .catch((error: unknown) => this.ctx?.log.warn('recording a container exit failed', { key, error: describeError(error) }));
  }

  private onExit(key: string, incarnation: string): void {
    if (this.exitWatches.get(key) !== incarnation) return;
    this.exitWatches.delete(key);
    this.prober.stop(key);
    if (this.ctx && !this.ctx.signal.aborted) this.ctx.enqueue(key);
  }

  private async onHealthChange(change: HealthChange): Promise<void> {
    const ctx = this.ctx;
    if (!ctx || ctx.signal.aborted) return;
    // Health and the Ready it decides, in one write.
    const updated = await this.touchStatus(change.key, (status, c) => {
      if (status.health === change.health) return false;
      status.health = change.health;
      if (status.phase === 'Running' || status.phase === 'Paused') setLiveReady(status, c.metadata.generation);
      return true;
    });
    if (!updated) return;
    const output = change.output.trim().split('\n')[0]?.slice(0, 200) ?? '';
    if (change.health === 'unhealthy') await ctx.events.record(updated, 'Warning', 'Unhealthy', `Healthcheck failed: ${output || `exit code ${change.exitCode}`}`);
    else if (change.health === 'healthy') await ctx.events.record(updated, 'Normal', 'Healthy', 'Healthcheck passed');
  }

  /** Read-modify-write of a Container's status outside a reconcile, retried on Conflict. */
  private async touchStatus(key: string, edit: (status: ContainerStatus, c: Container) => boolean): Promise<Container | undefined> {
    const ctx = this.ctx;
    if (!ctx || ctx.signal.aborted) return undefined;
    const { namespace, name } = splitKey(key);
    for (let attempt = 1; ; attempt++) {
      const c = await getIfExists<Container>(ctx.client('Container'), namespace, name);
      if (!c) return undefined;
      const status = structuredClone(c.status ?? {});
      if (!edit(status, c)) return undefined;
      try {
        return (await ctx.client('Container').updateStatus({ ...c, status })) as Container;
      } catch (error) {
        if (!isApiError(error, 'Conflict') || attempt >= 5) throw error;
      }
    }
  }

  // --- after an exit --------------------------------------------------------------------

  private async afterExit(
    ctx: ReconcileContext,
    key: string,
    id: string,
    c: SpecContainer,
    state: ContainerState,
    desired: DesiredState,
  ): Promise<Result | void> {
    this.prober.stop(key);
    this.exitWatches.delete(key);
    const status = structuredClone(c.status ?? {});
    const isNewDeath = status.phase === 'Running' || status.phase === 'Paused' || status.phase === 'Creating' || (state.finishedAt !== undefined && status.finishedAt !== state.finishedAt);
    const exitCode = applyExit(status, state, this.now());
    const userStopped = getCondition(c.status, CONDITION_READY)?.reason === 'Stopped';
    // Where the container stays down, its status goes first and the Died event after it:
    // `run` waits for that status.
    // The Died event is written beside the deletion of an auto-removed container (recording
    // never rejects): its finalizer runs in the next reconcile, which waits for this one.
    if (desired === 'stopped') {
      await this.writeStatus(ctx, c, stoppedByUser(status));
      await Promise.all([this.autoRemove(ctx, key, id, c), isNewDeath && this.recordDeath(ctx, c, state, exitCode)]);
      return;
    }
    if (!userStopped && !shouldRestart(c.spec.restartPolicy, c.spec.maxRetries, { exitCode, restartCount: status.restartCount ?? 0 })) {
      status.phase = 'Exited';
      delete status.message;
      setCondition(status, { type: CONDITION_READY, status: 'False', reason: 'Exited', message: `exited with code ${exitCode}`, observedGeneration: c.metadata.generation });
      await this.writeStatus(ctx, c, status);
      await Promise.all([this.autoRemove(ctx, key, id, c), isNewDeath && this.recordDeath(ctx, c, state, exitCode)]);
      return;
    }
    if (isNewDeath) await this.recordDeath(ctx, c, state, exitCode);
    if (userStopped) {
      // `d2p start` after `d2p stop`: start again at once, as `docker start` does.
      this.backoff.reset(key);
      return this.start(ctx, key, id, await this.writeStatus(ctx, c, status), desired, false);
    }
    const deathId = state.finishedAt ?? `${state.shimPid ?? ''}:${state.startedAt ?? ''}`;
    const ranFor = state.startedAt && state.finishedAt ? Date.parse(state.finishedAt) - Date.parse(state.startedAt) : undefined;
    const now = this.now();
    const plan = this.backoff.plan(key, deathId, ranFor, now);
    if (now < plan.notBefore) {
      const wasWaiting = status.phase === 'CrashLoopBackOff';
      status.phase = 'CrashLoopBackOff';
      status.message = `back-off ${plan.delayMs}ms restarting failed container; next start at ${new Date(plan.notBefore).toISOString()}`;
      setCondition(status, { type: CONDITION_READY, status: 'False', reason: 'CrashLoopBackOff', message: `exited with code ${exitCode}`, observedGeneration: c.metadata.generation });
      await this.writeStatus(ctx, c, status);
      if (!wasWaiting) await ctx.events.record(c, 'Warning', 'BackOff', `Back-off restarting failed container ${c.metadata.name}`);
      return { requeueAfter: plan.notBefore - now };
    }
    return this.start(ctx, key, id, await this.writeStatus(ctx, c, status), desired, true);
  }

  private async recordDeath(ctx: ReconcileContext, c: SpecContainer, state: ContainerState, exitCode: number): Promise<void> {
    const how = state.signal ? ` (${state.signal})` : state.message ? ` (${state.message})` : '';
    await ctx.events.record(c, exitCode === 0 ? 'Normal' : 'Warning', 'Died', `Container exited with code ${exitCode}${how}`);
    if (state.oomKilled) await ctx.events.record(c, 'Warning', 'OOMKilled', 'Container was killed by the kernel OOM killer (memory limit reached)');
  }

  // --- stopping and deletion ------------------------------------------------------------

  /**
   * docker run --rm (AutoRemove): a container whose process is done for good deletes
   * itself, once its final status (the exit code `run` reports) is written. What it used
   * goes at the same time as that deletion is written (the process is over, nothing waits
   * for it), so its finalizer then finds nothing left but itself. Should the deletion
   * fail, the next reconcile deletes it again rather than create it anew (reconcile's
   * check of an exited autoRemove container).
   */
  private async autoRemove(ctx: ReconcileContext, key: string, id: string, c: Container): Promise<void> {
    if (!c.spec?.autoRemove || c.metadata.deletionTimestamp) return;
    const [removed, deleted] = await Promise.allSettled([this.remove(ctx, key, id, c, 'it has exited and is removed (autoRemove)'), this.deleteSelf(ctx, c)]);
    if (removed.status === 'rejected' && deleted.status === 'rejected') {
      ctx.log.warn('deleting an exited autoRemove container failed too', { key, error: describeError(deleted.reason) });
    }
    if (removed.status === 'rejected') throw removed.reason;
    if (deleted.status === 'rejected') throw deleted.reason;
  }

  private async deleteSelf(ctx: ReconcileContext, c: Container): Promise<void> {
    try {
      await ctx.client('Container').delete(c.metadata.namespace, c.metadata.name, { preconditionUid: c.metadata.uid });
    } catch (error) {
      if (!isApiError(error, 'NotFound')) throw error;
    }
  }

  /** docker stop: stop signal, grace period, SIGKILL; returns the final state. */
  private async stopProcess(ctx: ReconcileContext, key: string, id: string, c: Container, why: string): Promise<ContainerState> {
    this.prober.stop(key);
    this.exitWatches.delete(key);
    await ctx.events.record(c, 'Normal', 'Killing', `Stopping container ${c.metadata.name}: ${why}`);
    const state = await runtimeCall(id, () => this.runtime().stop(id));
    const how = state.signal ? `killed by ${state.signal}` : `exit code ${state.exitCode ?? 'unknown'}`;
    await ctx.events.record(c, 'Normal', 'Stopped', `Stopped container ${c.metadata.name} (${how})`);
    return state;
  }

  /** Stops (grace, then kill) and deletes the runtime container: nothing of it is left. */
  private async remove(ctx: ReconcileContext, key: string, id: string, c: Container, why: string): Promise<void> {
    const state = await this.observe(id);
    if (!state) return;
    if (state.status === 'running' || state.status === 'paused') await this.stopProcess(ctx, key, id, c, why);
    // Before the runtime removes the container's directory, which holds the netns mount.
    if (c.spec) await this.networkingOf(ctx)?.detach(attachRequestOf(id, withAppliedNetworks(c as SpecContainer, this.appliedSpec(ctx, id))));
    await runtimeCall(id, () => this.runtime().delete(id, { force: true }));
    this.appliedSpecs.delete(id);
    this.backoff.reset(key);
  }

  private async finalize(ctx: ReconcileContext, key: string, id: string, c: Container): Promise<Result | void> {
    if (!(c.metadata.finalizers ?? []).includes(CONTAINER_FINALIZER)) return;
    await this.remove(ctx, key, id, c, 'the container is being deleted');
    await removeAnonymousVolumes(anonymousVolumesDir(ctx.paths.containers, id));
    this.forget(key);
    const finalizers = (c.metadata.finalizers ?? []).filter((f) => f !== CONTAINER_FINALIZER);
    try {
      await ctx.client('Container').update({ ...c, metadata: { ...c.metadata, finalizers } });
    } catch (error) {
      if (!isApiError(error, 'NotFound')) throw error;
    }
  }

  /** Writes `status` unless it is what is stored; returns the object as stored. */
  private async writeStatus<T extends Container>(ctx: ReconcileContext, c: T, status: ContainerStatus): Promise<T> {
    if (isDeepStrictEqual(stripUndefined(status), stripUndefined(c.status ?? {}))) return c;
    return (await ctx.client('Container').updateStatus({ ...c, status: stripUndefined(status) })) as T;
  }
}

function desiredState(c: Container): DesiredState {
  const value = c.metadata.annotations?.[DESIRED_STATE_ANNOTATION] ?? 'running';
  if (value === 'running' || value === 'stopped' || value === 'paused') return value;
  throw new TerminalError('InvalidAnnotation', `metadata.annotations["${DESIRED_STATE_ANNOTATION}"] ${JSON.stringify(value)} is not running, stopped or paused`);
}

/** Runtime spec problems are the user's to fix: no retry until the object changes. */
async function runtimeCall<T>(id: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof InvalidSpecError) throw new TerminalError('InvalidSpec', `container ${id}: ${error.message}`, { cause: error });
    throw error;
  }
}

/** A new runtime container: everything about the previous one is dropped. */
/**
 * What the process will run, for `ps` and `describe` (docker ps shows it even for an image
 * that has no Image object, such as one built here). Undefined when there is nothing to run:
 * runtime.create refuses that with its own InvalidSpecError, which is the one reported.
 */
function processArgs(config: ContainerConfig): string[] | undefined {
  try {
    return resolveArgs(config);
  } catch (error) {
    if (error instanceof InvalidSpecError) return undefined;
    throw error;
  }
}

function freshStatus(c: Container, phase: ContainerStatus['phase']): ContainerStatus {
  return {
    phase,
    observedGeneration: c.metadata.generation,
    restartCount: 0,
    conditions: structuredClone(c.status?.conditions ?? []),
  };
}

function attachRequestOf(id: string, c: SpecContainer): AttachRequest {
  return { namespace: c.metadata.namespace ?? DEFAULT_NAMESPACE, name: c.metadata.name, id, spec: c.spec, labels: c.metadata.labels };
}

/**
 * For detaching: the networks and mode of the applied spec too, which is what the
 * namespace was really set up for when the new spec changed them.
 */
function withAppliedNetworks(c: SpecContainer, applied: ContainerSpec | undefined): SpecContainer {
  if (!applied) return c;
  const listed = new Set((c.spec.networks ?? []).map((n) => n.name));
  const networks = [...(c.spec.networks ?? []), ...(applied.networks ?? []).filter((n) => !listed.has(n.name))];
  return { ...c, spec: { ...c.spec, networks, networkMode: applied.networkMode ?? 'bridge' } };
}

interface NetworkFailure {
  reason: string;
  message: string;
  /** A Network that may appear or become ready: its watch wakes the container. */
  waitForNetwork: boolean;
}

/** What a (live) network change did: the addresses the container has now, its ports, or why it failed. */
interface NetworkSync {
  ipAddresses: Record<string, string>;
  ports?: Attachment['ports'];
  failure?: NetworkFailure;
}

const FAILURE_REASONS: Partial<Record<NetworkErrorCode, string>> = {
  D2P_NETWORK_ADDRESS_IN_USE: 'AddressInUse',
  D2P_NETWORK_ADDRESS_UNAVAILABLE: 'AddressUnavailable',
  D2P_NETWORK_SUBNET_FULL: 'SubnetFull',
};

/** Failures of a network change the user fixes (by the spec or by creating a Network); anything else is thrown on. */
async function networkFailure(ctx: ReconcileContext, c: SpecContainer, error: unknown): Promise<NetworkFailure | undefined> {
  const container = `${c.metadata.namespace ?? DEFAULT_NAMESPACE}/${c.metadata.name}`;
  if (isAttachError(error, 'D2P_NETWORK_NOT_READY') && error.network !== undefined) {
    return { ...(await missingNetwork(ctx, c.metadata.namespace ?? DEFAULT_NAMESPACE, error.network, container)), waitForNetwork: true };
  }
  if (isAttachError(error, 'D2P_NETWORK_INVALID_ATTACHMENT')) return { reason: 'InvalidAttachment', message: error.message, waitForNetwork: false };
  const reason = isNetworkError(error) ? FAILURE_REASONS[error.code] : undefined;
  if (reason === undefined) return undefined;
  return { reason, message: `container ${container}: ${describeError(error)}`, waitForNetwork: false };
}

/** Not ready, or not there at all — also when a Network of that name exists only in another namespace. */
async function missingNetwork(ctx: ReconcileContext, namespace: string, network: string, container: string): Promise<{ reason: string; message: string }> {
  const networks = (await ctx.client('Network').list({})).items;
  if (networks.some((n) => (n.metadata.namespace ?? DEFAULT_NAMESPACE) === namespace && n.metadata.name === network)) {
    return { reason: 'NetworkNotReady', message: `container ${container}: network ${namespace}/${network} is not ready yet` };
  }
  const elsewhere = networks.filter((n) => n.metadata.name === network).map((n) => n.metadata.namespace ?? DEFAULT_NAMESPACE);
  const hint = elsewhere.length > 0 ? ` (a container joins networks of its own namespace; ${network} exists in namespace ${elsewhere.join(', ')})` : '';
  return { reason: 'NetworkNotFound', message: `container ${container}: network ${network} not found in namespace ${namespace}${hint}` };
}

/** status.ipAddresses (and ports) as attached now, and the NetworksAttached condition: False on a failure, True again after one. */
function applyNetworkSync(status: ContainerStatus, networks: NetworkSync | undefined, generation: number | undefined): void {
  if (!networks) return;
  if (Object.keys(networks.ipAddresses).length > 0) status.ipAddresses = networks.ipAddresses;
  else delete status.ipAddresses;
  if (networks.ports && networks.ports.length > 0) status.ports = networks.ports;
  else if (networks.ports) delete status.ports;
  if (networks.failure) {
    const { reason, message } = networks.failure;
    setCondition(status, { type: CONDITION_NETWORKS_ATTACHED, status: 'False', reason, message, observedGeneration: generation });
  } else if (getCondition(status, CONDITION_NETWORKS_ATTACHED)) {
    setCondition(status, { type: CONDITION_NETWORKS_ATTACHED, status: 'True', reason: 'Attached', message: 'spec.networks applied', observedGeneration: generation });
  }
}

/** docker events says "network connect" and "network disconnect"; these are their Events. */
async function recordNetworkEvents(ctx: ReconcileContext, c: SpecContainer, changes: ReturnType<typeof networkChanges>, addresses: Record<string, string>): Promise<void> {
  for (const name of changes.disconnected) await ctx.events.record(c, 'Normal', 'NetworkDisconnected', `Disconnected from network ${name}`);
  for (const n of changes.connected) {
    const ip = addresses[n.name];
    await ctx.events.record(c, 'Normal', 'NetworkConnected', `Connected to network ${n.name}${ip ? ` (${ip})` : ''}`);
  }
}

function pendingStatus(c: Container, conditionType: string, reason: string, message: string): ContainerStatus {
  const status = structuredClone(c.status ?? {});
  status.phase = 'Pending';
  status.message = message;
  status.observedGeneration = c.metadata.generation;
  setCondition(status, { type: conditionType, status: 'False', reason, message, observedGeneration: c.metadata.generation });
  if (conditionType !== CONDITION_READY) {
    setCondition(status, { type: CONDITION_READY, status: 'False', reason, message, observedGeneration: c.metadata.generation });
  }
  return status;
}

function runningStatus(c: Container, state: ContainerState, health: HealthState | undefined): ContainerStatus {
  const status = structuredClone(c.status ?? {});
  status.phase = state.status === 'paused' ? 'Paused' : 'Running';
  status.pid = state.pid;
  status.startedAt = state.startedAt;
  status.oomKilled = false;
  status.health = health;
  status.observedGeneration = c.metadata.generation;
  delete status.finishedAt;
  delete status.exitCode;
  delete status.message;
  setLiveReady(status, c.metadata.generation);
  return status;
}

/** Ready of a live (Running or Paused) container: running, and healthy when it has a healthcheck. */
function setLiveReady(status: ContainerStatus, generation: number | undefined): void {
  const health = status.health;
  const ready = status.phase === 'Running' && (health === undefined || health === 'healthy');
  const reason = ready ? 'Running' : status.phase === 'Paused' ? 'Paused' : health === 'unhealthy' ? 'Unhealthy' : 'HealthcheckStarting';
  setCondition(status, { type: CONDITION_READY, status: ready ? 'True' : 'False', reason, observedGeneration: generation });
}

function stoppedByUser(previous: ContainerStatus | undefined): ContainerStatus {
  const status = structuredClone(previous ?? {});
  status.phase = 'Exited';
  status.message = `stopped by the user (${DESIRED_STATE_ANNOTATION}=stopped)`;
  delete status.pid;
  delete status.health;
  setCondition(status, { type: CONDITION_READY, status: 'False', reason: 'Stopped', message: status.message, observedGeneration: status.observedGeneration });
  return status;
}

/** Copies the exit of `state` into `status`; returns the exit code (Docker's 128+signal when killed). */
function applyExit(status: ContainerStatus, state: ContainerState, now: number): number {
  const exitCode = state.exitCode ?? 255;
  status.exitCode = exitCode;
  status.oomKilled = state.oomKilled;
  status.finishedAt = state.finishedAt ?? status.finishedAt ?? new Date(now).toISOString();
  if (state.startedAt) status.startedAt = state.startedAt;
  delete status.pid;
  delete status.health;
  return exitCode;
}

/** JSON drops undefined; comparing and storing without it avoids writes that change nothing. */
function stripUndefined<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}
