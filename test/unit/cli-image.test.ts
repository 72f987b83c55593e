// `d2p image …` on a local store (no registry: images come in with `load` from layouts
// generated here), and the progress display of pulls and pushes, on a terminal and off it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as tar from 'tar';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { imageCommand } from '../../src/cli/commands/image';
import { createContext } from '../../src/cli/context';
import { StringWriter, type CliIO } from '../../src/cli/io';
import { main } from '../../src/cli/main';
import { ProgressDisplay, barWidthFor, formatByteProgress, pullProgress, pullStatus, pushProgress, shortId } from '../../src/cli/progress';
import { ImageStore } from '../../src/images/index';
import { fixtures } from '../helpers/test-image';

const DIGEST_A = `sha256:${'a1b2c3d4e5f6'.padEnd(64, '0')}`;
const DIGEST_B = `sha256:${'b1b2c3d4e5f6'.padEnd(64, '0')}`;
const CONFIG_CREATED = Date.parse('2024-01-01T00:00:00Z');
const NOW = CONFIG_CREATED + 15 * 24 * 3600 * 1000;

class Terminal extends StringWriter {
  readonly isTTY = true;
  constructor(readonly columns: number) {
    super();
  }
}

describe('progress display', () => {
  it('draws a docker-style bar with sizes', () => {
    expect(formatByteProgress({ current: 12_300_000, total: 40_100_000 }, 50)).toBe(`[${'='.repeat(15)}>${' '.repeat(35)}]   12.3MB/40.1MB`);
    expect(formatByteProgress({ current: 0, total: 1000 }, 10)).toBe(`[>${' '.repeat(10)}]       0B/1kB`);
    expect(formatByteProgress({ current: 1000, total: 1000 }, 10)).toBe(`[${'='.repeat(10)}>]      1kB/1kB`);
    // A current beyond the total is shown alone, as docker does with a wonky report.
    expect(formatByteProgress({ current: 2000, total: 1000 }, 4)).toBe('[====>]      2kB');
  });

  it('narrows the bar on narrow terminals', () => {
    expect(barWidthFor(undefined)).toBe(50);
    expect(barWidthFor(200)).toBe(50);
    expect(barWidthFor(80)).toBe(35);
    expect(barWidthFor(20)).toBe(10);
  });

  it('on a terminal, redraws each layer line in place', () => {
    const out = new Terminal(120);
    const display = new ProgressDisplay(out, { tty: true, columns: out.columns });
    const onEvent = pullProgress(display);
    onEvent({ digest: DIGEST_A, state: 'waiting', current: 0, total: 2000 });
    onEvent({ digest: DIGEST_B, state: 'waiting', current: 0, total: 1000 });
    onEvent({ digest: DIGEST_A, state: 'downloading', current: 1000, total: 2000 });
    onEvent({ digest: DIGEST_B, state: 'done', current: 1000, total: 1000 });
    // Same text again: nothing to redraw.
    onEvent({ digest: DIGEST_B, state: 'done', current: 1000, total: 1000 });
    const bar = formatByteProgress({ current: 1000, total: 2000 }, 50);
    expect(out.toString()).toBe(
      '\x1b[2K\ra1b2c3d4e5f6: Pulling fs layer\n' +
        '\x1b[2K\rb1b2c3d4e5f6: Pulling fs layer\n' +
        `\x1b[2A\x1b[2K\ra1b2c3d4e5f6: Downloading ${bar}\x1b[2B\r` +
        '\x1b[1A\x1b[2K\rb1b2c3d4e5f6: Pull complete\x1b[1B\r',
    );
  });

  it('off a terminal, prints one plain line per status change and no bars', () => {
    const out = new StringWriter();
    const display = new ProgressDisplay(out, { tty: false });
    const onEvent = pullProgress(display);
    display.message('v1: Pulling from shop/web');
    for (const state of ['waiting', 'downloading', 'downloading', 'extracting', 'done'] as const) onEvent({ digest: DIGEST_A, state, current: 10, total: 20 });
    onEvent({ digest: DIGEST_B, state: 'cached', current: 5, total: 5 });
    expect(out.toString()).toBe(
      'v1: Pulling from shop/web\n' +
        'a1b2c3d4e5f6: Pulling fs layer\n' +
        'a1b2c3d4e5f6: Download complete\n' +
        'a1b2c3d4e5f6: Pull complete\n' +
        'b1b2c3d4e5f6: Already exists\n',
    );
  });

  it('push progress shows layers only, in docker words', () => {
    const out = new StringWriter();
    const onEvent = pushProgress(new ProgressDisplay(out, { tty: false }), [DIGEST_A]);
    onEvent({ digest: DIGEST_B, state: 'uploading', size: 10 }); // the config blob: not shown
    onEvent({ digest: DIGEST_A, state: 'uploading', size: 10 });
    onEvent({ digest: DIGEST_A, state: 'done', size: 10 });
    expect(out.toString()).toBe('a1b2c3d4e5f6: Pushing\na1b2c3d4e5f6: Pushed\n');
    const other = new StringWriter();
    pushProgress(new ProgressDisplay(other, { tty: false }), [DIGEST_A])({ digest: DIGEST_A, state: 'exists', size: 10 });
    expect(other.toString()).toBe('a1b2c3d4e5f6: Layer already exists\n');
  });

  it('maps every pull state', () => {
    expect(pullStatus({ digest: DIGEST_A, state: 'downloading', current: 1, total: 2 })).toEqual({ status: 'Downloading', progress: { current: 1, total: 2 } });
    expect(shortId(DIGEST_A)).toBe('a1b2c3d4e5f6');
  });
});

