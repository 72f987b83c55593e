// Benchmarks start daemons whose controllers make bridges, iptables rules, cgroups and
// containers: they run inside hack/sandbox (private mount, network and PID namespaces), so
// none of that reaches the host and nothing outlives the run. Peers are installed first,
// outside: apt needs the network.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const path = require('node:path');

const repo = path.resolve(__dirname, '..', '..');

/** In the sandbox: returns. Outside: runs `script` again inside it and exits with its status. */
function enterSandbox(script) {
  if (process.env.D2P_SANDBOX === '1') return;
  if (process.argv.includes('--install-peers')) execFileSync(path.join(repo, 'hack/install-peers'), { stdio: 'inherit' });
  const r = spawnSync(path.join(repo, 'hack/sandbox'), [process.execPath, script, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

module.exports = { enterSandbox };
