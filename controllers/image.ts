// The Image reconciler: an Image object asks for an image to be present in the local
// content store (<root>/images), as a Pod's imagePullPolicy asks the kubelet.
//  - IfNotPresent (the default): pull only when the store has no image for spec.ref (and
//    spec.platform, when given);
//  - Always: pull once per generation of the object, not on every resync: the generation
//    that was pulled is the observedGeneration of the Pulled condition (Kubernetes pulls
//    Always images when it starts a container, i.e. when something changed, not forever);
//  - Never: Ready when present, otherwise Failed with Pulled=False/ErrImageNeverPull (the
//    kubelet's reason), re-checked slowly in case `d2p image load` brings it later.
// Pull failures (auth, not found, network) are thrown so the manager retries them with
// back-off; a reference that cannot parse is a spec problem (TerminalError).
// Deleting an Image object leaves the stored image alone (`d2p image rm` removes it), so
// no finalizer is needed.
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { formatDuration } from '../src/api/duration';
import type { Image, ImageConfig as ImageStatusConfig, ImageHealthcheck, ImageStatus, PullPolicy } from '../src/api/types';
import type { Paths } from '../src/config';
import {
  ImageError,
  ImageStore,
  formatPlatform,
  isImageError,
  parsePlatform,
  parseReference,
  platformMatches,
  type ImageConfig as StoredImageConfig,
  type Platform,
  type PullOptions,
  type StoredImage,
} from '../src/images/index';
import { getCondition, setCondition } from './conditions';
import { TerminalError, describeError } from './errors';
import { splitKey, type Controller, type ReconcileContext, type Result } from './manager';
import { getIfExists } from './objects';

export const CONDITION_READY = 'Ready';
export const CONDITION_PULLED = 'Pulled';

/** How often an absent image with pullPolicy Never is looked for again. */
export const NEVER_PULL_RECHECK_MS = 30_000;

// Kubernetes' kubelet reasons (pkg/kubelet/images/types.go), so `describe` reads as users expect.
export const REASON_INVALID_IMAGE_NAME = 'InvalidImageName';
export const REASON_INVALID_PLATFORM = 'InvalidPlatform';
export const REASON_ERR_IMAGE_PULL = 'ErrImagePull';
export const REASON_ERR_IMAGE_NEVER_PULL = 'ErrImageNeverPull';

/** Registry credentials (docker config.json format), shared by the controller and `d2p login`. */
export function registryAuthFile(paths: Paths): string {
  return path.join(paths.root, 'auth.json');
}

/** What the reconciler needs of the image store; the real ImageStore has exactly this. */
export interface LocalImages {
  get(query: string): Promise<StoredImage | undefined>;
  pull(ref: string, opts: PullOptions): Promise<StoredImage>;
}

export interface ImageControllerOptions {
  /** Opens the store at paths.images; tests pass a fake or a store fed from an OCI layout. */
  openImages?: (paths: Paths) => Promise<LocalImages>;
}

export function imageController(opts: ImageControllerOptions = {}): Controller {
  const open = opts.openImages ?? ((paths: Paths) => ImageStore.open(paths.images));
  const opened = new Map<string, Promise<LocalImages>>();
  const imagesFor = (paths: Paths): Promise<LocalImages> => {
    let images = opened.get(paths.images);
    if (!images) {
      images = open(paths);
      opened.set(paths.images, images);
      // A store that failed to open (EACCES, a full disk) is opened afresh next time.
      images.catch(() => opened.delete(paths.images));
    }
    return images;
  };
  return {
    kind: 'Image',
    reconcile: async (key, ctx) => reconcileImage(key, ctx, await imagesFor(ctx.paths)),
  };
}

interface PullRequest {
  ref: string;
  policy: PullPolicy;
  /** Only when spec.platform names one; otherwise any platform the store holds will do. */
  platform?: Platform;
}

export async function reconcileImage(key: string, ctx: ReconcileContext, images: LocalImages): Promise<Result | void> {
  const { namespace, name } = splitKey(key);
  const image = await getIfExists<Image>(ctx.client('Image'), namespace, name);
  if (!image || image.metadata.deletionTimestamp) return;
  const request = await pullRequestOf(ctx, image);
  const present = await images.get(request.ref);
  const usable = present !== undefined && platformFits(present, request.platform) ? present : undefined;
  if (!usable) {
    if (request.policy === 'Never') return neverPull(ctx, image, request, present);
    return pull(ctx, image, request, images);
  }
  const pulledThisGeneration = pulledGeneration(image) === image.metadata.generation;
  if (request.policy === 'Always' && !pulledThisGeneration) return pull(ctx, image, request, images);
  await markReady(ctx, image, usable, alreadyPresent(image, request));
}

