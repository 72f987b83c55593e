// The runtime end to end: real namespaces, overlayfs, cgroups and d2p-shim (issue 3).
// One test per claim of the security baseline (DESIGN.md §4) and of supervision.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { describe, expect, it } from 'vitest';

import { shimPath } from '../../addon/index';
import { ContainerNotFoundError, ContainerStateError, InvalidSpecError, Runtime, ShimError } from '../../src/runtime/index';
import { readJsonLog, runtimeHarness, sh } from '../helpers/runtime-harness';
import { requireSandbox } from '../helpers/sandbox-guard';
import { until } from '../helpers/wait';

requireSandbox('runtime integration tests');

const harness = runtimeHarness('rt');
const { container, runToEnd } = harness;

describe('isolation', () => {
  it('runs the workload as PID 1 that sees only its own processes', async () => {
    const r = await runToEnd(container('pid1', sh('echo pid=$$; ls /proc | grep -E "^[0-9]+$"')));
    expect(r.exitCode).toBe(0);
    const [first, ...pids] = r.stdout.trim().split('\n');
    expect(first).toBe('pid=1');
    expect(pids).toContain('1');
    expect(pids.length).toBeLessThanOrEqual(4);
    expect(pids).not.toContain(String(process.pid));
  });

  it('sets the hostname and /etc/hostname', async () => {
    const r = await runToEnd(container('host', sh('hostname; cat /etc/hostname'), { hostname: 'web-1' }));
    expect(r.stdout).toBe('web-1\nweb-1\n');
  });

  it('makes / the image: a host file is unreachable and cd /.. stays at /', async () => {
    const marker = path.join(harness.tmp, 'host-marker');
    fs.writeFileSync(marker, 'secret');
    const r = await runToEnd(container('root', sh(`cd /..; pwd; ls /bin/busybox; cat ${marker} || echo unreachable`)));
    expect(r.stdout).toBe('/\n/bin/busybox\nunreachable\n');
  });

  it('masks the DESIGN §4 paths: files read empty, directories are empty and read-only', async () => {
    const files = ['/proc/timer_list', '/proc/sched_debug', '/proc/interrupts', '/proc/keys'].filter((f) => fs.existsSync(f));
    expect(files.length).toBeGreaterThan(0);
    const script = files.map((f) => `echo ${f}=$(wc -c < ${f})`).join('; ') + '; echo fw=$(ls -A /sys/firmware | wc -l); touch /sys/firmware/x 2>/dev/null || echo fw-ro';
    const r = await runToEnd(container('mask', sh(script)));
    expect(r.stdout).toBe(files.map((f) => `${f}=0\n`).join('') + 'fw=0\nfw-ro\n');
  });

  it('mounts /proc/sys read-only', async () => {
    const r = await runToEnd(container('procsys', sh('echo 1 > /proc/sys/kernel/domainname && echo wrote || echo refused')));
    expect(r.stdout).toBe('refused\n');
    expect(r.stderr).toMatch(/Read-only file system/);
  });

  it('gives exactly Docker\'s capabilities, no ambient/inheritable, and no_new_privs', async () => {
    const r = await runToEnd(container('caps', sh('grep -E "^(CapInh|CapEff|CapBnd|CapAmb|NoNewPrivs)" /proc/self/status')));
    expect(r.stdout).toBe('CapInh:\t0000000000000000\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n');
  });

  it('changes the capability set with capAdd and capDrop', async () => {
    const r = await runToEnd(container('caps2', sh('grep CapEff /proc/self/status'), { capAdd: ['NET_ADMIN'], capDrop: ['chown', 'CAP_KILL'] }));
    const expected = (0xa80425fbn | (1n << 12n)) & ~1n & ~(1n << 5n);
    expect(r.stdout).toBe(`CapEff:\t${expected.toString(16).padStart(16, '0')}\n`);
  });

  it('shows only lo in a fresh network namespace', async () => {
    const r = await runToEnd(container('net', sh('ls /sys/class/net')));
    expect(r.stdout).toBe('lo\n');
  });

  it('runs as the image user with its groups', async () => {
    const r = await runToEnd(container('user', sh('id; grep CapEff /proc/self/status'), { user: 'app' }));
    // Supplementary groups are those listing the user in /etc/group (moby/sys/user).
    expect(r.stdout).toBe('uid=1000(app) gid=1000(app) groups=50(staff)\nCapEff:\t0000000000000000\n');
  });

  it('reports a missing executable as a ShimError with errno', async () => {
    const err = await harness.runtime.run(container('noexec', ['/no/such/binary'])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShimError);
    expect((err as ShimError).native).toMatchObject({ code: 'ENOENT', syscall: 'execve', path: '/no/such/binary' });
  });
});

