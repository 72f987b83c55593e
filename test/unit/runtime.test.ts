// The TypeScript half of the runtime without root: config.json building (Docker's rules
// for command, env, user, capabilities, mounts), durations, signals, cgroup discovery.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { v1Mounts } from '../../src/runtime/cgroups';
import { InvalidSpecError } from '../../src/runtime/errors';
import { buildOciConfig, hostsFile, mergeEnv, resolvConf, resolveArgs, resolveCapabilities, DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS } from '../../src/runtime/oci';
import { parseDuration } from '../../src/api/duration';
import { signalName, signalNumber } from '../../src/runtime/signals';
import type { ContainerConfig } from '../../src/runtime/types';
import { resolveUser } from '../../src/runtime/user';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-rt-unit-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

const base = (extra: Partial<ContainerConfig> = {}): ContainerConfig => ({ id: 'c1', rootfs: { lowerDirs: ['/layers/a'] }, ...extra });
const paths = { rootfs: '/b/rootfs', upper: '/b/upper', work: '/b/work', hosts: '/b/hosts', resolvConf: '/b/resolv.conf', hostname: '/b/hostname' };
const root = { uid: 0, gid: 0, additionalGids: [] };

describe('command (Docker entrypoint/cmd rules)', () => {
  const image = { entrypoint: ['/entry'], cmd: ['default'] };
  it('joins the image entrypoint and cmd', () => expect(resolveArgs(base({ image }))).toEqual(['/entry', 'default']));
  it('replaces only cmd when command is given', () => expect(resolveArgs(base({ image, command: ['x'] }))).toEqual(['/entry', 'x']));
  it('drops the image cmd when the entrypoint is overridden', () => expect(resolveArgs(base({ image, entrypoint: ['/other'] }))).toEqual(['/other']));
  it('clears the entrypoint with []', () => expect(resolveArgs(base({ image, entrypoint: [], command: ['sh'] }))).toEqual(['sh']));
  it('refuses an empty command', () => expect(() => resolveArgs(base())).toThrow(InvalidSpecError));
});

describe('env', () => {
  it('lets the spec override the image in place and appends new names', () => {
    const env = mergeEnv(base({ image: { env: ['PATH=/bin', 'A=1', 'B=2'] }, env: [{ name: 'A', value: 'x' }, { name: 'C', value: '3' }] }), 'h', undefined);
    expect(env).toEqual(['PATH=/bin', 'HOSTNAME=h', 'A=x', 'B=2', 'C=3']);
  });
  it('adds TERM for a tty and HOME from passwd', () => {
    expect(mergeEnv(base({ tty: true }), 'h', '/root')).toEqual(expect.arrayContaining(['TERM=xterm', 'HOME=/root']));
  });
  it('rejects a malformed image entry, naming the field', () => {
    expect(() => mergeEnv(base({ image: { env: ['NOEQUALS'] } }), 'h', undefined)).toThrow(/image\.env/);
  });
});

describe('capabilities', () => {
  it('defaults to Docker\'s 14 (CapEff a80425fb)', () => {
    const bits = resolveCapabilities(base()).length;
    expect(bits).toBe(14);
    expect(new Set(resolveCapabilities(base()))).toEqual(new Set(DEFAULT_CAPABILITIES));
  });
  it('adds and drops with or without the CAP_ prefix, any case', () => {
    const caps = resolveCapabilities(base({ capAdd: ['net_admin'], capDrop: ['CAP_CHOWN'] }));
    expect(caps).toContain('CAP_NET_ADMIN');
    expect(caps).not.toContain('CAP_CHOWN');
  });
  it('supports ALL on either side', () => {
    expect(resolveCapabilities(base({ capDrop: ['ALL'], capAdd: ['KILL'] }))).toEqual(['CAP_KILL']);
    expect(resolveCapabilities(base({ capAdd: ['ALL'], capDrop: ['SYS_ADMIN'] }))).not.toContain('CAP_SYS_ADMIN');
    expect(resolveCapabilities(base({ capAdd: ['ALL'] })).length).toBeGreaterThan(30);
  });
  it('rejects an unknown capability', () => expect(() => resolveCapabilities(base({ capAdd: ['FLY'] }))).toThrow(/capAdd\[0\]/));
});

