// ContainerSpec + pulled image + prepared mounts → the runtime's ContainerConfig. The
// runtime applies Docker's entrypoint/command and env rules itself (resolveArgs and
// mergeEnv in src/runtime/oci.ts), so the image config is handed over as it is.
import { createHash } from 'node:crypto';
import { durationProblem } from '../src/api/duration';
import type { ContainerSpec } from '../src/api/types';
import type { ContainerConfig, RuntimeMount } from '../src/runtime/index';
import type { LocalImage } from './container-host';
import { TerminalError } from './errors';

// The runtime's id rule (src/runtime/runtime.ts ID_PATTERN).
const RUNTIME_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

/** Runtime id of a Container: "<namespace>_<name>", or a hashed form when that is too long. */
export function containerId(namespace: string, name: string): string {
  const plain = `${namespace}_${name}`;
  if (RUNTIME_ID.test(plain)) return plain;
  // "_" cannot start a name, so "<ns>_<name>" stays unambiguous; the hash keeps long names unique.
  const hash = createHash('sha256').update(`${namespace}/${name}`).digest('hex').slice(0, 16);
  return `${plain.slice(0, 128 - hash.length - 1)}-${hash}`;
}

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
