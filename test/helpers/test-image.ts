// A busybox image for integration tests, imported straight into an ImageStore from an OCI
// layout built here (hack/test-images/lib.js), so no registry is needed.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImageStore, importOciLayout } from '../../src/images/index';

/** An OCI content descriptor (image-spec descriptor.md). */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** What addImage returns: the manifest's descriptor, with its config digest and layers. */
export interface ImageDescriptor extends Descriptor {
  platform: Platform;
  configDigest: string;
  layers: Array<Descriptor & { diffID: string }>;
}

/** The images buildTestImages writes into one layout; `multi` is an index of full, arm64 and armv7. */
export interface TestImages {
  layoutDir: string;
  base: ImageDescriptor;
  full: ImageDescriptor;
  multi: Descriptor;
  arm64: ImageDescriptor;
  armv7: ImageDescriptor;
}

/** hack/test-images/lib.js, typed once for every test that builds OCI layouts with it. */
export const fixtures = require('../../hack/test-images/lib.js') as {
  /** A tar of `entries` ({path, type: 'file'|'dir'|'symlink'|…, content?, mode?, uid?, gid?, linkpath?}). */
  tarArchive(entries: object[]): Buffer;
  /** Writes one image (layer tars bottom first) into the layout's blobs; opts: platform, config, gzip, layerMediaType, corruptDiffID. */
  addImage(dir: string, layers: Buffer[], opts?: object): ImageDescriptor;
  /** Writes oci-layout and index.json naming each descriptor by org.opencontainers.image.ref.name. */
  writeLayoutIndex(dir: string, named: Record<string, Descriptor>): void;
  buildTestImages(dir: string): TestImages;
  sha256(bytes: Buffer): string;
};

const BUSYBOX = '/usr/bin/busybox';

/** Debian's static busybox with its applets, passwd/group, and the mount points a rootfs needs. */
export function busyboxLayer(extraDirs: string[] = []): Buffer {
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a && a !== 'busybox');
  return fixtures.tarArchive([
    { path: 'bin/', type: 'dir' },
    { path: 'bin/busybox', type: 'file', mode: 0o755, content: fs.readFileSync(BUSYBOX) },
    ...applets.map((a) => ({ path: `bin/${a}`, type: 'symlink', linkpath: 'busybox' })),
    { path: 'etc/', type: 'dir' },
    { path: 'etc/passwd', type: 'file', content: 'root:x:0:0:root:/root:/bin/sh\n' },
    { path: 'etc/group', type: 'file', content: 'root:x:0:\n' },
    { path: 'tmp/', type: 'dir', mode: 0o1777 },
    ...extraDirs.map((d) => ({ path: `${d.replace(/^\/|\/$/g, '')}/`, type: 'dir' })),
    { path: 'proc/', type: 'dir' },
    { path: 'sys/', type: 'dir' },
    { path: 'dev/', type: 'dir' },
  ]);
}

/**
 * Imports `ref` into the ImageStore at `imagesDir`: busybox plus `extraLayers`, with
 * PATH=/bin and `sleep 1000` as its command. `workDir` holds the intermediate OCI layout.
 */
export async function importTestImage(opts: { imagesDir: string; workDir: string; ref: string; extraLayers?: Buffer[]; extraDirs?: string[] }): Promise<void> {
  const layout = path.join(opts.workDir, `layout-${opts.ref.replace(/[^a-zA-Z0-9]/g, '_')}`);
  fs.mkdirSync(layout, { recursive: true });
  const layers = [busyboxLayer(opts.extraDirs), ...(opts.extraLayers ?? [])];
  const desc = fixtures.addImage(layout, layers, { config: { Env: ['PATH=/bin'], Cmd: ['sleep', '1000'] } });
  fixtures.writeLayoutIndex(layout, { [opts.ref]: desc });
  await importOciLayout(await ImageStore.open(opts.imagesDir), layout);
}
