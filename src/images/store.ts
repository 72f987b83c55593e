// The content-addressed image store under one root (the daemon passes <stateRoot>/images):
//
//   blobs/sha256/<hex>           manifests, configs and compressed layers, verified, immutable
//   layers/sha256/<diffID hex>/  one extracted layer: an overlayfs lowerdir
//   tmp/<pid>-<random>.*         work in progress; committed by rename(2), which is atomic
//   index.json                   references and images, rewritten atomically
//
// Nothing appears under blobs/ or layers/ unless it is complete and verified, so a pull
// killed at any instant leaves only tmp/ debris, removed by the next open() (entries of
// processes that are gone), and the next pull starts that layer again.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ImageError, errnoCode } from './errors';
import { DigestTap, blobPath, directoryBlobSource, digestOf, fsyncDir, writeFileAtomic, type BlobSource } from './blobs';
import { checkLayerMediaType, unpackLayer } from './unpack';
import { DEFAULT_PLATFORM, normalizePlatform, parsePlatform, selectPlatformManifest } from './platform';
import { formatReference, isDigest, parseReference, referenceName, type Reference } from './reference';
import { RegistryClient, isTransientError, type RegistryClientOptions } from './registry';
import {
  INDEX_MEDIA_TYPES,
  MediaType,
  parseConfigFile,
  parseIndex,
  parseManifest,
  summarizeConfig,
  type Descriptor,
  type ImageConfig,
  type ImageManifest,
  type LayerInfo,
  type Platform,
} from './types';

export type LayerState = 'waiting' | 'downloading' | 'extracting' | 'done' | 'cached';

export interface ProgressEvent {
  /** Layer blob digest. */
  digest: string;
  state: LayerState;
  /** Compressed bytes received so far, and the blob size. */
  current: number;
  total: number;
}

export interface StoredImage {
  /** Config digest: Docker's image ID. */
  id: string;
  /** Manifest digest (of the platform manifest, not of an index). */
  digest: string;
  mediaType: string;
  /** Fully qualified tags pointing here, e.g. docker.io/library/nginx:latest. */
  repoTags: string[];
  /** name@digest forms it was pulled by (the index digest when it came through one). */
  repoDigests: string[];
  /** Sum of compressed layer sizes plus the config. */
  size: number;
  layers: LayerInfo[];
  config: ImageConfig;
  /** Extracted layer directories, bottom → top (overlayfs wants lowerdir top → bottom: reverse them). */
  layerDirs: string[];
  platform: Platform;
  createdAt: string;
}

export interface PullOptions extends RegistryClientOptions {
  /** "linux/arm64" or a Platform; default linux/amd64. */
  platform?: string | Platform;
  onProgress?: (e: ProgressEvent) => void;
  /** Layers fetched at once. Default 4. */
  concurrency?: number;
  /** An existing client (shares its token cache); otherwise one is made from the options. */
  client?: RegistryClient;
}

interface ImageRecord {
  digest: string;
  mediaType: string;
  configDigest: string;
  configSize: number;
  layers: LayerInfo[];
  platform: Platform;
  repoDigests: string[];
  createdAt: string;
}

interface IndexFile {
  version: 1;
  images: Record<string, ImageRecord>;
  /** Tag reference → manifest digest. */
  refs: Record<string, string>;
}

const LAYER_ATTEMPTS = 3;

/** Serialises read-modify-write of the index inside one process. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  run<T>(fn: () => Promise<T> | T): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but is not ours to signal; ESRCH: gone.
    if (errnoCode(e) === 'EPERM') return true;
    if (errnoCode(e) === 'ESRCH') return false;
    throw e;
  }
}

function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return false;
    throw e;
  }
}

async function removeIfPresent(p: string): Promise<void> {
  await fs.promises.rm(p, { recursive: true, force: true });
}

export interface ImageStoreOptions {
  onWarning?: (message: string) => void;
}

/** Configs kept in memory; beyond this many images the oldest read is dropped. */
const CONFIG_CACHE_ENTRIES = 256;