describe('OCI config', () => {
  const build = (extra: Partial<ContainerConfig>) => buildOciConfig({ config: base({ command: ['true'], ...extra }), user: root, paths, cgroupDirs: ['/cg/a', '/cg/b'] });

  it('carries the security baseline of DESIGN.md §4', () => {
    const oci = build({});
    expect(oci.linux.maskedPaths).toEqual(MASKED_PATHS);
    expect(oci.linux.readonlyPaths).toEqual(READONLY_PATHS);
    expect(oci.process.noNewPrivileges).toBe(true);
    expect(oci.process.capabilities.inheritable).toEqual([]);
    expect(oci.process.capabilities.ambient).toEqual([]);
    expect(oci.linux.devices.map((d) => d.path)).toEqual(['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom', '/dev/tty']);
    expect(oci.mounts.find((m) => m.destination === '/proc')?.options).toEqual(['nosuid', 'noexec', 'nodev']);
    expect(oci.mounts.find((m) => m.destination === '/dev/pts')?.options).toEqual(expect.arrayContaining(['newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5']));
    expect(oci.mounts.find((m) => m.destination === '/dev/shm')?.options).toEqual(expect.arrayContaining(['mode=1777', `size=${64 * 1024 * 1024}`]));
    expect(oci.mounts.find((m) => m.destination === '/sys')?.options).toContain('ro');
    expect(oci.annotations['dev.d2p.cgroup.dirs']).toBe('/cg/a:/cg/b');
    expect(oci.annotations['dev.d2p.rootfs.overlay']).toBe('lowerdir=/layers/a,upperdir=/b/upper,workdir=/b/work');
  });

  it('maps mounts, shmSize, ulimits, readOnlyRootfs and the network mode', () => {
    const oci = build({
      mounts: [
        { type: 'bind', source: '/host/data', target: '/data', readOnly: true },
        { type: 'tmpfs', target: '/run', tmpfs: { size: 1024, mode: 0o1777 } },
      ],
      shmSize: 1 << 20,
      ulimits: [{ name: 'nofile', soft: 1024, hard: 2048 }],
      readOnlyRootfs: true,
      networkMode: 'host',
    });
    expect(oci.mounts.find((m) => m.destination === '/data')).toEqual({ destination: '/data', type: 'bind', source: '/host/data', options: ['rbind', 'ro', 'rprivate'] });
    expect(oci.mounts.find((m) => m.destination === '/run')?.options).toEqual(['nosuid', 'nodev', 'noexec', 'size=1024', 'mode=1777']);
    expect(oci.mounts.find((m) => m.destination === '/dev/shm')?.options).toContain('size=1048576');
    expect(oci.process.rlimits).toEqual([{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 2048 }]);
    expect(oci.root.readonly).toBe(true);
    expect(oci.linux.namespaces.map((n) => n.type)).not.toContain('network');
  });

  it('joins a given network namespace path', () => {
    expect(build({ netnsPath: '/proc/42/ns/net' }).linux.namespaces).toContainEqual({ type: 'network', path: '/proc/42/ns/net' });
  });

  it('refuses bad input with the field named', () => {
    expect(() => build({ mounts: [{ type: 'bind', source: 'rel', target: '/x' }] })).toThrow(/mounts\[0\]\.source/);
    expect(() => build({ mounts: [{ type: 'tmpfs', target: '/a/../b' }] })).toThrow(/mounts\[0\]\.target/);
    expect(() => build({ sysctls: { 'kernel.hostname': 'x' } })).toThrow(/sysctls\.kernel\.hostname/);
    expect(() => build({ sysctls: { 'net.ipv4.ip_forward': '1' }, networkMode: 'host' })).toThrow(/network namespace/);
    expect(() => build({ ulimits: [{ name: 'bogus', soft: 1, hard: 1 }] })).toThrow(/ulimits\[0\]\.name/);
    expect(() => build({ rootfs: { lowerDirs: ['/a,b'] } })).toThrow(/rootfs/);
  });

  it('writes /etc/hosts and resolv.conf as Docker does', () => {
    const c = base({ hostname: 'web', extraHosts: [{ hostname: 'db', ip: '10.0.0.5' }], ipAddresses: ['172.20.0.2'] });
    expect(hostsFile(c)).toMatch(/^127\.0\.0\.1\tlocalhost\n/);
    expect(hostsFile(c)).toContain('10.0.0.5\tdb\n172.20.0.2\tweb\n');
    expect(resolvConf(base(), 'nameserver 127.0.0.53\nsearch lan\n')).toBe('search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n');
    expect(resolvConf(base({ dns: ['1.1.1.1'] }), 'nameserver 9.9.9.9\n')).toBe('nameserver 1.1.1.1\n');
  });
});

