#!/usr/bin/env node
// Benchmark (not a test, DESIGN.md §9, issue 6): network setup time per container. N
// containers are attached one after the other to one bridge network through d2p's
// Networking (the code the Container controller runs: named netns, veth pair with the peer
// made inside it, bridge port, address from IPAM, lo and eth0 up, default route, hosts and
// resolv.conf), then detached; median and p90 per container. As a yardstick, the same
// kernel objects made with iproute2, one `ip` command per step, as a shell script would.
//   node hack/bench/veth.js        (enters hack/sandbox itself: nothing reaches the host)
// Env: N (containers, default 50).
'use strict';
require('./common').enterSandbox(__filename);

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { median, quantile } = require('./common');

const repo = path.resolve(__dirname, '..', '..');
const N = Number(process.env.N ?? 50);
const NAMESPACE = 'bench';
const NETWORK = 'bench_default';
const SUBNET = '10.204.0.0/16';
const GATEWAY = '10.204.0.1';
const CLOCK_TICKS_PER_SECOND = 100; // sysconf(_SC_CLK_TCK) on every Linux port that matters

// The TypeScript library, bundled on the fly so the benchmark never runs a stale dist/. The
// bundle lives two levels below the repository so addon/index.ts finds addon/build/Release.
function loadNetworkLibrary() {
  const dir = path.join(repo, '.d2p-tmp', 'bench-veth');
  fs.mkdirSync(dir, { recursive: true });
  const out = path.join(dir, 'networking.js');
  fs.writeFileSync(path.join(dir, 'entry.ts'), [
    `export { Networking, bridgeName } from ${JSON.stringify(path.join(repo, 'src/network/attach'))};`,
    `export { realNetHost } from ${JSON.stringify(path.join(repo, 'src/network/netns'))};`,
    `export { resolvePaths } from ${JSON.stringify(path.join(repo, 'src/config'))};`,
  ].join('\n'));
  require('esbuild').buildSync({ entryPoints: [path.join(dir, 'entry.ts')], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: out, logLevel: 'error' });
  return require(out);
}

/** CPU of this process and of its waited-for children (unshare(1), ip), in ms (proc(5) utime, stime, cutime, cstime). */
function cpuMs() {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = [11, 12, 13, 14].reduce((sum, index) => sum + Number(fields[index]), 0);
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** Runs step(i) for i < N, timing each; returns the per-call ms and the CPU ms per call. */
async function timeEach(step) {
  const times = [];
  const cpu0 = cpuMs();
  for (let i = 0; i < N; i++) {
    const t0 = process.hrtime.bigint();
    await step(i);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return { times, cpuPerCall: (cpuMs() - cpu0) / N };
}

function report(label, { times, cpuPerCall }) {
  const fmt = (v) => v.toFixed(1).padStart(7);
  console.log(`${label.padEnd(34)} median ${fmt(median(times))} ms   p90 ${fmt(quantile(times, 0.9))} ms   max ${fmt(Math.max(...times))} ms   CPU ${fmt(cpuPerCall)} ms/container`);
}

async function benchNetworking(lib, root) {
  const paths = lib.resolvePaths({ root });
  const host = lib.realNetHost();
  const bridge = lib.bridgeName(NAMESPACE, NETWORK);
  host.addBridge(bridge);
  try {
    host.addAddress(bridge, `${GATEWAY}/16`);
    host.setLinkUp(bridge);
    const networking = new lib.Networking({ paths, host, dnsUpstreams: ['127.0.0.1:9'], onError: (e) => console.error(`networking: ${e.message}`) });
    try {
      networking.registerNetwork({ namespace: NAMESPACE, name: NETWORK, bridge, subnet: SUBNET, gateway: GATEWAY, internal: false });
      const request = (i) => ({ namespace: NAMESPACE, name: `c${i}`, id: `bench-c${i}`, spec: { networks: [{ name: NETWORK }] } });
      const attach = await timeEach(async (i) => {
        fs.mkdirSync(path.join(paths.containers, `bench-c${i}`), { recursive: true });
        await networking.attach(request(i));
      });
      const veths = host.linkList().filter((l) => l.master === bridge);
      if (veths.length !== N) throw new Error(`expected ${N} veths on ${bridge} after attaching, found ${veths.length}`);
      const detach = await timeEach((i) => networking.detach(request(i)));
      const left = host.linkList().filter((l) => l.master === bridge);
      if (left.length !== 0) throw new Error(`${left.length} veths left on ${bridge} after detaching`);
      return { attach, detach };
    } finally {
      await networking.close();
    }
  } finally {
    host.deleteLink(bridge);
  }
}

/** The same kernel objects, one iproute2 command per step. */
async function benchIproute2() {
  const bridge = 'd2pbenchip';
  const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  ip('link', 'add', bridge, 'type', 'bridge');
  try {
    ip('addr', 'add', '10.205.0.1/16', 'dev', bridge);
    ip('link', 'set', bridge, 'up');
    const attach = await timeEach((i) => {
      const ns = `benchip${i}`;
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      ip('link', 'add', `vethip${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      ip('link', 'set', `vethip${i}`, 'master', bridge, 'up');
      ip('-n', ns, 'addr', 'add', `10.205.${Math.floor((i + 2) / 250)}.${((i + 2) % 250) + 1}/16`, 'dev', 'eth0');
      ip('-n', ns, 'link', 'set', 'eth0', 'up');
      ip('-n', ns, 'route', 'add', 'default', 'via', '10.205.0.1');
    });
    const detach = await timeEach((i) => {
      ip('link', 'del', `vethip${i}`);
      ip('netns', 'del', `benchip${i}`);
    });
    return { attach, detach };
  } finally {
    ip('link', 'del', bridge);
  }
}

async function main() {
  const lib = loadNetworkLibrary();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-bench-veth-'));
  try {
    console.log(`network setup per container, ${N} containers on one bridge; ${os.cpus().length} CPUs, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    const d2p = await benchNetworking(lib, root);
    const iproute2 = await benchIproute2();
    report('d2p attach (Networking.attach)', d2p.attach);
    report('d2p detach (Networking.detach)', d2p.detach);
    report('iproute2 attach (7 ip commands)', iproute2.attach);
    report('iproute2 detach (2 ip commands)', iproute2.detach);
    console.log(`load average at end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(`veth benchmark failed: ${error.stack ?? error.message}`);
  process.exit(1);
});