describe('d2p image on a local store', () => {
  let tmp: string;
  let root: string;

  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-cli-image-'));
    root = path.join(tmp, 'root');
  });

  afterEach(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  async function run(args: string[], opts: { root?: string; stdin?: string } = {}): Promise<{ status: number; stdout: string; stderr: string }> {
    const io = { stdout: new StringWriter(), stderr: new StringWriter() };
    const ctx = createContext({ root: opts.root ?? root }, io, { startDaemon: false, now: () => NOW });
    let status: number;
    try {
      status = await imageCommand({ args, ...(opts.stdin !== undefined ? { stdin: Readable.from([opts.stdin]) } : {}) }, ctx);
    } catch (err) {
      status = -1;
      io.stderr.write(`thrown: ${(err as Error).message}\n`);
    } finally {
      await ctx.close();
    }
    return { status, stdout: io.stdout.toString(), stderr: io.stderr.toString() };
  }

  /** An OCI layout tar with two images: registry.test/shop/web:1 and registry.test/shop/db:1. */
  async function archive(): Promise<{ file: string; web: ReturnType<typeof fixtures.addImage>; db: ReturnType<typeof fixtures.addImage> }> {
    const dir = fs.mkdtempSync(path.join(tmp, 'layout-'));
    const shared = fixtures.tarArchive([{ path: 'etc/', type: 'dir' }, { path: 'etc/os-release', type: 'file', content: 'ID=test\n' }]);
    const web = fixtures.addImage(dir, [shared, fixtures.tarArchive([{ path: 'web', type: 'file', content: 'web' }])], { config: { Env: ['A=1'], ExposedPorts: { '80/tcp': {} } } });
    const db = fixtures.addImage(dir, [shared, fixtures.tarArchive([{ path: 'db', type: 'file', content: 'db' }])]);
    fixtures.writeLayoutIndex(dir, { 'registry.test/shop/web:1': web, 'registry.test/shop/db:1': db });
    const file = path.join(tmp, 'images.tar');
    await tar.create({ cwd: dir, file, portable: true }, ['oci-layout', 'index.json', 'blobs']);
    return { file, web, db };
  }

  it('load, ls, inspect', async () => {
    const { file, web, db } = await archive();
    const loaded = await run(['load', '-i', file]);
    expect(loaded).toMatchObject({ status: 0, stdout: 'Loaded image: registry.test/shop/web:1\nLoaded image: registry.test/shop/db:1\n' });

    const ls = await run(['ls']);
    expect(ls.status).toBe(0);
    const lines = ls.stdout.trimEnd().split('\n').map((l) => l.split(/\s{2,}/));
    expect(lines[0]).toEqual(['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE']);
    const rows = lines.slice(1).sort((a, b) => (a[0] ?? '').localeCompare(b[0] ?? ''));
    const store = await ImageStore.open(path.join(root, 'images'));
    const webSize = (await store.get('registry.test/shop/web:1'))!.size;
    expect(rows).toEqual([
      ['registry.test/shop/db', '1', db.configDigest.slice(7, 19), '2 weeks ago', expect.stringMatching(/^\d+(\.\d+)?[k]?B$/)],
      ['registry.test/shop/web', '1', web.configDigest.slice(7, 19), '2 weeks ago', `${webSize}B`],
    ]);
    expect((await run(['ls', '-q', '--no-trunc'])).stdout.split('\n').filter(Boolean).sort()).toEqual([db.configDigest, web.configDigest].sort());

    const inspect = await run(['inspect', 'registry.test/shop/web:1', 'nothing:here']);
    expect(inspect.status).toBe(-1);
    expect(inspect.stderr).toContain('error: No such image: nothing:here');
    const [view] = JSON.parse(inspect.stdout) as Record<string, unknown>[];
    expect(view).toMatchObject({
      Id: web.configDigest,
      RepoTags: ['registry.test/shop/web:1'],
      Descriptor: { digest: web.digest },
      Os: 'linux',
      Architecture: 'amd64',
      Config: { Env: ['A=1'], ExposedPorts: { '80/tcp': {} }, Cmd: ['sh'] },
      RootFS: { Type: 'layers', Layers: web.layers.map((l) => l.diffID) },
    });
    const lowerDirs = (view?.GraphDriver as { Data: { LowerDir: string } }).Data.LowerDir.split(':');
    expect(lowerDirs).toEqual(web.layers.map((l) => path.join(root, 'images', 'layers', 'sha256', l.diffID.slice(7))).reverse());
  });

  it('reads an image config once, and hands out copies of it', async () => {
    const { file, web } = await archive();
    await run(['load', '-q', '-i', file]);
    const store = await ImageStore.open(path.join(root, 'images'));
    const first = (await store.get('registry.test/shop/web:1'))!;
    expect(first.config.env).toEqual(['A=1']);
    first.config.env?.push('CHANGED=by-a-caller');
    // The blob is content-addressed and never changes: gone from the disk, it is still known.
    fs.rmSync(path.join(root, 'images', 'blobs', 'sha256', web.configDigest.slice('sha256:'.length)));
    const again = (await store.get('registry.test/shop/web:1'))!;
    expect(again.config.env).toEqual(['A=1']);
    // Another store (another process) reads the disk, and says what is missing.
    const other = await ImageStore.open(path.join(root, 'images'));
    await expect(other.get('registry.test/shop/web:1')).rejects.toThrow(web.configDigest.slice('sha256:'.length));
  });

  it('tag, then rm untags first and deletes with the last tag', async () => {
    const { file, web } = await archive();
    await run(['load', '-q', '-i', file]);
    expect(await run(['tag', 'registry.test/shop/web:1', 'localhost:5000/web:latest'])).toMatchObject({ status: 0, stdout: '' });
    const tags = (await run(['ls'])).stdout;
    expect(tags).toMatch(/^localhost:5000\/web\s+latest\s+/m);

    const untag = await run(['rm', 'localhost:5000/web']);
    expect(untag.status).toBe(0);
    expect(untag.stdout).toBe('Untagged: localhost:5000/web:latest\n');
    // No daemon answers on this root: rm says it could not check for containers.
    expect(untag.stderr).toMatch(/^warning: no d2p daemon answers on .*d2p\.sock; removing images without checking which containers use them\n$/);

    const del = await run(['rm', 'registry.test/shop/web:1', 'nothing:here']);
    expect(del.status).toBe(-1);
    expect(del.stdout).toBe(`Untagged: registry.test/shop/web:1\nDeleted: ${web.configDigest}\n`);
    expect(del.stderr).toContain('error: No such image: nothing:here');
    expect((await run(['tag', 'registry.test/shop/web:1', 'x:1'])).stderr).toContain('No such image: registry.test/shop/web:1');
  });

  it('prune removes dangling images only, -a every image, and the blobs and layers nobody needs', async () => {
    const { file, web, db } = await archive();
    await run(['load', '-q', '-i', file]);
    const store = await ImageStore.open(path.join(root, 'images'));
    // Make web dangling: its only tag moves away.
    await store.tag('registry.test/shop/db:1', 'registry.test/shop/web:1');
    const prune = await run(['prune', '-f']);
    expect(prune.status).toBe(0);
    expect(prune.stdout).toMatch(new RegExp(`^Deleted Images:\ndeleted: ${web.configDigest}\n\nDeleted layers: 1\nTotal reclaimed space: \\d+(\\.\\d+)?k?B\n$`));
    const webOnlyLayer = web.layers[1]!;
    expect(fs.existsSync(store.layerDir(webOnlyLayer.diffID))).toBe(false);
    expect(fs.existsSync(store.blobPath(webOnlyLayer.digest))).toBe(false);
    // The layer both images share stays with db.
    expect(fs.existsSync(store.layerDir(db.layers[0]!.diffID))).toBe(true);

    const all = await run(['prune', '-a']);
    expect(all.stdout).toContain(`deleted: ${db.configDigest}`);
    expect(await store.list()).toEqual([]);
    expect(fs.readdirSync(path.join(root, 'images', 'layers', 'sha256'))).toEqual([]);
    expect(fs.readdirSync(path.join(root, 'images', 'blobs', 'sha256'))).toEqual([]);
  });

  it('prune keeps layers a container bundle still mounts', async () => {
    const { file, web } = await archive();
    await run(['load', '-q', '-i', file]);
    const store = await ImageStore.open(path.join(root, 'images'));
    const bundle = path.join(root, 'containers', 'c1');
    fs.mkdirSync(bundle, { recursive: true });
    const lower = web.layers.map((l) => store.layerDir(l.diffID)).reverse().join(':');
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ annotations: { 'dev.d2p.rootfs.overlay': `lowerdir=${lower},upperdir=${bundle}/upper,workdir=${bundle}/work` } }));
    await run(['rm', '-f', 'registry.test/shop/web:1']);
    await run(['prune', '-a']);
    for (const l of web.layers) expect(fs.existsSync(store.layerDir(l.diffID))).toBe(true);
  });

  it('save and load round trip into another root, as an OCI layout and as docker save', async () => {
    const { file, web } = await archive();
    await run(['load', '-q', '-i', file]);
    for (const format of ['oci', 'docker']) {
      const out = path.join(tmp, `saved-${format}`);
      expect(await run(['save', '--format', format, '-o', out, 'registry.test/shop/web:1'])).toMatchObject({ status: 0, stdout: '' });
      const entries: string[] = [];
      await tar.list({ file: out, onReadEntry: (e) => entries.push(e.path) });
      expect(entries).toContain('index.json');
      expect(entries.includes('manifest.json')).toBe(format === 'docker');
      // Nothing left beside the archive.
      expect(fs.readdirSync(tmp).filter((n) => n.includes('d2p-save'))).toEqual([]);
      if (format === 'docker') {
        const manifest = await readTarEntry(out, 'manifest.json');
        expect(JSON.parse(manifest)).toEqual([
          { Config: `blobs/sha256/${web.configDigest.slice(7)}`, RepoTags: ['registry.test/shop/web:1'], Layers: web.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`) },
        ]);
      }
      const otherRoot = path.join(tmp, `other-${format}`);
      expect((await run(['load', '-i', out], { root: otherRoot })).stdout).toBe('Loaded image: registry.test/shop/web:1\n');
      const again = await (await ImageStore.open(path.join(otherRoot, 'images'))).get('registry.test/shop/web:1');
      expect(again?.id).toBe(web.configDigest);
    }
    expect(await run(['save', 'registry.test/shop/web:1'])).toMatchObject({ status: -1, stderr: expect.stringContaining('missing -o FILE') });
    expect(await run(['save', '-o', path.join(tmp, 'x.tar'), 'nothing:here'])).toMatchObject({ status: -1, stderr: expect.stringContaining('No such image: nothing:here') });
    expect(fs.existsSync(path.join(tmp, 'x.tar'))).toBe(false);
  });

  it('login needs a user and a password; logout says when there was nothing to forget', async () => {
    expect((await run(['login', '127.0.0.1:5000'])).stderr).toContain('missing -u USER');
    expect((await run(['login', '-u', 'bob', '--password-stdin', '127.0.0.1:5000'], { stdin: '' })).stderr).toContain('missing password');
    expect((await run(['login', '-u', 'bob', '-p', 'x', '--password-stdin', '127.0.0.1:5000'], { stdin: 'x' })).stderr).toContain('mutually exclusive');
    expect(await run(['logout', '127.0.0.1:5000'])).toMatchObject({ status: 0, stdout: 'Not logged in to 127.0.0.1:5000\n' });
  });

  it('usage errors are reported by commander with a non-zero status; --help exits 0', async () => {
    const bad = await run(['frobnicate']);
    expect(bad.status).toBe(-1);
    expect(bad.stderr).toContain("unknown command 'frobnicate'");
    const help = await run(['--help']);
    expect(help.status).toBe(0);
    for (const sub of ['pull', 'ls', 'inspect', 'rm', 'tag', 'push', 'prune', 'save', 'load', 'login', 'logout']) expect(help.stdout).toMatch(new RegExp(`^  ${sub}\\b`, 'm'));
  });

  it('main dispatches `d2p image …`, `d2p images` and `d2p pull` to the image command', async () => {
    const { file } = await archive();
    const calls: string[][] = [];
    const io: CliIO = { stdout: new StringWriter(), stderr: new StringWriter() };
    const load = () => (async (opts: { args: string[] }, ctx: Parameters<typeof imageCommand>[1]) => {
      calls.push(opts.args);
      return imageCommand(opts, ctx);
    }) as never;
    expect(await main(['image', 'load', '-q', '-i', file, '--root', root], io, { load, context: { startDaemon: false } })).toBe(0);
    expect(await main(['images', '--root', root], io, { load, context: { startDaemon: false } })).toBe(0);
    expect(await main(['pull', '--platform', 'linux/arm64', 'Bad:Ref', '--root', root], io, { load, context: { startDaemon: false } })).toBe(1);
    expect(calls).toEqual([['load', '-q', '-i', file], ['ls'], ['pull', '--platform', 'linux/arm64', 'Bad:Ref']]);
    expect(io.stdout.toString()).toMatch(/^registry\.test\/shop\/web\s+1\s+/m);
    expect(io.stderr.toString()).toContain('invalid reference format "Bad:Ref"');
  });
});

async function readTarEntry(file: string, name: string): Promise<string> {
  let text: string | undefined;
  await tar.list({
    file,
    onReadEntry: (entry) => {
      if (entry.path !== name) return entry.resume();
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => (text = Buffer.concat(chunks).toString('utf8')));
    },
  });
  if (text === undefined) throw new Error(`${file} has no ${name}`);
  return text;
}