/** Reads the spec; a reference or platform that cannot parse is recorded as Failed and thrown as a TerminalError. */
async function pullRequestOf(ctx: ReconcileContext, image: Image): Promise<PullRequest> {
  const spec = image.spec ?? { ref: '' };
  const id = `image "${image.metadata.namespace}/${image.metadata.name}"`;
  const problem = specProblem(spec.ref, spec.platform);
  if (problem) {
    const message = `${id}: ${problem.field}: ${problem.message}`;
    await writeStatus(ctx, image, (status) => {
      status.phase = 'Failed';
      setPulled(status, image, 'False', problem.reason, message);
      setReady(status, image, 'False', problem.reason, message);
    });
    throw new TerminalError(problem.reason, message, { cause: problem.cause });
  }
  return {
    ref: spec.ref,
    policy: spec.pullPolicy ?? 'IfNotPresent',
    ...(spec.platform ? { platform: parsePlatform(spec.platform) } : {}),
  };
}

function specProblem(ref: string, platform: string | undefined): { field: string; reason: string; message: string; cause: unknown } | undefined {
  try {
    parseReference(ref);
  } catch (error) {
    if (!isImageError(error, 'D2P_IMAGE_INVALID_REFERENCE')) throw error;
    return { field: 'spec.ref', reason: REASON_INVALID_IMAGE_NAME, message: error.message, cause: error };
  }
  if (platform === undefined) return undefined;
  try {
    parsePlatform(platform);
  } catch (error) {
    if (!isImageError(error, 'D2P_IMAGE_PLATFORM')) throw error;
    return { field: 'spec.platform', reason: REASON_INVALID_PLATFORM, message: error.message, cause: error };
  }
  return undefined;
}

function platformFits(image: StoredImage, wanted: Platform | undefined): boolean {
  return wanted === undefined || platformMatches(wanted, image.platform);
}

/** The generation whose pull succeeded: recorded as the Pulled condition's observedGeneration. */
function pulledGeneration(image: Image): number | undefined {
  const pulled = getCondition(image.status, CONDITION_PULLED);
  return pulled?.status === 'True' ? pulled.observedGeneration : undefined;
}

interface PulledNote {
  reason: string;
  message: string;
}

/**
 * Present without a pull. A Pulled=True already written for this generation (by the pull
 * that brought the image) is kept as it is, so a resync does not rewrite history.
 */
function alreadyPresent(image: Image, request: PullRequest): PulledNote | undefined {
  if (pulledGeneration(image) === image.metadata.generation) return undefined;
  return { reason: 'AlreadyPresent', message: `image "${request.ref}" already present on machine` };
}

async function neverPull(ctx: ReconcileContext, image: Image, request: PullRequest, present: StoredImage | undefined): Promise<Result> {
  const message =
    present && request.platform
      ? `image "${request.ref}" is present for platform ${formatPlatform(present.platform)}, not ${formatPlatform(request.platform)}, and pullPolicy is Never`
      : `image "${request.ref}" is not present with pullPolicy Never; pull or load it (d2p image pull|load)`;
  const changed = await writeStatus(ctx, image, (status) => {
    status.phase = 'Failed';
    clearImageFields(status);
    setPulled(status, image, 'False', REASON_ERR_IMAGE_NEVER_PULL, message);
    setReady(status, image, 'False', REASON_ERR_IMAGE_NEVER_PULL, message);
  });
  if (changed) await ctx.events.record(image, 'Warning', REASON_ERR_IMAGE_NEVER_PULL, message);
  return { requeueAfter: NEVER_PULL_RECHECK_MS };
}

async function pull(ctx: ReconcileContext, image: Image, request: PullRequest, images: LocalImages): Promise<void> {
  const pulling = `pulling image "${request.ref}"`;
  let current = image;
  await writeStatus(ctx, image, (status) => {
    status.phase = 'Pulling';
    setPulled(status, image, 'Unknown', 'Pulling', pulling);
    setReady(status, image, 'False', 'Pulling', pulling);
  }, (written) => (current = written));
  await ctx.events.record(current, 'Normal', 'Pulling', `Pulling image "${request.ref}"`);
  const started = performance.now();
  let stored: StoredImage;
  try {
    stored = await images.pull(request.ref, {
      authFile: registryAuthFile(ctx.paths),
      ...(request.platform ? { platform: request.platform } : {}),
    });
    if (!platformFits(stored, request.platform)) throw platformMismatch(request, stored);
  } catch (error) {
    await pullFailed(ctx, current, request, error);
    throw error;
  }
  const took = formatDuration(Math.round(performance.now() - started));
  const message = `Successfully pulled image "${request.ref}" (${stored.digest}) in ${took}`;
  const written = await markReady(ctx, current, stored, { reason: 'Pulled', message });
  await ctx.events.record(written, 'Normal', 'Pulled', message);
}

function platformMismatch(request: PullRequest, stored: StoredImage): ImageError {
  return new ImageError(
    'D2P_IMAGE_PLATFORM',
    `image "${request.ref}" was pulled for platform ${formatPlatform(stored.platform)}, but spec.platform is ${formatPlatform(request.platform as Platform)}`,
    { reference: request.ref, digest: stored.digest },
  );
}