describe('escapes', () => {
  it('lets no host or shim fd reach the workload', async () => {
    const r = await runToEnd(container('fds', sh('ls /proc/self/fd')));
    // 0-2 are stdio; 3 is ls's own directory handle.
    expect(r.stdout.trim().split('\n').sort()).toEqual(['0', '1', '2', '3']);
  });

  it('cannot overwrite the shim or a host binary through /proc/self/exe or /proc/1/exe', async () => {
    const hash = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
    const before = { shim: hash(shimPath()), busybox: hash('/usr/bin/busybox'), layer: hash(path.join(harness.lower, 'bin/busybox')) };
    const r = await runToEnd(container('exe', sh('readlink /proc/1/exe; echo x > /proc/1/exe || echo refused1; echo x > /proc/self/exe || echo refused2')));
    expect(r.stdout).toBe('/bin/busybox\nrefused1\nrefused2\n');
    expect({ shim: hash(shimPath()), busybox: hash('/usr/bin/busybox'), layer: hash(path.join(harness.lower, 'bin/busybox')) }).toEqual(before);
  });

  it('resolves a bind target through a symlink pointing out of the rootfs inside the rootfs', async () => {
    const hostDir = path.join(harness.tmp, 'host-victim');
    fs.mkdirSync(hostDir);
    const evil = path.join(harness.tmp, 'evil-layer');
    fs.mkdirSync(evil);
    fs.symlinkSync(hostDir, path.join(evil, 'escape')); // absolute link to a host dir
    const volume = path.join(harness.tmp, 'volume');
    fs.mkdirSync(volume);
    fs.writeFileSync(path.join(volume, 'vol-file'), 'v');
    const r = await runToEnd({
      ...container('symlink', sh('ls /escape/sub')),
      rootfs: { lowerDirs: [evil, harness.lower] },
      mounts: [{ type: 'bind', source: volume, target: '/escape/sub' }],
    });
    expect(r.stdout).toBe('vol-file\n');
    expect(fs.readdirSync(hostDir)).toEqual([]);
  });
});

