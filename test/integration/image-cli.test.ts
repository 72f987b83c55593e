// `d2p image …` end to end, inside hack/sandbox: pull from a real registry (Debian's
// docker-registry on loopback), ls, tag, push (checked with skopeo), rm refused while a
// Container object of a running daemon uses the image, save/load into an empty root, and
// login against a registry that wants a token.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../../src/client/index';
import { imageCommand } from '../../src/cli/commands/image';
import { createContext } from '../../src/cli/context';
import { StringWriter } from '../../src/cli/io';
import { pushOciLayout } from '../../src/images/index';
import { runDaemon, type Daemon } from '../../src/server/daemon';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { requireSandbox } from '../helpers/sandbox-guard';
import { fixtures } from '../helpers/test-image';

interface Outcome {
  status: number;
  stdout: string;
  stderr: string;
}

class Terminal extends StringWriter {
  readonly isTTY = true;
  readonly columns = 120;
}

async function d2pImage(root: string, args: string[], opts: { tty?: boolean; stdin?: string } = {}): Promise<Outcome> {
  const io = { stdout: opts.tty ? new Terminal() : new StringWriter(), stderr: new StringWriter() };
  const ctx = createContext({ root }, io, { startDaemon: false });
  let status: number;
  try {
    status = await imageCommand({ args, ...(opts.stdin !== undefined ? { stdin: Readable.from([opts.stdin]) } : {}) }, ctx);
  } catch (err) {
    status = 1;
    io.stderr.write(`error: ${(err as Error).message}\n`);
  } finally {
    await ctx.close();
  }
  return { status, stdout: io.stdout.toString(), stderr: io.stderr.toString() };
}

function skopeo(...args: string[]): Record<string, unknown> {
  return JSON.parse(execFileSync('skopeo', args, { encoding: 'utf8' })) as Record<string, unknown>;
}

