#!/usr/bin/env node
// Runs every benchmark of hack/bench in one go (`npm run bench`), inside hack/sandbox, in
// sequence so that they never compete for the 2 cores: runtime, pull, controlplane, ports,
// workload, build (when present), then any other script found here. Each one's output is
// shown as it comes; at the end, a table of ratios against the peers and budget verdicts.
//   node hack/bench/run.js [--install-peers] [NAME…]
// --install-peers runs hack/install-peers first (outside the sandbox: apt needs the
// network) and is passed on to the scripts that take it. NAMEs pick benchmarks (pull, …).
// Not a test: a benchmark over budget does not fail the run; one that crashes does (exit 1).
//
// A script reports to the table through a last line `BENCH {json}`:
//   {"bench": "workload", "results": [{"name", "value", "unit", "peer"?, "peerValue"?,
//     "budget"? (text), "ok"? (boolean)}]}
// Scripts without one are read from their human lines: "d2p / PEER: 1.23x" ratios, and any
// line with "budget" in it, judged by its ok/within/OVER word or by "X (budget <= Y)".
'use strict';
const { execFileSync, spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const repo = path.resolve(__dirname, '..', '..');
const ORDER = ['runtime', 'pull', 'controlplane', 'ports', 'workload', 'build'];
const args = process.argv.slice(2);
const installPeers = args.includes('--install-peers');
const picked = args.filter((a) => !a.startsWith('--'));

function benchmarks() {
  const found = fs
    .readdirSync(__dirname)
    // common.js is the benchmarks' shared module, not one of them.
    .filter((f) => f.endsWith('.js') && f !== path.basename(__filename) && f !== 'common.js')
    .map((f) => f.slice(0, -3));
  const unknown = picked.filter((p) => !found.includes(p));
  if (unknown.length) throw new Error(`no benchmark ${unknown.join(', ')} in hack/bench (there are: ${found.join(', ')})`);
  const ordered = [...ORDER.filter((n) => found.includes(n)), ...found.filter((n) => !ORDER.includes(n)).sort()];
  return picked.length ? ordered.filter((n) => picked.includes(n)) : ordered;
}

/** Runs one script, echoing its output as it comes; resolves with its exit status, time and output. */
function runScript(name) {
  const file = path.join(__dirname, `${name}.js`);
  // Only scripts that know --install-peers get it: runtime.js takes its first argument as a count.
  const scriptArgs = installPeers && fs.readFileSync(file, 'utf8').includes('--install-peers') ? ['--install-peers'] : [];
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file, ...scriptArgs], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      process.stdout.write(chunk);
    });
    child.stderr.on('data', (chunk) => process.stderr.write(chunk));
    child.on('error', (err) => reject(new Error(`${name}.js: ${err.message}`, { cause: err })));
    child.on('close', (code, signal) => resolve({ name, status: code ?? signal, seconds: (Date.now() - t0) / 1000, out }));
  });
}

// ------------------------------------------------------------------------------ the table

function fromBenchLine(out) {
  const line = out.split('\n').reverse().find((l) => l.startsWith('BENCH '));
  if (!line) return undefined;
  try {
    return JSON.parse(line.slice('BENCH '.length)).results;
  } catch (err) {
    throw new Error(`malformed BENCH line ${JSON.stringify(line.slice(0, 200))}: ${err.message}`, { cause: err });
  }
}

const OPS = { '<=': (a, b) => a <= b, '≤': (a, b) => a <= b, '<': (a, b) => a < b, '>=': (a, b) => a >= b, '≥': (a, b) => a >= b };

/** Reads the human lines of a script without a BENCH line (see the header). */
function fromTextLines(out) {
  const rows = [];
  for (const raw of out.split('\n')) {
    const line = raw.trim();
    const ratio = /^d2p \/ ([\w.-]+)(?: \(([^)]*)\))?:\s*([\d.]+)x/.exec(line);
    if (ratio) rows.push({ name: ratio[2] ? `${ratio[2]} vs ${ratio[1]}` : `vs ${ratio[1]}`, value: Number(ratio[3]), unit: 'x', peer: ratio[1] });
    if (!/budget/i.test(line)) continue;
    const inline = /([\d.]+)\s*([A-Za-z%]*)\s*\(budget\s*(<=|≤|>=|≥|<)\s*([\d.]+)\s*([A-Za-z%]*)\)/.exec(line);
    let ok;
    if (/\bOVER\b/.test(line)) ok = false;
    else if (/\b(ok|within)\b/i.test(line)) ok = true;
    else if (inline) ok = OPS[inline[3]](Number(inline[1]), Number(inline[4]));
    rows.push({ name: line.replace(/\s+/g, ' ').slice(0, 140), ok });
  }
  return rows;
}

function verdict(row) {
  if (row.ok === undefined) return row.budget ? '?' : '';
  return row.ok ? 'ok' : 'OVER';
}

function formatValue(row) {
  if (row.value === undefined) return '';
  const digits = row.unit === 'x' ? 2 : Math.abs(row.value) < 10 ? 2 : 1;
  return `${row.value.toFixed(digits)}${row.unit === 'x' ? 'x' : ` ${row.unit ?? ''}`}`.trim();
}

function printSummary(reports) {
  console.log('\n==================== summary ====================');
  console.log(`${'bench'.padEnd(13)} ${'measure'.padEnd(48)} ${'value'.padStart(12)}  ${'peer'.padEnd(16)} ${'budget'.padEnd(12)} verdict`);
  for (const r of reports) {
    if (r.status !== 0) {
      console.log(`${r.name.padEnd(13)} FAILED (exit ${r.status}) after ${r.seconds.toFixed(0)} s`);
      continue;
    }
    const rows = fromBenchLine(r.out) ?? fromTextLines(r.out);
    if (rows.length === 0) console.log(`${r.name.padEnd(13)} (no figures recognised; see its output above)`);
    for (const row of rows) {
      if (row.value === undefined) {
        // A line read from the script's own text: shown whole, with the verdict found in it.
        console.log(`${r.name.padEnd(13)} ${row.name}${row.ok === undefined ? '' : `  → ${verdict(row)}`}`);
        continue;
      }
      const peer = row.peer ? `${row.peer}${row.peerValue !== undefined ? ` ${row.peerValue.toFixed(1)}` : ''}` : '';
      console.log(`${r.name.padEnd(13)} ${row.name.padEnd(48)} ${formatValue(row).padStart(12)}  ${peer.padEnd(16)} ${(row.budget ?? '').padEnd(12)} ${verdict(row)}`);
    }
  }
}

// ------------------------------------------------------------------------------ main

async function main() {
  const names = benchmarks();
  const reports = [];
  for (const name of names) {
    console.log(`\n#################### ${name} ####################`);
    reports.push(await runScript(name));
  }
  printSummary(reports);
  const failed = reports.filter((r) => r.status !== 0);
  if (failed.length) {
    console.error(`\nfailed: ${failed.map((r) => `${r.name} (exit ${r.status})`).join(', ')}`);
    process.exit(1);
  }
}

function reexecInSandbox() {
  if (installPeers) execFileSync(path.join(repo, 'hack/install-peers'), { stdio: 'inherit' });
  const r = spawnSync(path.join(repo, 'hack/sandbox'), [process.execPath, __filename, ...args], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

if (process.env.D2P_SANDBOX !== '1') reexecInSandbox();
else {
  main().catch((err) => {
    console.error(`bench: ${err.stack ?? err.message}`);
    process.exit(1);
  });
}
