#!/usr/bin/env node
// Benchmark (not a test, DESIGN.md §9, issue 6): TCP throughput and round-trip latency
// through a published port versus direct to the container's address. Budget: published ≥
// 0.8× direct throughput.
//   node hack/bench/ports.js        (enters hack/sandbox itself: bridge, netns, iptables rules
//                                    live in the sandbox's network namespace, never the host's)
// The "container" is a network namespace behind a veth on a bridge, as d2p attaches one;
// the port is published by d2p's PortPublisher with d2p's IptablesNat (the code the daemon
// runs). Paths, measured in turns so that noise from other work spreads over all of them:
//   direct                  client → container IP
//   NAT 127.0.0.1           published port on loopback: DNAT in OUTPUT, route_localnet, MASQUERADE
//   NAT host address        published port on a non-loopback host address (an empty bridge standing
//                           for the host's LAN address): DNAT in OUTPUT
//   proxy 127.0.0.1         the same port published without NAT: d2p's userland proxy, what
//                           machines without iptables (and IPv6) get
// The target server and each client run in their own processes, the proxy alone in this
// one, as docker-proxy is its own process. CPU time is reported beside wall time (the
// machine may be shared): client + server, and this process (the proxy), per GiB moved.
// Env: MB (per throughput run, default 512), ROUNDS (latency round trips, default 5000),
// RUNS (median of, default 5).
'use strict';
require('./common').enterSandbox(__filename);

const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { median, quantile } = require('./common');

const repo = path.resolve(__dirname, '..', '..');
const MB = Number(process.env.MB ?? 512);
const ROUNDS = Number(process.env.ROUNDS ?? 5000);
const RUNS = Number(process.env.RUNS ?? 5);
const TARGET_PORT = 7100;
const BRIDGE = 'd2pbench0';
const BRIDGE_IP = '10.201.0.1';
const TARGET_IP = '10.201.0.2';
const HOST_LINK = 'd2phost0';
const HOST_IP = '10.203.0.1';

// The TypeScript library, bundled on the fly so the benchmark never runs a stale dist/.
function loadNetworkLibrary() {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-bench-ports-'));
  try {
    require('esbuild').buildSync({
      entryPoints: { 'port-forward': path.join(repo, 'src/network/port-forward.ts'), nat: path.join(repo, 'src/network/nat.ts'), iptables: path.join(repo, 'src/network/iptables.ts') },
      bundle: true, platform: 'node', format: 'cjs', outdir: out, logLevel: 'error',
    });
    return { ...require(path.join(out, 'port-forward.js')), ...require(path.join(out, 'nat.js')), ...require(path.join(out, 'iptables.js')) };
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

// 'T': count bytes until the client's FIN, answer "<count> <CPU µs of this process meanwhile>".
// 'L': echo every chunk.
const SERVER = `
const net = require('node:net');
net.createServer({ allowHalfOpen: true }, (s) => {
  s.setNoDelay(true);
  let mode, count = 0, cpu0 = process.cpuUsage();
  s.on('data', (c) => {
    if (mode === undefined) { mode = String.fromCharCode(c[0]); c = c.subarray(1); }
    if (mode === 'T') count += c.length; else s.write(c);
  });
  s.on('end', () => {
    const cpu = process.cpuUsage(cpu0);
    s.end(mode === 'T' ? count + ' ' + (cpu.user + cpu.system) : undefined);
  });
  s.on('error', () => s.destroy());
}).listen(${TARGET_PORT}, '${TARGET_IP}', () => console.log('ready'));
`;

const CLIENT = `
const net = require('node:net');
const [mode, host, port, mb, rounds] = process.argv.slice(1).map((v, i) => (i < 2 ? v : Number(v)));
function throughput() {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(256 * 1024, 7), total = mb * 1024 * 1024;
    const s = net.connect({ host, port, noDelay: true });
    let sent = 0, t0, cpu0, answer = '';
    const pump = () => { while (sent < total) { sent += chunk.length; if (!s.write(chunk)) return s.once('drain', pump); } s.end(); };
    s.on('connect', () => { t0 = process.hrtime.bigint(); cpu0 = process.cpuUsage(); s.write('T'); pump(); });
    s.on('data', (d) => (answer += d));
    s.on('end', () => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpu = process.cpuUsage(cpu0);
      const [count, serverCpuUs] = answer.split(' ').map(Number);
      if (count !== total) return reject(new Error('server counted ' + answer + ' of ' + total + ' bytes'));
      resolve({ mbps: total / 1048576 / seconds, seconds, cpuUs: cpu.user + cpu.system + serverCpuUs });
    });
    s.on('error', reject);
  });
}
function latency() {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, noDelay: true });
    const samples = []; let t0, pending = 0;
    const ask = () => { t0 = process.hrtime.bigint(); s.write(Buffer.alloc(64, 1)); };
    s.on('connect', () => { s.write('L'); ask(); });
    s.on('data', (d) => {
      pending += d.length; if (pending < 64) return; pending -= 64;
      samples.push(Number(process.hrtime.bigint() - t0) / 1e3);
      if (samples.length < rounds) return ask();
      s.destroy();
      resolve({ samples });
    });
    s.on('error', reject);
  });
}
(mode === 'T' ? throughput() : latency()).then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e.message); process.exit(1); });
`;

function runClient(mode, host, port) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', CLIENT, mode, host, String(port), String(MB), String(ROUNDS)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`client (${mode}) to ${host}:${port} exited ${code}`))));
  });
}