export class ImageStore {
  readonly root: string;
  private readonly tmpDir: string;
  private readonly indexFile: string;
  private readonly mutex = new Mutex();
  private readonly inflight = new Map<string, Promise<void>>();
  /**
   * Image configs by digest, summarized. A config blob never changes (its name is its
   * hash), and reading it again went through libuv's thread pool on every container start,
   * where it waited behind the store's fsyncs (~1.5 ms in the daemon, measured).
   */
  private readonly configs = new Map<string, ImageConfig>();

  private constructor(
    root: string,
    private readonly opts: ImageStoreOptions,
  ) {
    this.root = root;
    this.tmpDir = path.join(root, 'tmp');
    this.indexFile = path.join(root, 'index.json');
  }

  /** Opens (creating if needed) the store at `root`, removing debris of dead processes. */
  static async open(root: string, opts: ImageStoreOptions = {}): Promise<ImageStore> {
    const store = new ImageStore(path.resolve(root), opts);
    for (const dir of ['blobs/sha256', 'layers/sha256', 'tmp']) {
      await fs.promises.mkdir(path.join(store.root, dir), { recursive: true, mode: 0o700 });
    }
    await store.removeStaleTemps();
    return store;
  }

  /** Layer directory for a diffID (exists only once the layer is complete). */
  layerDir(diffID: string): string {
    const [algorithm, hex] = diffID.split(':') as [string, string];
    return path.join(this.root, 'layers', algorithm, hex);
  }

  blobPath(digest: string): string {
    return blobPath(this.root, digest);
  }

  get blobs(): BlobSource {
    return directoryBlobSource(this.root);
  }

  private async removeStaleTemps(): Promise<void> {
    for (const name of await fs.promises.readdir(this.tmpDir)) {
      const pid = Number(name.split('-')[0]);
      // Another live process (a concurrent pull) may own it; ours is never stale.
      if (Number.isInteger(pid) && pid > 0 && (pid === process.pid || processAlive(pid))) continue;
      await removeIfPresent(path.join(this.tmpDir, name));
    }
  }

  private tempName(suffix: string): string {
    return path.join(this.tmpDir, `${process.pid}-${crypto.randomBytes(8).toString('hex')}.${suffix}`);
  }

  // --- index ---

  private readIndex(): IndexFile {
    let text: string;
    try {
      text = fs.readFileSync(this.indexFile, 'utf8');
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return { version: 1, images: {}, refs: {} };
      throw e;
    }
    try {
      return JSON.parse(text) as IndexFile;
    } catch (e) {
      throw new ImageError('D2P_IMAGE_INVALID', `image index ${this.indexFile} is not valid JSON: ${(e as Error).message}`, { cause: e });
    }
  }

  private updateIndex<T>(fn: (index: IndexFile) => T): Promise<T> {
    return this.mutex.run(() => {
      const index = this.readIndex();
      const result = fn(index);
      writeFileAtomic(this.indexFile, JSON.stringify(index, null, 1), this.tmpDir);
      return result;
    });
  }

  // --- blobs ---

  /** Stores a small blob held in memory (manifest, config) after checking its digest. */
  private storeBlobBytes(digest: string, bytes: Buffer, what: string): void {
    const actual = digestOf(bytes);
    if (actual !== digest) {
      throw new ImageError('D2P_IMAGE_DIGEST_MISMATCH', `${what}: content has digest ${actual}, expected ${digest}`, { digest });
    }
    if (!exists(this.blobPath(digest))) writeFileAtomic(this.blobPath(digest), bytes, this.tmpDir);
  }

