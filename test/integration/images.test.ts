// Pull, push, load and save against a real registry (docker-registry on loopback, inside
// hack/sandbox), checked file by file, with skopeo as an independent reader.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as esbuild from 'esbuild';
import { ImageError, ImageStore, loadImages, login, pushImage, pushOciLayout, saveOciLayout, type ProgressEvent } from '../../src/images';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { fixtures, type Descriptor } from '../helpers/test-image';

const FIXED_MTIME_S = Date.parse('2024-01-01T00:00:00Z') / 1000;

// These tests chown, mknod, set trusted.* xattrs and mount overlayfs: they need root, which
// hack/sandbox (the only way `npm test` runs them) already insists on.
function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error('images integration tests need root (run them through hack/sandbox)');
}

function getxattr(file: string, name: string): string {
  return execFileSync('getfattr', ['-h', '--absolute-names', '--only-values', '-n', name, file], { encoding: 'utf8' });
}

function skopeoInspect(ref: string, raw = false): Record<string, unknown> {
  const out = execFileSync('skopeo', ['inspect', '--tls-verify=false', ...(raw ? ['--raw'] : []), `docker://${ref}`], { encoding: 'utf8' });
  return JSON.parse(out) as Record<string, unknown>;
}

describe('images against a loopback registry', () => {
  let work: string;
  let registry: TestRegistry;
  let images: ReturnType<typeof fixtures.buildTestImages>;
  let layout: string;
  const cleanups: (() => Promise<void> | void)[] = [];

  const tempDir = (name: string) => fs.mkdtempSync(path.join(work, `${name}-`));
  const newStore = async () => ImageStore.open(tempDir('store'));

  beforeAll(async () => {
    requireRoot();
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-images-it-'));
    layout = path.join(work, 'layout');
    images = fixtures.buildTestImages(layout);
    registry = await startRegistry();
    for (const name of ['base', 'full', 'multi']) await pushOciLayout(layout, `${registry.host}/test/${name}:v1`, { refName: name });
  });

  afterAll(async () => {
    await registry?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  afterEach(async () => {
    registry.corrupt.clear();
    registry.throttleBytesPer50ms = undefined;
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('pushed images are what skopeo reads back', () => {
    const full = skopeoInspect(`${registry.directHost}/test/full:v1`);
    expect(full.Digest).toBe(images.full.digest);
    expect(full.Layers).toEqual(images.full.layers.map((l) => l.digest));
    expect(full.Architecture).toBe('amd64');
    const index = skopeoInspect(`${registry.directHost}/test/multi:v1`, true) as { manifests: { digest: string; platform: { architecture: string } }[] };
    expect(index.manifests.map((m) => m.digest)).toEqual([images.full.digest, images.arm64.digest, images.armv7.digest]);
  });

  it('pulls a multi-layer image into the expected tree, file by file', async () => {
    const store = await newStore();
    const img = await store.pull(`${registry.host}/test/full:v1`);
    expect(img.digest).toBe(images.full.digest);
    expect(img.id).toBe(images.full.configDigest);
    expect(img.repoTags).toEqual([`${registry.host}/test/full:v1`]);
    expect(img.layers.map((l) => l.diffID)).toEqual(images.full.layers.map((l) => l.diffID));
    expect(img.config).toMatchObject({ cmd: ['sh'], exposedPorts: ['8080/tcp'], volumes: ['/data'], stopSignal: 'SIGQUIT', labels: { 'dev.d2p.test': 'full' } });
    expect(img.config.healthcheck).toEqual({ test: ['CMD', 'true'], interval: 1e9, retries: 3 });
    const [l1, l2, l3] = img.layerDirs as [string, string, string];

    // Layer 1: busybox and its applets.
    expect(fs.readFileSync(path.join(l1, 'bin/busybox')).equals(fs.readFileSync('/usr/bin/busybox'))).toBe(true);
    expect(fs.statSync(path.join(l1, 'bin/busybox')).mode & 0o7777).toBe(0o755);
    expect(fs.readlinkSync(path.join(l1, 'bin/sh'))).toBe('busybox');
    expect(fs.readFileSync(path.join(l1, 'etc/passwd'), 'utf8')).toContain('user:x:1000:1000');
    expect(fs.statSync(path.join(l1, 'tmp')).mode & 0o7777).toBe(0o1777);
    expect(fs.statSync(path.join(l1, 'root')).mode & 0o7777).toBe(0o700);
    expect(fs.statSync(path.join(l1, 'etc/passwd')).mtimeMs / 1000).toBe(FIXED_MTIME_S);
    expect(fs.statSync(path.join(l1, 'etc')).mtimeMs / 1000).toBe(FIXED_MTIME_S);

    // Layer 2: owners, modes, links, special files, xattrs.
    const secret = fs.statSync(path.join(l2, 'home/user/secret'));
    expect([secret.mode & 0o7777, secret.uid, secret.gid]).toEqual([0o600, 1000, 1000]);
    expect(fs.readFileSync(path.join(l2, 'home/user/secret'), 'utf8')).toBe('secret of user 1000\n');
    const home = fs.statSync(path.join(l2, 'home/user'));
    expect([home.mode & 0o7777, home.uid, home.gid]).toEqual([0o750, 1000, 1000]);
    const suid = fs.statSync(path.join(l2, 'usr/local/bin/suid-tool'));
    expect(suid.mode & 0o7777).toBe(0o4755);
    const sgid = fs.statSync(path.join(l2, 'usr/local/bin/sgid-tool'));
    expect([sgid.mode & 0o7777, sgid.gid]).toEqual([0o2755, 1000]);
    const hard = fs.statSync(path.join(l2, 'usr/local/bin/hard-link'));
    expect(hard.ino).toBe(suid.ino);
    expect(hard.nlink).toBe(2);
    expect(fs.readlinkSync(path.join(l2, 'usr/local/bin/sym-link'))).toBe('suid-tool');
    expect(getxattr(path.join(l2, 'usr/local/share/attrs.txt'), 'user.d2p.test')).toBe('hello');
    const fifo = fs.lstatSync(path.join(l2, 'usr/local/share/fifo'));
    expect(fifo.isFIFO()).toBe(true);
    expect(fifo.mode & 0o7777).toBe(0o640);
    const dev = fs.lstatSync(path.join(l2, 'usr/local/share/null-dev'));
    expect(dev.isCharacterDevice()).toBe(true);
    expect(dev.rdev).toBe((1 << 8) | 3); // makedev(1, 3)
    expect(fs.existsSync(path.join(l2, `usr/local/share/${'long-name-'.repeat(12)}end.txt`))).toBe(true);
    expect(fs.existsSync(path.join(l2, 'etc'))).toBe(false);

    // Layer 3: whiteouts in overlayfs form.
    const whiteout = fs.lstatSync(path.join(l3, 'etc/motd'));
    expect(whiteout.isCharacterDevice()).toBe(true);
    expect(whiteout.rdev).toBe(0);
    expect(fs.existsSync(path.join(l3, 'etc/.wh.motd'))).toBe(false);
    expect(getxattr(path.join(l3, 'opt/data'), 'trusted.overlay.opaque')).toBe('y');
    expect(fs.readdirSync(path.join(l3, 'opt/data'))).toEqual(['new.txt']);
    expect(fs.existsSync(path.join(l3, 'opt/data/.wh..wh..opq'))).toBe(false);
  });

  it('the layers stack in overlayfs as the image means them', async () => {
    const store = await newStore();
    const img = await store.pull(`${registry.host}/test/full:v1`);
    const target = tempDir('merged');
    // overlayfs wants lowerdir top-first; layerDirs is bottom-first.
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${[...img.layerDirs].reverse().join(':')}`, target]);
    cleanups.push(() => {
      execFileSync('umount', [target]);
    });
    expect(fs.existsSync(path.join(target, 'etc/motd'))).toBe(false);
    expect(fs.readFileSync(path.join(target, 'etc/passwd'), 'utf8')).toContain('root:x:0:0');
    expect(fs.readdirSync(path.join(target, 'opt/data'))).toEqual(['new.txt']);
    expect(execFileSync(path.join(target, 'bin/busybox'), ['echo', 'runs'], { encoding: 'utf8' })).toBe('runs\n');
  });

  it('a second pull downloads and extracts nothing', async () => {
    const store = await newStore();
    await store.pull(`${registry.host}/test/full:v1`);
    const before = registry.blobGets.length;
    const events: ProgressEvent[] = [];
    const again = await store.pull(`${registry.host}/test/full:v1`, { onProgress: (e) => events.push(e) });
    expect(registry.blobGets.length).toBe(before);
    const finalStates = new Map(events.map((e) => [e.digest, e.state]));
    expect([...finalStates.values()]).toEqual(['cached', 'cached', 'cached']);
    // "base" shares layer 1 with "full": only its manifest is fetched.
    const base = await store.pull(`${registry.host}/test/base:v1`);
    expect(registry.blobGets.length).toBe(before + 1); // its config
    expect(base.layerDirs[0]).toBe(again.layerDirs[0]);
    expect((await store.list()).map((i) => i.digest).sort()).toEqual([images.base.digest, images.full.digest].sort());
  });

  it('reports per-layer progress with bytes', async () => {
    const store = await newStore();
    const events: ProgressEvent[] = [];
    await store.pull(`${registry.host}/test/base:v1`, { onProgress: (e) => events.push(e) });
    const layer = images.base.layers[0]?.digest as string;
    const mine = events.filter((e) => e.digest === layer);
    expect(mine[0]?.state).toBe('waiting');
    expect(mine.at(-1)).toMatchObject({ state: 'done', current: mine[0]?.total });
    expect(mine.some((e) => e.state === 'downloading' && e.current > 0 && e.current < e.total)).toBe(true);
  });

  it('picks the platform from an index and lists the available ones on a miss', async () => {
    const store = await newStore();
    const amd64 = await store.pull(`${registry.host}/test/multi:v1`);
    expect(amd64.digest).toBe(images.full.digest);
    const arm64 = await store.pull(`${registry.host}/test/multi:v1`, { platform: 'linux/arm64' });
    expect(arm64.digest).toBe(images.arm64.digest);
    expect(fs.readFileSync(path.join(arm64.layerDirs[0] as string, 'arch'), 'utf8')).toBe('arm64\n');
    const armv7 = await store.pull(`${registry.host}/test/multi:v1`, { platform: 'linux/arm/v7' });
    expect(fs.readFileSync(path.join(armv7.layerDirs[0] as string, 'arch'), 'utf8')).toBe('arm/v7\n');
    expect(armv7.platform).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    await expect(store.pull(`${registry.host}/test/multi:v1`, { platform: 'linux/s390x' })).rejects.toThrow(
      'no manifest for platform linux/s390x; available: linux/amd64, linux/arm64, linux/arm/v7',
    );
  });

  it('rejects a blob whose bytes do not match its digest and commits nothing', async () => {
    const store = await newStore();
    const victim = images.full.layers[1]?.digest as string;
    registry.corrupt.add(victim);
    const err = await store.pull(`${registry.host}/test/full:v1`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect((err as ImageError).code).toBe('D2P_IMAGE_DIGEST_MISMATCH');
    expect((err as ImageError).message).toContain(victim);
    expect(fs.existsSync(store.blobPath(victim))).toBe(false);
    expect(fs.existsSync(store.layerDir(images.full.layers[1]?.diffID as string))).toBe(false);
    expect(fs.readdirSync(store.tmpPath)).toEqual([]);
    expect(await store.get(`${registry.host}/test/full:v1`)).toBeUndefined();
    registry.corrupt.clear();
    const ok = await store.pull(`${registry.host}/test/full:v1`);
    expect(ok.digest).toBe(images.full.digest);
  });

  it('rejects hostile layers and writes nothing outside the store', async () => {
    const canary = tempDir('canary');
    const hostile = path.join(work, 'hostile');
    const escape = `${'../'.repeat(30)}${canary.slice(1)}`;
    const cases: Record<string, object[]> = {
      dotdot: [{ path: `${escape}/dotdot`, type: 'file', content: 'x' }],
      absolute: [{ path: `${canary}/absolute`, type: 'file', content: 'x' }],
      symlink: [
        { path: 'esc', type: 'symlink', linkpath: canary },
        { path: 'esc/through-symlink', type: 'file', content: 'x' },
      ],
      hardlink: [{ path: 'hl', type: 'link', linkpath: `${escape}/victim` }],
    };
    fs.writeFileSync(path.join(canary, 'victim'), 'victim');
    const named: Record<string, Descriptor> = {};
    for (const [name, entries] of Object.entries(cases)) named[name] = fixtures.addImage(hostile, [fixtures.tarArchive(entries)]);
    fixtures.writeLayoutIndex(hostile, named);
    const store = await newStore();
    for (const name of Object.keys(cases)) {
      await pushOciLayout(hostile, `${registry.host}/hostile/${name}:v1`, { refName: name });
      const err = await store.pull(`${registry.host}/hostile/${name}:v1`).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(ImageError);
      expect((err as ImageError).code, name).toBe('D2P_IMAGE_UNSAFE_LAYER');
    }
    expect(fs.readdirSync(canary)).toEqual(['victim']);
    expect(fs.statSync(path.join(canary, 'victim')).nlink).toBe(1);
    expect(fs.readdirSync(path.join(store.root, 'layers', 'sha256'))).toEqual([]);
    expect(fs.readdirSync(store.tmpPath)).toEqual([]);
  });

  it('a pull killed with SIGKILL mid-download leaves the store consistent; the next pull completes', async () => {
    const root = tempDir('killed-store');
    const bundle = path.join(work, 'pull-child.js');
    esbuild.buildSync({
      stdin: {
        contents: `
          import { ImageStore } from './index';
          (async () => {
            const store = await ImageStore.open(process.argv[2]);
            await store.pull(process.argv[3], { onProgress: (e) => process.stdout.write(JSON.stringify(e) + '\\n') });
            process.stdout.write('DONE\\n');
          })().catch((e) => { console.error(e); process.exit(1); });`,
        resolveDir: path.join(__dirname, '../../src/images'),
        loader: 'ts',
      },
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      outfile: bundle,
      logLevel: 'error',
    });
    registry.throttleBytesPer50ms = 16 * 1024;
    const sentBefore = registry.blobBytesSent;
    const child = spawn(process.execPath, [bundle, root, `${registry.host}/test/full:v1`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    cleanups.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const deadline = Date.now() + 60_000;
    while (registry.blobBytesSent - sentBefore < 300 * 1024) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`child did not reach mid-download: ${output}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    expect(output).not.toContain('DONE');
    // What the kill left: temp debris at most, nothing half-made under blobs/ or layers/.
    const bigLayer = images.full.layers[0] as { digest: string; diffID: string };
    expect(fs.existsSync(path.join(root, 'blobs/sha256', bigLayer.digest.slice(7)))).toBe(false);
    expect(fs.existsSync(path.join(root, 'layers/sha256', bigLayer.diffID.slice(7)))).toBe(false);
    expect(fs.readdirSync(path.join(root, 'tmp')).length).toBeGreaterThan(0);

    registry.throttleBytesPer50ms = undefined;
    const store = await ImageStore.open(root);
    expect(fs.readdirSync(store.tmpPath)).toEqual([]);
    expect(await store.get(`${registry.host}/test/full:v1`)).toBeUndefined();
    const img = await store.pull(`${registry.host}/test/full:v1`);
    expect(img.digest).toBe(images.full.digest);
    expect(fs.readFileSync(path.join(img.layerDirs[0] as string, 'bin/busybox')).equals(fs.readFileSync('/usr/bin/busybox'))).toBe(true);
  });

  it('pushes a stored image, tags, removes and prunes', async () => {
    const store = await newStore();
    await store.pull(`${registry.host}/test/full:v1`);
    await store.tag(`${registry.host}/test/full:v1`, `${registry.host}/copy/full:v2`);
    const pushed = await pushImage(store, `${registry.host}/copy/full:v2`);
    expect(pushed.digest).toBe(images.full.digest);
    expect(skopeoInspect(`${registry.directHost}/copy/full:v2`).Digest).toBe(images.full.digest);
    expect((await store.get(images.full.configDigest.slice(7, 19)))?.digest).toBe(images.full.digest);

    expect(await store.remove(`${registry.host}/copy/full:v2`)).toEqual({ untagged: [`${registry.host}/copy/full:v2`], deleted: [] });
    expect(await store.prune()).toEqual({ blobs: [], layers: [] });
    const removed = await store.remove(`${registry.host}/test/full:v1`);
    expect(removed.deleted).toEqual([images.full.digest]);
    const pruned = await store.prune();
    expect(pruned.layers.sort()).toEqual(images.full.layers.map((l) => l.diffID).sort());
    expect(fs.readdirSync(path.join(store.root, 'blobs', 'sha256'))).toEqual([]);
    await expect(store.remove('nothing:here')).rejects.toThrow('image "nothing:here" not found');
  });

  it('saves to an OCI layout tar and loads it back; loads docker save archives', async () => {
    const store = await newStore();
    await store.pull(`${registry.host}/test/full:v1`);
    const archive = path.join(work, 'full.tar');
    await saveOciLayout(store, [`${registry.host}/test/full:v1`], archive);
    const other = await newStore();
    const [loaded] = await loadImages(other, archive);
    expect(loaded?.digest).toBe(images.full.digest);
    expect(loaded?.repoTags).toEqual([`${registry.host}/test/full:v1`]);
    expect(fs.readlinkSync(path.join(loaded?.layerDirs[0] as string, 'bin/sh'))).toBe('busybox');
    // skopeo reads what we wrote.
    const viaSkopeo = JSON.parse(execFileSync('skopeo', ['inspect', `oci-archive:${archive}`], { encoding: 'utf8' })) as { Digest: string };
    expect(viaSkopeo.Digest).toBe(images.full.digest);

    // A docker save archive: uncompressed layer tars and manifest.json.
    const saveDir = tempDir('docker-save');
    const layerTar = fixtures.tarArchive([{ path: 'hello.txt', type: 'file', content: 'from docker save\n' }]);
    const diffID = fixtures.sha256(layerTar);
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['cat', '/hello.txt'] }, rootfs: { type: 'layers', diff_ids: [diffID] } }));
    fs.mkdirSync(path.join(saveDir, 'abc'));
    fs.writeFileSync(path.join(saveDir, 'abc/layer.tar'), layerTar);
    fs.writeFileSync(path.join(saveDir, 'cfg.json'), config);
    fs.writeFileSync(path.join(saveDir, 'manifest.json'), JSON.stringify([{ Config: 'cfg.json', RepoTags: ['saved/hello:1'], Layers: ['abc/layer.tar'] }]));
    const saveTar = path.join(work, 'docker-save.tar');
    execFileSync('tar', ['-cf', saveTar, '-C', saveDir, '.']);
    const [fromSave] = await loadImages(other, saveTar);
    expect(fromSave?.repoTags).toEqual(['docker.io/saved/hello:1']);
    expect(fromSave?.config.cmd).toEqual(['cat', '/hello.txt']);
    expect(fs.readFileSync(path.join(fromSave?.layerDirs[0] as string, 'hello.txt'), 'utf8')).toBe('from docker save\n');
    expect((await other.get('saved/hello:1'))?.id).toBe(fixtures.sha256(config));
  });
});

