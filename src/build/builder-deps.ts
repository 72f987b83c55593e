// What a build needs from the machine, made from the state root's paths, and the
// mapping of a Build object's spec onto builder options. Shared by `d2p build`,
// `d2p up --build` and the Build controller, so all three build alike and share one cache.
import * as path from 'node:path';
import type { BuildSpec } from '../api/types';
import type { Paths } from '../config';
import { ImageStore } from '../images/index';
import { Runtime } from '../runtime/index';
import { BuildError } from './builder-errors';
import type { BuildDeps, BuildOptions } from './builder';

/** <stateRoot>/build-cache: step results, scratch space, and the RUN containers' bundles. */
export function buildCacheDir(paths: Paths): string {
  return path.join(paths.root, 'build-cache');
}

/** cgroup parent of RUN containers, apart from the workloads' so `d2p stats` never shows them. */
export const BUILD_CGROUP_PARENT = 'd2p-build';

export async function openBuildDeps(paths: Paths, opts: { cgroupParent?: string; images?: ImageStore } = {}): Promise<BuildDeps> {
  const stateDir = buildCacheDir(paths);
  return {
    images: opts.images ?? (await ImageStore.open(paths.images)),
    runtime: new Runtime({ stateDir: path.join(stateDir, 'containers'), cgroupParent: opts.cgroupParent ?? BUILD_CGROUP_PARENT }),
    stateDir,
  };
}

/**
 * BuildSpec → BuildOptions. The context must be a local absolute directory (Compose makes
 * it absolute); a remote context (git, URL) is refused: d2p builds offline.
 */
export function buildOptionsFromSpec(spec: BuildSpec, where: string): BuildOptions {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec.context) || spec.context.startsWith('git@')) {
    throw new BuildError('D2P_BUILD_UNSUPPORTED', `${where}: spec.context ${JSON.stringify(spec.context)}: remote build contexts are not supported; use a local directory`);
  }
  if (!path.isAbsolute(spec.context)) throw new BuildError('D2P_BUILD_INVALID', `${where}: spec.context ${JSON.stringify(spec.context)} must be an absolute path`);
  const opts: BuildOptions = { contextDir: spec.context, buildArgs: spec.args ?? {}, tags: spec.tags ?? [] };
  if (spec.dockerfile !== undefined) opts.dockerfile = spec.dockerfile;
  if (spec.target !== undefined) opts.target = spec.target;
  if (spec.noCache) opts.noCache = true;
  if (spec.platform !== undefined) opts.platform = spec.platform;
  const epoch = sourceDateEpoch(spec.args?.SOURCE_DATE_EPOCH, `${where}: spec.args.SOURCE_DATE_EPOCH`);
  if (epoch !== undefined) opts.sourceDateEpoch = epoch;
  return opts;
}

/** SOURCE_DATE_EPOCH as BuildKit takes it: decimal seconds since the epoch (reproducible-builds.org spec). */
export function sourceDateEpoch(value: string | undefined, what: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^\d+$/.test(value)) throw new BuildError('D2P_BUILD_INVALID', `${what}: ${JSON.stringify(value)} is not a number of seconds since 1970-01-01`);
  return Number(value);
}