  /** Reads a small blob, from the store if present, else from `fetch`, verified and stored. */
  private async smallBlob(desc: Descriptor, fetch: () => Promise<Readable>, what: string): Promise<Buffer> {
    if (exists(this.blobPath(desc.digest))) return this.blobs.read(desc.digest);
    const chunks: Buffer[] = [];
    const tap = new DigestTap({ digest: desc.digest, size: desc.size }, what);
    await pipeline(
      await fetch(),
      tap,
      new Writable({
        write(chunk: Buffer, _e, cb) {
          chunks.push(chunk);
          cb();
        },
      }),
    );
    const bytes = Buffer.concat(chunks);
    this.storeBlobBytes(desc.digest, bytes, what);
    return bytes;
  }

  // --- layers ---

  /**
   * Makes one layer present: its blob in blobs/ and its extraction in layers/. Download,
   * digest, decompression, diffID digest and extraction are one streaming pipeline; the
   * results are renamed into place only when size, digest and diffID all check out.
   */
  private ensureLayer(layer: LayerInfo, open: () => Promise<Readable>, progress: (e: ProgressEvent) => void): Promise<void> {
    const key = layer.diffID;
    const running = this.inflight.get(key);
    if (running) return running;
    const work = this.ensureLayerUncached(layer, open, progress).finally(() => this.inflight.delete(key));
    this.inflight.set(key, work);
    return work;
  }

  private async ensureLayerUncached(layer: LayerInfo, open: () => Promise<Readable>, progress: (e: ProgressEvent) => void): Promise<void> {
    const dirPresent = exists(this.layerDir(layer.diffID));
    const blobPresent = exists(this.blobPath(layer.digest));
    if (dirPresent && blobPresent) {
      progress({ digest: layer.digest, state: 'cached', current: layer.size, total: layer.size });
      return;
    }
    for (let attempt = 1; ; attempt++) {
      try {
        await this.fetchLayerOnce(layer, open, progress, !dirPresent);
        progress({ digest: layer.digest, state: 'done', current: layer.size, total: layer.size });
        return;
      } catch (e) {
        // Only the network is retried; a digest mismatch or a hostile tar would fail again.
        if (attempt < LAYER_ATTEMPTS && isTransientError(e)) continue;
        throw e;
      }
    }
  }

  private async fetchLayerOnce(layer: LayerInfo, open: () => Promise<Readable>, progress: (e: ProgressEvent) => void, extract: boolean): Promise<void> {
    checkLayerMediaType(layer.mediaType, layer.digest);
    const tmpBlob = this.tempName('blob');
    const tmpLayer = this.tempName('layer');
    if (extract) await fs.promises.mkdir(tmpLayer, { mode: 0o755 });
    try {
      const blobOut = fs.createWriteStream(tmpBlob, { flags: 'wx', mode: 0o644 });
      let last = 0;
      const compressed = new DigestTap({ digest: layer.digest, size: layer.size }, `layer blob ${layer.digest}`, (bytes) => {
        // A progress event per 256 KiB is enough for a bar and cheap for the pipeline.
        if (bytes - last >= 256 * 1024 || bytes === layer.size) {
          last = bytes;
          progress({ digest: layer.digest, state: bytes === layer.size ? 'extracting' : 'downloading', current: bytes, total: layer.size });
        }
      });
      progress({ digest: layer.digest, state: 'downloading', current: 0, total: layer.size });
      const source = await open();
      // Two pipelines: the download (hash, size, blob file) and the extraction fed from it.
      // If extraction fails first (a corrupt blob often breaks gunzip before its digest can be
      // checked), the download still runs to the end so the error names the real cause: a
      // digest mismatch wins over the zlib or tar error it provoked.
      const branch = new PassThrough();
      // Without a directory to fill (it is there, only the blob is missing) the diff_id is still checked.
      const extraction = unpackLayer(branch, layer, extract ? tmpLayer : undefined, this.opts.onWarning);
      const forwarder = new BranchWriter(branch, extraction);
      const teeToBlob = new PassThrough();
      const blobWritten = pipeline(teeToBlob, blobOut).catch((e: unknown) => {
        // A failed blob write must also stop the download, or it would wait for 'drain' forever.
        source.destroy(e instanceof Error ? e : new Error(String(e)));
        throw e;
      });
      const download = pipeline(source, compressed, new TeeTransform(teeToBlob), forwarder).catch((e: unknown) => {
        // Without this the extraction branch would wait for bytes that never come.
        branch.destroy(e instanceof Error ? e : new Error(String(e)));
        throw e;
      });
      const [downloaded, written, extracted] = await Promise.allSettled([download, blobWritten, extraction]);
      for (const outcome of [downloaded, written, extracted]) if (outcome.status === 'rejected') throw outcome.reason;
      await this.commitBlobFile(tmpBlob, layer.digest);
      if (extract) await this.commitDir(tmpLayer, this.layerDir(layer.diffID));
    } finally {
      await removeIfPresent(tmpBlob);
      await removeIfPresent(tmpLayer);
    }
  }

