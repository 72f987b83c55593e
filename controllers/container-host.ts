// What the Container controller needs from the machine, as narrow interfaces so unit tests
// can hand it recording fakes (DESIGN.md §10): the runtime (processes, mounts, cgroups),
// the image store (layers and config of a pulled image) and a way to see an image's
// merged content (for the copy-up of a new volume). The real ones are made here.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { addon, MNT_DETACH, MS } from '../addon/index';
import type { Paths } from '../src/config';
import { ImageStore, type ImageConfig } from '../src/images/index';
import { Runtime } from '../src/runtime/index';
import type { ImageContentMounter } from './container-mounts';

export type ContainerRuntime = Pick<Runtime, 'create' | 'start' | 'stop' | 'pause' | 'unpause' | 'delete' | 'state' | 'wait' | 'exec'>;

export interface LocalImage {
  config: ImageConfig;
  /** Extracted layers, bottom → top. */
  layerDirs: string[];
}

export interface ImageLookup {
  /** The image a container's `image` names, or undefined when it is not in the store. */
  get(ref: string): Promise<LocalImage | undefined>;
}

export interface ContainerHostOptions {
  /** cgroup path under each hierarchy for all containers. Default "d2p". */
  cgroupParent?: string;
  /** The runtime's failures after a call returned (RuntimeOptions.onBackgroundError). */
  onBackgroundError?: (error: Error) => void;
}

export function realRuntime(paths: Paths, opts: ContainerHostOptions): ContainerRuntime {
  return new Runtime({ stateDir: paths.containers, cgroupParent: opts.cgroupParent ?? 'd2p', ...(opts.onBackgroundError ? { onBackgroundError: opts.onBackgroundError } : {}) });
}

export async function realImageLookup(paths: Paths): Promise<ImageLookup> {
  const store = await ImageStore.open(paths.images);
  return { get: (ref) => store.get(ref) };
}

/**
 * Shows the merged image as a read-only overlay mount (lowerdir only: overlayfs is then
 * read-only, Documentation/filesystems/overlayfs.rst "Multiple lower layers") in a
 * scratch directory, unmounted right after. One layer needs no overlay.
 */
export function overlayImageMounter(scratchParent: string): ImageContentMounter {
  return {
    async withImageRoot(layerDirs, fn) {
      if (layerDirs.length === 1) return fn(layerDirs[0] as string);
      await fs.mkdir(scratchParent, { recursive: true, mode: 0o700 });
      const target = await fs.mkdtemp(path.join(scratchParent, 'image-'));
      // overlayfs lists lowerdirs top first; StoredImage.layerDirs is bottom first.
      const lowerdir = [...layerDirs].reverse().join(':');
      addon().mount('overlay', target, 'overlay', MS.RDONLY | MS.NODEV | MS.NOSUID, `lowerdir=${lowerdir}`);
      try {
        return await fn(target);
      } finally {
        addon().umount2(target, MNT_DETACH);
        await fs.rmdir(target);
      }
    },
  };
}
