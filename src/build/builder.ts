// buildImage: a Dockerfile and a context → an OCI image in the image store, tagged.
// The shape of BuildKit's dockerfile frontend, done directly:
//  1. parse, resolve the stages the target needs (src/build/dockerfile);
//  2. make sure every base image (FROM, COPY --from=<image>) is in the store, pulling the
//     missing ones, and resolve again with their ENV (so `WORKDIR $GOPATH` works);
//  3. walk the context once, with .dockerignore (context.ts);
//  4. build the stages in order; each RUN/COPY/ADD/WORKDIR is a step with a cache key
//     (cache.ts): a hit reuses the stored layer and config, a miss runs the step
//     (builder-steps.ts) and stores its result; metadata instructions only edit the config;
//  5. write the target stage's config (with history and rootfs.diff_ids) and manifest into
//     the store through ImageStore.importManifest, tagged with every tag.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import {
  MediaType,
  digestOf,
  formatReference,
  parseConfigFile,
  parseReference,
  type ImageStore,
  type LayerInfo,
  type PullOptions,
  type StoredImage,
} from '../images/index';
import type { Runtime } from '../runtime/index';
import {
  hostPlatform,
  parseDockerfile,
  resolveStages,
  type ResolvedBuild,
  type ResolvedInstruction,
  type ResolvedStage,
} from './dockerfile/index';
import { BuildError, errnoOf } from './builder-errors';
import { applyMetadata, createdBy, workdirOf, type StageFlags } from './builder-config';
import { copyStep, checkCopySupported, runStep, workdirStep, type CopySource, type StepEnv } from './builder-steps';
import { BuildCache, stepKey, type HistoryEntry, type ImageRuntimeConfig, type StepResult } from './cache';
import { ContentHasher, matchSources, walkContext } from './context';
import { exists } from './snapshot';

export { BuildError } from './builder-errors';

export type BuildProgress =
  /** A step (BuildKit "vertex") started: `#3 [build 2/5] RUN make`. */
  | { type: 'step'; id: number; name: string }
  | { type: 'log'; id: number; seconds: number; text: string }
  | { type: 'done'; id: number; cached: boolean; seconds: number }
  | { type: 'error'; id: number; message: string }
  | { type: 'warning'; message: string };

export interface BuildOptions {
  contextDir: string;
  /** The Dockerfile: absolute, or relative to contextDir. Default "Dockerfile". */
  dockerfile?: string;
  target?: string;
  buildArgs?: Record<string, string>;
  tags?: string[];
  noCache?: boolean;
  /** "os/arch[/variant]" of the image; default this machine's. */
  platform?: string;
  /** Network of RUN steps without --network: "none" (a fresh namespace with only lo, the default) or "host". */
  network?: 'none' | 'host';
  /** Seconds since the epoch: every mtime and `created` in the image (reproducible builds). */
  sourceDateEpoch?: number;
  onProgress?: (e: BuildProgress) => void;
  signal?: AbortSignal;
  /** Registry options for base images that must be pulled (auth file, plain-HTTP hosts…). */
  pull?: Omit<PullOptions, 'platform' | 'onProgress'>;
}

export interface BuildDeps {
  images: ImageStore;
  runtime: Runtime;
  /** The build cache and scratch space, e.g. <stateRoot>/build-cache. */
  stateDir: string;
}

export interface StepRecord {
  id: number;
  name: string;
  cached: boolean;
  seconds: number;
}

export interface BuildResult {
  /** Manifest digest of the image built. */
  digest: string;
  /** Config digest (Docker's image ID). */
  imageId: string;
  tags: string[];
  steps: StepRecord[];
  cacheHits: number;
  warnings: string[];
  image: StoredImage;
}

/** An image as a build sees it between steps. */
interface ImageState {
  architecture: string;
  os: string;
  variant?: string;
  config: ImageRuntimeConfig;
  layers: LayerInfo[];
  history: HistoryEntry[];
  /** Cache key of the state: the chain of everything that made it. */
  key: string;
  /** `created` of the last step that ran (cached results keep theirs, so digests stay stable). */
  created: string;
}

const FS_STEPS = new Set(['RUN', 'COPY', 'ADD', 'WORKDIR']);

export async function buildImage(opts: BuildOptions, deps: BuildDeps): Promise<BuildResult> {
  return new Builder(opts, deps).run();
}

