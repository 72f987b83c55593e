// OCI image-spec and Docker image manifest v2 schema 2 shapes, and the summary of an image
// config the rest of d2p consumes. Field names follow the specs exactly.
import { ImageError } from './errors';

export const MediaType = {
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciLayerNonDistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

export const INDEX_MEDIA_TYPES: readonly string[] = [MediaType.OciIndex, MediaType.DockerManifestList];
export const MANIFEST_MEDIA_TYPES: readonly string[] = [MediaType.OciManifest, MediaType.DockerManifest];

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform & { 'os.version'?: string; 'os.features'?: string[] };
  annotations?: Record<string, string>;
  urls?: string[];
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** The image config JSON (OCI image-spec config.md), only the parts d2p reads. */
export interface ImageConfigFile {
  architecture?: string;
  os?: string;
  variant?: string;
  created?: string;
  config?: {
    User?: string;
    ExposedPorts?: Record<string, object>;
    Env?: string[] | null;
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Volumes?: Record<string, object> | null;
    WorkingDir?: string;
    Labels?: Record<string, string> | null;
    StopSignal?: string;
    Healthcheck?: {
      Test?: string[];
      Interval?: number;
      Timeout?: number;
      StartPeriod?: number;
      StartInterval?: number;
      Retries?: number;
    };
  };
  rootfs: { type: string; diff_ids: string[] };
}

export interface Healthcheck {
  test: string[];
  /** Nanoseconds, as in the image config (and Docker's API). */
  interval?: number;
  timeout?: number;
  startPeriod?: number;
  startInterval?: number;
  retries?: number;
}

/** What a container needs from an image config; keys as Image.status.config in DESIGN.md §1. */
export interface ImageConfig {
  env: string[];
  cmd: string[] | null;
  entrypoint: string[] | null;
  workingDir: string;
  user: string;
  exposedPorts: string[];
  volumes: string[];
  labels: Record<string, string>;
  stopSignal?: string;
  healthcheck?: Healthcheck;
  os: string;
  architecture: string;
  variant?: string;
  created?: string;
}

export interface LayerInfo {
  /** Digest of the blob as stored and distributed (usually gzip). */
  digest: string;
  size: number;
  /** Digest of the uncompressed tar, from the config's rootfs.diff_ids. */
  diffID: string;
  mediaType: string;
}

function asObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ImageError('D2P_IMAGE_INVALID', `${what}: expected a JSON object`);
  }
  return value as Record<string, unknown>;
}

export function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new ImageError('D2P_IMAGE_INVALID', `${what}: invalid JSON: ${(e as Error).message}`, { cause: e });
  }
}

function assertDescriptor(value: unknown, what: string): Descriptor {
  const d = asObject(value, what);
  if (typeof d.mediaType !== 'string' || typeof d.digest !== 'string' || typeof d.size !== 'number' || d.size < 0) {
    throw new ImageError('D2P_IMAGE_INVALID', `${what}: a descriptor needs mediaType, digest and a non-negative size`);
  }
  return d as unknown as Descriptor;
}

export function parseIndex(bytes: Buffer, what: string): ImageIndex {
  const o = asObject(parseJson(bytes, what), what);
  if (!Array.isArray(o.manifests)) throw new ImageError('D2P_IMAGE_INVALID', `${what}: index without "manifests"`);
  o.manifests.forEach((m, i) => assertDescriptor(m, `${what}: manifests[${i}]`));
  return o as unknown as ImageIndex;
}

export function parseManifest(bytes: Buffer, what: string): ImageManifest {
  const o = asObject(parseJson(bytes, what), what);
  if (o.schemaVersion !== 2) {
    throw new ImageError('D2P_IMAGE_UNSUPPORTED', `${what}: manifest schemaVersion ${String(o.schemaVersion)} is not supported (only 2)`);
  }
  assertDescriptor(o.config, `${what}: config`);
  if (!Array.isArray(o.layers)) throw new ImageError('D2P_IMAGE_INVALID', `${what}: manifest without "layers"`);
  o.layers.forEach((l, i) => assertDescriptor(l, `${what}: layers[${i}]`));
  return o as unknown as ImageManifest;
}

export function parseConfigFile(bytes: Buffer, what: string): ImageConfigFile {
  const o = asObject(parseJson(bytes, what), what);
  const rootfs = asObject(o.rootfs, `${what}: rootfs`);
  if (!Array.isArray(rootfs.diff_ids) || !rootfs.diff_ids.every((d) => typeof d === 'string')) {
    throw new ImageError('D2P_IMAGE_INVALID', `${what}: rootfs.diff_ids must be a list of digests`);
  }
  return o as unknown as ImageConfigFile;
}

/** Maps the raw config file to the summary containers use. */
export function summarizeConfig(file: ImageConfigFile): ImageConfig {
  const c = file.config ?? {};
  const hc = c.Healthcheck;
  return {
    env: c.Env ?? [],
    cmd: c.Cmd ?? null,
    entrypoint: c.Entrypoint ?? null,
    workingDir: c.WorkingDir ?? '',
    user: c.User ?? '',
    exposedPorts: Object.keys(c.ExposedPorts ?? {}),
    volumes: Object.keys(c.Volumes ?? {}),
    labels: c.Labels ?? {},
    ...(c.StopSignal ? { stopSignal: c.StopSignal } : {}),
    ...(hc?.Test
      ? {
          healthcheck: {
            test: hc.Test,
            ...(hc.Interval !== undefined ? { interval: hc.Interval } : {}),
            ...(hc.Timeout !== undefined ? { timeout: hc.Timeout } : {}),
            ...(hc.StartPeriod !== undefined ? { startPeriod: hc.StartPeriod } : {}),
            ...(hc.StartInterval !== undefined ? { startInterval: hc.StartInterval } : {}),
            ...(hc.Retries !== undefined ? { retries: hc.Retries } : {}),
          },
        }
      : {}),
    os: file.os ?? '',
    architecture: file.architecture ?? '',
    ...(file.variant ? { variant: file.variant } : {}),
    ...(file.created ? { created: file.created } : {}),
  };
}
