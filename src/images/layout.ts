// Moving images in and out of the store as files, and to registries:
//  - OCI image layouts (image-spec image-layout.md), as a directory or a tar of one;
//  - `docker save` archives (manifest.json with Config/RepoTags/Layers);
//  - push of a stored image, or of an OCI layout (one image or a whole multi-platform index).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { pipeline } from 'node:stream/promises';
// node-tar is loaded when an archive is written or read (image save/load), not with the
// image store: a daemon that pulls images never needs it here (issue 2's RSS budget).
type Tar = typeof import('tar');
let tarModule: Tar | undefined;
const tar = (): Tar => (tarModule ??= require('tar') as Tar);
import { ImageError, errnoCode } from './errors';
import { DigestTap, digestOf, directoryBlobSource, type BlobSource } from './blobs';
import { DEFAULT_PLATFORM, normalizePlatform, parsePlatform, selectPlatformManifest } from './platform';
import { formatReference, parseReference, referenceName, type Reference } from './reference';
import { RegistryClient, type RegistryClientOptions } from './registry';
import { runLimited, type ImageStore, type StoredImage } from './store';
import { INDEX_MEDIA_TYPES, MediaType, parseIndex, parseJson, parseManifest, type Descriptor, type ImageIndex, type Platform } from './types';

export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';
/** containerd and Docker ≥ 25 put the full reference here; the OCI annotation holds only the tag. */
export const CONTAINERD_NAME_ANNOTATION = 'io.containerd.image.name';

export interface PushProgress {
  digest: string;
  state: 'exists' | 'uploading' | 'done';
  size: number;
}

export interface PushOptions extends RegistryClientOptions {
  onProgress?: (e: PushProgress) => void;
  client?: RegistryClient;
  concurrency?: number;
}

/** Pushes one manifest or index (and, for an index, every child) with its blobs from `source`. */
async function pushTree(client: RegistryClient, target: Reference, desc: { mediaType: string; digest: string }, source: BlobSource, opts: PushOptions): Promise<void> {
  const bytes = await source.read(desc.digest);
  if (INDEX_MEDIA_TYPES.includes(desc.mediaType)) {
    const index = parseIndex(bytes, `index ${desc.digest}`);
    for (const child of index.manifests) {
      await pushTree(client, { registry: target.registry, repository: target.repository, digest: child.digest }, child, source, opts);
    }
  } else {
    const manifest = parseManifest(bytes, `manifest ${desc.digest}`);
    const blobs: Descriptor[] = [manifest.config, ...manifest.layers];
    await runLimited(blobs, opts.concurrency ?? 4, async (b) => {
      if (await client.blobExists(target, b.digest)) {
        opts.onProgress?.({ digest: b.digest, state: 'exists', size: b.size });
        return;
      }
      if (!source.has(b.digest)) throw new ImageError('D2P_IMAGE_NOT_FOUND', `push to ${referenceName(target)}: blob ${b.digest} is not available locally`, { digest: b.digest });
      opts.onProgress?.({ digest: b.digest, state: 'uploading', size: b.size });
      await client.uploadBlob(target, b.digest, b.size, () => source.open(b.digest));
      opts.onProgress?.({ digest: b.digest, state: 'done', size: b.size });
    });
  }
  await client.putManifest(target, desc.mediaType, bytes);
}

async function withClient<T>(opts: PushOptions, fn: (client: RegistryClient) => Promise<T>): Promise<T> {
  const client = opts.client ?? new RegistryClient(opts);
  try {
    return await fn(client);
  } finally {
    if (!opts.client) await client.close();
  }
}

/** `docker push`: pushes a stored image to `target` (default: the reference it was named by). */
export async function pushImage(store: ImageStore, query: string, opts: PushOptions & { target?: string } = {}): Promise<{ digest: string; reference: string }> {
  const { image } = await store.manifestOf(query);
  const target = parseReference(opts.target ?? query);
  await withClient(opts, (client) => pushTree(client, target, { mediaType: image.mediaType, digest: image.digest }, store.blobs, opts));
  return { digest: image.digest, reference: formatReference(target) };
}

interface LayoutIndex extends ImageIndex {}

function readLayoutIndex(dir: string): LayoutIndex {
  const file = path.join(dir, 'index.json');
  let bytes: Buffer;
  try {
    const st = fs.lstatSync(file);
    if (!st.isFile()) throw new ImageError('D2P_IMAGE_INVALID', `${file} is not a regular file`);
    bytes = fs.readFileSync(file);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') throw new ImageError('D2P_IMAGE_INVALID', `${dir} is not an OCI image layout: no index.json`, { cause: e });
    throw e;
  }
  return parseIndex(bytes, file);
}