describe('registries that demand tokens', () => {
  let work: string;
  let registry: TestRegistry;
  let images: ReturnType<typeof fixtures.buildTestImages>;
  const auth = { username: 'alice', password: 's3cret' };

  beforeAll(async () => {
    requireRoot();
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-images-auth-'));
    images = fixtures.buildTestImages(path.join(work, 'layout'));
    registry = await startRegistry({ auth, redirectBlobs: true });
    await pushOciLayout(path.join(work, 'layout'), `${registry.host}/private/base:v1`, { refName: 'base', credentials: auth });
  });

  afterAll(async () => {
    await registry?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('pulls with a Bearer token, follows blob redirects without leaking the token', async () => {
    const store = await ImageStore.open(fs.mkdtempSync(path.join(work, 'store-')));
    const img = await store.pull(`${registry.host}/private/base:v1`, { credentials: auth });
    expect(img.digest).toBe(images.base.digest);
    expect(registry.tokenRequests.some((t) => t.granted && t.scope === 'repository:private/base:pull')).toBe(true);
    expect(registry.leakedAuthorization).toBe(0);
  });

  it('anonymous pulls are refused with a message naming the registry', async () => {
    const store = await ImageStore.open(fs.mkdtempSync(path.join(work, 'store-')));
    await expect(store.pull(`${registry.host}/private/base:v1`)).rejects.toThrow(`registry ${registry.host} refused anonymous access`);
  });

  it('login checks the password, stores good credentials, and pulls use them', async () => {
    const authFile = path.join(work, 'docker', 'config.json');
    const err = await login(registry.host, 'alice', 'wrong', { authFile }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect((err as ImageError).code).toBe('D2P_IMAGE_UNAUTHORIZED');
    expect((err as Error).message).toContain(`registry ${registry.host} refused user "alice": 401 Unauthorized`);
    expect(fs.existsSync(authFile)).toBe(false);

    await login(registry.host, 'alice', 's3cret', { authFile });
    const stored = JSON.parse(fs.readFileSync(authFile, 'utf8')) as { auths: Record<string, { auth: string }> };
    expect(Buffer.from(stored.auths[registry.host]?.auth ?? '', 'base64').toString()).toBe('alice:s3cret');

    const store = await ImageStore.open(fs.mkdtempSync(path.join(work, 'store-')));
    const img = await store.pull(`${registry.host}/private/base:v1`, { authFile });
    expect(img.digest).toBe(images.base.digest);
  });
});
