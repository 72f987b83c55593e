#!/usr/bin/env node
// Workload benchmarks of issue 5 (DESIGN.md §9), not tests: they assert nothing and print
// figures, ratios against the peers measured in the same run, and budget verdicts.
//   1. `d2p run --rm IMG /bin/true`, CLI process included, daemon already running, versus
//      `podman run --rm` and `docker run --rm` (a dockerd of the benchmark's own, when
//      Debian's docker.io is installed): median, p90. Budget ≤ 80 ms median and ≤ 0.5× podman.
//   2. `d2p up -d --wait` of 10 and of 100 services (busybox `sleep 3600`, no ports) versus
//      `podman-compose up -d` and `docker-compose up -d` (on that dockerd), then `down`.
//      Budget ≤ 0.5 s for 10.
//   3. With the 100 services running: the daemon's CPU over 30 s (budget < 1 % of one core),
//      and the shims' memory (budget ≤ 1 MiB RSS each), next to podman's conmons.
// Every tool runs the same busybox image, built here as an OCI layout (hack/test-images),
// loaded with `d2p image load` and copied into podman's storage with skopeo. It re-execs
// itself under hack/sandbox (private mount + network namespace, private /run), so all
// traffic stays on loopback and nothing is left on the host.
//   node hack/bench/workload.js [--install-peers] [run] [up]     (parts; default both, idle is in up)
// Env: RUNS (run --rm samples, default 20), UP_RUNS (ups of 10, default 3), UP100_RUNS
// (default 1), IDLE_SECONDS (default 30). The last line is `BENCH {json}` for run.js.
'use strict';
const { execFileSync, spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const repo = path.resolve(__dirname, '..', '..');
const d2pBin = path.join(repo, 'bin', 'd2p');
const shimBin = path.join(repo, 'addon/build/Release/d2p-shim');
const IMAGE = 'd2p.bench/busybox:1';
const RUNS = Number(process.env.RUNS ?? 20);
const UP_RUNS = Number(process.env.UP_RUNS ?? 3);
const UP100_RUNS = Number(process.env.UP100_RUNS ?? 1);
const IDLE_SECONDS = Number(process.env.IDLE_SECONDS ?? 30);
const PARTS = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const wants = (part) => PARTS.length === 0 || PARTS.includes(part);
const BUDGET = { runMedianMs: 80, runVsPodman: 0.5, up10Ms: 500, idleCpuPercent: 1, shimRssKiB: 1024 };

// ------------------------------------------------------------------------------ helpers

const { enterSandbox, have, median, quantile } = require('./common');
const fmt = (ms) => `${ms.toFixed(1)} ms`;

/** Runs a command to completion; a non-zero exit is an error that names the command and shows its stderr. */
function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`, { cause: r.error });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${(r.stderr ?? '').trim().slice(-2000)}`);
  return r.stdout;
}

