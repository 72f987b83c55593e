// `init: true` in the OCI config, without root: d2p-init becomes PID 1 with the workload's
// command after "--", bind-mounted read-only into the container's /dev tmpfs.
import { describe, expect, it } from 'vitest';

import { InvalidSpecError, RuntimeError } from '../../src/runtime/errors';
import { buildOciConfig, INIT_PATH_IN_CONTAINER, type OciInputs } from '../../src/runtime/oci';
import type { ContainerConfig } from '../../src/runtime/types';

const paths = { rootfs: '/b/rootfs', upper: '/b/upper', work: '/b/work', hosts: '/b/hosts', resolvConf: '/b/resolv.conf', hostname: '/b/hostname' };
const root = { uid: 0, gid: 0, additionalGids: [] };
const INIT_BINARY = '/opt/d2p/build/Release/d2p-init';

// null: the runtime has no init binary to give (a default parameter would swallow undefined).
function inputs(extra: Partial<ContainerConfig>, initPath: string | null = INIT_BINARY): OciInputs {
  const config: ContainerConfig = { id: 'c1', rootfs: { lowerDirs: ['/layers/a'] }, image: { entrypoint: ['/entry'], cmd: ['serve', '--port', '80'] }, ...extra };
  return { config, user: root, paths, cgroupDirs: ['/sys/fs/cgroup/d2p/c1'], initPath: initPath ?? undefined };
}

describe('init: true', () => {
  it('runs d2p-init as the process, with the resolved command after "--"', () => {
    const oci = buildOciConfig(inputs({ init: true }));
    expect(oci.process.args).toEqual([INIT_PATH_IN_CONTAINER, '--', '/entry', 'serve', '--port', '80']);
  });

  it('keeps Docker\'s entrypoint/command rules for the command it wraps', () => {
    const oci = buildOciConfig(inputs({ init: true, entrypoint: ['/other'] }));
    expect(oci.process.args).toEqual([INIT_PATH_IN_CONTAINER, '--', '/other']);
  });

  it('bind-mounts the host binary read-only under /dev, after the /dev tmpfs', () => {
    const mounts = buildOciConfig(inputs({ init: true })).mounts;
    const initIndex = mounts.findIndex((m) => m.destination === INIT_PATH_IN_CONTAINER);
    const devIndex = mounts.findIndex((m) => m.destination === '/dev');
    expect(INIT_PATH_IN_CONTAINER.startsWith('/dev/')).toBe(true);
    expect(mounts[initIndex]).toEqual({
      destination: INIT_PATH_IN_CONTAINER,
      type: 'bind',
      source: INIT_BINARY,
      options: expect.arrayContaining(['bind', 'ro', 'nosuid', 'nodev']),
    });
    expect(mounts[initIndex]?.options).not.toContain('noexec');
    expect(devIndex).toBeGreaterThanOrEqual(0);
    expect(initIndex).toBeGreaterThan(devIndex);
  });

  it('leaves the process and mounts alone without init', () => {
    for (const init of [undefined, false]) {
      const oci = buildOciConfig(inputs({ init }));
      expect(oci.process.args).toEqual(['/entry', 'serve', '--port', '80']);
      expect(oci.mounts.map((m) => m.destination)).not.toContain(INIT_PATH_IN_CONTAINER);
    }
  });

  it('needs no init binary when init is off', () => {
    expect(() => buildOciConfig(inputs({ init: false }, null))).not.toThrow();
  });

  it('refuses init without a path to the binary, naming the container', () => {
    expect(() => buildOciConfig(inputs({ init: true }, null))).toThrow(RuntimeError);
    expect(() => buildOciConfig(inputs({ init: true }, null))).toThrow(/container "c1".*d2p-init/);
  });

  it('still refuses an empty command under init', () => {
    expect(() => buildOciConfig(inputs({ init: true, image: {} }))).toThrow(InvalidSpecError);
  });
});
