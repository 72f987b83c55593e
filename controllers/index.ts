// Entry point of the controllers for the daemon: one Manager running every reconciler.
import type { Paths } from '../src/config';
import type { Logger } from './logger';
import { Manager, type ClientProvider, type ManagerOptions } from './manager';
import { volumeController } from './volume';
import { containerController } from './container';
import { serviceController } from './service';
import { imageController } from './image';
import { networkController } from './network';
import { buildController } from './build';

export interface StartControllersOptions {
  client: ClientProvider;
  paths: Paths;
  logger?: Logger;
  /** Tuning (back-off, resync, event TTL…); defaults follow controller-runtime and Kubernetes. */
  tuning?: Omit<ManagerOptions, 'client' | 'paths' | 'logger'>;
  /** cgroup parent of every container (default "d2p"); tests use a unique one. */
  containerCgroupParent?: string;
}

export interface RunningControllers {
  manager: Manager;
  /** Stops watches and waits for reconciles in flight. */
  stop(): Promise<void>;
}

/** Registers every controller and starts them; resolves once every existing object is queued. */
export async function startControllers(opts: StartControllersOptions): Promise<RunningControllers> {
  const manager = new Manager({ ...opts.tuning, client: opts.client, paths: opts.paths, logger: opts.logger });
  manager.register(volumeController());
  manager.register(containerController({ cgroupParent: opts.containerCgroupParent }));
  manager.register(serviceController());
  manager.register(imageController());
  manager.register(networkController());
  manager.register(buildController(opts.containerCgroupParent ? { cgroupParent: `${opts.containerCgroupParent}-build` } : {}));
  await manager.start();
  return { manager, stop: () => manager.stop() };
}

export { Manager, ownerKeys, splitKey } from './manager';
export type { ClientProvider, Controller, ManagerOptions, ReconcileContext, Result, WatchSpec } from './manager';
export { TerminalError, isTerminalError, describeError } from './errors';
export { setCondition, getCondition, isTrue, removeCondition } from './conditions';
export { EventRecorder, eventName, pruneEvents } from './events';
export type { EventType, InvolvedObject } from './events';
export { WorkQueue } from './queue';
export type { WorkQueueOptions } from './queue';
export { createJsonLogger } from './logger';
export type { Logger, LogLevel } from './logger';
export { volumeController, reconcileVolume, volumeDirectory, VOLUME_FINALIZER } from './volume';
export type { Volume, VolumeSpec, VolumeStatus } from './volume';
