// The builder end to end, as root inside hack/sandbox: real RUN containers through the
// Runtime, layers snapshotted from overlay upper dirs, images written into an ImageStore
// fed with a busybox base image from a local OCI layout (no registry needed).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildImage, type BuildOptions, type BuildResult } from '../../src/build/builder';
import { ImageStore, importOciLayout, type StoredImage } from '../../src/images/index';
import { Runtime } from '../../src/runtime/index';
import { requireSandbox } from '../helpers/sandbox-guard';
import { fixtures } from '../helpers/test-image';

// eslint-disable-next-line @typescript-eslint/no-require-imports
requireSandbox('build integration tests');

const BASE = 'localhost/d2p-test/busybox:1';
let root: string;
let images: ImageStore;
let runtime: Runtime;
let context: string;
const cgroupParent = `d2p-build-test-${process.pid}`;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-build-it-'));
  const layout = path.join(root, 'layout');
  const built = fixtures.buildTestImages(path.join(root, 'all'));
  // Only the busybox image, under a full name so FROM can find it.
  fs.cpSync(path.join(root, 'all', 'blobs'), path.join(layout, 'blobs'), { recursive: true });
  fixtures.writeLayoutIndex(layout, { [BASE]: built.base });
  images = await ImageStore.open(path.join(root, 'images'));
  await importOciLayout(images, layout);
  runtime = new Runtime({ stateDir: path.join(root, 'containers'), cgroupParent });
});

