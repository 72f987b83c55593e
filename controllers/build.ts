// The Build reconciler: a Build object asks for an image built from a Dockerfile and a
// context directory, tagged with spec.tags (Compose `build:`; the services built from it
// use the tag with imagePullPolicy Never and wait for it).
//  - A build runs once per generation of the object, as a Kubernetes Job runs once per
//    spec: phase Building, then Succeeded (imageDigest, steps, cacheHits) or Failed. A
//    resync does not rebuild; a changed spec (new generation) does. The one exception is
//    drift: a Succeeded build whose image is no longer in the store (`d2p image rm`) is
//    built again, since the desired state, an image present, no longer holds.
//  - A build interrupted by a daemon restart is found in phase Building and run again
//    (level-triggered: the phase written before the build, not a memory of it, says so).
//  - A Dockerfile, .dockerignore or step that fails is the user's to fix: Failed, with the
//    step in the condition and a Warning event, and a TerminalError so it is not retried
//    until the spec changes. A failure of the machine (pulling a base image, a full disk)
//    is thrown and retried with back-off.
import { isDeepStrictEqual } from 'node:util';
import { formatDuration } from '../src/api/duration';
import type { Build, BuildStatus } from '../src/api/types';
import type { Paths } from '../src/config';
import type { buildImage, BuildDeps, BuildResult } from '../src/build/builder';
import { setCondition } from './conditions';
import { TerminalError, describeError } from './errors';
import { registryAuthFile } from './image';
import { splitKey, type Controller, type ReconcileContext, type Result } from './manager';
import { getIfExists } from './objects';

export const CONDITION_READY = 'Ready';
export const REASON_BUILDING = 'Building';
export const REASON_BUILT = 'Built';
export const REASON_BUILD_FAILED = 'BuildFailed';
export const REASON_BUILD_ERROR = 'BuildError';

export type Builder = typeof buildImage;

// The builder (Dockerfile parser, context walker, snapshotter, layer cache: ~20 modules) is
// loaded by the first reconcile of a Build, not with the daemon: most daemons never build,
// and a module once loaded stays in the heap for the process's life.
type BuildModules = typeof import('../src/build/builder') &
  typeof import('../src/build/builder-deps') &
  Pick<typeof import('../src/build/dockerfile/index'), 'DockerfileError'> &
  Pick<typeof import('../src/build/dockerignore'), 'DockerignoreError'>;

let buildModulesLoading: Promise<BuildModules> | undefined;

function loadBuildModules(): Promise<BuildModules> {
  buildModulesLoading ??= (async () => {
    const [builder, deps, dockerfile, dockerignore] = await Promise.all([
      import('../src/build/builder.js'),
      import('../src/build/builder-deps.js'),
      import('../src/build/dockerfile/index.js'),
      import('../src/build/dockerignore.js'),
    ]);
    return { ...builder, ...deps, DockerfileError: dockerfile.DockerfileError, DockerignoreError: dockerignore.DockerignoreError };
  })();
  return buildModulesLoading;
}

export interface BuildControllerOptions {
  /** Image store, runtime and cache dir; default openBuildDeps(paths). */
  openDeps?: (paths: Paths) => Promise<BuildDeps>;
  /** The builder; unit tests pass a recording fake. */
  builder?: Builder;
  /** cgroup parent of RUN containers (default "d2p-build"); tests use a unique one. */
  cgroupParent?: string;
}

export function buildController(opts: BuildControllerOptions = {}): Controller {
  const open =
    opts.openDeps ??
    (async (paths: Paths) => (await loadBuildModules()).openBuildDeps(paths, opts.cgroupParent !== undefined ? { cgroupParent: opts.cgroupParent } : {}));
  const opened = new Map<string, Promise<BuildDeps>>();
  const depsFor = (paths: Paths): Promise<BuildDeps> => {
    let deps = opened.get(paths.root);
    if (!deps) {
      deps = open(paths);
      opened.set(paths.root, deps);
      // A failed open (EACCES, no addon) is tried afresh next time.
      deps.catch(() => opened.delete(paths.root));
    }
    return deps;
  };
  return {
    kind: 'Build',
    // Builds are heavy (containers, compression); one at a time keeps a machine responsive.
    workers: 1,
    reconcile: async (key, ctx) => reconcileBuild(key, ctx, await depsFor(ctx.paths), opts.builder),
  };
}

