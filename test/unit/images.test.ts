import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ImageError,
  LayerTree,
  classifyWhiteout,
  familiarReference,
  formatReference,
  isLoopbackRegistry,
  normalizeLayerPath,
  parsePaxXattrs,
  parsePlatform,
  parseReference,
  parseWwwAuthenticate,
  readCredentials,
  registryApiHost,
  selectPlatformManifest,
  storeCredentials,
  summarizeConfig,
  type Descriptor,
} from '../../src/images';

const HEX = 'a'.repeat(64);

describe('parseReference', () => {
  const table: [string, string][] = [
    ['nginx', 'docker.io/library/nginx:latest'],
    ['nginx:1.25', 'docker.io/library/nginx:1.25'],
    ['library/nginx', 'docker.io/library/nginx:latest'],
    ['bitnami/redis:7', 'docker.io/bitnami/redis:7'],
    ['docker.io/nginx', 'docker.io/library/nginx:latest'],
    ['index.docker.io/nginx', 'docker.io/library/nginx:latest'],
    ['localhost/foo', 'localhost/foo:latest'],
    ['localhost:5000/foo/bar:v1', 'localhost:5000/foo/bar:v1'],
    ['127.0.0.1:5000/test/multi', '127.0.0.1:5000/test/multi:latest'],
    ['[::1]:5000/foo', '[::1]:5000/foo:latest'],
    ['ghcr.io/owner/repo/sub:tag-1.0_x', 'ghcr.io/owner/repo/sub:tag-1.0_x'],
    [`nginx@sha256:${HEX}`, `docker.io/library/nginx@sha256:${HEX}`],
    [`nginx:1.25@sha256:${HEX}`, `docker.io/library/nginx:1.25@sha256:${HEX}`],
    ['a__b/c-d.e:x', 'docker.io/a__b/c-d.e:x'],
  ];
  it.each(table)('%s → %s', (input, expected) => {
    expect(formatReference(parseReference(input))).toBe(expected);
  });

  it('splits registry, repository, tag and digest', () => {
    expect(parseReference(`localhost:5000/a/b:t@sha256:${HEX}`)).toEqual({ registry: 'localhost:5000', repository: 'a/b', tag: 't', digest: `sha256:${HEX}` });
    expect(parseReference(`a@sha256:${HEX}`).tag).toBeUndefined();
  });

  const bad = ['', 'UPPER', 'docker.io/Nginx', 'nginx:', 'nginx:-bad', ':tag', 'a//b', 'a/b/', 'nginx@sha256:abc', `nginx@md5:${HEX}`, ' nginx', 'foo:bar:baz', 'a..b', `x:${'t'.repeat(129)}`, `${'a'.repeat(256)}`];
  it.each(bad)('rejects %j with an invalid-reference error naming it', (input) => {
    let caught: unknown;
    try {
      parseReference(input);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ImageError);
    expect((caught as ImageError).code).toBe('D2P_IMAGE_INVALID_REFERENCE');
    expect((caught as ImageError).message).toContain(JSON.stringify(input));
  });

  it('prints the familiar form and maps Docker Hub to its API host', () => {
    expect(familiarReference(parseReference('nginx'))).toBe('nginx:latest');
    expect(familiarReference(parseReference('bitnami/redis'))).toBe('bitnami/redis:latest');
    expect(registryApiHost('docker.io')).toBe('registry-1.docker.io');
    expect(registryApiHost('127.0.0.1:5000')).toBe('127.0.0.1:5000');
  });

  it('treats loopback registries as plain HTTP, others not', () => {
    expect(isLoopbackRegistry('127.0.0.1:5000')).toBe(true);
    expect(isLoopbackRegistry('127.9.8.7')).toBe(true);
    expect(isLoopbackRegistry('localhost:5000')).toBe(true);
    expect(isLoopbackRegistry('[::1]:5000')).toBe(true);
    expect(isLoopbackRegistry('docker.io')).toBe(false);
    expect(isLoopbackRegistry('128.0.0.1')).toBe(false);
    expect(isLoopbackRegistry('localhost.example.com')).toBe(false);
  });
});