describe('user lookup', () => {
  beforeEach(() => {
    fs.mkdirSync(path.join(tmp, 'etc'));
    fs.writeFileSync(path.join(tmp, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n');
    fs.writeFileSync(path.join(tmp, 'etc/group'), 'root:x:0:\nstaff:x:50:app\napp:x:1001:\n');
  });
  it('resolves a name to uid, primary gid and supplementary groups', () => {
    expect(resolveUser('app', [tmp])).toEqual({ uid: 1000, gid: 1001, additionalGids: [50], home: '/home/app' });
  });
  it('accepts numeric ids without a passwd entry', () => {
    expect(resolveUser('4242:4343', [tmp])).toEqual({ uid: 4242, gid: 4343, additionalGids: [], home: undefined });
  });
  it('resolves a group name and defaults to root', () => {
    expect(resolveUser('1000:staff', [tmp]).gid).toBe(50);
    expect(resolveUser(undefined, [tmp])).toMatchObject({ uid: 0, gid: 0 });
  });
  it('names the missing user or group', () => {
    expect(() => resolveUser('ghost', [tmp])).toThrow(/unable to find user ghost/);
    expect(() => resolveUser('app:ghosts', [tmp])).toThrow(/unable to find group ghosts/);
  });
  it('refuses an /etc/passwd that is a symlink', () => {
    fs.rmSync(path.join(tmp, 'etc/passwd'));
    fs.symlinkSync('/etc/passwd', path.join(tmp, 'etc/passwd'));
    expect(() => resolveUser('root', [tmp])).toThrow(/not a regular file/);
  });
});

describe('durations and signals', () => {
  it('parses Go durations', () => {
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration('0')).toBe(0);
    expect(() => parseDuration('10')).toThrow(/invalid duration/);
    expect(() => parseDuration('5 s')).toThrow(/invalid duration/);
  });
  it('maps signal names like Docker', () => {
    expect(signalNumber('SIGTERM')).toBe(15);
    expect(signalNumber('kill')).toBe(9);
    expect(signalNumber('2')).toBe(2);
    expect(signalName(9)).toBe('SIGKILL');
    expect(() => signalNumber('SIGNOPE')).toThrow(/unknown signal/);
  });
});

describe('cgroup v1 discovery', () => {
  it('maps controllers to their mount points, including co-mounted ones', () => {
    const mountinfo = [
      '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
      '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
      '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd',
      '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
    ].join('\n');
    const m = v1Mounts(mountinfo);
    expect(m.get('cpu')).toBe('/sys/fs/cgroup/cpu,cpuacct');
    expect(m.get('cpuacct')).toBe('/sys/fs/cgroup/cpu,cpuacct');
    expect(m.get('memory')).toBe('/sys/fs/cgroup/memory');
    expect(m.has('systemd')).toBe(false);
  });
});