/** Picks the layout entry named `refName` (the tag annotation or full name), or the only one. */
function selectLayoutEntry(dir: string, index: LayoutIndex, refName?: string): Descriptor {
  if (refName === undefined) {
    if (index.manifests.length === 1) return index.manifests[0] as Descriptor;
    throw new ImageError('D2P_IMAGE_INVALID', `OCI layout ${dir} holds ${index.manifests.length} images; name one (${describeEntries(index)})`);
  }
  const hit = index.manifests.find((m) => m.annotations?.[REF_NAME_ANNOTATION] === refName || m.annotations?.[CONTAINERD_NAME_ANNOTATION] === refName);
  if (!hit) throw new ImageError('D2P_IMAGE_NOT_FOUND', `OCI layout ${dir} has no image named ${JSON.stringify(refName)} (${describeEntries(index)})`);
  return hit;
}

function describeEntries(index: LayoutIndex): string {
  return index.manifests.map((m) => m.annotations?.[REF_NAME_ANNOTATION] ?? m.digest).join(', ') || 'empty';
}

/** Pushes an OCI layout entry (a single image or a multi-platform index) to a registry, like `skopeo copy oci:dir:name docker://target`. */
export async function pushOciLayout(dir: string, target: string, opts: PushOptions & { refName?: string } = {}): Promise<{ digest: string }> {
  const entry = selectLayoutEntry(dir, readLayoutIndex(dir), opts.refName);
  const ref = parseReference(target);
  await withClient(opts, (client) => pushTree(client, ref, entry, directoryBlobSource(dir), opts));
  return { digest: entry.digest };
}

/** Writes a stored image as an OCI image layout: a directory, or a tar file when `dest` ends in ".tar". */
export async function saveOciLayout(store: ImageStore, queries: string[], dest: string): Promise<void> {
  const asTar = dest.endsWith('.tar');
  const dir = asTar ? `${dest}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}` : dest;
  try {
    await fs.promises.mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
    const manifests: Descriptor[] = [];
    for (const q of queries) {
      const { image, bytes, manifest } = await store.manifestOf(q);
      for (const d of [image.digest, manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
        const to = path.join(dir, 'blobs', 'sha256', d.slice('sha256:'.length));
        // COPYFILE_FICLONE: a reflink where the filesystem can, a copy otherwise.
        await fs.promises.copyFile(store.blobPath(d), to, fs.constants.COPYFILE_FICLONE);
      }
      const name = namedRef(q, image);
      manifests.push({
        mediaType: image.mediaType,
        digest: image.digest,
        size: bytes.length,
        platform: image.platform,
        ...(name
          ? { annotations: { [CONTAINERD_NAME_ANNOTATION]: formatReference(name), ...(name.tag ? { [REF_NAME_ANNOTATION]: name.tag } : {}) } }
          : {}),
      });
    }
    const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests };
    await fs.promises.writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await fs.promises.writeFile(path.join(dir, 'index.json'), JSON.stringify(index));
    if (asTar) await tar().create({ cwd: dir, file: dest, portable: true }, ['oci-layout', 'index.json', 'blobs']);
  } finally {
    if (asTar) await fs.promises.rm(dir, { recursive: true, force: true });
  }
}

function namedRef(query: string, image: StoredImage): Reference | undefined {
  try {
    const ref = parseReference(query);
    if (ref.digest === undefined && image.repoTags.includes(formatReference(ref))) return ref;
  } catch (e) {
    if (!(e instanceof ImageError)) throw e;
  }
  const first = image.repoTags[0];
  return first ? parseReference(first) : undefined;
}

export interface LoadOptions {
  platform?: string | Platform;
  /** Name for images whose archive carries only a tag annotation or no name. */
  ref?: string;
  onProgress?: Parameters<ImageStore['importManifest']>[0]['onProgress'];
}