/** One throughput run, with this process's CPU (the proxy's, when the path has one) measured around it. */
async function throughputRun(host, port) {
  const cpu0 = process.cpuUsage();
  const result = await runClient('T', host, port);
  const own = process.cpuUsage(cpu0);
  return { ...result, proxyCpuUs: own.user + own.system };
}

function startServer(netns) {
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout.once('data', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`target server exited ${code}`)));
  });
}

/**
 * A container as d2p makes one: a netns whose eth0 is a veth on a bridge carrying the
 * gateway; and a second, empty bridge carrying the "host LAN address" (this kernel has no
 * dummy links). Returns once everything exists; on a failure midway, undoes what was made.
 */
function makeContainer() {
  const netns = `d2p-bench-${process.pid}`;
  const veth = `vethb${process.pid % 100000}`;
  const run = (args) => execFileSync('ip', args);
  const undo = [];
  const cleanup = () => {
    for (const step of undo.splice(0).reverse()) step();
  };
  try {
    run(['link', 'add', BRIDGE, 'type', 'bridge']);
    undo.push(() => run(['link', 'del', BRIDGE]));
    run(['addr', 'add', `${BRIDGE_IP}/24`, 'dev', BRIDGE]);
    run(['link', 'set', BRIDGE, 'up']);
    run(['link', 'add', HOST_LINK, 'type', 'bridge']);
    undo.push(() => run(['link', 'del', HOST_LINK]));
    run(['addr', 'add', `${HOST_IP}/24`, 'dev', HOST_LINK]);
    run(['link', 'set', HOST_LINK, 'up']);
    run(['netns', 'add', netns]);
    undo.push(() => run(['netns', 'del', netns]));
    run(['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    run(['link', 'set', veth, 'master', BRIDGE]);
    run(['link', 'set', veth, 'up']);
    run(['-n', netns, 'addr', 'add', `${TARGET_IP}/24`, 'dev', 'eth0']);
    run(['-n', netns, 'link', 'set', 'eth0', 'up']);
    run(['-n', netns, 'link', 'set', 'lo', 'up']);
    run(['-n', netns, 'route', 'add', 'default', 'via', BRIDGE_IP]);
  } catch (error) {
    cleanup();
    throw error;
  }
  return { netns, cleanup };
}

async function measureInTurns(paths) {
  const runs = paths.map(() => ({ throughput: [], latency: [] }));
  for (let i = 0; i < RUNS; i++) {
    for (const [index, { host, port }] of paths.entries()) {
      runs[index].throughput.push(await throughputRun(host, port));
      runs[index].latency.push(await runClient('L', host, port));
    }
  }
  return paths.map(({ label }, index) => {
    const { throughput, latency } = runs[index];
    const perGiB = (us) => us / 1e6 / (MB / 1024);
    return {
      label,
      mbps: median(throughput.map((r) => r.mbps)),
      mbpsRuns: throughput.map((r) => r.mbps),
      cpu: median(throughput.map((r) => perGiB(r.cpuUs))),
      proxyCpu: median(throughput.map((r) => perGiB(r.proxyCpuUs))),
      p50: median(latency.map((r) => quantile(r.samples, 0.5))),
      p99: median(latency.map((r) => quantile(r.samples, 0.99))),
    };
  });
}

function printRows(rows) {
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
  console.log(`TCP through a published port: ${MB} MiB per throughput run, ${ROUNDS} round trips of 64 B per latency run, median of ${RUNS} runs; ${os.cpus().length} CPUs, load average ${load}`);
  console.log('path                MB/s   ×direct   CPU s/GiB client+server   proxy   RTT p50 µs   p99 µs   ×direct p50   throughput runs MB/s');
  for (const row of rows) {
    console.log([
      row.label.padEnd(17),
      row.mbps.toFixed(0).padStart(6),
      (row.mbps / rows[0].mbps).toFixed(2).padStart(9),
      row.cpu.toFixed(2).padStart(25),
      row.proxyCpu.toFixed(2).padStart(7),
      row.p50.toFixed(1).padStart(12),
      row.p99.toFixed(1).padStart(8),
      (row.p50 / rows[0].p50).toFixed(2).padStart(13),
      `  ${row.mbpsRuns.map((m) => m.toFixed(0)).join(', ')}`,
    ].join(' '));
  }
  for (const row of rows.slice(1)) {
    const ratio = row.mbps / rows[0].mbps;
    console.log(`budget ≥ 0.80× direct throughput: ${row.label.trim().padEnd(17)} ${ratio.toFixed(2)}× → ${ratio >= 0.8 ? 'within budget' : 'OVER BUDGET'}`);
  }
}

async function main() {
  const lib = loadNetworkLibrary();
  const iptables = lib.findIptables();
  if (iptables === undefined) throw new Error('the iptables binary is needed for the kernel NAT paths (apt-get install iptables)');
  console.log(`load average at start: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
  const container = makeContainer();
  const nat = new lib.IptablesNat({ iptables, chain: 'D2P-BENCH' });
  const withNat = new lib.PortPublisher({ nat });
  const proxyOnly = new lib.PortPublisher();
  let server;
  try {
    server = await startServer(container.netns);
    const target = { protocol: 'tcp', targetIP: TARGET_IP, targetPort: TARGET_PORT };
    const natPort = await withNat.publish({ hostIP: '0.0.0.0', hostPort: 0, targetInterface: BRIDGE, ...target });
    if (natPort.nat !== 'all') throw new Error(`expected the published port to be carried by NAT for every address, got ${natPort.nat}`);
    const proxyPort = await proxyOnly.publish({ hostIP: '127.0.0.1', hostPort: 0, targetInterface: BRIDGE, ...target });
    const rows = await measureInTurns([
      { label: 'direct', host: TARGET_IP, port: TARGET_PORT },
      { label: 'NAT 127.0.0.1', host: '127.0.0.1', port: natPort.hostPort },
      { label: 'NAT host address', host: HOST_IP, port: natPort.hostPort },
      { label: 'proxy 127.0.0.1', host: '127.0.0.1', port: proxyPort.hostPort },
    ]);
    printRows(rows);
  } finally {
    await withNat.closeAll();
    await proxyOnly.closeAll();
    await nat.removeAll();
    if (server) {
      server.kill('SIGKILL');
      await new Promise((resolve) => server.once('exit', resolve));
    }
    container.cleanup();
  }
}

main().catch((error) => {
  console.error(`ports benchmark failed: ${error.stack ?? error.message}`);
  process.exit(1);
});
