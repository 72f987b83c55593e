#!/usr/bin/env node
// Build benchmark (issue 8, DESIGN.md §9 style; not a test, it asserts nothing): the same
// multi-stage Dockerfile (a busybox builder stage generating files with RUN, a final
// FROM scratch stage with COPY --from), built
//   cold   into an empty build cache (the base image already in the store, as for podman),
//   cached again with nothing changed (every step a cache hit),
// by d2p's builder in-process, and by `podman build` when podman is installed
// (`--install-peers` apt-get installs it). Medians over RUNS runs (default 3).
// Budget: cached ≤ 0.3 s, cold ≤ the peer's cold time. Run as root inside the sandbox:
//   hack/sandbox node hack/bench/build.js [--install-peers]
'use strict';
const { enterSandbox, have, median, timeRuns: timeRunsOf } = require('./common');
enterSandbox(__filename);

const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const repo = path.resolve(__dirname, '..', '..');
const runs = Number(process.env.RUNS ?? 3);
const installPeers = process.argv.includes('--install-peers');
// Lower case on purpose: podman derives an image name from an oci: layout's path.
const work = path.join(os.tmpdir(), `d2p-bench-build-${process.pid}-${Date.now().toString(36)}`);
fs.mkdirSync(work, { mode: 0o700 });
const BASE = 'localhost/bench/busybox:1';

const DOCKERFILE = `
FROM ${BASE} AS builder
WORKDIR /src
COPY src/ ./
RUN for i in $(seq 1 300); do echo "generated line $i" > gen-$i.txt; done && cat gen-*.txt input-*.txt > all.txt
RUN tar czf /out.tgz -C /src . && rm -f gen-*.txt

FROM scratch
COPY --from=builder /bin/busybox /bin/busybox
COPY --from=builder /out.tgz /src/all.txt /app/
CMD ["/bin/busybox", "ls", "-l", "/app"]
`;

// The builder is TypeScript; bundle it rather than trust a possibly stale dist/. The bundle
// lives two levels below the repository so addon/index.ts finds addon/build/Release from it.
function bundleBuilder() {
  const dir = path.join(repo, '.d2p-tmp', 'bench-build');
  fs.mkdirSync(dir, { recursive: true });
  const out = path.join(dir, 'builder.js');
  fs.writeFileSync(path.join(dir, 'entry.ts'), [
    `export { buildImage } from ${JSON.stringify(path.join(repo, 'src/build/builder'))};`,
    `export { openBuildDeps } from ${JSON.stringify(path.join(repo, 'src/build/builder-deps'))};`,
    `export { importOciLayout, ImageStore } from ${JSON.stringify(path.join(repo, 'src/images/index'))};`,
    `export { resolvePaths } from ${JSON.stringify(path.join(repo, 'src/config'))};`,
  ].join('\n'));
  require('esbuild').buildSync({ entryPoints: [path.join(dir, 'entry.ts')], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: out, logLevel: 'error' });
  return require(out);
}

const timeRuns = (label, prepare, run) => timeRunsOf(label, runs, prepare, run, { labelWidth: 18 });


function makeContext() {
  const ctx = path.join(work, 'context');
  fs.mkdirSync(path.join(ctx, 'src'), { recursive: true });
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), DOCKERFILE);
  for (let i = 0; i < 50; i++) fs.writeFileSync(path.join(ctx, 'src', `input-${i}.txt`), `input ${i}\n`.repeat(100));
  return ctx;
}

async function benchD2p(b, layout, context) {
  const fresh = async (i) => {
    const paths = b.resolvePaths({ root: path.join(work, `d2p-${i}`) });
    const images = await b.ImageStore.open(paths.images);
    await b.importOciLayout(images, layout);
    return b.openBuildDeps(paths, { images, cgroupParent: `d2p-bench-build-${process.pid}` });
  };
  const build = async (deps) => {
    const r = await b.buildImage({ contextDir: context, tags: ['localhost/bench/app:1'] }, deps);
    if (process.env.VERBOSE) console.log(r.steps.map((s) => `  ${s.seconds.toFixed(3)} ${s.cached ? 'CACHED ' : ''}${s.name}`).join('\n'));
    return r;
  };
  let last;
  const all = [];
  const cold = await timeRuns('d2p cold', async (i) => {
    last = await fresh(i);
    all.push(last);
    return last;
  }, build);
  const cached = await timeRuns('d2p cached', async () => last, async (deps) => {
    const r = await build(deps);
    if (r.steps.some((s) => !s.cached)) throw new Error(`cached rebuild ran steps: ${r.steps.filter((s) => !s.cached).map((s) => s.name).join('; ')}`);
  });
  all[0].runtime.cgroups.removeParent();
  return { cold, cached };
}