class Builder {
  private readonly platform: string;
  private readonly cache: BuildCache;
  private readonly workDir: string;
  private readonly steps: StepRecord[] = [];
  private readonly warnings: string[] = [];
  private readonly baseImages = new Map<string, { image: StoredImage; raw: ReturnType<typeof parseConfigFile> }>();
  private readonly stageStates = new Map<number, ImageState>();
  /** Base images this build had to pull: their FROM step is not a cache hit. */
  private readonly pulled = new Set<string>();
  private readonly started = performance.now();
  private nextId = 1;

  constructor(
    private readonly opts: BuildOptions,
    private readonly deps: BuildDeps,
  ) {
    this.platform = opts.platform ?? hostPlatform();
    this.cache = new BuildCache(deps.stateDir);
    this.workDir = path.join(deps.stateDir, 'work', `${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  private emit(e: BuildProgress): void {
    this.opts.onProgress?.(e);
  }

  private warn(message: string): void {
    this.warnings.push(message);
    this.emit({ type: 'warning', message });
  }

  async run(): Promise<BuildResult> {
    const tags = (this.opts.tags ?? []).map(normalizeTag);
    const contextDir = path.resolve(this.opts.contextDir);
    const dockerfilePath = path.resolve(contextDir, this.opts.dockerfile ?? 'Dockerfile');
    const build = await this.internal('load build definition from ' + path.basename(dockerfilePath), () => this.resolve(dockerfilePath));
    for (const w of build.warnings) this.warn(w);
    await this.ensureBaseImages(build);
    const resolved = this.resolveWithImageEnv(build.parsedText, dockerfilePath);
    const context = await this.internal('load build context', async () => walkContext(contextDir, { dockerfile: dockerfilePath }));
    await fs.promises.mkdir(this.workDir, { recursive: true, mode: 0o700 });
    try {
      const env: Omit<StepEnv, 'log'> = {
        images: this.deps.images,
        runtime: this.deps.runtime,
        workDir: this.workDir,
        context,
        network: this.opts.network ?? 'none',
        ...(this.opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: this.opts.sourceDateEpoch } : {}),
        ...(this.opts.signal ? { signal: this.opts.signal } : {}),
      };
      const hasher = new ContentHasher(context);
      const named = resolved.stages.length > 1 || build.stageCount > 1;
      for (const stage of resolved.stages) {
        this.stageStates.set(stage.index, await this.buildStage(stage, resolved, env, hasher, named));
      }
      const final = this.stageStates.get(resolved.target.index) as ImageState;
      const image = await this.writeImage(final, tags);
      return {
        digest: image.digest,
        imageId: image.id,
        tags,
        steps: this.steps,
        cacheHits: this.steps.filter((s) => s.cached).length,
        warnings: this.warnings,
        image,
      };
    } finally {
      await fs.promises.rm(this.workDir, { recursive: true, force: true });
    }
  }

  /** BuildKit's "[internal]" vertices: shown, timed, never cached. */
  private async internal<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const id = this.nextId++;
    this.emit({ type: 'step', id, name: `[internal] ${what}` });
    const t0 = performance.now();
    try {
      const out = await fn();
      this.emit({ type: 'done', id, cached: false, seconds: (performance.now() - t0) / 1000 });
      return out;
    } catch (e) {
      this.emit({ type: 'error', id, message: (e as Error).message });
      throw e;
    }
  }

  private async resolve(dockerfilePath: string): Promise<ResolvedBuild & { parsedText: string; stageCount: number }> {
    let text: string;
    try {
      text = await fs.promises.readFile(dockerfilePath, 'utf8');
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') throw new BuildError('D2P_BUILD_INVALID', `failed to read dockerfile: ${dockerfilePath}: no such file (use -f to name another one)`, { cause: e });
      throw e;
    }
    const parsed = this.parse(text, dockerfilePath);
    return { ...resolveStages(parsed, this.resolveOptions()), parsedText: text, stageCount: parsed.stages.length };
  }

  private parse(text: string, dockerfilePath: string) {
    const file = this.opts.dockerfile ?? 'Dockerfile';
    return parseDockerfile(text, {
      file: path.isAbsolute(file) ? dockerfilePath : file,
      buildArgs: this.opts.buildArgs ?? {},
      ...(this.opts.target !== undefined ? { target: this.opts.target } : {}),
    });
  }

  private resolveOptions() {
    return {
      ...(this.opts.target !== undefined ? { target: this.opts.target } : {}),
      buildArgs: this.opts.buildArgs ?? {},
      platform: this.platform,
    };
  }

  /** Resolves again now that the base images are known, so their ENV takes part in substitution. */
  private resolveWithImageEnv(text: string, dockerfilePath: string): ResolvedBuild {
    return resolveStages(this.parse(text, dockerfilePath), {
      ...this.resolveOptions(),
      imageEnv: (image) => {
        const env = this.baseImages.get(image)?.raw.config?.Env ?? [];
        return Object.fromEntries(env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
      },
    });
  }

  /** FROM images and COPY --from images: present in the store, or pulled. */
  private async ensureBaseImages(build: ResolvedBuild): Promise<void> {
    const refs = new Set<string>();
    for (const stage of build.stages) {
      if (!stage.from.isScratch && stage.from.stageRef === undefined) refs.add(stage.from.image);
      for (const instr of stage.instructions) {
        if (instr.kind === 'COPY' && instr.from !== undefined && instr.fromStage === undefined) refs.add(instr.from);
      }
    }
    for (const ref of refs) {
      await this.internal(`load metadata for ${ref}`, async () => {
        let image = await this.deps.images.get(ref);
        if (!image) {
          image = await this.pull(ref);
          this.pulled.add(ref);
        }
        const raw = parseConfigFile(await this.deps.images.blobs.read(image.id), `config of ${ref}`);
        this.baseImages.set(ref, { image, raw });
        if (raw.config && (raw.config as { OnBuild?: string[] }).OnBuild?.length) {
          this.warn(`${ref} has ONBUILD triggers; d2p stores ONBUILD but does not run the triggers of a base image`);
        }
      });
    }
  }

  private async pull(ref: string): Promise<StoredImage> {
    try {
      return await this.deps.images.pull(ref, { ...(this.opts.pull ?? {}), platform: this.platform });
    } catch (e) {
      throw new BuildError('D2P_BUILD_INVALID', `failed to resolve base image ${ref}: ${(e as Error).message}`, { cause: e, user: false });
    }
  }

  // ------------------------------------------------------------------------ stages

  private initialState(stage: ResolvedStage): ImageState {
    const [os, architecture, variant] = this.platform.split('/') as [string, string, string | undefined];
    if (stage.from.stageRef !== undefined) return structuredClone(this.stageStates.get(stage.from.stageRef) as ImageState);
    if (stage.from.isScratch) {
      const created = this.fixedTime() ?? new Date(0).toISOString();
      return { os, architecture, ...(variant ? { variant } : {}), config: { Env: [] }, layers: [], history: [], key: `scratch:${this.platform}`, created };
    }
    const base = this.baseImages.get(stage.from.image);
    if (!base) throw new BuildError('D2P_BUILD_INVALID', `base image ${stage.from.image} was not loaded`, { user: false });
    const raw = base.raw;
    return {
      os: raw.os ?? os,
      architecture: raw.architecture ?? architecture,
      ...(raw.variant ? { variant: raw.variant } : {}),
      config: structuredClone((raw.config ?? {}) as ImageRuntimeConfig),
      layers: base.image.layers.map((l) => ({ ...l })),
      history: structuredClone(((raw as { history?: HistoryEntry[] }).history ?? []) as HistoryEntry[]),
      key: `image:${base.image.digest}`,
      created: this.fixedTime() ?? raw.created ?? new Date(0).toISOString(),
    };
  }

  private fixedTime(): string | undefined {
    return this.opts.sourceDateEpoch !== undefined ? new Date(this.opts.sourceDateEpoch * 1000).toISOString() : undefined;
  }

  private async buildStage(stage: ResolvedStage, build: ResolvedBuild, baseEnv: Omit<StepEnv, 'log'>, hasher: ContentHasher, named: boolean): Promise<ImageState> {
    const total = 1 + stage.instructions.filter((i) => FS_STEPS.has(i.kind)).length;
    let position = 1;
    const label = (n: number) => `[${named ? `${stage.name ?? `stage-${stage.index}`} ` : ''}${n}/${total}]`;
    const fromId = this.nextId++;
    const fromName = `${label(position)} FROM ${stage.from.isScratch ? 'scratch' : stage.from.stageRef !== undefined ? stage.from.image : (this.baseImages.get(stage.from.image)?.image.repoTags[0] ?? stage.from.image)}`;
    this.emit({ type: 'step', id: fromId, name: fromName });
    const state = this.initialState(stage);
    const fromCached = !this.pulled.has(stage.from.image);
    this.emit({ type: 'done', id: fromId, cached: fromCached, seconds: 0 });
    this.record(fromId, fromName, fromCached, 0);
    const flags: StageFlags = { cmdSet: false };
    for (const instr of stage.instructions) {
      if (this.opts.signal?.aborted) throw new BuildError('D2P_BUILD_ABORTED', 'build aborted', { user: false });
      if (!FS_STEPS.has(instr.kind)) {
        this.applyMetadataStep(state, instr, flags);
        continue;
      }
      position++;
      await this.fsStep(state, instr, label(position), build, baseEnv, hasher);
    }
    return state;
  }

  private applyMetadataStep(state: ImageState, instr: ResolvedInstruction, flags: StageFlags): void {
    const config = applyMetadata(state.config, instr, flags);
    if (config) state.config = config;
    state.history.push({ created: state.created, created_by: createdBy(instr), comment: 'buildkit.dockerfile.v0', empty_layer: true });
    // An ARG's value reaches the steps that use it through their effectiveArgs (cache.ts).
    if (instr.kind !== 'ARG') state.key = stepKey({ parent: state.key, instruction: instr, platform: this.platform });
  }

  private async fsStep(state: ImageState, instr: ResolvedInstruction, label: string, build: ResolvedBuild, baseEnv: Omit<StepEnv, 'log'>, hasher: ContentHasher): Promise<void> {
    const id = this.nextId++;
    const name = `${label} ${stepText(instr)}`;
    this.emit({ type: 'step', id, name });
    const t0 = performance.now();
    try {
      const key = stepKey({ parent: state.key, instruction: instr, inputs: this.inputsOf(instr, hasher, name), platform: this.platform });
      const hit = this.opts.noCache ? undefined : this.cache.get(key, (l) => this.layerPresent(l));
      const result = hit ?? (await this.execute(state, instr, name, build, { ...baseEnv, log: this.logger(id, t0) }));
      if (!hit) this.cache.put(key, result);
      applyResult(state, result, key);
      const seconds = (performance.now() - t0) / 1000;
      this.emit({ type: 'done', id, cached: hit !== undefined, seconds });
      this.record(id, name, hit !== undefined, seconds);
    } catch (e) {
      this.emit({ type: 'error', id, message: (e as Error).message });
      if (e instanceof BuildError && e.step === undefined) throw new BuildError(e.code, e.message, { step: name, user: e.user, cause: e });
      throw e;
    }
  }

  private logger(id: number, t0: number): (line: string) => void {
    return (text) => this.emit({ type: 'log', id, seconds: (performance.now() - t0) / 1000, text });
  }

  private record(id: number, name: string, cached: boolean, seconds: number): void {
    this.steps.push({ id, name, cached, seconds });
  }

  private layerPresent(l: LayerInfo): boolean {
    return exists(this.deps.images.layerDir(l.diffID)) && exists(this.deps.images.blobPath(l.digest));
  }

  /** What a COPY/ADD reads, as a hash: context content, or the identity of the stage or image it copies from. */
  private inputsOf(instr: ResolvedInstruction, hasher: ContentHasher, step: string): string | undefined {
    if (instr.kind !== 'COPY' && instr.kind !== 'ADD') return undefined;
    checkCopySupported(instr, step);
    if (instr.kind === 'COPY' && instr.fromStage !== undefined) return `stage:${(this.stageStates.get(instr.fromStage) as ImageState).key}`;
    if (instr.kind === 'COPY' && instr.from !== undefined) return `image:${this.baseImages.get(instr.from)?.image.digest}`;
    return hasher.hashSelection(instr.sources.flatMap((s) => matchSources(hasher.context, s)));
  }

  private async execute(state: ImageState, instr: ResolvedInstruction, step: string, build: ResolvedBuild, env: StepEnv): Promise<StepResult> {
    const created = this.fixedTime() ?? new Date().toISOString();
    const history: HistoryEntry = { created, created_by: createdBy(instr), comment: 'buildkit.dockerfile.v0' };
    let layer: LayerInfo | undefined;
    let config = state.config;
    switch (instr.kind) {
      case 'RUN':
        layer = await runStep(env, { instr, config: state.config, stack: state, buildArgs: { ...build.proxyArgs, ...instr.effectiveArgs }, step });
        break;
      case 'COPY':
      case 'ADD':
        layer = await copyStep(env, { instr, config: state.config, stack: state, source: this.copySource(instr), step });
        break;
      case 'WORKDIR': {
        const dir = workdirOf(state.config, instr.path);
        layer = await workdirStep(env, state, dir, step);
        config = { ...state.config, WorkingDir: dir };
        break;
      }
      default:
        throw new BuildError('D2P_BUILD_INVALID', `${instr.kind} is not a file system step`, { step, user: false });
    }
    if (!layer) history.empty_layer = true;
    return { ...(layer ? { layer } : {}), config, history };
  }

  private copySource(instr: ResolvedInstruction & { kind: 'COPY' | 'ADD' }): CopySource {
    if (instr.kind === 'COPY' && instr.fromStage !== undefined) {
      return { kind: 'layers', stack: this.stageStates.get(instr.fromStage) as ImageState, what: `stage ${instr.from}` };
    }
    if (instr.kind === 'COPY' && instr.from !== undefined) {
      const base = this.baseImages.get(instr.from);
      if (!base) throw new BuildError('D2P_BUILD_INVALID', `COPY --from=${instr.from}: image not loaded`, { user: false });
      return { kind: 'layers', stack: { layers: base.image.layers }, what: `image ${instr.from}` };
    }
    return { kind: 'context' };
  }

  // ------------------------------------------------------------------------ the image

  private async writeImage(state: ImageState, tags: string[]): Promise<StoredImage> {
    const created = state.created;
    const configFile = {
      created,
      architecture: state.architecture,
      os: state.os,
      ...(state.variant ? { variant: state.variant } : {}),
      config: state.config,
      rootfs: { type: 'layers', diff_ids: state.layers.map((l) => l.diffID) },
      history: state.history,
    };
    const configBytes = Buffer.from(JSON.stringify(configFile));
    const configDigest = digestOf(configBytes);
    const manifest = {
      schemaVersion: 2 as const,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: configDigest, size: configBytes.length },
      // Same bytes, OCI name: a Docker-typed base layer is a gzip tar either way.
      layers: state.layers.map((l) => ({ mediaType: l.mediaType === MediaType.DockerLayerGzip ? MediaType.OciLayerGzip : l.mediaType, digest: l.digest, size: l.size })),
    };
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    const id = this.nextId++;
    this.emit({ type: 'step', id, name: 'exporting to image' });
    const t0 = performance.now();
    const image = await this.deps.images.importManifest({
      manifest,
      manifestDigest: digestOf(manifestBytes),
      manifestBytes,
      manifestMediaType: MediaType.OciManifest,
      openBlob: (digest) => async () => (digest === configDigest ? Readable.from([configBytes]) : this.deps.images.blobs.open(digest)),
      tags,
      repoDigests: [],
      what: `build of ${tags[0] ?? 'an untagged image'}`,
    });
    this.emit({ type: 'log', id, seconds: (performance.now() - t0) / 1000, text: `writing image ${image.id}` });
    for (const tag of tags) this.emit({ type: 'log', id, seconds: (performance.now() - t0) / 1000, text: `naming to ${tag}` });
    this.emit({ type: 'done', id, cached: false, seconds: (performance.now() - t0) / 1000 });
    return image;
  }
}

function applyResult(state: ImageState, result: StepResult, key: string): void {
  if (result.layer) state.layers.push(result.layer);
  state.config = result.config;
  state.history.push(result.history);
  state.key = key;
  if (result.history.created) state.created = result.history.created;
}

/** The step as the progress output names it: the instruction after substitution. */
function stepText(instr: ResolvedInstruction): string {
  switch (instr.kind) {
    case 'RUN':
      return `RUN ${instr.form === 'exec' ? JSON.stringify(instr.args) : (instr.args[0] ?? '')}`;
    case 'COPY':
    case 'ADD': {
      const flags = [instr.kind === 'COPY' && instr.from !== undefined ? `--from=${instr.from}` : '', instr.chown !== undefined ? `--chown=${instr.chown}` : '', instr.chmod !== undefined ? `--chmod=${instr.chmod}` : ''].filter(Boolean);
      return [instr.kind, ...flags, ...instr.sources, ...instr.files.map((f) => `<<${f.name}`), instr.dest].join(' ');
    }
    case 'WORKDIR':
      return `WORKDIR ${instr.path}`;
    default:
      return instr.original;
  }
}

/** "shop-web" → "docker.io/library/shop-web:latest"; a bad tag is refused before anything is built. */
function normalizeTag(tag: string): string {
  try {
    const ref = parseReference(tag);
    if (ref.digest !== undefined) throw new BuildError('D2P_BUILD_INVALID', `tag ${JSON.stringify(tag)}: a digest cannot be a tag`);
    return formatReference(ref);
  } catch (e) {
    if (e instanceof BuildError) throw e;
    throw new BuildError('D2P_BUILD_INVALID', `invalid tag ${JSON.stringify(tag)}: ${(e as Error).message}`, { cause: e });
  }
}