async function pullFailed(ctx: ReconcileContext, image: Image, request: PullRequest, error: unknown): Promise<void> {
  const message = `Failed to pull image "${request.ref}": ${describeError(error)}`;
  await writeStatus(ctx, image, (status) => {
    status.phase = 'Failed';
    setPulled(status, image, 'False', REASON_ERR_IMAGE_PULL, message);
    setReady(status, image, 'False', REASON_ERR_IMAGE_PULL, message);
  });
  await ctx.events.record(image, 'Warning', 'Failed', message);
}

/** Phase Ready with the stored image's digest, size, layers and config; `pulled` updates the Pulled condition. */
async function markReady(ctx: ReconcileContext, image: Image, stored: StoredImage, pulled: PulledNote | undefined): Promise<Image> {
  let current = image;
  await writeStatus(ctx, image, (status) => {
    status.phase = 'Ready';
    Object.assign(status, imageStatusFields(stored));
    if (pulled) setPulled(status, image, 'True', pulled.reason, pulled.message);
    setReady(status, image, 'True', 'Pulled', `image ${stored.digest} is in the local store`);
  }, (written) => (current = written));
  return current;
}

/** The status fields that describe a stored image, shaped as crd-schemas/image.json wants them. */
export function imageStatusFields(stored: StoredImage): Required<Pick<ImageStatus, 'digest' | 'size' | 'layers' | 'config'>> {
  return {
    digest: stored.digest,
    size: stored.size,
    layers: stored.layers.map((l) => ({ digest: l.digest, size: l.size, diffID: l.diffID, mediaType: l.mediaType })),
    config: imageConfigStatus(stored.config),
  };
}

// The schema's exposedPorts pattern; Docker refuses other forms when an image is built
// (go-connections nat.ParsePort), so anything else is not a port a container could publish.
const EXPOSED_PORT = /^[0-9]+(?:\/(?:tcp|udp|sctp))?$/;

/** The image config as Image.status.config: empty values left out, healthcheck durations as Go durations. */
export function imageConfigStatus(c: StoredImageConfig): ImageStatusConfig {
  const exposedPorts = c.exposedPorts.filter((p) => EXPOSED_PORT.test(p));
  return {
    env: [...c.env],
    ...(c.cmd !== null ? { cmd: [...c.cmd] } : {}),
    ...(c.entrypoint !== null ? { entrypoint: [...c.entrypoint] } : {}),
    ...(c.workingDir ? { workingDir: c.workingDir } : {}),
    ...(c.user ? { user: c.user } : {}),
    ...(exposedPorts.length > 0 ? { exposedPorts } : {}),
    ...(c.volumes.length > 0 ? { volumes: [...c.volumes] } : {}),
    ...(Object.keys(c.labels).length > 0 ? { labels: { ...c.labels } } : {}),
    ...(c.stopSignal ? { stopSignal: c.stopSignal } : {}),
    ...(c.healthcheck ? { healthcheck: healthcheckStatus(c.healthcheck) } : {}),
  };
}

const NS_PER_MS = 1e6;

/**
 * The image config keeps durations in nanoseconds, and 0 means "not set, inherit"
 * (Docker's container.HealthConfig), so zeros are left out rather than shown as "0s".
 */
function healthcheckStatus(h: NonNullable<StoredImageConfig['healthcheck']>): ImageHealthcheck {
  const duration = (ns: number | undefined) => (ns ? formatDuration(ns / NS_PER_MS) : undefined);
  const out: ImageHealthcheck = { test: [...h.test] };
  const interval = duration(h.interval);
  const timeout = duration(h.timeout);
  const startPeriod = duration(h.startPeriod);
  const startInterval = duration(h.startInterval);
  if (interval) out.interval = interval;
  if (timeout) out.timeout = timeout;
  if (startPeriod) out.startPeriod = startPeriod;
  if (startInterval) out.startInterval = startInterval;
  if (h.retries) out.retries = h.retries;
  return out;
}

function clearImageFields(status: ImageStatus): void {
  delete status.digest;
  delete status.size;
  delete status.layers;
  delete status.config;
}

function setPulled(status: ImageStatus, image: Image, value: 'True' | 'False' | 'Unknown', reason: string, message: string): void {
  setCondition(status, { type: CONDITION_PULLED, status: value, reason, message, observedGeneration: image.metadata.generation });
}

function setReady(status: ImageStatus, image: Image, value: 'True' | 'False', reason: string, message: string): void {
  setCondition(status, { type: CONDITION_READY, status: value, reason, message, observedGeneration: image.metadata.generation });
}

/**
 * Applies `change` to a copy of the status and writes it if anything differs; returns
 * whether it wrote. The write carries the object's resourceVersion, so a spec changed
 * meanwhile is a Conflict, retried with the new generation.
 */
async function writeStatus(
  ctx: ReconcileContext,
  image: Image,
  change: (status: ImageStatus) => void,
  onWritten?: (written: Image) => void,
): Promise<boolean> {
  const before = image.status ?? {};
  const status: ImageStatus = structuredClone(before);
  change(status);
  if (image.metadata.generation !== undefined) status.observedGeneration = image.metadata.generation;
  if (isDeepStrictEqual(status, before)) return false;
  const written = (await ctx.client('Image').updateStatus({ ...image, status })) as Image;
  onWritten?.(written);
  return true;
}
