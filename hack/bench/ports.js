#!/usr/bin/env node
// Benchmark (not a test, DESIGN.md §9, issue 6): TCP throughput and round-trip latency
// through a published port versus direct to the target. Budget: published ≥ 0.8× direct
// throughput.
//   node hack/bench/ports.js            target on loopback: direct vs the userland proxy
//   hack/sandbox node hack/bench/ports.js
//                                       target in its own netns behind a veth ("container"):
//                                       direct to its IP vs the proxy (127.0.0.1) vs kernel
//                                       NAT (host address, when iptables exists)
// The target server and each client run in their own processes, and the proxy alone in
// this one, as docker-proxy is its own process. Env: MB (per throughput run, default 512),
// ROUNDS (latency round trips, default 5000), RUNS (median of, default 5).
'use strict';
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const repo = path.resolve(__dirname, '..', '..');
const MB = Number(process.env.MB ?? 512);
const ROUNDS = Number(process.env.ROUNDS ?? 5000);
const RUNS = Number(process.env.RUNS ?? 5);
const TARGET_PORT = 7100;

// The TypeScript library, bundled on the fly so the benchmark never runs a stale dist/.
function loadNetworkLibrary() {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-bench-ports-'));
  require('esbuild').buildSync({
    entryPoints: { 'port-forward': path.join(repo, 'src/network/port-forward.ts'), nat: path.join(repo, 'src/network/nat.ts') },
    bundle: true, platform: 'node', format: 'cjs', outdir: out, logLevel: 'error',
  });
  const lib = { ...require(path.join(out, 'port-forward.js')), ...require(path.join(out, 'nat.js')) };
  fs.rmSync(out, { recursive: true, force: true });
  return lib;
}

// 'T': count bytes until the client's FIN, answer the count. 'L': echo every chunk.
const SERVER = (host) => `
const net = require('node:net');
net.createServer({ allowHalfOpen: true }, (s) => {
  s.setNoDelay(true);
  let mode, count = 0;
  s.on('data', (c) => {
    if (mode === undefined) { mode = String.fromCharCode(c[0]); c = c.subarray(1); }
    if (mode === 'T') count += c.length; else s.write(c);
  });
  s.on('end', () => s.end(mode === 'T' ? String(count) : undefined));
  s.on('error', () => s.destroy());
}).listen(${TARGET_PORT}, '${host}', () => console.log('ready'));
`;

const CLIENT = `
const net = require('node:net');
const [host, port, mb, rounds] = process.argv.slice(1).map((v, i) => (i === 0 ? v : Number(v)));
function throughput() {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(256 * 1024, 7), total = mb * 1024 * 1024;
    const s = net.connect({ host, port, noDelay: true });
    let sent = 0, t0, answer = '';
    const pump = () => { while (sent < total) { sent += chunk.length; if (!s.write(chunk)) return s.once('drain', pump); } s.end(); };
    s.on('connect', () => { t0 = process.hrtime.bigint(); s.write('T'); pump(); });
    s.on('data', (d) => (answer += d));
    s.on('end', () => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (Number(answer) !== total) return reject(new Error('server counted ' + answer + ' of ' + total + ' bytes'));
      resolve((total * 8) / seconds / 1e9);
    });
    s.on('error', reject);
  });
}
function latency() {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, noDelay: true });
    const samples = []; let t0;
    const ask = () => { t0 = process.hrtime.bigint(); s.write(Buffer.alloc(64, 1)); };
    let pending = 0;
    s.on('connect', () => { s.write('L'); ask(); });
    s.on('data', (d) => {
      pending += d.length; if (pending < 64) return; pending -= 64;
      samples.push(Number(process.hrtime.bigint() - t0) / 1e3);
      if (samples.length < rounds) return ask();
      s.destroy(); samples.sort((a, b) => a - b);
      resolve({ p50: samples[Math.floor(rounds / 2)], p99: samples[Math.floor(rounds * 0.99)] });
    });
    s.on('error', reject);
  });
}
(async () => { const gbps = await throughput(); const lat = await latency(); console.log(JSON.stringify({ gbps, ...lat })); })()
  .catch((e) => { console.error(e.message); process.exit(1); });
`;