function benchPodman(podmanLayout, context) {
  const podmanRoot = path.join(work, 'podman');
  const podman = (...args) =>
    execFileSync('podman', ['--root', path.join(podmanRoot, 'root'), '--runroot', path.join(podmanRoot, 'run'), '--cgroup-manager=cgroupfs', '--events-backend=file', ...args], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  const id = podman('pull', '-q', `oci:${podmanLayout}:base`).trim();
  podman('tag', id, BASE);
  const build = (noCache) => podman('build', '-q', '--network', 'none', ...(noCache ? ['--no-cache'] : []), '-t', 'localhost/bench/app:1', context);
  return timeRuns('podman build cold', async () => undefined, async () => build(true)).then(async (cold) => {
    build(false);
    const cached = await timeRuns('podman build cached', async () => undefined, async () => build(false));
    return { cold, cached };
  });
}

/** podman's storage leaves its overlay dir mounted on itself; unmount what lives under `dir`, deepest first. */
function unmountUnder(dir) {
  const mounts = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1]).filter((m) => m && m.startsWith(dir));
  for (const m of mounts.sort().reverse()) execFileSync('umount', ['-l', m]);
}

/**
 * The test base image has no `history`; buildah (podman build) refuses an image whose
 * history does not account for its layers, so both builders get a copy that has one.
 */
function withHistory(layoutDir, desc) {
  const crypto = require('node:crypto');
  const blob = (digest) => path.join(layoutDir, 'blobs', 'sha256', digest.slice(7));
  const put = (obj) => {
    const bytes = Buffer.from(JSON.stringify(obj));
    const digest = `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;
    fs.writeFileSync(blob(digest), bytes);
    return { digest, size: bytes.length };
  };
  const manifest = JSON.parse(fs.readFileSync(blob(desc.digest), 'utf8'));
  const config = JSON.parse(fs.readFileSync(blob(manifest.config.digest), 'utf8'));
  config.history = manifest.layers.map(() => ({ created: config.created, created_by: 'busybox base layer (hack/test-images)' }));
  manifest.config = { ...manifest.config, ...put(config) };
  return { mediaType: desc.mediaType, ...put(manifest) };
}

async function main() {
  const b = bundleBuilder();
  const { buildTestImages, writeLayoutIndex } = require(path.join(repo, 'hack/test-images/lib.js'));
  const all = buildTestImages(path.join(work, 'all'));
  const layout = path.join(work, 'layout');
  fs.cpSync(path.join(work, 'all', 'blobs'), path.join(layout, 'blobs'), { recursive: true });
  const base = withHistory(layout, all.base);
  writeLayoutIndex(layout, { [BASE]: base });
  // podman's oci: transport takes "dir:name" and a name with ":" would not parse.
  const podmanLayout = path.join(work, 'podman-layout');
  fs.cpSync(path.join(work, 'all', 'blobs'), path.join(podmanLayout, 'blobs'), { recursive: true });
  writeLayoutIndex(podmanLayout, { base: withHistory(podmanLayout, all.base) });
  const context = makeContext();
  console.log(`multi-stage Dockerfile: 2 stages, 2 RUN, 3 COPY; ${runs} runs each`);

  const d2p = await benchD2p(b, layout, context);
  let peer;
  if (!have('podman') && installPeers) execFileSync(path.join(repo, 'hack/install-peers'), { stdio: 'inherit' });
  if (have('podman')) {
    try {
      peer = await benchPodman(podmanLayout, context);
    } catch (e) {
      console.log(`podman build failed here: ${String(e.stderr ?? e.message).trim().split('\n').slice(-3).join(' | ')}`);
    }
  } else {
    console.log('podman            not installed (pass --install-peers to apt-get install it)');
  }
  console.log('');
  const results = [
    { name: 'build cached', value: Math.round(d2p.cached), unit: 'ms', budget: '<= 300 ms', ok: d2p.cached <= 300, ...(peer ? { peer: 'podman', peerValue: Math.round(peer.cached) } : {}) },
    { name: 'build cold', value: Math.round(d2p.cold), unit: 'ms', ...(peer ? { peer: 'podman', peerValue: Math.round(peer.cold), budget: '<= podman', ok: d2p.cold <= peer.cold } : {}) },
  ];
  if (peer) {
    console.log(`d2p / podman (cold): ${(d2p.cold / peer.cold).toFixed(2)}x`);
    console.log(`d2p / podman (cached): ${(d2p.cached / peer.cached).toFixed(2)}x`);
  }
  console.log(`budget cached ≤ 300 ms: ${d2p.cached.toFixed(0)} ms → ${d2p.cached <= 300 ? 'within' : 'OVER'}`);
  if (peer) console.log(`budget cold ≤ podman (${peer.cold.toFixed(0)} ms): ${d2p.cold.toFixed(0)} ms → ${d2p.cold <= peer.cold ? 'within' : 'OVER'}`);
  console.log(`BENCH ${JSON.stringify({ bench: 'build', results })}`);
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => {
    unmountUnder(work);
    fs.rmSync(work, { recursive: true, force: true });
    fs.rmSync(path.join(repo, '.d2p-tmp', 'bench-build'), { recursive: true, force: true });
  });