afterAll(async () => {
  try {
    runtime?.cgroups.removeParent();
    await runtime?.settled();
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

beforeEach(() => {
  context = fs.mkdtempSync(path.join(root, 'ctx-'));
});

afterEach(() => {
  fs.rmSync(context, { recursive: true, force: true });
});

const write = (rel: string, content: string) => {
  fs.mkdirSync(path.dirname(path.join(context, rel)), { recursive: true });
  fs.writeFileSync(path.join(context, rel), content);
};

const build = (opts: Partial<BuildOptions> = {}): Promise<BuildResult> =>
  buildImage({ contextDir: context, tags: ['localhost/built/app:1'], ...opts }, { images, runtime, stateDir: path.join(root, 'build-cache') });

/** Every path in every layer of an image (whiteouts included, as `.wh.` names). */
async function layerPaths(image: StoredImage): Promise<string[][]> {
  const out: string[][] = [];
  for (const layer of image.layers) {
    const names: string[] = [];
    const parser = new Parser({ onReadEntry: (e: ReadEntry) => { names.push(e.path.replace(/\/$/, '')); e.resume(); } } as never);
    parser.end(zlib.gunzipSync(fs.readFileSync(images.blobPath(layer.digest))));
    out.push(names);
  }
  return out;
}

/** Runs a command in the image through the Runtime; stdout as text. */
async function runIn(image: StoredImage, command: string[]): Promise<string> {
  const id = `build-it-${Math.random().toString(36).slice(2, 10)}`;
  await runtime.run({ id, rootfs: { lowerDirs: [...image.layerDirs].reverse() }, image: { env: image.config.env, workingDir: image.config.workingDir || undefined }, command, networkMode: 'none' });
  try {
    const exit = await runtime.wait(id);
    const log = fs.readFileSync(runtime.logPath(id), 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { log: string; stream: string }));
    expect(exit.exitCode, log.map((l) => l.log).join('')).toBe(0);
    return log.filter((l) => l.stream === 'stdout').map((l) => l.log).join('');
  } finally {
    await runtime.delete(id, { force: true });
  }
}

const MULTI_STAGE = `
FROM ${BASE} AS builder
ARG GREETING=hello
WORKDIR /src
COPY gen.sh ./
RUN sh gen.sh > /src/out.txt && echo "$GREETING" > /src/greeting.txt && rm /etc/motd
COPY data/ /src/data/
RUN cat /src/data/* > /src/all-data.txt

FROM scratch
COPY --from=builder /bin/busybox /bin/busybox
COPY --from=builder /src/out.txt /src/greeting.txt /src/all-data.txt /app/
CMD ["/bin/busybox", "cat", "/app/out.txt"]
`;

function multiStageContext(): void {
  write('Dockerfile', MULTI_STAGE);
  write('gen.sh', 'echo generated-by-run\n');
  write('data/a.txt', 'A\n');
  write('data/b.txt', 'B\n');
}

const cachedFlags = (r: BuildResult) => r.steps.map((s) => `${s.cached ? 'CACHED' : 'RUN'} ${s.name}`);

describe('buildImage', () => {
  it('builds a multi-stage Dockerfile whose final image holds only what it copied, and runs it', async () => {
    multiStageContext();
    const result = await build();
    const image = result.image;
    expect(image.repoTags).toContain('localhost/built/app:1');
    const paths = await layerPaths(image);
    // FROM scratch + two COPY --from steps: two layers, and nothing of the builder's rootfs.
    expect(paths).toHaveLength(2);
    expect(paths.flat().sort()).toEqual(['app', 'app/all-data.txt', 'app/greeting.txt', 'app/out.txt', 'bin', 'bin/busybox']);
    expect(await runIn(image, ['/bin/busybox', 'cat', '/app/out.txt', '/app/greeting.txt', '/app/all-data.txt'])).toBe('generated-by-run\nhello\nA\nB\n');
    expect(image.config.cmd).toEqual(['/bin/busybox', 'cat', '/app/out.txt']);
  });

  it('records a deletion in a RUN layer as a whiteout and leaves no mount stubs behind', async () => {
    write('Dockerfile', `FROM ${BASE}\nRUN rm /etc/motd && mkdir -p /opt/data && rm -rf /opt/data && mkdir /opt/data && echo x > /opt/data/only\n`);
    const result = await build({ tags: ['localhost/built/wh:1'] });
    const paths = await layerPaths(result.image);
    const runLayer = paths[paths.length - 1] as string[];
    expect(runLayer).toContain('etc/.wh.motd');
    expect(runLayer).toContain('opt/data/.wh..wh..opq');
    expect(runLayer).toContain('opt/data/only');
    for (const stub of ['proc', 'sys', 'dev', 'etc/hosts', 'etc/resolv.conf', 'etc/hostname']) expect(runLayer).not.toContain(stub);
    expect(await runIn(result.image, ['sh', '-c', 'ls /opt/data; test -e /etc/motd || echo gone'])).toBe('only\ngone\n');
  });

  it('rebuilds an unchanged Dockerfile from the cache entirely, to the same image', async () => {
    multiStageContext();
    const first = await build();
    const second = await build();
    expect(second.steps.length).toBeGreaterThan(5);
    expect(cachedFlags(second).filter((s) => !s.startsWith('CACHED'))).toEqual([]);
    expect(second.digest).toBe(first.digest);
    const noCache = await build({ noCache: true });
    expect(noCache.steps.filter((s) => s.cached && !s.name.includes('FROM'))).toEqual([]);
  });

  it('a touched COPY source rebuilds that step and those after it, not the ones before', async () => {
    multiStageContext();
    await build();
    write('data/b.txt', 'B changed\n');
    const result = await build();
    const byText = Object.fromEntries(result.steps.map((s) => [s.name.replace(/^\[[^\]]*\] /, ''), s.cached]));
    expect(byText['COPY gen.sh ./']).toBe(true);
    expect(byText['RUN sh gen.sh > /src/out.txt && echo "$GREETING" > /src/greeting.txt && rm /etc/motd']).toBe(true);
    expect(byText['COPY data/ /src/data/']).toBe(false);
    expect(byText['RUN cat /src/data/* > /src/all-data.txt']).toBe(false);
    expect(await runIn(result.image, ['/bin/busybox', 'cat', '/app/all-data.txt'])).toBe('A\nB changed\n');
  });

  it('a changed ARG invalidates the steps that use it, not the steps before', async () => {
    multiStageContext();
    await build();
    const result = await build({ buildArgs: { GREETING: 'bonjour' } });
    const byText = Object.fromEntries(result.steps.map((s) => [s.name.replace(/^\[[^\]]*\] /, ''), s.cached]));
    expect(byText['WORKDIR /src']).toBe(true);
    expect(byText['COPY gen.sh ./']).toBe(true);
    expect(byText['RUN sh gen.sh > /src/out.txt && echo "$GREETING" > /src/greeting.txt && rm /etc/motd']).toBe(false);
    expect(await runIn(result.image, ['/bin/busybox', 'cat', '/app/greeting.txt'])).toBe('bonjour\n');
  });

  it('.dockerignore excludes files and a "!" exception re-includes one', async () => {
    write('Dockerfile', `FROM ${BASE}\nCOPY . /ctx/\n`);
    write('.dockerignore', '*.log\nsecrets/\n!keep.log\n');
    write('app.txt', 'app\n');
    write('debug.log', 'noise\n');
    write('keep.log', 'kept\n');
    write('secrets/key', 'private\n');
    const result = await build({ tags: ['localhost/built/ignore:1'] });
    const copied = (await layerPaths(result.image)).at(-1) as string[];
    expect(copied).toContain('ctx/app.txt');
    expect(copied).toContain('ctx/keep.log');
    expect(copied).not.toContain('ctx/debug.log');
    expect(copied.some((p) => p.startsWith('ctx/secrets'))).toBe(false);
    // The Dockerfile and .dockerignore are always part of the context.
    expect(copied).toContain('ctx/Dockerfile');
  });

  it('a failing RUN names the step and the exit code', async () => {
    write('Dockerfile', `FROM ${BASE}\nRUN echo about to fail && exit 3\n`);
    await expect(build({ tags: ['localhost/built/fail:1'] })).rejects.toThrow(/\[2\/2\] RUN echo about to fail && exit 3: process .* did not complete successfully: exit code: 3/);
  });

  it('RUN has no network but loopback by default', async () => {
    write('Dockerfile', `FROM ${BASE}\nRUN ls /sys/class/net > /net.txt\n`);
    const result = await build({ tags: ['localhost/built/net:1'] });
    expect(await runIn(result.image, ['cat', '/net.txt'])).toBe('lo\n');
  });

  it('metadata instructions and COPY --chown/--chmod shape the config and files', async () => {
    write('Dockerfile', [
      `FROM ${BASE}`,
      'ENV APP_HOME=/srv/app',
      'WORKDIR $APP_HOME',
      'COPY --chown=1000:1000 --chmod=0640 conf.ini ./',
      'USER user',
      'EXPOSE 8080',
      'LABEL org.example.k=v',
      'STOPSIGNAL SIGQUIT',
      'ENTRYPOINT ["sh", "-c"]',
      'CMD ["stat -c %u:%g:%a conf.ini; id -u; pwd"]',
    ].join('\n'));
    write('conf.ini', 'x=1\n');
    const result = await build({ tags: ['localhost/built/meta:1'] });
    const c = result.image.config;
    expect(c.workingDir).toBe('/srv/app');
    expect(c.user).toBe('user');
    expect(c.exposedPorts).toEqual(['8080/tcp']);
    expect(c.labels['org.example.k']).toBe('v');
    expect(c.stopSignal).toBe('SIGQUIT');
    expect(c.env).toContain('APP_HOME=/srv/app');
    const listing = execFileSync('ls', ['-ln', path.join(result.image.layerDirs.at(-1) as string, 'srv/app/conf.ini')], { encoding: 'utf8' });
    expect(listing).toMatch(/^-rw-r----- 1 1000 1000 /);
  });
});