describe('cgroups', () => {
  it('OOM-kills a workload over a 64 MiB limit and says so', async () => {
    const r = await runToEnd(container('oom', ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=100M', 'count=1'], { resources: { memory: 64 * 1024 * 1024 } }));
    expect(r).toMatchObject({ exitCode: 137, signal: 'SIGKILL', oomKilled: true });
  });

  it('stops a fork bomb at the pids limit', async () => {
    await harness.runtime.run(container('pids', sh('i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done; sleep 30'), { resources: { pids: 20 } }));
    const events = path.join(harness.runtime.cgroups.dirsOf('pids').find((d) => d.includes('/pids/')) ?? harness.runtime.cgroups.dirsOf('pids')[0], 'pids.events');
    // pids.events counts forks refused at the limit (cgroup-v1/pids.rst, cgroup-v2.rst).
    const refused = await until('a refused fork', () => {
      const n = Number(/^max (\d+)$/m.exec(fs.readFileSync(events, 'utf8'))?.[1] ?? 0);
      return n > 0 ? n : undefined;
    });
    expect(refused).toBeGreaterThan(0);
    // The count moves in the kernel before sh has written its complaint and the shim logged it.
    const complaint = await until('the refused fork in the log', () => /can't fork|Resource temporarily unavailable/.exec(readJsonLog(harness.runtime.logPath('pids')).stderr)?.[0]);
    expect(complaint).toMatch(/can't fork|Resource temporarily unavailable/);
    const pidsMax = fs.readFileSync(path.join(path.dirname(events), 'pids.max'), 'utf8').trim();
    expect(pidsMax).toBe('20');
  });

  it('puts the process and what exec starts in the container\'s cgroup in every hierarchy', async () => {
    const s = await harness.runtime.run(container('member', ['sleep', '30']));
    const dirs = harness.runtime.cgroups.dirsOf('member');
    // Each dir holds the process (v1: one per controller; v2: one), and nothing else runs there yet.
    for (const dir of dirs) expect(fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').trim().split('\n')).toEqual([String(s.pid)]);
    // An exec'd process sees its cgroups from inside the container's cgroup namespace: "/"
    // in every hierarchy when it joined the container's, "/../.." when it stayed outside.
    const self = await harness.runtime.exec('member', { args: ['cat', '/proc/self/cgroup'] });
    expect(self.exitCode).toBe(0);
    for (const line of self.stdout.toString().trim().split('\n')) expect(line).toMatch(/^\d+:[^:]*:\/$/);
  });

  it('shows cpus 0.5 as a CFS quota inside the container', async () => {
    const r = await runToEnd(container('cpu', sh('cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max'), { resources: { cpus: 0.5 } }));
    expect(r.stdout === '50000\n100000\n' || r.stdout === '50000 100000\n').toBe(true);
  });

  it('pauses and unpauses with the freezer, and reports stats', async () => {
    await harness.runtime.run(container('pause', ['sleep', '30'], { resources: { memory: 32 * 1024 * 1024 } }));
    await harness.runtime.pause('pause');
    expect((await harness.runtime.state('pause')).status).toBe('paused');
    await harness.runtime.unpause('pause');
    expect((await harness.runtime.state('pause')).status).toBe('running');
    const stats = await harness.runtime.stats('pause');
    expect(stats.memoryLimit).toBe(32 * 1024 * 1024);
    expect(stats.pids).toBe(1);
    expect(stats.memoryUsage).toBeGreaterThan(0);
  });
});

describe('lifecycle', () => {
  it('stops with the stop signal, then SIGKILL after the grace period', async () => {
    // PID 1 without a handler ignores SIGTERM (pid_namespaces(7)), so the kill must follow.
    await harness.runtime.run(container('stop', ['sleep', '30'], { stopGracePeriod: '300ms' }));
    const s = await harness.runtime.stop('stop');
    expect(s).toMatchObject({ status: 'stopped', exitCode: 137, signal: 'SIGKILL' });
  });

  it('refuses a stop signal it could never send at create, leaving nothing behind', async () => {
    const refused = harness.runtime.create(container('badsig', ['sleep', '30'], { stopSignal: 'NOT-A-SIGNAL' }));
    await expect(refused).rejects.toBeInstanceOf(InvalidSpecError);
    await expect(refused).rejects.toThrow(/stopSignal.*NOT-A-SIGNAL/);
    await expect(harness.runtime.state('badsig')).rejects.toBeInstanceOf(ContainerNotFoundError);
    // A name or a number in range is one it can send.
    await harness.runtime.create(container('goodsig', ['true'], { stopSignal: 'usr1' }));
    await harness.runtime.delete('goodsig');
  });

  it('refuses to start a running container twice', async () => {
    await harness.runtime.run(container('twice', ['sleep', '30']));
    await expect(harness.runtime.start('twice')).rejects.toBeInstanceOf(ContainerStateError);
  });

  it('execs inside the namespaces with its own exit code', async () => {
    await harness.runtime.run(container('exec', ['sleep', '30'], { hostname: 'exec-host' }));
    const r = await harness.runtime.exec('exec', { args: ['sh', '-c', 'hostname; cat /proc/1/cmdline | tr "\\0" " "; echo; grep CapEff /proc/self/status; exit 3'] });
    expect(r.exitCode).toBe(3);
    expect(r.stdout.toString()).toBe('exec-host\nsleep 30 \nCapEff:\t00000000a80425fb\n');
  });

  it('tears down: no process, mount or cgroup left after delete', async () => {
    const s = await harness.runtime.run(container('teardown', ['sleep', '30']));
    const dirs = harness.runtime.cgroups.dirsOf('teardown');
    expect(dirs.every((d) => fs.existsSync(d))).toBe(true);
    await harness.runtime.delete('teardown', { force: true });
    expect(fs.existsSync(`/proc/${s.pid}`)).toBe(false);
    expect(dirs.some((d) => fs.existsSync(d))).toBe(false);
    expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(harness.tmp);
    expect(fs.existsSync(s.bundle)).toBe(false);
  });

  it('a bundle cut short during create counts as not found, and delete clears it for a new create', async () => {
    const created = await harness.runtime.create(container('cut', ['true']));
    // What a power loss can leave of unsynced writes: the record empty.
    fs.writeFileSync(path.join(created.bundle, 'record.json'), '');
    await expect(harness.runtime.state('cut')).rejects.toBeInstanceOf(ContainerNotFoundError);
    await expect(harness.runtime.start('cut')).rejects.toBeInstanceOf(ContainerNotFoundError);
    await harness.runtime.delete('cut');
    expect(fs.existsSync(created.bundle)).toBe(false);
    const r = await runToEnd(container('cut', ['true']));
    expect(r).toMatchObject({ exitCode: 0 });
  });
});

describe('supervision', () => {
  it('survives the death of the process that started it and is adopted once by a new Runtime', async () => {
    const stateDir = path.join(harness.tmp, 'state');
    const config = container('adopt', sh('i=0; while [ $i -lt 25 ]; do echo tick $i; i=$((i+1)); sleep 0.2; done; exit 7'));
    const script = path.join(harness.tmp, 'starter.ts');
    fs.writeFileSync(
      script,
      `import { Runtime } from ${JSON.stringify(path.resolve('src/runtime/index'))};\n` +
        `const rt = new Runtime({ stateDir: ${JSON.stringify(stateDir)}, cgroupParent: ${JSON.stringify(harness.cgroupParent)} });\n` +
        `rt.run(${JSON.stringify(config)}).then(() => { process.stdout.write('started\\n'); setInterval(() => {}, 1000); }, (e) => { console.error(e); process.exit(1); });\n`,
    );
    const starter = spawn(path.resolve('node_modules/.bin/vite-node'), [script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        starter.stdout.on('data', (b: Buffer) => b.toString().includes('started') && resolve());
        starter.on('exit', (code) => reject(new Error(`starter exited with ${code}`)));
      });
      starter.kill('SIGKILL');
      await new Promise((r) => starter.once('exit', r));
      const adopted = new Runtime({ stateDir, cgroupParent: harness.cgroupParent });
      const listed = await adopted.list();
      expect(listed.map((c) => [c.id, c.status])).toEqual([['adopt', 'running']]);
      await expect(adopted.start('adopt')).rejects.toBeInstanceOf(ContainerStateError);
      const ticksBefore = readJsonLog(adopted.logPath('adopt')).stdout.split('\n').length;
      const exit = await adopted.wait('adopt');
      expect(exit.exitCode).toBe(7);
      const out = readJsonLog(adopted.logPath('adopt')).stdout;
      expect(out.split('\n').length).toBeGreaterThan(ticksBefore);
      expect(out).toContain('tick 24\n');
    } finally {
      if (starter.exitCode === null) starter.kill('SIGKILL');
    }
  });
});