  private async commitBlobFile(tmp: string, digest: string): Promise<void> {
    const fh = await fs.promises.open(tmp, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, this.blobPath(digest));
    fsyncDir(path.dirname(this.blobPath(digest)));
  }

  private async commitDir(tmp: string, dest: string): Promise<void> {
    try {
      await fs.promises.rename(tmp, dest);
    } catch (e) {
      // Another pull committed the same layer first: same diffID, same content.
      if (errnoCode(e) === 'ENOTEMPTY' || errnoCode(e) === 'EEXIST') return;
      throw e;
    }
    fsyncDir(path.dirname(dest));
  }

  // --- pull / import ---

  /** Pulls an image and returns it; layers already present are neither downloaded nor extracted. */
  async pull(refString: string, opts: PullOptions = {}): Promise<StoredImage> {
    const ref = parseReference(refString);
    const client = opts.client ?? new RegistryClient(opts);
    try {
      const platform = typeof opts.platform === 'string' ? parsePlatform(opts.platform) : normalizePlatform(opts.platform ?? DEFAULT_PLATFORM);
      const top = await client.getManifest(ref);
      const repoDigest = `${referenceName(ref)}@${top.digest}`;
      let manifestDigest = top.digest;
      let manifestBytes = top.bytes;
      let manifestMediaType = top.mediaType;
      if (INDEX_MEDIA_TYPES.includes(top.mediaType)) {
        const index = parseIndex(top.bytes, `index ${formatReference(ref)}`);
        const chosen = selectPlatformManifest(index.manifests, platform, `image ${formatReference(ref)}`);
        this.storeBlobBytes(top.digest, top.bytes, `index ${formatReference(ref)}`);
        const m = await client.getManifest({ registry: ref.registry, repository: ref.repository, digest: chosen.digest });
        manifestDigest = m.digest;
        manifestBytes = m.bytes;
        manifestMediaType = m.mediaType;
      }
      const manifest = parseManifest(manifestBytes, `manifest ${referenceName(ref)}@${manifestDigest}`);
      const source = (digest: string) => async () => (await client.openBlob(ref, digest)).body;
      return await this.importManifest({
        manifest,
        manifestDigest,
        manifestBytes,
        manifestMediaType,
        openBlob: source,
        tags: ref.tag !== undefined && ref.digest === undefined ? [formatReference({ ...ref })] : [],
        repoDigests: [repoDigest],
        what: formatReference(ref),
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
        concurrency: opts.concurrency ?? 4,
      });
    } finally {
      if (!opts.client) await client.close();
    }
  }

