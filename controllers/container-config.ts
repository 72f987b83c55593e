// ContainerSpec + pulled image + prepared mounts → the runtime's ContainerConfig. The
// runtime applies Docker's entrypoint/command and env rules itself (resolveArgs and
// mergeEnv in src/runtime/oci.ts), so the image config is handed over as it is.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { durationProblem } from '../src/api/duration';
import type { ContainerSpec, NetworkAttachment } from '../src/api/types';
import { readJsonIfExists } from '../src/runtime/bundle';
import type { ContainerConfig, RuntimeMount } from '../src/runtime/index';
import type { LocalImage } from './container-host';
import { TerminalError } from './errors';

export { containerId } from './container-id';

export interface ConfigInputs {
  id: string;
  spec: ContainerSpec;
  image: LocalImage;
  mounts: RuntimeMount[];
  /** For networkMode container:/service:, the network namespace to join. */
  netnsPath?: string;
}

export function buildRuntimeConfig({ id, spec, image, mounts, netnsPath }: ConfigInputs): ContainerConfig {
  checkDuration(spec.stopGracePeriod, 'spec.stopGracePeriod');
  const img = image.config;
  return {
    id,
    rootfs: { lowerDirs: [...image.layerDirs].reverse() },
    image: {
      env: img.env,
      cmd: img.cmd ?? undefined,
      entrypoint: img.entrypoint ?? undefined,
      workingDir: img.workingDir || undefined,
      user: img.user || undefined,
      stopSignal: img.stopSignal,
    },
    entrypoint: spec.entrypoint,
    command: spec.command,
    env: spec.env,
    workingDir: spec.workingDir,
    user: spec.user,
    hostname: spec.hostname,
    domainname: spec.domainname,
    mounts,
    resources: spec.resources,
    capAdd: spec.capAdd,
    capDrop: spec.capDrop,
    readOnlyRootfs: spec.readOnlyRootfs,
    init: spec.init,
    privileged: spec.privileged,
    tty: spec.tty,
    stdinOpen: spec.stdinOpen,
    logging: spec.logging,
    ulimits: spec.ulimits,
    sysctls: spec.sysctls,
    shmSize: spec.shmSize,
    stopSignal: spec.stopSignal ?? img.stopSignal,
    stopGracePeriod: spec.stopGracePeriod,
    networkMode: runtimeNetworkMode(spec.networkMode),
    ...(netnsPath ? { netnsPath } : {}),
    extraHosts: spec.extraHosts,
    dns: spec.dns,
  };
}

function runtimeNetworkMode(mode: string | undefined): 'bridge' | 'host' | 'none' {
  if (mode === undefined || mode === 'bridge' || mode === 'host' || mode === 'none') return mode ?? 'bridge';
  // container:/service: join another namespace through netnsPath; the mode itself is "none"
  // so the runtime makes no namespace of its own for it.
  if (mode.startsWith('container:') || mode.startsWith('service:')) return 'none';
  throw new TerminalError('InvalidSpec', `spec.networkMode ${JSON.stringify(mode)} is not bridge, host, none, container:NAME or service:NAME`);
}

function checkDuration(value: string | undefined, field: string): void {
  if (value === undefined) return;
  const problem = durationProblem(value);
  if (problem) throw new TerminalError('InvalidSpec', `${field}: invalid duration ${JSON.stringify(value)}: ${problem}`);
}

// ---------------------------------------------------------------------------- live network changes

/**
 * Whether a container made from `applied` can take `desired` without a new process, as
 * `docker network connect|disconnect` changes a running container: only spec.networks
 * differs, and both join networks through a namespace of their own (bridge), into which
 * veths can be added and from which they can be removed. Everything else is part of the
 * process (its config.json, rootfs, cgroup) or of which namespace it is in: it recreates.
 */
export function isLiveNetworkChange(applied: ContainerSpec, desired: ContainerSpec): boolean {
  if (!hasOwnBridgeNamespace(applied) || !hasOwnBridgeNamespace(desired)) return false;
  return isDeepStrictEqual(processPart(applied), processPart(desired));
}

/** Same networks, in the same order (the first one carries the default route and the ports), with the same aliases and addresses. */
export function sameNetworks(a: NetworkAttachment[] | undefined, b: NetworkAttachment[] | undefined): boolean {
  return isDeepStrictEqual(plainJson(a ?? []), plainJson(b ?? []));
}

export interface NetworkChanges {
  /** Networks joined (or joined again with other aliases or another address). */
  connected: NetworkAttachment[];
  /** Names of the networks left. */
  disconnected: string[];
}

/** What going from `before` to `after` connects and disconnects, for events. */
export function networkChanges(before: NetworkAttachment[] | undefined, after: NetworkAttachment[] | undefined): NetworkChanges {
  const previous = new Map((before ?? []).map((n) => [n.name, n]));
  const next = new Set((after ?? []).map((n) => n.name));
  return {
    connected: (after ?? []).filter((n) => !previous.has(n.name) || !sameNetworks([previous.get(n.name)!], [n])),
    disconnected: [...previous.keys()].filter((name) => !next.has(name)),
  };
}

function hasOwnBridgeNamespace(spec: ContainerSpec): boolean {
  return (spec.networkMode ?? 'bridge') === 'bridge';
}

/** The spec without what a live change may touch; networkMode's default written out. */
function processPart(spec: ContainerSpec): unknown {
  const { networks: _networks, ...rest } = spec;
  return plainJson({ ...rest, networkMode: spec.networkMode ?? 'bridge' });
}

/** JSON drops undefined members; comparing as stored avoids differences the store cannot hold. */
function plainJson(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value)) as unknown;
}

/**
 * The spec a runtime container was made from, kept beside its bundle and removed with it.
 * kubelet keeps a hash of the container spec in the runtime's container labels for the
 * same reason: after a daemon restart the controller must still tell a change of networks
 * (applied live) from one that needs a new process, and know which networks the container's
 * namespace was set up for. Written after each create and each (re)attachment.
 */
export function appliedSpecPath(containersDir: string, id: string): string {
  return path.join(containersDir, id, 'applied-spec.json');
}

export function readAppliedSpec(containersDir: string, id: string): ContainerSpec | undefined {
  return readJsonIfExists<ContainerSpec>(appliedSpecPath(containersDir, id));
}

/**
 * Temp file and rename, without fsync (the bundle is written so too): a crash leaves the
 * old record or none. None recreates the container; an old one lists networks the
 * namespace had before, and reattaching from it converges all the same.
 */
export function writeAppliedSpec(containersDir: string, id: string, spec: ContainerSpec): void {
  const file = appliedSpecPath(containersDir, id);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(spec), { mode: 0o600 });
  fs.renameSync(tmp, file);
}