describe('parseWwwAuthenticate', () => {
  it('parses a Docker Hub Bearer challenge', () => {
    const [c] = parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"');
    expect(c).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/nginx:pull' },
    });
  });

  it('handles Basic, token values, spaces, escapes and commas inside quotes', () => {
    expect(parseWwwAuthenticate('Basic realm="Registry Realm"')).toEqual([{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
    const [c] = parseWwwAuthenticate('bearer  realm = "http://x/token" , service=reg , scope="repository:a:pull,push", error="in\\"valid"');
    expect(c?.params).toEqual({ realm: 'http://x/token', service: 'reg', scope: 'repository:a:pull,push', error: 'in"valid' });
  });

  it('parses several challenges in one header', () => {
    const cs = parseWwwAuthenticate('Bearer realm="a",service="b", Basic realm="c"');
    expect(cs.map((c) => c.scheme)).toEqual(['bearer', 'basic']);
    expect(cs[1]?.params.realm).toBe('c');
  });

  it('rejects malformed headers', () => {
    expect(() => parseWwwAuthenticate('')).toThrow(/malformed WWW-Authenticate/);
    expect(() => parseWwwAuthenticate('Bearer realm="unterminated')).toThrow(/unterminated quoted string/);
  });
});

describe('platforms', () => {
  const d = (platform: Descriptor['platform'], n: number): Descriptor => ({ mediaType: 'm', digest: `sha256:${String(n).repeat(64)}`, size: 1, ...(platform ? { platform } : {}) });
  const manifests = [
    d({ os: 'linux', architecture: 'amd64' }, 1),
    d({ os: 'linux', architecture: 'arm64', variant: 'v8' }, 2),
    d({ os: 'linux', architecture: 'arm', variant: 'v7' }, 3),
    d({ os: 'linux', architecture: 'arm', variant: 'v6' }, 4),
    d({ os: 'unknown', architecture: 'unknown' }, 5),
  ];

  it('picks the matching entry, normalising variants', () => {
    expect(selectPlatformManifest(manifests, parsePlatform('linux/amd64'), 'x').digest).toBe(manifests[0]?.digest);
    expect(selectPlatformManifest(manifests, parsePlatform('linux/arm64'), 'x').digest).toBe(manifests[1]?.digest);
    expect(selectPlatformManifest(manifests, parsePlatform('linux/aarch64/v8'), 'x').digest).toBe(manifests[1]?.digest);
    expect(selectPlatformManifest(manifests, parsePlatform('linux/arm'), 'x').digest).toBe(manifests[2]?.digest);
    expect(selectPlatformManifest(manifests, parsePlatform('linux/arm/v6'), 'x').digest).toBe(manifests[3]?.digest);
  });

  it('lists what is available when nothing matches', () => {
    expect(() => selectPlatformManifest(manifests, parsePlatform('linux/s390x'), 'image foo')).toThrow(
      'image foo: no manifest for platform linux/s390x; available: linux/amd64, linux/arm64, linux/arm/v7, linux/arm/v6',
    );
  });

  it('rejects malformed platforms', () => {
    expect(() => parsePlatform('linux')).toThrow(/invalid platform "linux"/);
    expect(() => parsePlatform('linux//v7')).toThrow(/invalid platform/);
  });
});

describe('layer path safety', () => {
  it('normalises harmless names', () => {
    expect(normalizeLayerPath('./')).toBe('');
    expect(normalizeLayerPath('./bin/sh')).toBe('bin/sh');
    expect(normalizeLayerPath('usr//lib/./x/')).toBe('usr/lib/x');
  });

  it.each(['../../etc/x', 'a/../../b', 'a/..', '/etc/passwd', '/', 'a\0b'])('rejects %j', (name) => {
    expect(() => normalizeLayerPath(name)).toThrow(/layer entry .* rejected/);
  });

  it('refuses to write through a symlink or under a file', () => {
    const tree = new LayerTree();
    tree.set('etc', 'dir');
    tree.set('link', 'symlink');
    tree.set('file', 'file');
    expect(tree.checkParents('etc/a/b')).toEqual(['etc/a']);
    expect(() => tree.checkParents('link/x')).toThrow(/parent "link" is a symlink/);
    expect(() => tree.checkParents('link/deeper/x')).toThrow(/symlink/);
    expect(() => tree.checkParents('file/x')).toThrow(/not a directory/);
    tree.remove('link');
    tree.set('link', 'dir');
    expect(tree.checkParents('link/x')).toEqual([]);
  });

  it('allows hard links only to earlier entries inside the layer', () => {
    const tree = new LayerTree();
    tree.set('bin', 'dir');
    tree.set('bin/a', 'file');
    tree.set('lnk', 'symlink');
    expect(tree.checkHardlinkTarget('bin/b', 'bin/a')).toBe('bin/a');
    expect(() => tree.checkHardlinkTarget('bin/b', '../etc/shadow')).toThrow(/outside the layer/);
    expect(() => tree.checkHardlinkTarget('bin/b', '/etc/shadow')).toThrow(/outside the layer/);
    expect(() => tree.checkHardlinkTarget('bin/b', 'lnk/shadow')).toThrow(/symlink/);
    expect(() => tree.checkHardlinkTarget('bin/b', 'bin/missing')).toThrow(/not an earlier entry/);
    expect(() => tree.checkHardlinkTarget('bin/b', 'bin')).toThrow(/is a directory/);
  });

  it('classifies whiteouts', () => {
    expect(classifyWhiteout('etc/.wh.motd')).toEqual({ kind: 'file', target: 'etc/motd' });
    expect(classifyWhiteout('.wh.top')).toEqual({ kind: 'file', target: 'top' });
    expect(classifyWhiteout('opt/data/.wh..wh..opq')).toEqual({ kind: 'opaque', dir: 'opt/data' });
    expect(classifyWhiteout('.wh..wh.plnk')).toEqual({ kind: 'meta' });
    expect(classifyWhiteout('etc/motd')).toBeUndefined();
    expect(() => classifyWhiteout('etc/.wh...')).toThrow(/whiteout of an invalid name/);
  });

  it('reads xattrs out of pax records and flags binary values', () => {
    const rec = (k: string, v: string) => {
      const body = ` ${k}=${v}\n`;
      let len = Buffer.byteLength(body) + 1;
      while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
      return `${len}${body}`;
    };
    const { xattrs, damaged } = parsePaxXattrs(rec('path', 'x') + rec('SCHILY.xattr.user.a', 'héllo=1') + rec('SCHILY.xattr.security.capability', '\uFFFD\u0001'));
    expect([...xattrs.keys()]).toEqual(['user.a']);
    expect(xattrs.get('user.a')?.toString('utf8')).toBe('héllo=1');
    expect(damaged).toEqual(['security.capability']);
  });
});

describe('credential file', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-images-unit-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('stores base64 auth per registry, keeps other keys, and reads it back', () => {
    const file = path.join(dir, 'config.json');
    fs.writeFileSync(file, JSON.stringify({ credsStore: 'none', auths: { 'other.io': { auth: Buffer.from('o:p').toString('base64') } } }));
    storeCredentials(file, '127.0.0.1:5000', { username: 'alice', password: 'pa:ss' });
    storeCredentials(file, 'docker.io', { username: 'bob', password: 'x' });
    const raw = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(raw.credsStore).toBe('none');
    expect(raw.auths['127.0.0.1:5000'].auth).toBe(Buffer.from('alice:pa:ss').toString('base64'));
    expect(Object.keys(raw.auths)).toContain('https://index.docker.io/v1/');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(readCredentials(file, '127.0.0.1:5000')).toEqual({ username: 'alice', password: 'pa:ss' });
    expect(readCredentials(file, 'docker.io')).toEqual({ username: 'bob', password: 'x' });
    expect(readCredentials(file, 'other.io')).toEqual({ username: 'o', password: 'p' });
    expect(readCredentials(file, 'nowhere.io')).toBeUndefined();
    expect(readCredentials(path.join(dir, 'missing.json'), 'x.io')).toBeUndefined();
  });

  it('names the file when it is not JSON', () => {
    const file = path.join(dir, 'bad.json');
    fs.writeFileSync(file, '{nope');
    expect(() => readCredentials(file, 'x.io')).toThrow(file);
  });
});

describe('summarizeConfig', () => {
  it('maps the image config to what containers use', () => {
    const s = summarizeConfig({
      os: 'linux',
      architecture: 'amd64',
      config: {
        Env: ['A=1'],
        Cmd: ['sh'],
        Entrypoint: null,
        WorkingDir: '/w',
        User: '1000:1000',
        ExposedPorts: { '80/tcp': {}, '53/udp': {} },
        Volumes: { '/data': {} },
        Labels: { a: 'b' },
        StopSignal: 'SIGQUIT',
        Healthcheck: { Test: ['CMD', 'true'], Interval: 5e9, Retries: 2 },
      },
      rootfs: { type: 'layers', diff_ids: [] },
    });
    expect(s).toMatchObject({
      env: ['A=1'],
      cmd: ['sh'],
      entrypoint: null,
      workingDir: '/w',
      user: '1000:1000',
      exposedPorts: ['80/tcp', '53/udp'],
      volumes: ['/data'],
      labels: { a: 'b' },
      stopSignal: 'SIGQUIT',
      healthcheck: { test: ['CMD', 'true'], interval: 5e9, retries: 2 },
    });
  });
});