/** Wall time of one command, process start to exit, in ms. */
function timed(cmd, args, opts) {
  const t0 = process.hrtime.bigint();
  sh(cmd, args, opts);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function readNumberFile(file) {
  return Number(fs.readFileSync(file, 'utf8').split('\n')[0]);
}

/** VmRSS and Pss of a process in KiB; Pss splits shared pages among their users, so it sums honestly. */
function memoryKiB(pid) {
  const field = (text, name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? NaN);
  return { rss: field(fs.readFileSync(`/proc/${pid}/status`, 'utf8'), 'VmRSS'), pss: field(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'), 'Pss') };
}

/** utime + stime of a process (all its threads) in clock ticks: fields 14 and 15 of proc(5) stat, counted after the ")" of comm. */
function cpuTicks(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** Pids whose /proc/<pid>/cmdline satisfies `match`; processes that exit while we look are skipped (ENOENT/ESRCH). */
function findProcesses(match) {
  const pids = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv;
    try {
      argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch (e) {
      if (e.code === 'ENOENT' || e.code === 'ESRCH') continue;
      throw e;
    }
    if (match(argv)) pids.push(Number(entry));
  }
  return pids;
}

function killIfRunning(pid, signal) {
  try {
    process.kill(pid, signal);
  } catch (e) {
    if (e.code !== 'ESRCH') throw e;
  }
}

// ------------------------------------------------------------------------------ the image

/** One layer: a static busybox and its applets, the same bytes for every tool. */
function writeBusyboxLayout(dir) {
  const lib = require(path.join(repo, 'hack/test-images/lib.js'));
  const busybox = '/usr/bin/busybox';
  const applets = sh(busybox, ['--list']).split('\n').filter((a) => a && a !== 'busybox');
  const layer = lib.tarArchive([
    { path: 'bin/', type: 'dir' },
    { path: 'bin/busybox', type: 'file', mode: 0o755, content: fs.readFileSync(busybox) },
    ...applets.map((a) => ({ path: `bin/${a}`, type: 'symlink', linkpath: 'busybox' })),
    { path: 'etc/', type: 'dir' },
    { path: 'etc/passwd', type: 'file', content: 'root:x:0:0:root:/root:/bin/sh\n' },
    { path: 'etc/group', type: 'file', content: 'root:x:0:\n' },
    { path: 'tmp/', type: 'dir', mode: 0o1777 },
    { path: 'root/', type: 'dir', mode: 0o700 },
    ...['proc/', 'sys/', 'dev/'].map((p) => ({ path: p, type: 'dir' })),
  ]);
  const desc = lib.addImage(dir, [layer], { config: { Env: ['PATH=/bin'], Cmd: ['sh'] } });
  lib.writeLayoutIndex(dir, { [IMAGE]: desc });
}

// ------------------------------------------------------------------------------ the tools

function composeFile(dir, project, services) {
  let yaml = `name: ${project}\nservices:\n`;
  // sleep as PID 1 ignores SIGTERM (no handler in a namespace's init), so every tool would
  // wait out its default 10 s grace on down; 1 s keeps the runs short and equal.
  for (let i = 0; i < services; i++) yaml += `  s${i}:\n    image: ${IMAGE}\n    command: ["sleep", "3600"]\n    stop_grace_period: 1s\n`;
  const file = path.join(dir, `${project}.yml`);
  fs.writeFileSync(file, yaml);
  return file;
}

function d2pTool(work) {
  const env = { ...process.env, D2P_ROOT: path.join(work, 'd2p-root') };
  const d2p = (args) => [d2pBin, args, { env }];
  return {
    name: 'd2p',
    env,
    setup(layout) {
      sh(...d2p(['image', 'load', '-q', '-i', layout]));
      // The first command starts the daemon; the figures are for a daemon already running.
      sh(...d2p(['run', '--rm', IMAGE, '/bin/true']));
    },
    run: () => timed(...d2p(['run', '--rm', IMAGE, '/bin/true'])),
    up: (file) => timed(...d2p(['up', '-d', '--wait', '-f', file])),
    down: (file) => timed(...d2p(['down', '-f', file])),
    running: (project) => sh(...d2p(['ps', '-q', '-p', project])).split('\n').filter(Boolean).length,
    daemonPid: () => readNumberFile(path.join(env.D2P_ROOT, 'daemon.pid')),
    supervisors: () => findProcesses((argv) => argv[0] === shimBin && argv.some((a) => a.startsWith(env.D2P_ROOT))),
    stop(composeFiles) {
      // After a failure a project may still be up; its shims would outlive the daemon.
      for (const file of composeFiles) {
        const r = spawnSync(d2pBin, ['down', '-f', file], { env, encoding: 'utf8' });
        if (r.status !== 0) console.error(`cleanup: d2p down -f ${file} exited ${r.status}: ${r.stderr.trim()}`);
      }
      const pidFile = path.join(env.D2P_ROOT, 'daemon.pid');
      if (fs.existsSync(pidFile)) killIfRunning(readNumberFile(pidFile), 'SIGTERM');
    },
  };
}

/**
 * podman with its own storage and run dirs under the work dir. cgroupfs and file events:
 * there is no systemd here. The same image is copied from the OCI layout with skopeo.
 */
function podmanTool(work) {
  const root = path.join(work, 'podman-root');
  const runroot = path.join(work, 'podman-run');
  const flags = ['--root', root, '--runroot', runroot, '--cgroup-manager', 'cgroupfs', '--events-backend', 'file'];
  // podman-compose calls `podman` by name with no way to pass global flags; containers.conf
  // and storage.conf pointed at by env give it (and plain podman) the same settings.
  // podman sets RLIMIT_NOFILE and RLIMIT_NPROC to its defaults, and on this machine (no
  // CAP_SYS_RESOURCE in the bounding set) runc fails with EPERM for anything not below our
  // hard limits, even equal ones; docker's own daemon defaults (nofile 1024, nproc 4096 in
  // many distributions) are low enough and leave the figures untouched.
  const conf = path.join(work, 'containers.conf');
  fs.writeFileSync(conf, '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n');
  const storageConf = path.join(work, 'storage.conf');
  fs.writeFileSync(storageConf, `[storage]\ndriver = "overlay"\nrunroot = "${runroot}"\ngraphroot = "${root}"\n`);
  const env = { ...process.env, CONTAINERS_CONF: conf, CONTAINERS_STORAGE_CONF: storageConf };
  const podman = (args) => ['podman', [...flags, ...args], { env }];
  let network = [];
  return {
    name: 'podman',
    setup(layout) {
      sh('skopeo', ['copy', '--quiet', `oci:${layout}:${IMAGE}`, `containers-storage:[overlay@${root}+${runroot}]${IMAGE}`], { env });
      // podman's default bridge network needs netavark/CNI and iptables; if it cannot set one
      // up here, compare without a network and say so, rather than not at all.
      const probe = spawnSync(...podman(['run', '--rm', '--pull=never', IMAGE, '/bin/true']).slice(0, 2), { env, encoding: 'utf8' });
      if (probe.status !== 0) {
        console.log(`podman: run with the default network failed (${probe.stderr.trim().split('\n').pop()}); trying --network none`);
        network = ['--network', 'none'];
        sh(...podman(['run', '--rm', '--pull=never', ...network, IMAGE, '/bin/true']));
      }
    },
    network: () => (network.length ? 'none' : 'default bridge'),
    run: () => timed(...podman(['run', '--rm', '--pull=never', ...network, IMAGE, '/bin/true'])),
    /** `d2p run` joins no network (a netns with only lo): this variant is the like-for-like one. */
    withoutNetwork: () => ({ name: 'podman --net none', network: () => 'none', run: () => timed(...podman(['run', '--rm', '--pull=never', '--network', 'none', IMAGE, '/bin/true'])) }),
    env,
    stop() {
      // Logged, not thrown: a throw here would hide the error that brought us to cleanup.
      const r = spawnSync(...podman(['rm', '-a', '-f', '-t', '0']).slice(0, 2), { env, encoding: 'utf8' });
      if (r.status !== 0) console.error(`cleanup: podman rm -a -f exited ${r.status}: ${r.stderr.trim()}`);
    },
    conmons: () => findProcesses((argv) => path.basename(argv[0]) === 'conmon' && argv.some((a) => a.startsWith(runroot) || a.startsWith(root))),
  };
}

/**
 * A Compose CLI (podman-compose, docker-compose v1) on its engine's environment. Both name
 * the project after the file's directory unless -p says otherwise. `fileFor` gives the
 * file the CLI reads, for one that refuses part of the Compose specification.
 */
function composeCliTool(command, engine, fileFor = (file) => file) {
  const run = (args) => [command, args, { env: engine.env }];
  const project = (file) => path.basename(file, '.yml');
  return {
    name: command,
    up: (file) => timed(...run(['-p', project(file), '-f', fileFor(file), 'up', '-d'])),
    down: (file) => timed(...run(['-p', project(file), '-f', fileFor(file), 'down', '-t', '1'])),
  };
}

/**
 * A Docker engine of the benchmark's own: dockerd (Debian's docker.io, `hack/install-peers
 * --docker-engine`) with its data, run dirs and socket under the work dir, started inside
 * the sandbox, so its bridge and iptables rules live in the sandbox's network namespace
 * and its containers under a cgroup parent removed afterwards. A system engine, if one
 * runs, is left alone. The same image is copied in from the OCI layout with skopeo.
 */
function dockerTool(work) {
  const dir = path.join(work, 'docker');
  const socket = `unix://${path.join(dir, 'docker.sock')}`;
  const cgroupParent = `d2p-bench-docker-${process.pid}`;
  const env = { ...process.env, DOCKER_HOST: socket };
  const docker = (args) => ['docker', args, { env }];
  let daemon;
  let network = [];
  return {
    name: 'docker',
    env,
    start() {
      fs.mkdirSync(dir, { recursive: true });
      const log = fs.openSync(path.join(dir, 'dockerd.log'), 'a');
      daemon = spawn(
        'dockerd',
        ['--data-root', path.join(dir, 'root'), '--exec-root', path.join(dir, 'exec'), '--pidfile', path.join(dir, 'docker.pid'), '-H', socket, '--cgroup-parent', cgroupParent],
        { stdio: ['ignore', log, log] },
      );
      for (let i = 0; i < 150; i++) {
        const r = spawnSync('docker', ['info', '--format', '{{.ServerVersion}}'], { env, encoding: 'utf8', timeout: 10000 });
        if (r.status === 0) return r.stdout.trim();
        if (daemon.exitCode !== null) break;
        spawnSync('sleep', ['0.2']);
      }
      throw new Error(`dockerd did not answer on ${socket}: ${fs.readFileSync(path.join(dir, 'dockerd.log'), 'utf8').trim().split('\n').slice(-5).join('\n')}`);
    },
    setup(layout) {
      sh('skopeo', ['copy', '--quiet', `oci:${layout}:${IMAGE}`, `docker-daemon:${IMAGE}`, '--dest-daemon-host', socket]);
      const probe = spawnSync(...docker(['run', '--rm', IMAGE, '/bin/true']).slice(0, 2), { env, encoding: 'utf8' });
      if (probe.status !== 0) {
        console.log(`docker: run with the default network failed (${probe.stderr.trim().split('\n').pop()}); trying --network none`);
        network = ['--network', 'none'];
        sh(...docker(['run', '--rm', ...network, IMAGE, '/bin/true']));
      }
    },
    network: () => (network.length ? 'none' : 'default bridge'),
    run: () => timed(...docker(['run', '--rm', ...network, IMAGE, '/bin/true'])),
    withoutNetwork: () => ({ name: 'docker --net none', network: () => 'none', run: () => timed(...docker(['run', '--rm', '--network', 'none', IMAGE, '/bin/true'])) }),
    stop() {
      if (!daemon) return;
      const ids = spawnSync(...docker(['ps', '-aq']).slice(0, 2), { env, encoding: 'utf8' }).stdout?.trim().split('\n').filter(Boolean) ?? [];
      if (ids.length > 0) {
        const r = spawnSync(...docker(['rm', '-f', ...ids]).slice(0, 2), { env, encoding: 'utf8' });
        if (r.status !== 0) console.error(`cleanup: docker rm -f exited ${r.status}: ${r.stderr.trim()}`);
      }
      killIfRunning(daemon.pid, 'SIGTERM');
      for (let i = 0; i < 100 && daemon.exitCode === null && processAlive(daemon.pid); i++) spawnSync('sleep', ['0.1']);
      // cgroupfs is the host's, not the sandbox's: remove the engine's cgroups, deepest first.
      for (const hierarchy of fs.readdirSync('/sys/fs/cgroup')) {
        const top = path.join('/sys/fs/cgroup', hierarchy, cgroupParent);
        if (fs.existsSync(top)) spawnSync('find', [top, '-depth', '-type', 'd', '-exec', 'rmdir', '{}', ';']);
      }
    },
  };
}

function processAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    if (e.code === 'ESRCH') return false;
    throw e;
  }
}

/** docker-compose v1 refuses the top-level `name:` of the Compose specification: its file goes without it. */
function withoutTopLevelName(file) {
  const out = file.replace(/\.yml$/, '.compose-v1.yml');
  if (!fs.existsSync(out)) fs.writeFileSync(out, fs.readFileSync(file, 'utf8').replace(/^name: .*\n/, ''));
  return out;
}

// ------------------------------------------------------------------------------ benchmarks

function benchRun(tools, results) {
  console.log(`\n== 1. run --rm ${IMAGE} /bin/true, ${RUNS} runs each, interleaved, CLI process included`);
  const samples = Object.fromEntries(tools.map((t) => [t.name, []]));
  // Interleaved so that noise from anything else on the machine falls on every tool alike.
  for (let i = 0; i < RUNS; i++) for (const t of tools) samples[t.name].push(t.run());
  for (const t of tools) {
    const xs = samples[t.name];
    console.log(`${t.name.padEnd(18)} median ${fmt(median(xs)).padStart(10)}   p90 ${fmt(quantile(xs, 0.9)).padStart(10)}   min ${fmt(Math.min(...xs)).padStart(10)}${t.network ? `   (network: ${t.network()})` : ''}`);
  }
  const d2p = median(samples.d2p);
  results.push({ name: 'run --rm median', value: d2p, unit: 'ms', budget: `<= ${BUDGET.runMedianMs} ms`, ok: d2p <= BUDGET.runMedianMs });
  results.push({ name: 'run --rm p90', value: quantile(samples.d2p, 0.9), unit: 'ms' });
  for (const t of tools.filter((x) => x.name !== 'd2p')) {
    const ratio = d2p / median(samples[t.name]);
    const budget = t.name === 'podman' ? { budget: `<= ${BUDGET.runVsPodman}x`, ok: ratio <= BUDGET.runVsPodman } : {};
    console.log(`d2p / ${t.name}: ${ratio.toFixed(2)}x`);
    results.push({ name: `run --rm vs ${t.name}`, value: ratio, unit: 'x', peer: t.name, peerValue: median(samples[t.name]), ...budget });
  }
}

/** Ups the project `runs` times (down in between, timed too); leaves it up after the last one when `keepUp`. */
function upDown(tool, file, project, services, runs, keepUp) {
  const ups = [];
  const downs = [];
  for (let i = 0; i < runs; i++) {
    ups.push(tool.up(file));
    if (tool.running) {
      const n = tool.running(project);
      if (n !== services) throw new Error(`${tool.name} up of ${project}: ${n} of ${services} containers running after up returned`);
    }
    if (!(keepUp && i === runs - 1)) downs.push(tool.down(file));
  }
  return { up: median(ups), ups, down: downs.length ? median(downs) : undefined };
}

/** `afterLastUp`: per tool name, what to measure while its last up is still running. */
function benchUp(work, composeTools, results, services, runs, afterLastUp) {
  console.log(`\n== 2. up of ${services} services (sleep 3600, no ports) to all running, median of ${runs}; then down`);
  const figures = {};
  for (const tool of composeTools) {
    const project = `wb${services}${tool.name.replace(/[^a-z]/g, '')}`;
    const file = composeFile(work, project, services);
    const measureWhileUp = afterLastUp?.[tool.name];
    const r = upDown(tool, file, project, services, runs, measureWhileUp !== undefined);
    if (measureWhileUp) {
      measureWhileUp();
      r.down = tool.down(file);
    }
    figures[tool.name] = r;
    const what = tool.name === 'd2p' ? 'up -d --wait' : 'up -d';
    console.log(`${tool.name.padEnd(16)} ${what.padEnd(14)} ${fmt(r.up).padStart(10)}   runs: ${r.ups.map((t) => t.toFixed(0)).join(', ')} ms   down ${r.down === undefined ? '-' : fmt(r.down)}`);
  }
  const d2p = figures.d2p.up;
  const budget = services === 10 ? { budget: `<= ${BUDGET.up10Ms} ms`, ok: d2p <= BUDGET.up10Ms } : {};
  results.push({ name: `up ${services} services`, value: d2p, unit: 'ms', ...budget });
  results.push({ name: `down ${services} services`, value: figures.d2p.down, unit: 'ms' });
  for (const [peer, f] of Object.entries(figures)) {
    if (peer === 'd2p') continue;
    console.log(`d2p / ${peer} (up ${services}): ${(d2p / f.up).toFixed(2)}x`);
    results.push({ name: `up ${services} vs ${peer}`, value: d2p / f.up, unit: 'x', peer, peerValue: f.up });
  }
}

/** Daemon CPU over IDLE_SECONDS with 100 containers up, and the supervisors' memory. */
function idleAndMemory(d2p, results) {
  const clockTicks = Number(sh('getconf', ['CLK_TCK']).trim());
  const daemon = d2p.daemonPid();
  const shims = d2p.supervisors();
  // Let start-up work (status writes, events, first resync) settle before sampling.
  spawnSync('sleep', ['5']);
  const before = { daemon: cpuTicks(daemon), shims: shims.reduce((s, p) => s + cpuTicks(p), 0) };
  spawnSync('sleep', [String(IDLE_SECONDS)]);
  const daemonCpu = ((cpuTicks(daemon) - before.daemon) / clockTicks / IDLE_SECONDS) * 100;
  const shimsCpu = ((shims.reduce((s, p) => s + cpuTicks(p), 0) - before.shims) / clockTicks / IDLE_SECONDS) * 100;
  const daemonMem = memoryKiB(daemon);
  console.log(`\n== 3. idle with 100 containers running (${shims.length} shims), sampled over ${IDLE_SECONDS} s`);
  console.log(`daemon CPU       ${daemonCpu.toFixed(2)} % of one core (budget < ${BUDGET.idleCpuPercent} %) → ${daemonCpu < BUDGET.idleCpuPercent ? 'ok' : 'OVER'}`);
  console.log(`all shims CPU    ${shimsCpu.toFixed(2)} % of one core`);
  // The total since start shows the figure above comes from the right, busy-earlier process.
  console.log(`daemon CPU since its start (pid ${daemon}): ${(cpuTicks(daemon) / clockTicks).toFixed(1)} s`);
  console.log(`daemon memory    RSS ${(daemonMem.rss / 1024).toFixed(1)} MiB, PSS ${(daemonMem.pss / 1024).toFixed(1)} MiB`);
  results.push({ name: 'daemon idle CPU, 100 containers', value: daemonCpu, unit: '%', budget: `< ${BUDGET.idleCpuPercent} %`, ok: daemonCpu < BUDGET.idleCpuPercent });
  const mem = shims.map(memoryKiB);
  const shimSummary = summarizeMemory('d2p-shim', mem);
  results.push({ name: 'shim RSS per container (max)', value: shimSummary.maxRss, unit: 'KiB', budget: `<= ${BUDGET.shimRssKiB} KiB`, ok: shimSummary.maxRss <= BUDGET.shimRssKiB });
  results.push({ name: 'shim PSS per container (mean)', value: shimSummary.meanPss, unit: 'KiB' });
  return shimSummary;
}

function summarizeMemory(label, mem) {
  if (mem.length === 0) throw new Error(`${label}: no processes found to measure`);
  const rss = mem.map((m) => m.rss);
  const pss = mem.map((m) => m.pss);
  const total = (xs) => xs.reduce((s, x) => s + x, 0);
  const s = { count: mem.length, maxRss: Math.max(...rss), medianRss: median(rss), totalRss: total(rss), meanPss: total(pss) / pss.length, totalPss: total(pss) };
  console.log(`${label.padEnd(16)} ${s.count} processes: RSS median ${s.medianRss} KiB, max ${s.maxRss} KiB, total ${(s.totalRss / 1024).toFixed(1)} MiB; PSS mean ${s.meanPss.toFixed(0)} KiB, total ${(s.totalPss / 1024).toFixed(1)} MiB`);
  return s;
}

/** conmon's memory with podman's 100 containers up: the peer figure for the shim. */
function conmonMemory(podman, results, shimSummary) {
  const conmon = summarizeMemory('conmon', podman.conmons().map(memoryKiB));
  results.push({ name: 'shim RSS vs conmon (median)', value: shimSummary.medianRss / conmon.medianRss, unit: 'x', peer: 'conmon', peerValue: conmon.medianRss });
}

// ------------------------------------------------------------------------------ main

async function main() {
  if (process.getuid() !== 0) throw new Error('run as root: the benchmarks create namespaces, cgroups and mounts');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-bench-workload-'));
  const results = [];
  const stops = [];
  try {
    // Other work on the machine shows in every figure; say how busy it was.
    console.log(`machine: ${os.cpus().length} cores, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    const layout = path.join(work, 'layout');
    writeBusyboxLayout(layout);
    const d2p = d2pTool(work);
    stops.push(d2p.stop);
    d2p.setup(layout);

    const runTools = [d2p];
    let podman;
    if (have('podman') && have('skopeo')) {
      podman = podmanTool(work);
      stops.push(podman.stop);
      podman.setup(layout);
      runTools.push(podman);
      if (podman.network() !== 'none') runTools.push(podman.withoutNetwork());
    } else {
      console.log('podman: not installed (hack/install-peers, or pass --install-peers)');
    }
    let docker;
    if (have('dockerd') && have('docker') && have('skopeo')) {
      docker = dockerTool(work);
      stops.push(docker.stop);
      console.log(`docker: engine ${docker.start()} started for this benchmark (its own data root and socket)`);
      docker.setup(layout);
      runTools.push(docker);
      if (docker.network() !== 'none') runTools.push(docker.withoutNetwork());
    } else {
      console.log('docker: no dockerd installed (hack/install-peers --docker-engine); docker run and docker-compose not measured');
    }

    if (wants('run')) benchRun(runTools, results);
    if (wants('up')) {
      const composeTools = [d2p];
      const podmanCompose = podman && have('podman-compose') ? composeCliTool('podman-compose', podman) : undefined;
      if (podmanCompose) composeTools.push(podmanCompose);
      else console.log('podman-compose: not installed (hack/install-peers, or pass --install-peers)');
      if (docker && have('docker-compose')) composeTools.push(composeCliTool('docker-compose', docker, withoutTopLevelName));
      else if (docker) console.log('docker-compose: not installed (hack/install-peers)');
      benchUp(work, composeTools, results, 10, UP_RUNS);
      let shimSummary;
      // d2p goes first, so the shims are measured before conmon is compared with them.
      if (UP100_RUNS > 0) {
        benchUp(work, composeTools, results, 100, UP100_RUNS, {
          d2p: () => (shimSummary = idleAndMemory(d2p, results)),
          'podman-compose': () => conmonMemory(podman, results, shimSummary),
        });
      } else console.log('\n== up of 100, idle CPU and memory: skipped (UP100_RUNS=0)');
    }
  } finally {
    const composeFiles = fs.readdirSync(work).filter((f) => f.endsWith('d2p.yml')).map((f) => path.join(work, f));
    for (const stop of stops.reverse()) stop(composeFiles);
    // The daemon removes its socket and pid file as it exits; give it a moment before the rm.
    spawnSync('sleep', ['1']);
    execFileSync('rm', ['-rf', work]);
  }
  console.log(`\nBENCH ${JSON.stringify({ bench: 'workload', results })}`);
}

enterSandbox(__filename);
{
  main().catch((e) => {
    console.error(`workload benchmark failed: ${e.stack ?? e.message}`);
    process.exit(1);
  });
}