describe('d2p image against a loopback registry', () => {
  let work: string;
  let root: string;
  let registry: TestRegistry;
  let images: ReturnType<typeof fixtures.buildTestImages>;
  let ref: string;

  beforeAll(async () => {
    requireSandbox('image CLI integration tests');
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-image-cli-'));
    root = path.join(work, 'root');
    const layout = path.join(work, 'layout');
    images = fixtures.buildTestImages(layout);
    registry = await startRegistry();
    ref = `${registry.host}/test/full:v1`;
    await pushOciLayout(layout, ref, { refName: 'full' });
    await pushOciLayout(layout, `${registry.host}/test/multi:v1`, { refName: 'multi' });
  });

  afterAll(async () => {
    await registry?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('pull prints docker’s lines, then a second pull finds everything present', async () => {
    const first = await d2pImage(root, ['pull', ref]);
    expect(first.stderr).toBe('');
    expect(first.status).toBe(0);
    const layerIds = images.full.layers.map((l) => l.digest.slice(7, 19));
    const lines = first.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('v1: Pulling from test/full');
    for (const id of layerIds) {
      expect(lines).toContain(`${id}: Pulling fs layer`);
      expect(lines).toContain(`${id}: Pull complete`);
    }
    expect(lines.slice(-3)).toEqual([`Digest: ${images.full.digest}`, `Status: Downloaded newer image for ${ref}`, ref]);
    expect(first.stdout).not.toContain('\x1b[');

    const second = await d2pImage(root, ['pull', ref]);
    for (const id of layerIds) expect(second.stdout).toContain(`${id}: Already exists\n`);
    expect(second.stdout).toContain(`Status: Image is up to date for ${ref}\n`);
  });

  it('pull on a terminal draws progress bars in place; --platform picks from an index', async () => {
    const otherRoot = fs.mkdtempSync(path.join(work, 'tty-'));
    const pulled = await d2pImage(otherRoot, ['pull', '--platform', 'linux/arm64', `${registry.host}/test/multi:v1`], { tty: true });
    expect(pulled.status).toBe(0);
    const arm64Layer = images.arm64.layers[0]!.digest.slice(7, 19);
    expect(pulled.stdout).toContain(`\x1b[2K\r${arm64Layer}: Pulling fs layer\n`);
    expect(pulled.stdout).toMatch(new RegExp(`${arm64Layer}: Downloading \\[[= >]+\\] +[0-9.]+k?B/[0-9.]+k?B`));
    expect(pulled.stdout).toMatch(/\x1b\[\d+A\x1b\[2K\r[0-9a-f]{12}: Pull complete\x1b\[\d+B\r/);
    const inspect = JSON.parse((await d2pImage(otherRoot, ['inspect', `${registry.host}/test/multi:v1`])).stdout) as { Architecture: string; Descriptor: { digest: string } }[];
    expect(inspect[0]).toMatchObject({ Architecture: 'arm64', Descriptor: { digest: images.arm64.digest } });
  });

  it('ls shows the image; tag and push to another repository, as skopeo reads it', async () => {
    const ls = await d2pImage(root, ['ls', '--digests']);
    expect(ls.stdout).toMatch(new RegExp(`^${registry.host}/test/full\\s+v1\\s+${images.full.digest}\\s+${images.full.configDigest.slice(7, 19)}\\s+`, 'm'));

    const copy = `${registry.host}/copy/full:v2`;
    expect(await d2pImage(root, ['tag', ref, copy])).toMatchObject({ status: 0, stdout: '' });
    const push = await d2pImage(root, ['push', copy]);
    expect(push.stderr).toBe('');
    const lines = push.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`The push refers to repository [${registry.host}/copy/full]`);
    for (const layer of images.full.layers) {
      const id = layer.digest.slice(7, 19);
      expect(lines).toContain(`${id}: Preparing`);
      // The registry has these blobs in test/full, not in copy/full: they are pushed.
      expect(lines.some((l) => l === `${id}: Pushed` || l === `${id}: Layer already exists`)).toBe(true);
    }
    expect(lines.at(-1)).toMatch(new RegExp(`^v2: digest: ${images.full.digest} size: \\d+$`));

    const seen = skopeo('inspect', '--tls-verify=false', `docker://${registry.directHost}/copy/full:v2`);
    expect(seen.Digest).toBe(images.full.digest);
    expect(seen.Layers).toEqual(images.full.layers.map((l) => l.digest));
  });

  describe('with a daemon serving the root', () => {
    let daemon: Daemon;

    beforeAll(async () => {
      daemon = await runDaemon({ root, handleSignals: false, log: () => undefined });
    });

    afterAll(async () => {
      await daemon?.stop();
    });

    it('rm refuses an image a Container uses, naming it; -f removes it', async () => {
      const client = createClient({ socketPath: daemon.paths.socket });
      try {
        await client.containers.create({
          apiVersion: 'd2p.dev/v1alpha1',
          kind: 'Container',
          metadata: { name: 'shop-web-1', namespace: 'shop' },
          spec: { image: `${registry.host}/copy/full:v2` },
        });
        // Another tag of the same image: the container uses it as much as through its own.
        const refused = await d2pImage(root, ['rm', ref]);
        expect(refused.status).toBe(1);
        expect(refused.stdout).toBe('');
        expect(refused.stderr).toContain(`error: unable to remove image "${ref}" (must force with -f): image is being used by container shop/shop-web-1`);
        expect((await d2pImage(root, ['ls', '-q'])).stdout).toBe(`${images.full.configDigest.slice(7, 19)}\n`);

        const pruned = await d2pImage(root, ['prune', '-a']);
        expect(pruned.stdout).not.toContain('deleted:');

        const forced = await d2pImage(root, ['rm', '-f', ref]);
        expect(forced).toMatchObject({ status: 0, stdout: `Untagged: ${ref}\n` });
      } finally {
        await client.close();
      }
    });
  });

  it('save and load move the image into an empty root; skopeo reads both archive formats', async () => {
    const copy = `${registry.host}/copy/full:v2`;
    for (const format of ['oci', 'docker'] as const) {
      const archive = path.join(work, `full-${format}.tar`);
      expect(await d2pImage(root, ['save', '--format', format, '-o', archive, copy])).toMatchObject({ status: 0, stdout: '' });
      const transport = format === 'oci' ? 'oci-archive' : 'docker-archive';
      expect(skopeo('inspect', `${transport}:${archive}`).Digest).toBeDefined();
      expect((skopeo('inspect', `${transport}:${archive}`).Layers as string[]).length).toBe(images.full.layers.length);

      const emptyRoot = fs.mkdtempSync(path.join(work, `empty-${format}-`));
      const loaded = await d2pImage(emptyRoot, ['load', '-i', archive]);
      expect(loaded).toMatchObject({ status: 0, stdout: `Loaded image: ${copy}\n` });
      const [view] = JSON.parse((await d2pImage(emptyRoot, ['inspect', copy])).stdout) as { Id: string; GraphDriver: { Data: { LowerDir: string } } }[];
      expect(view?.Id).toBe(images.full.configDigest);
      const top = view!.GraphDriver.Data.LowerDir.split(':').at(-1)!;
      expect(fs.readlinkSync(path.join(top, 'bin/sh'))).toBe('busybox');
    }
  });
});

describe('d2p image login against a registry that demands tokens', () => {
  let work: string;
  let registry: TestRegistry;

  beforeAll(async () => {
    requireSandbox('image CLI integration tests');
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-image-login-'));
    const layout = path.join(work, 'layout');
    fixtures.buildTestImages(layout);
    registry = await startRegistry({ auth: { username: 'bob', password: 's3cret' } });
    await pushOciLayout(layout, `${registry.host}/private/base:v1`, { refName: 'base', credentials: { username: 'bob', password: 's3cret' } });
  });

  afterAll(async () => {
    await registry?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('a wrong password stores nothing; the right one lets pulls through; logout forgets it', async () => {
    const root = path.join(work, 'root');
    const ref = `${registry.host}/private/base:v1`;
    const anonymous = await d2pImage(root, ['pull', '-q', ref]);
    expect(anonymous.status).toBe(1);
    expect(anonymous.stderr).toContain(registry.host);

    const wrong = await d2pImage(root, ['login', '-u', 'bob', '--password-stdin', registry.host], { stdin: 'nope\n' });
    expect(wrong.status).toBe(1);
    expect(fs.existsSync(path.join(root, 'auth.json'))).toBe(false);

    const right = await d2pImage(root, ['login', '-u', 'bob', '--password-stdin', registry.host], { stdin: 's3cret\n' });
    expect(right).toMatchObject({ status: 0, stdout: 'Login Succeeded\n' });
    const auths = (JSON.parse(fs.readFileSync(path.join(root, 'auth.json'), 'utf8')) as { auths: Record<string, unknown> }).auths;
    expect(Object.keys(auths)).toEqual([registry.host]);

    expect(await d2pImage(root, ['pull', '-q', ref])).toMatchObject({ status: 0, stdout: `${ref}\n` });
    expect(await d2pImage(root, ['logout', registry.host])).toMatchObject({ status: 0, stdout: `Removing login credentials for ${registry.host}\n` });
  });
});
