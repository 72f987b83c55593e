// Builds small OCI image layouts for tests, deterministically: the same inputs give the
// same bytes, hence the same digests, on every run. Layer tars are composed entry by
// entry with node-tar's Header (so we can write owners, device nodes, setuid modes and
// xattrs without root and without those files existing anywhere), then gzip-compressed.
// Plain CommonJS so that both vitest and `hack/test-images/make` can load it.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const zlib = require('node:zlib');
const { execFileSync } = require('node:child_process');
const { Header } = require('tar');

const FIXED_MTIME = new Date('2024-01-01T00:00:00Z');
const BUSYBOX = '/usr/bin/busybox';

const TYPE_NAMES = {
  file: 'File',
  dir: 'Directory',
  symlink: 'SymbolicLink',
  link: 'Link',
  char: 'CharacterDevice',
  block: 'BlockDevice',
  fifo: 'FIFO',
};

/** One pax record: "LEN key=value\n", where LEN counts its own digits (POSIX pax format). */
function paxRecord(key, value) {
  const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.isBuffer(value) ? value : Buffer.from(String(value)), Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

function block(buf) {
  const padded = Buffer.alloc(Math.ceil(buf.length / 512) * 512);
  buf.copy(padded);
  return padded;
}

/**
 * entries: { path, type: file|dir|symlink|link|char|block|fifo, mode?, uid?, gid?, content?,
 * linkpath?, devmaj?, devmin?, xattrs?: {name: string|Buffer}, mtime? }, in archive order.
 */
function tarArchive(entries) {
  const out = [];
  for (const e of entries) {
    const type = TYPE_NAMES[e.type];
    if (!type) throw new Error(`tarArchive: unknown type ${e.type} for ${e.path}`);
    const content = e.type === 'file' ? Buffer.from(e.content ?? '') : Buffer.alloc(0);
    const records = [];
    for (const [name, value] of Object.entries(e.xattrs ?? {})) records.push(paxRecord(`SCHILY.xattr.${name}`, value));
    // ustar holds 100-byte names (plus a prefix); anything longer goes in a pax "path" record.
    if (Buffer.byteLength(e.path) > 99) records.push(paxRecord('path', e.path));
    if (e.linkpath && Buffer.byteLength(e.linkpath) > 99) records.push(paxRecord('linkpath', e.linkpath));
    if (records.length > 0) {
      const body = Buffer.concat(records);
      const h = new Header({ path: `PaxHeaders/${path.basename(e.path).slice(0, 80)}`, mode: 0o644, size: body.length, type: 'ExtendedHeader', mtime: FIXED_MTIME, uid: 0, gid: 0 });
      const hb = Buffer.alloc(512);
      h.encode(hb);
      out.push(hb, block(body));
    }
    const header = new Header({
      path: Buffer.byteLength(e.path) > 99 ? e.path.slice(0, 99) : e.path,
      mode: e.mode ?? (e.type === 'dir' ? 0o755 : e.type === 'symlink' ? 0o777 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      size: content.length,
      mtime: e.mtime ?? FIXED_MTIME,
      type,
      linkpath: e.linkpath ? (Buffer.byteLength(e.linkpath) > 99 ? e.linkpath.slice(0, 99) : e.linkpath) : '',
      uname: '',
      gname: '',
      devmaj: e.devmaj ?? 0,
      devmin: e.devmin ?? 0,
    });
    const hb = Buffer.alloc(512);
    header.encode(hb);
    out.push(hb);
    if (content.length > 0) out.push(block(content));
  }
  out.push(Buffer.alloc(1024)); // end of archive: two zero blocks
  return Buffer.concat(out);
}

const sha256 = (buf) => `sha256:${crypto.createHash('sha256').update(buf).digest('hex')}`;

/** Node's gzip writes mtime 0 and a fixed OS byte, so this is deterministic. */
const gzip = (buf) => zlib.gzipSync(buf, { level: 6 });

function writeBlob(layoutDir, bytes) {
  const digest = sha256(bytes);
  const dir = path.join(layoutDir, 'blobs', 'sha256');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, digest.slice(7)), bytes);
  return { digest, size: bytes.length };
}