  /** Shared by pull and load: stores config and layers of one manifest, then records the image. */
  async importManifest(o: {
    manifest: ImageManifest;
    manifestDigest: string;
    manifestBytes: Buffer;
    manifestMediaType: string;
    openBlob: (digest: string) => () => Promise<Readable>;
    tags: string[];
    repoDigests: string[];
    what: string;
    onProgress?: (e: ProgressEvent) => void;
    concurrency?: number;
  }): Promise<StoredImage> {
    const { manifest } = o;
    const configBytes = await this.smallBlob(manifest.config, o.openBlob(manifest.config.digest), `config ${manifest.config.digest} of ${o.what}`);
    const configFile = parseConfigFile(configBytes, `config ${manifest.config.digest} of ${o.what}`);
    const diffIDs = configFile.rootfs.diff_ids;
    if (diffIDs.length !== manifest.layers.length) {
      throw new ImageError('D2P_IMAGE_INVALID', `${o.what}: manifest has ${manifest.layers.length} layers but the config lists ${diffIDs.length} diff_ids`, {
        digest: o.manifestDigest,
      });
    }
    const layers: LayerInfo[] = manifest.layers.map((l, i) => ({ digest: l.digest, size: l.size, diffID: diffIDs[i] as string, mediaType: l.mediaType }));
    for (const l of layers) {
      if (!isDigest(l.digest) || !isDigest(l.diffID)) {
        throw new ImageError('D2P_IMAGE_INVALID', `${o.what}: layer ${l.digest} / diff_id ${l.diffID} is not a sha256 digest`, { digest: l.digest });
      }
    }
    const progress = o.onProgress ?? (() => undefined);
    for (const l of layers) progress({ digest: l.digest, state: 'waiting', current: 0, total: l.size });
    await runLimited(layers, o.concurrency ?? 4, (l) => this.ensureLayer(l, o.openBlob(l.digest), progress));
    this.storeBlobBytes(o.manifestDigest, o.manifestBytes, `manifest of ${o.what}`);
    const record: ImageRecord = {
      digest: o.manifestDigest,
      mediaType: o.manifestMediaType,
      configDigest: manifest.config.digest,
      configSize: manifest.config.size,
      layers,
      platform: normalizePlatform({
        os: configFile.os ?? 'linux',
        architecture: configFile.architecture ?? 'amd64',
        ...(configFile.variant ? { variant: configFile.variant } : {}),
      }),
      repoDigests: [],
      createdAt: new Date().toISOString(),
    };
    await this.updateIndex((index) => {
      const previous = index.images[o.manifestDigest];
      record.repoDigests = [...new Set([...(previous?.repoDigests ?? []), ...o.repoDigests])];
      if (previous) record.createdAt = previous.createdAt;
      index.images[o.manifestDigest] = record;
      for (const tag of o.tags) index.refs[tag] = o.manifestDigest;
    });
    const image = await this.get(o.manifestDigest);
    if (!image) throw new ImageError('D2P_IMAGE_NOT_FOUND', `${o.what}: image ${o.manifestDigest} vanished from the index right after the pull`);
    return image;
  }

  // --- queries ---

  private async toStoredImage(index: IndexFile, record: ImageRecord): Promise<StoredImage> {
    const config = await this.configOf(record.configDigest);
    return {
      id: record.configDigest,
      digest: record.digest,
      mediaType: record.mediaType,
      repoTags: Object.keys(index.refs)
        .filter((r) => index.refs[r] === record.digest)
        .sort(),
      repoDigests: record.repoDigests,
      size: record.layers.reduce((sum, l) => sum + l.size, record.configSize),
      layers: record.layers,
      config,
      layerDirs: record.layers.map((l) => this.layerDir(l.diffID)),
      platform: record.platform,
      createdAt: record.createdAt,
    };
  }

  /** A copy: callers may change what they are given. */
  private async configOf(digest: string): Promise<ImageConfig> {
    let config = this.configs.get(digest);
    if (!config) {
      config = summarizeConfig(parseConfigFile(await this.blobs.read(digest), `config ${digest}`));
      if (this.configs.size >= CONFIG_CACHE_ENTRIES) this.configs.delete(this.configs.keys().next().value as string);
      this.configs.set(digest, config);
    }
    return structuredClone(config);
  }

