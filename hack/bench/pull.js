#!/usr/bin/env node
// Pull benchmark (issue 4, DESIGN.md §9: pull + extract of a 4-layer ~115 MB image from a
// loopback registry, budget ≤ 2 s and ≤ 0.5× podman). Two images, each pushed to
// docker-registry on 127.0.0.1 and pulled into an empty destination by every tool:
//   files   4 layers made of this machine's own files (/usr/lib/gcc, /usr/include, Python's
//           library, locale data): real binaries, headers and text, ~15,000 entries,
//           compressing about 3:1 as image layers do. The budget's image.
//   random  4 layers of 8 incompressible random files each (SIZE_MB, default 100): the
//           byte-moving extreme, where nothing is left to decompress and few files to create.
// Tools, medians over RUNS runs (default 3):
//   d2p          ImageStore.pull of the compiled library (dist/; `npm run build` first)
//   skopeo copy  to an OCI directory (download and verify only, no extraction)
//   podman pull  if podman is installed; `--install-peers` installs it with apt-get first
// IMAGES=files,random picks images. Not a test: it asserts nothing and prints times and ratios.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { enterSandbox, have, timeRuns: timeRunsOf } = require('./common');
enterSandbox(__filename);

const repo = path.resolve(__dirname, '..', '..');
const runs = Number(process.env.RUNS ?? 3);
const sizeMB = Number(process.env.SIZE_MB ?? 100);
const wanted = (process.env.IMAGES ?? 'files,random').split(',');
const installPeers = process.argv.includes('--install-peers');
const work = fs.mkdtempSync(path.join('/var/tmp', 'd2p-bench-pull-'));
const timeRuns = (label, prepare, run) => timeRunsOf(label, runs, prepare, run);
// Python's library directory is named after its version (python3.11 on Debian 12).
const pythonLib = fs.readdirSync('/usr/lib').find((d) => /^python3\.\d+$/.test(d));
const HOST_DIRS = ['usr/lib/gcc', 'usr/include', ...(pythonLib ? [`usr/lib/${pythonLib}`] : []), 'usr/share/locale'];

/**
 * Every tool writes into a new ext4 file system (a loop mount, private to the sandbox's mount
 * namespace), each run into its own directory, and nothing is deleted while timing. On a
 * file system with a history of creating and deleting many files (this machine's /tmp, after
 * thousands of test runs), ext4 skips recently freed inodes one by one: creating a file took
 * 250 µs there against 19 µs on a new one, for every tool alike, and the bench measured that.
 */
function freshFilesystem() {
  const image = path.join(work, 'ext4.img');
  const mountPoint = path.join(work, 'fs');
  execFileSync('truncate', ['-s', '24G', image]);
  execFileSync('mkfs.ext4', ['-q', '-F', image]);
  fs.mkdirSync(mountPoint);
  execFileSync('mount', ['-o', 'loop', image, mountPoint]);
  return { dir: mountPoint, unmount: () => execFileSync('umount', [mountPoint]) };
}

function loadImagesLibrary() {
  const compiled = path.join(repo, 'dist/src/images/index.js');
  if (!fs.existsSync(compiled)) throw new Error(`${compiled} is missing: run \`npm run build\` first`);
  return require(compiled);
}

// The registry helper is TypeScript used by tests; bundle it rather than depend on a build.
function bundleRegistryHelper() {
  const out = path.join(work, 'registry.js');
  require('esbuild').buildSync({ entryPoints: [path.join(repo, 'test/helpers/registry.ts')], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: out, logLevel: 'error' });
  return require(out);
}

