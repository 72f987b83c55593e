// What every benchmark of hack/bench shares: entering the sandbox, and the small
// statistics and timing helpers.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const path = require('node:path');

const repo = path.resolve(__dirname, '..', '..');

/**
 * Benchmarks start daemons whose controllers make bridges, iptables rules, cgroups and
 * containers: they run inside hack/sandbox (private mount, network and PID namespaces), so
 * none of that reaches the host and nothing outlives the run. Peers are installed first,
 * outside: apt needs the network. In the sandbox: returns. Outside: runs `script` again
 * inside it and exits with its status.
 */
function enterSandbox(script) {
  if (process.env.D2P_SANDBOX === '1') return;
  if (process.argv.includes('--install-peers')) execFileSync(path.join(repo, 'hack/install-peers'), { stdio: 'inherit' });
  const r = spawnSync(path.join(repo, 'hack/sandbox'), [process.execPath, script, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))];
const median = (xs) => quantile(xs, 0.5);
const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/** Times `runs` runs of run(await prepare(i)) (prepare is not timed); prints and returns the median ms. */
async function timeRuns(label, runs, prepare, run, { labelWidth = 14 } = {}) {
  const times = [];
  for (let i = 0; i < runs; i++) {
    const ctx = await prepare(i);
    const t0 = process.hrtime.bigint();
    await run(ctx);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const m = median(times);
  console.log(`${label.padEnd(labelWidth)} median ${m.toFixed(0).padStart(6)} ms   runs: ${times.map((t) => t.toFixed(0)).join(', ')}`);
  return m;
}

module.exports = { enterSandbox, quantile, median, have, timeRuns };