/**
 * Writes one image (layers as tar Buffers, bottom first) into a layout's blobs and returns
 * its manifest descriptor. opts: platform {os, architecture, variant?}, config overrides,
 * gzip (default true), layerMediaType, corruptDiffID.
 */
function addImage(layoutDir, layerTars, opts = {}) {
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
  const compress = opts.gzip !== false;
  const layers = layerTars.map((t) => {
    const blob = compress ? gzip(t) : t;
    const { digest, size } = writeBlob(layoutDir, blob);
    return {
      descriptor: { mediaType: opts.layerMediaType ?? (compress ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar'), digest, size },
      diffID: sha256(t),
    };
  });
  const config = {
    created: FIXED_MTIME.toISOString(),
    architecture: platform.architecture,
    ...(platform.variant ? { variant: platform.variant } : {}),
    os: platform.os,
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: ['sh'],
      WorkingDir: '/',
      ...(opts.config ?? {}),
    },
    rootfs: { type: 'layers', diff_ids: layers.map((l, i) => (opts.corruptDiffID === i ? sha256(Buffer.from('not this layer')) : l.diffID)) },
  };
  const configBlob = writeBlob(layoutDir, Buffer.from(JSON.stringify(config)));
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...configBlob },
    layers: layers.map((l) => l.descriptor),
  };
  const manifestBlob = writeBlob(layoutDir, Buffer.from(JSON.stringify(manifest)));
  return {
    mediaType: manifest.mediaType,
    ...manifestBlob,
    platform,
    configDigest: configBlob.digest,
    layers: layers.map((l) => ({ ...l.descriptor, diffID: l.diffID })),
  };
}

function addIndex(layoutDir, manifestDescriptors) {
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: manifestDescriptors.map((m) => ({ mediaType: m.mediaType, digest: m.digest, size: m.size, platform: m.platform })),
  };
  return { mediaType: index.mediaType, ...writeBlob(layoutDir, Buffer.from(JSON.stringify(index))) };
}