function buildFilesImage(layout) {
  const { addImage, writeLayoutIndex } = require(path.join(repo, 'hack/test-images/lib.js'));
  const dirs = HOST_DIRS.filter((d) => fs.existsSync(path.join('/', d)));
  if (dirs.length === 0) throw new Error(`none of ${HOST_DIRS.join(', ')} exists on this machine`);
  const tars = dirs.map((d) => execFileSync('tar', ['-C', '/', '-cf', '-', d], { maxBuffer: 4 << 30 }));
  const image = addImage(layout, tars);
  writeLayoutIndex(layout, { bench: image });
  const entries = dirs.reduce((n, d) => n + Number(execFileSync('sh', ['-c', `find "/${d}" | wc -l`], { encoding: 'utf8' })), 0);
  const uncompressed = tars.reduce((s, t) => s + t.length, 0);
  return { image, description: `${dirs.length} layers of this machine's files (/${dirs.join(', /')}): ${entries} entries, ${(uncompressed / 1048576).toFixed(0)} MiB uncompressed` };
}

function buildRandom(layout) {
  const { buildRandomImage, writeLayoutIndex } = require(path.join(repo, 'hack/test-images/lib.js'));
  const image = buildRandomImage(layout, { layers: 4, totalBytes: sizeMB * 1024 * 1024 });
  writeLayoutIndex(layout, { bench: image });
  return { image, description: '4 layers of 8 random (incompressible) files each' };
}

async function benchImage(kind, images, registry, dest) {
  const layout = path.join(work, `layout-${kind}`);
  const { image, description } = kind === 'files' ? buildFilesImage(layout) : buildRandom(layout);
  const compressed = image.layers.reduce((s, l) => s + l.size, 0);
  console.log(`\nimage "${kind}": ${description}; ${(compressed / 1048576).toFixed(1)} MiB compressed; ${runs} runs each`);
  const ref = `${registry.directHost}/bench/${kind}:v1`;
  await images.pushOciLayout(layout, ref, { refName: 'bench' });

  const results = {};
  results.d2p = await timeRuns(
    'd2p pull',
    async (i) => images.ImageStore.open(path.join(dest, `d2p-${kind}-${i}`)),
    async (store) => {
      await store.pull(ref);
    },
  );
  if (have('skopeo')) {
    results.skopeo = await timeRuns(
      'skopeo copy',
      async (i) => path.join(dest, `skopeo-${kind}-${i}`),
      async (dest) => {
        execFileSync('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${dest}:bench`]);
      },
    );
  }
  if (have('podman')) {
    // A new root per run rather than `rmi -a` between runs: deleting would slow the next run's file creation.
    results.podman = await timeRuns(
      'podman pull',
      async (i) => ({ root: path.join(dest, `podman-${kind}-${i}`), runroot: `/run/d2p-bench-podman-${kind}-${i}` }),
      async ({ root, runroot }) => {
        // podman refuses a runroot longer than 50 characters; /run is the sandbox's own tmpfs.
        execFileSync('podman', ['--root', root, '--runroot', runroot, 'pull', '-q', '--tls-verify=false', ref], { stdio: ['ignore', 'ignore', 'inherit'] });
      },
    );
  } else {
    console.log('podman        not installed (pass --install-peers to apt-get install it)');
  }
  for (const [peer, ms] of Object.entries(results)) {
    if (peer !== 'd2p') console.log(`d2p / ${peer} (${kind} image): ${(results.d2p / ms).toFixed(2)}x`);
  }
  return results;
}

async function main() {
  if (!have('podman') && installPeers) {
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'podman'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  const images = loadImagesLibrary();
  const { startRegistry } = bundleRegistryHelper();
  const registry = await startRegistry();
  const dest = freshFilesystem();
  try {
    for (const kind of wanted) {
      const r = await benchImage(kind, images, registry, dest.dir);
      if (kind === 'files') {
        console.log(`budget (DESIGN.md §9): ≤ 2000 ms → ${r.d2p <= 2000 ? 'within' : 'OVER'}`);
        if (r.podman) console.log(`budget (issue 4): ≤ 0.5× podman → ${r.d2p / r.podman <= 0.5 ? 'within' : 'OVER'}`);
      }
    }
  } finally {
    await registry.stop();
    dest.unmount();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  fs.rmSync(work, { recursive: true, force: true });
  process.exit(1);
});