/** `builder` defaults to the real one (src/build/builder's buildImage). */
export async function reconcileBuild(key: string, ctx: ReconcileContext, deps: BuildDeps, builder?: Builder): Promise<Result | void> {
  const { namespace, name } = splitKey(key);
  const build = await getIfExists<Build>(ctx.client('Build'), namespace, name);
  if (!build || build.metadata.deletionTimestamp) return;
  if (await upToDate(build, deps)) return;
  const modules = await loadBuildModules();
  const runBuild = builder ?? modules.buildImage;
  const where = `build "${namespace}/${name}"`;
  let current = build;
  try {
    const options = modules.buildOptionsFromSpec(build.spec ?? { context: '' }, where);
    current = await writeStatus(ctx, current, (s) => {
      s.phase = 'Building';
      delete s.imageDigest;
      setReady(s, current, 'False', REASON_BUILDING, `building ${describeTags(build)} from ${options.contextDir}`);
    });
    await ctx.events.record(current, 'Normal', REASON_BUILDING, `Building ${describeTags(build)} from ${options.contextDir}`);
    const started = performance.now();
    const result = await runBuild({ ...options, signal: ctx.signal, pull: { authFile: registryAuthFile(ctx.paths) } }, deps);
    await succeeded(ctx, current, result, performance.now() - started);
  } catch (error) {
    await failed(ctx, current, where, error, isUserError(error, modules));
  }
}

/** Built (or failed) for this generation already, and the image it made is still there. */
async function upToDate(build: Build, deps: BuildDeps): Promise<boolean> {
  const s = build.status;
  if (!s || s.observedGeneration !== build.metadata.generation) return false;
  if (s.phase === 'Failed') return true;
  if (s.phase !== 'Succeeded' || !s.imageDigest) return false;
  const tags = build.spec?.tags ?? [];
  const images = await Promise.all((tags.length > 0 ? tags : [s.imageDigest]).map((t) => deps.images.get(t)));
  return images.every((image) => image?.digest === s.imageDigest);
}

async function succeeded(ctx: ReconcileContext, build: Build, result: BuildResult, ms: number): Promise<void> {
  const message = `Successfully built ${result.imageId.slice(7, 19)} (${result.digest}) tagged ${result.tags.join(', ') || 'nothing'} in ${formatDuration(Math.round(ms))}; ${result.cacheHits}/${result.steps.length} steps cached`;
  const written = await writeStatus(ctx, build, (s) => {
    s.phase = 'Succeeded';
    s.imageDigest = result.digest;
    s.cacheHits = result.cacheHits;
    s.steps = result.steps.length;
    setReady(s, build, 'True', REASON_BUILT, message);
  });
  await ctx.events.record(written, 'Normal', REASON_BUILT, message);
  for (const warning of result.warnings) await ctx.events.record(written, 'Warning', 'BuildWarning', warning);
}

const isUserError = (e: unknown, m: BuildModules): boolean =>
  e instanceof m.DockerfileError || e instanceof m.DockerignoreError || (e instanceof m.BuildError && e.user);

async function failed(ctx: ReconcileContext, build: Build, where: string, error: unknown, user: boolean): Promise<never> {
  const message = `${where}: ${describeError(error)}`;
  await writeStatus(ctx, build, (s) => {
    s.phase = user ? 'Failed' : 'Pending';
    setReady(s, build, 'False', user ? REASON_BUILD_FAILED : REASON_BUILD_ERROR, message);
  });
  await ctx.events.record(build, 'Warning', user ? REASON_BUILD_FAILED : REASON_BUILD_ERROR, message);
  if (user) throw new TerminalError(REASON_BUILD_FAILED, message, { cause: error });
  throw error;
}

function describeTags(build: Build): string {
  const tags = build.spec?.tags ?? [];
  return tags.length > 0 ? tags.join(', ') : 'an untagged image';
}

function setReady(status: BuildStatus, build: Build, value: 'True' | 'False', reason: string, message: string): void {
  setCondition(status, { type: CONDITION_READY, status: value, reason, message, observedGeneration: build.metadata.generation });
}

/** Applies `change` to a copy of the status and writes it when anything differs; returns the object as stored. */
async function writeStatus(ctx: ReconcileContext, build: Build, change: (status: BuildStatus) => void): Promise<Build> {
  const before = build.status ?? {};
  const status: BuildStatus = structuredClone(before);
  change(status);
  if (build.metadata.generation !== undefined) status.observedGeneration = build.metadata.generation;
  if (isDeepStrictEqual(status, before)) return build;
  return (await ctx.client('Build').updateStatus({ ...build, status })) as Build;
}