/** Writes oci-layout and index.json naming each entry by `org.opencontainers.image.ref.name`. */
function writeLayoutIndex(layoutDir, named) {
  fs.mkdirSync(layoutDir, { recursive: true });
  fs.writeFileSync(path.join(layoutDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: Object.entries(named).map(([name, d]) => ({
      mediaType: d.mediaType,
      digest: d.digest,
      size: d.size,
      annotations: { 'org.opencontainers.image.ref.name': name },
    })),
  };
  fs.writeFileSync(path.join(layoutDir, 'index.json'), JSON.stringify(index));
}

/** Layer 1: a static busybox with its applet symlinks, /etc/passwd and things later layers change. */
function baseLayer() {
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a && a !== 'busybox').sort();
  return tarArchive([
    { path: 'bin/', type: 'dir' },
    { path: 'bin/busybox', type: 'file', mode: 0o755, content: fs.readFileSync(BUSYBOX) },
    ...applets.map((a) => ({ path: `bin/${a}`, type: 'symlink', linkpath: 'busybox' })),
    { path: 'etc/', type: 'dir' },
    { path: 'etc/passwd', type: 'file', content: 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n' },
    { path: 'etc/group', type: 'file', content: 'root:x:0:\nuser:x:1000:\n' },
    { path: 'etc/motd', type: 'file', content: 'deleted by layer 3\n' },
    { path: 'opt/', type: 'dir' },
    { path: 'opt/data/', type: 'dir' },
    { path: 'opt/data/old-1.txt', type: 'file', content: 'hidden by the opaque dir of layer 3\n' },
    { path: 'opt/data/old-2.txt', type: 'file', content: 'hidden too\n' },
    { path: 'tmp/', type: 'dir', mode: 0o1777 },
    { path: 'root/', type: 'dir', mode: 0o700 },
    { path: 'home/', type: 'dir' },
  ]);
}

/** Layer 2: generated files exercising owners, modes, links, special files and xattrs. */
function filesLayer() {
  return tarArchive([
    { path: 'home/user/', type: 'dir', uid: 1000, gid: 1000, mode: 0o750 },
    { path: 'home/user/secret', type: 'file', mode: 0o600, uid: 1000, gid: 1000, content: 'secret of user 1000\n' },
    { path: 'usr/', type: 'dir' },
    { path: 'usr/local/', type: 'dir' },
    { path: 'usr/local/bin/', type: 'dir' },
    { path: 'usr/local/bin/suid-tool', type: 'file', mode: 0o4755, content: '#!/bin/sh\necho suid\n' },
    { path: 'usr/local/bin/sgid-tool', type: 'file', mode: 0o2755, uid: 0, gid: 1000, content: '#!/bin/sh\necho sgid\n' },
    { path: 'usr/local/bin/hard-link', type: 'link', linkpath: 'usr/local/bin/suid-tool' },
    { path: 'usr/local/bin/sym-link', type: 'symlink', linkpath: 'suid-tool' },
    { path: 'usr/local/share/', type: 'dir' },
    { path: 'usr/local/share/attrs.txt', type: 'file', content: 'has an xattr\n', xattrs: { 'user.d2p.test': 'hello' } },
    { path: 'usr/local/share/fifo', type: 'fifo', mode: 0o640 },
    { path: 'usr/local/share/null-dev', type: 'char', mode: 0o666, devmaj: 1, devmin: 3 },
    { path: `usr/local/share/${'long-name-'.repeat(12)}end.txt`, type: 'file', content: 'a name longer than ustar allows\n' },
  ]);
}

/** Layer 3: deletes a file of layer 1 and makes a directory opaque. */
function whiteoutLayer() {
  return tarArchive([
    { path: 'etc/', type: 'dir' },
    { path: 'etc/.wh.motd', type: 'file' },
    { path: 'opt/', type: 'dir' },
    { path: 'opt/data/', type: 'dir' },
    { path: 'opt/data/.wh..wh..opq', type: 'file' },
    { path: 'opt/data/new.txt', type: 'file', content: 'the only file left in /opt/data\n' },
  ]);
}

function tinyArchLayer(arch) {
  return tarArchive([{ path: 'arch', type: 'file', content: `${arch}\n` }]);
}

const FULL_CONFIG = {
  User: '',
  ExposedPorts: { '8080/tcp': {} },
  Volumes: { '/data': {} },
  Labels: { 'dev.d2p.test': 'full' },
  StopSignal: 'SIGQUIT',
  Healthcheck: { Test: ['CMD', 'true'], Interval: 1000000000, Retries: 3 },
};

/**
 * The standard test layout: "base" (layer 1), "full" (layers 1–3) and "multi" (an index:
 * linux/amd64 → full, linux/arm64 and linux/arm/v7 → one tiny layer each).
 */
function buildTestImages(layoutDir) {
  fs.mkdirSync(layoutDir, { recursive: true });
  const layer1 = baseLayer();
  const base = addImage(layoutDir, [layer1]);
  const full = addImage(layoutDir, [layer1, filesLayer(), whiteoutLayer()], { config: FULL_CONFIG });
  const arm64 = addImage(layoutDir, [tinyArchLayer('arm64')], { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
  const armv7 = addImage(layoutDir, [tinyArchLayer('arm/v7')], { platform: { os: 'linux', architecture: 'arm', variant: 'v7' } });
  const multi = addIndex(layoutDir, [full, arm64, armv7]);
  writeLayoutIndex(layoutDir, { base, full, multi });
  return { layoutDir, base, full, multi, arm64, armv7 };
}

/** For benchmarks: `layers` layers of incompressible random files, `totalBytes` in all. */
function buildRandomImage(layoutDir, { layers = 4, totalBytes = 100 * 1024 * 1024, filesPerLayer = 8 } = {}) {
  const perFile = Math.floor(totalBytes / layers / filesPerLayer);
  const tars = [];
  for (let l = 0; l < layers; l++) {
    const entries = [{ path: `data${l}/`, type: 'dir' }];
    for (let f = 0; f < filesPerLayer; f++) entries.push({ path: `data${l}/file${f}.bin`, type: 'file', content: crypto.randomBytes(perFile) });
    tars.push(tarArchive(entries));
  }
  const image = addImage(layoutDir, tars);
  writeLayoutIndex(layoutDir, { random: image });
  return image;
}

module.exports = { tarArchive, addImage, addIndex, writeLayoutIndex, buildTestImages, buildRandomImage, sha256, gzip, FIXED_MTIME };