  /** Finds the manifest digest a user string names: a tag reference, name@digest, a digest, an image ID or an unambiguous ID prefix (≥ 4 hex). */
  private resolve(index: IndexFile, query: string): string | undefined {
    const hex = query.startsWith('sha256:') ? query.slice('sha256:'.length) : query;
    if (/^[a-f0-9]{4,64}$/.test(hex)) {
      const hits = Object.values(index.images).filter((r) => r.digest.slice(7).startsWith(hex) || r.configDigest.slice(7).startsWith(hex));
      if (hits.length === 1) return hits[0]?.digest;
      if (hits.length > 1) throw new ImageError('D2P_IMAGE_INVALID_REFERENCE', `image ID prefix ${JSON.stringify(query)} is ambiguous (${hits.length} images)`);
      if (query.startsWith('sha256:')) return undefined;
    }
    let ref: Reference;
    try {
      ref = parseReference(query);
    } catch (e) {
      // A short hex string that matched nothing is also not a valid name; report "not found" for it.
      if (/^[a-f0-9]{4,64}$/.test(hex)) return undefined;
      throw e;
    }
    if (ref.digest !== undefined) {
      const byRepoDigest = Object.values(index.images).find(
        (r) => r.digest === ref.digest || r.repoDigests.includes(`${referenceName(ref)}@${ref.digest}`),
      );
      return byRepoDigest?.digest;
    }
    return index.refs[formatReference(ref)];
  }

  async get(query: string): Promise<StoredImage | undefined> {
    const index = this.readIndex();
    const digest = this.resolve(index, query);
    const record = digest !== undefined ? index.images[digest] : undefined;
    return record ? this.toStoredImage(index, record) : undefined;
  }

  async list(): Promise<StoredImage[]> {
    const index = this.readIndex();
    return Promise.all(Object.values(index.images).map((r) => this.toStoredImage(index, r)));
  }

  /** `docker tag`: dst (a tag reference) points at what src names. */
  async tag(src: string, dst: string): Promise<void> {
    const target = parseReference(dst);
    if (target.digest !== undefined) throw new ImageError('D2P_IMAGE_INVALID_REFERENCE', `cannot tag with a digest reference ${JSON.stringify(dst)}`);
    await this.updateIndex((index) => {
      const digest = this.resolve(index, src);
      if (digest === undefined || !index.images[digest]) throw new ImageError('D2P_IMAGE_NOT_FOUND', `image ${JSON.stringify(src)} not found`, { reference: src });
      index.refs[formatReference(target)] = digest;
    });
  }

  /**
   * `docker rmi`: a tag reference is untagged, and the image goes when no tag is left; an ID
   * or digest removes the image and all its tags. Blobs and layers stay until prune().
   */
  async remove(query: string): Promise<{ untagged: string[]; deleted: string[] }> {
    return this.updateIndex((index) => {
      const digest = this.resolve(index, query);
      if (digest === undefined || !index.images[digest]) throw new ImageError('D2P_IMAGE_NOT_FOUND', `image ${JSON.stringify(query)} not found`, { reference: query });
      const untagged: string[] = [];
      let byTag = false;
      try {
        const ref = parseReference(query);
        byTag = ref.digest === undefined && index.refs[formatReference(ref)] === digest && !/^(sha256:)?[a-f0-9]{4,64}$/.test(query);
        if (byTag) {
          delete index.refs[formatReference(ref)];
          untagged.push(formatReference(ref));
        }
      } catch (e) {
        if (!(e instanceof ImageError)) throw e;
      }
      const remainingTags = Object.keys(index.refs).filter((r) => index.refs[r] === digest);
      if (byTag && remainingTags.length > 0) return { untagged, deleted: [] };
      for (const r of remainingTags) {
        delete index.refs[r];
        untagged.push(r);
      }
      delete index.images[digest];
      return { untagged, deleted: [digest] };
    });
  }