function runClient(host, port) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', CLIENT, host, String(port), String(MB), String(ROUNDS)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`client to ${host}:${port} exited ${code}`))));
  });
}

function startServer(host, netns) {
  const command = netns ? ['ip', ['netns', 'exec', netns, process.execPath, '-e', SERVER(host)]] : [process.execPath, ['-e', SERVER(host)]];
  const child = spawn(command[0], command[1], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout.once('data', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`target server exited ${code}`)));
  });
}

const { median } = require('./common');

/** Runs the paths in turns (a, b, c, a, b, c, …) so that noise from other work on the machine spreads over all of them. */
async function measureInTurns(paths) {
  const results = paths.map(() => []);
  for (let i = 0; i < RUNS; i++) {
    for (const [index, { host, port }] of paths.entries()) results[index].push(await runClient(host, port));
  }
  return paths.map(({ label }, index) => {
    const runs = results[index];
    return { label, gbps: median(runs.map((r) => r.gbps)), p50: median(runs.map((r) => r.p50)), p99: median(runs.map((r) => r.p99)) };
  });
}

function sandboxTarget() {
  const netns = `d2p-bench-${process.pid}`;
  const veth = `d2pb${process.pid % 100000}`;
  const run = (args) => execFileSync('ip', args);
  run(['netns', 'add', netns]);
  run(['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
  run(['addr', 'add', '10.201.0.1/24', 'dev', veth]);
  run(['link', 'set', veth, 'up']);
  run(['-n', netns, 'addr', 'add', '10.201.0.2/24', 'dev', 'eth0']);
  run(['-n', netns, 'link', 'set', 'eth0', 'up']);
  run(['-n', netns, 'link', 'set', 'lo', 'up']);
  return { netns, hostIP: '10.201.0.1', targetIP: '10.201.0.2', cleanup: () => run(['netns', 'del', netns]) };
}

async function main() {
  const lib = loadNetworkLibrary();
  const inSandbox = process.env.D2P_SANDBOX === '1';
  const target = inSandbox ? sandboxTarget() : { targetIP: '127.0.0.1', cleanup: () => undefined };
  const iptables = inSandbox ? lib.findIptables() : undefined;
  const nat = iptables ? new lib.IptablesNat({ iptables, chain: 'D2P-BENCH' }) : undefined;
  const publisher = new lib.PortPublisher({ nat });
  const server = await startServer(target.targetIP, target.netns);
  try {
    const published = await publisher.publish({ hostIP: '0.0.0.0', hostPort: 0, protocol: 'tcp', targetIP: target.targetIP, targetPort: TARGET_PORT });
    const paths = [
      { label: 'direct', host: target.targetIP, port: TARGET_PORT },
      { label: 'published: userland proxy', host: '127.0.0.1', port: published.hostPort },
    ];
    if (nat) paths.push({ label: 'published: kernel NAT', host: target.hostIP, port: published.hostPort });
    const rows = await measureInTurns(paths);
    console.log(`TCP through a published port, ${MB} MiB per throughput run, ${ROUNDS} round trips of 64 B, median of ${RUNS}; target ${inSandbox ? 'in its own netns behind a veth' : 'on loopback'}`);
    console.log('path                          Gbit/s   ×direct   RTT p50 µs   RTT p99 µs');
    for (const row of rows) {
      console.log(`${row.label.padEnd(28)} ${row.gbps.toFixed(2).padStart(7)}   ${(row.gbps / rows[0].gbps).toFixed(2).padStart(7)}   ${row.p50.toFixed(1).padStart(10)}   ${row.p99.toFixed(1).padStart(10)}`);
    }
    const best = Math.max(...rows.slice(1).map((r) => r.gbps)) / rows[0].gbps;
    console.log(`budget ≥ 0.80× direct throughput: best published path ${best.toFixed(2)}× → ${best >= 0.8 ? 'within budget' : 'OVER BUDGET'}`);
  } finally {
    await publisher.closeAll();
    if (nat) nat.removeAll();
    server.kill('SIGKILL');
    await new Promise((resolve) => server.once('exit', resolve));
    target.cleanup();
  }
}

main().catch((error) => {
  console.error(`ports benchmark failed: ${error.stack ?? error.message}`);
  process.exit(1);
});
