#!/usr/bin/env node
// Benchmark (not a test, DESIGN.md §9): start + wait of /bin/true through d2p-shim versus
// `runc run` of the same bundle, N runs each in one process; then the shim's resident
// memory while it supervises. Run as root inside the sandbox:
//   hack/sandbox node hack/bench/runtime.js [N]
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const repo = path.resolve(__dirname, '..', '..');
const shim = path.join(repo, 'addon/build/Release/d2p-shim');
const native = require(path.join(repo, 'addon/build/Release/d2p.node'));
const runs = Number(process.argv[2] ?? 30);

const CAPS = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE'];

function busyboxRootfs(dir) {
  for (const d of ['bin', 'proc', 'sys', 'dev', 'etc', 'tmp']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.copyFileSync('/usr/bin/busybox', path.join(dir, 'bin/busybox'));
  fs.chmodSync(path.join(dir, 'bin/busybox'), 0o755);
  for (const a of ['true', 'sleep', 'sh']) fs.symlinkSync('busybox', path.join(dir, 'bin', a));
}

// The same config.json serves both runtimes: plain OCI, rootfs as a directory.
function bundle(dir, args) {
  fs.mkdirSync(dir, { recursive: true });
  const rootfs = path.join(dir, 'rootfs');
  if (!fs.existsSync(rootfs)) busyboxRootfs(rootfs);
  const config = {
    ociVersion: '1.0.2',
    process: { terminal: false, user: { uid: 0, gid: 0 }, args, env: ['PATH=/bin'], cwd: '/', noNewPrivileges: true,
      capabilities: { bounding: CAPS, effective: CAPS, permitted: CAPS, inheritable: [], ambient: [] } },
    root: { path: rootfs, readonly: false },
    hostname: 'bench',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    ],
    linux: {
      namespaces: ['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup'].map((type) => ({ type })),
      maskedPaths: ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/sys/firmware'],
      readonlyPaths: ['/proc/sys', '/proc/bus'],
    },
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (b) => (out += b));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args[0]} exited ${code}: ${out}`))));
  });
}

function exitOf(pid) {
  let fd;
  try {
    fd = native.pidfdOpen(pid);
  } catch (e) {
    if (e.code === 'ESRCH') return Promise.resolve();
    throw e;
  }
  return new Promise((resolve) => native.pidfdWatch(fd, () => { native.closeFd(fd); resolve(); }));
}

async function shimOnce(dir, i) {
  const state = path.join(dir, `state-${i}`);
  fs.mkdirSync(state);
  await run(shim, ['run', '--bundle', dir, '--state-dir', state, '--log', path.join(state, 'log'), '--id', `b${i}`]);
  const { shimPid } = JSON.parse(fs.readFileSync(path.join(state, 'state.json'), 'utf8'));
  await exitOf(shimPid);
}

async function time(fn) {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

const { median } = require('./common');

async function main() {
  if (process.getuid() !== 0) throw new Error('run as root (inside hack/sandbox)');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-bench-'));
  try {
    const dir = bundle(path.join(tmp, 'true'), ['/bin/true']);
    const runcRoot = path.join(tmp, 'runc');
    const shimMs = [];
    const runcMs = [];
    for (let i = 0; i < runs; i++) {
      shimMs.push(await time(() => shimOnce(dir, i)));
      runcMs.push(await time(() => run('runc', ['--root', runcRoot, 'run', '--bundle', dir, `r${i}`])));
    }
    const s = median(shimMs);
    const r = median(runcMs);
    console.log(`start+wait /bin/true, ${runs} runs: d2p-shim median ${s.toFixed(1)} ms, runc run median ${r.toFixed(1)} ms, ratio ${(s / r).toFixed(2)} (budget <= 1.5)`);

    const sleeper = bundle(path.join(tmp, 'sleep'), ['/bin/sleep', '30']);
    const state = path.join(tmp, 'sleep-state');
    fs.mkdirSync(state);
    await run(shim, ['run', '--bundle', sleeper, '--state-dir', state, '--log', path.join(state, 'log'), '--id', 'rss']);
    const { shimPid, pid } = JSON.parse(fs.readFileSync(path.join(state, 'state.json'), 'utf8'));
    await new Promise((res) => setTimeout(res, 200));
    const status = fs.readFileSync(`/proc/${shimPid}/status`, 'utf8');
    const rssKiB = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)[1]);
    console.log(`d2p-shim RSS while supervising: ${rssKiB} KiB (budget <= 1024 KiB)`);
    process.kill(pid, 'SIGKILL');
    await exitOf(shimPid);
  } finally {
    execFileSync('rm', ['-rf', tmp]);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