  /**
   * Removes blobs and layer directories no image refers to. `keepLayers` are diffIDs still
   * mounted by containers (the runtime knows; the store does not).
   */
  async prune(opts: { keepLayers?: Iterable<string> } = {}): Promise<{ blobs: string[]; layers: string[] }> {
    return this.mutex.run(async () => {
      const index = this.readIndex();
      const keepBlobs = new Set<string>();
      const keepLayers = new Set<string>(opts.keepLayers ?? []);
      for (const r of Object.values(index.images)) {
        keepBlobs.add(r.digest);
        keepBlobs.add(r.configDigest);
        for (const l of r.layers) {
          keepBlobs.add(l.digest);
          keepLayers.add(l.diffID);
        }
        for (const rd of r.repoDigests) keepBlobs.add(rd.slice(rd.indexOf('@') + 1));
      }
      const removedBlobs: string[] = [];
      const removedLayers: string[] = [];
      for (const hex of await fs.promises.readdir(path.join(this.root, 'blobs', 'sha256'))) {
        if (keepBlobs.has(`sha256:${hex}`)) continue;
        await fs.promises.rm(path.join(this.root, 'blobs', 'sha256', hex));
        removedBlobs.push(`sha256:${hex}`);
      }
      for (const hex of await fs.promises.readdir(path.join(this.root, 'layers', 'sha256'))) {
        if (keepLayers.has(`sha256:${hex}`)) continue;
        // Rename first so a half-deleted layer is never visible under layers/.
        const doomed = this.tempName('doomed');
        await fs.promises.rename(path.join(this.root, 'layers', 'sha256', hex), doomed);
        await removeIfPresent(doomed);
        removedLayers.push(`sha256:${hex}`);
      }
      return { blobs: removedBlobs, layers: removedLayers };
    });
  }

  /** The stored manifest (bytes exactly as pulled, so its digest holds). */
  async manifestOf(query: string): Promise<{ image: StoredImage; bytes: Buffer; manifest: ImageManifest }> {
    const image = await this.get(query);
    if (!image) throw new ImageError('D2P_IMAGE_NOT_FOUND', `image ${JSON.stringify(query)} not found`, { reference: query });
    const bytes = await this.blobs.read(image.digest);
    return { image, bytes, manifest: parseManifest(bytes, `manifest ${image.digest}`) };
  }

  /** For tests and tools: where temp work lives. */
  get tmpPath(): string {
    return this.tmpDir;
  }
}

/** Writes every chunk to a side stream (the blob file) and passes it on, honouring both sides' backpressure. */
export class TeeTransform extends PassThrough {
  constructor(private readonly side: PassThrough) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    if (this.side.write(chunk)) cb(null, chunk);
    else this.side.once('drain', () => cb(null, chunk));
  }
  override _flush(cb: (err?: Error | null) => void): void {
    this.side.end();
    cb();
  }
  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    // Only a failure stops the side. A tee that simply finished is destroyed too (autoDestroy)
    // while the side may still hold its last chunks for the blob file: ended, it drains alone.
    if (err) this.side.destroy(err);
    cb(err);
  }
}

/**
 * The end of the download pipeline: passes bytes on to the extraction branch while it
 * lives, and swallows them once it has failed (its error is reported by its own promise).
 */
class BranchWriter extends Writable {
  private branchFailed = false;
  private waiting: (() => void) | undefined;

  constructor(
    private readonly branch: PassThrough,
    extraction: Promise<void>,
  ) {
    super();
    extraction.catch(() => {
      this.branchFailed = true;
      const resume = this.waiting;
      this.waiting = undefined;
      resume?.();
    });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.branchFailed || this.branch.write(chunk)) return cb();
    this.waiting = () => cb();
    this.branch.once('drain', () => {
      const resume = this.waiting;
      this.waiting = undefined;
      resume?.();
    });
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.branchFailed) this.branch.end();
    cb();
  }
}

export async function runLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (next < items.length && failed === undefined) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== undefined) throw failed;
}

