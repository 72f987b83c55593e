#!/usr/bin/env node
// Pull benchmark (issue 4, DESIGN.md §9: pull + extract of a 4-layer ~115 MB image from a
// loopback registry, budget ≤ 2 s). Generates an image of incompressible random files in
// 4 layers (SIZE_MB, default 100), pushes it to docker-registry on 127.0.0.1, then times:
//   d2p          ImageStore.pull into an empty store (download, verify, extract)
//   skopeo copy  to an OCI directory (download and verify only, no extraction)
//   podman pull  if podman is installed; `--install-peers` installs it with apt-get first
// Medians over RUNS runs (default 3), each into an empty destination.
// Not a test: it asserts nothing and prints times and ratios.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const repo = path.resolve(__dirname, '..', '..');
const runs = Number(process.env.RUNS ?? 3);
const sizeMB = Number(process.env.SIZE_MB ?? 100);
const installPeers = process.argv.includes('--install-peers');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-bench-pull-'));

// The library and the registry helper are TypeScript; bundle them rather than depend on a build.
function bundle(entry, name) {
  const out = path.join(work, `${name}.js`);
  require('esbuild').buildSync({ entryPoints: [path.join(repo, entry)], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: out, logLevel: 'error' });
  return require(out);
}

const { have, timeRuns: timeRunsOf } = require('./common');
const timeRuns = (label, prepare, run) => timeRunsOf(label, runs, prepare, run);


async function main() {
  const images = bundle('src/images/index.ts', 'images');
  const { startRegistry } = bundle('test/helpers/registry.ts', 'registry');
  const { buildRandomImage } = require(path.join(repo, 'hack/test-images/lib.js'));

  const layout = path.join(work, 'layout');
  const image = buildRandomImage(layout, { layers: 4, totalBytes: sizeMB * 1024 * 1024 });
  const compressed = image.layers.reduce((s, l) => s + l.size, 0);
  console.log(`image: 4 layers, ${(compressed / 1048576).toFixed(1)} MiB compressed, ${runs} runs each`);

  const registry = await startRegistry();
  try {
    const ref = `${registry.directHost}/bench/random:v1`;
    await images.pushOciLayout(layout, ref, { refName: 'random' });

    const results = {};
    results.d2p = await timeRuns(
      'd2p pull',
      async (i) => images.ImageStore.open(path.join(work, `store-${i}`)),
      async (store) => {
        await store.pull(ref);
      },
    );
    if (have('skopeo')) {
      results.skopeo = await timeRuns(
        'skopeo copy',
        async (i) => path.join(work, `skopeo-${i}`),
        async (dest) => {
          execFileSync('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${dest}:random`]);
        },
      );
    }
    if (!have('podman') && installPeers) {
      execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'podman'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    }
    if (have('podman')) {
      const podmanRoot = path.join(work, 'podman');
      const podman = (...args) => execFileSync('podman', ['--root', path.join(podmanRoot, 'root'), '--runroot', path.join(podmanRoot, 'run'), ...args], { stdio: 'ignore' });
      results.podman = await timeRuns(
        'podman pull',
        async () => {
          spawnSync('podman', ['--root', path.join(podmanRoot, 'root'), '--runroot', path.join(podmanRoot, 'run'), 'rmi', '-a', '-f'], { stdio: 'ignore' });
        },
        async () => podman('pull', '-q', '--tls-verify=false', ref),
      );
    } else {
      console.log('podman        not installed (pass --install-peers to apt-get install it)');
    }
    console.log('');
    for (const [peer, ms] of Object.entries(results)) {
      if (peer !== 'd2p') console.log(`d2p / ${peer}: ${(results.d2p / ms).toFixed(2)}x`);
    }
    console.log(`budget (DESIGN.md §9): ≤ 2000 ms → ${results.d2p <= 2000 ? 'within' : 'OVER'}`);
  } finally {
    await registry.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  fs.rmSync(work, { recursive: true, force: true });
  process.exit(1);
});