/** `docker load`: imports every image of an OCI layout tar or a `docker save` tar (or an OCI layout directory). */
export async function loadImages(store: ImageStore, archive: string, opts: LoadOptions = {}): Promise<StoredImage[]> {
  if (fs.statSync(archive).isDirectory()) return importOciLayout(store, archive, opts);
  const dir = path.join(store.tmpPath, `${process.pid}-${crypto.randomBytes(8).toString('hex')}.load`);
  await fs.promises.mkdir(dir, { mode: 0o700 });
  try {
    // node-tar's defaults refuse ".." and absolute names and do not extract through symlinks;
    // strict turns its warnings into errors.
    await tar().extract({ file: archive, cwd: dir, strict: true, preserveOwner: false });
    if (fs.existsSync(path.join(dir, 'oci-layout')) && fs.existsSync(path.join(dir, 'index.json'))) return await importOciLayout(store, dir, opts);
    if (fs.existsSync(path.join(dir, 'manifest.json'))) return await importDockerSave(store, dir, opts);
    throw new ImageError('D2P_IMAGE_INVALID', `${archive}: neither an OCI image layout (oci-layout, index.json) nor a docker save archive (manifest.json)`);
  } finally {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
}

function wantedPlatform(p: string | Platform | undefined): Platform {
  return typeof p === 'string' ? parsePlatform(p) : normalizePlatform(p ?? DEFAULT_PLATFORM);
}

/** Imports the images of an OCI layout directory; index entries resolve to the wanted platform. */
export async function importOciLayout(store: ImageStore, dir: string, opts: LoadOptions = {}): Promise<StoredImage[]> {
  const source = directoryBlobSource(dir);
  const index = readLayoutIndex(dir);
  const out: StoredImage[] = [];
  for (const entry of index.manifests) {
    let desc = entry;
    let bytes = await source.read(desc.digest);
    if (INDEX_MEDIA_TYPES.includes(desc.mediaType)) {
      desc = selectPlatformManifest(parseIndex(bytes, `index ${desc.digest} in ${dir}`).manifests, wantedPlatform(opts.platform), `image ${desc.digest} in ${dir}`);
      bytes = await source.read(desc.digest);
    }
    const name = layoutEntryName(entry, opts.ref);
    out.push(
      await store.importManifest({
        manifest: parseManifest(bytes, `manifest ${desc.digest} in ${dir}`),
        manifestDigest: desc.digest,
        manifestBytes: bytes,
        manifestMediaType: desc.mediaType,
        openBlob: (digest) => async () => source.open(digest),
        tags: name ? [formatReference(name)] : [],
        repoDigests: [],
        what: name ? formatReference(name) : `${dir}@${desc.digest}`,
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      }),
    );
  }
  return out;
}

function layoutEntryName(entry: Descriptor, fallback: string | undefined): Reference | undefined {
  const full = entry.annotations?.[CONTAINERD_NAME_ANNOTATION];
  if (full) return parseReference(full);
  const tag = entry.annotations?.[REF_NAME_ANNOTATION];
  if (tag) {
    // The OCI annotation may be a bare tag ("v1") or a full name; a bare tag needs a repository.
    if (tag.includes('/') || tag.includes(':')) return parseReference(tag);
    if (fallback) return { ...parseReference(fallback), tag };
    return undefined;
  }
  return fallback ? parseReference(fallback) : undefined;
}

interface DockerSaveEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

function insideDir(dir: string, rel: string, what: string): string {
  const resolved = path.resolve(dir, rel);
  if (!resolved.startsWith(dir + path.sep)) throw new ImageError('D2P_IMAGE_UNSAFE_LAYER', `${what}: path ${JSON.stringify(rel)} leaves the archive`, { path: rel });
  const st = fs.lstatSync(resolved);
  if (!st.isFile()) throw new ImageError('D2P_IMAGE_INVALID', `${what}: ${JSON.stringify(rel)} is not a regular file`, { path: rel });
  return resolved;
}

async function hashFile(file: string): Promise<{ digest: string; size: number; gzip: boolean }> {
  const tap = new DigestTap({}, file);
  let head: Buffer | undefined;
  await pipeline(fs.createReadStream(file), tap, async (src: AsyncIterable<Buffer>) => {
    for await (const chunk of src) head ??= chunk.subarray(0, 2);
  });
  return { digest: tap.actualDigest as string, size: tap.bytes, gzip: head !== undefined && head[0] === 0x1f && head[1] === 0x8b };
}

/**
 * `docker save` archives hold uncompressed (or gzip) layer tars by path. We synthesise an
 * OCI manifest over them so the stored image looks like any pulled one.
 */
async function importDockerSave(store: ImageStore, dir: string, opts: LoadOptions): Promise<StoredImage[]> {
  const entries = parseJson(fs.readFileSync(insideDir(dir, 'manifest.json', 'docker save archive')), 'manifest.json') as DockerSaveEntry[];
  if (!Array.isArray(entries)) throw new ImageError('D2P_IMAGE_INVALID', 'docker save archive: manifest.json is not a list');
  const out: StoredImage[] = [];
  for (const [i, e] of entries.entries()) {
    const what = `docker save archive entry ${i}`;
    if (typeof e.Config !== 'string' || !Array.isArray(e.Layers)) throw new ImageError('D2P_IMAGE_INVALID', `${what}: needs Config and Layers`);
    const configFile = insideDir(dir, e.Config, what);
    const configBytes = fs.readFileSync(configFile);
    const files = new Map<string, string>([[digestOf(configBytes), configFile]]);
    const layers: Descriptor[] = [];
    for (const rel of e.Layers) {
      const file = insideDir(dir, rel, what);
      const h = await hashFile(file);
      files.set(h.digest, file);
      layers.push({ mediaType: h.gzip ? MediaType.OciLayerGzip : MediaType.OciLayer, digest: h.digest, size: h.size });
    }
    const manifest = {
      schemaVersion: 2 as const,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: digestOf(configBytes), size: configBytes.length },
      layers,
    };
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    const tags = (e.RepoTags ?? []).map((t) => formatReference(parseReference(t)));
    if (tags.length === 0 && opts.ref) tags.push(formatReference(parseReference(opts.ref)));
    out.push(
      await store.importManifest({
        manifest,
        manifestDigest: digestOf(manifestBytes),
        manifestBytes,
        manifestMediaType: MediaType.OciManifest,
        openBlob: (digest) => async () => {
          const file = files.get(digest);
          if (!file) throw new ImageError('D2P_IMAGE_NOT_FOUND', `${what}: no file for blob ${digest}`, { digest });
          return fs.createReadStream(file);
        },
        tags,
        repoDigests: [],
        what: tags[0] ?? what,
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      }),
    );
  }
  return out;
}

