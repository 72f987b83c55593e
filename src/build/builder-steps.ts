// The three kinds of step that produce a layer: RUN (a real container through the
// Runtime, then its overlay upper dir snapshotted), COPY/ADD (files staged in a fresh
// directory, then snapshotted) and WORKDIR (the directory created when missing).
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tar from 'tar';
import type { ImageStore, LayerInfo } from '../images/index';
import type { ContainerConfig, Runtime } from '../runtime/index';
import { resolveUser } from '../runtime/index';
import type { AddInstr, CopyInstr, ResolvedInstruction, RunInstr } from './dockerfile/index';
import { BuildError, errnoOf } from './builder-errors';
import { resolveInRoot, statInRoot, withRootfsView } from './builder-rootfs';
import { entriesUnder, globRegExp, hasGlob, matchSources, type BuildContext } from './context';
import { commitLayer, exists, MOUNT_STUBS, removeMountStubs, snapshotDir } from './snapshot';
import type { ImageRuntimeConfig } from './cache';

export interface StepEnv {
  images: ImageStore;
  runtime: Runtime;
  /** Scratch space of this build (views, staging dirs); removed by the builder. */
  workDir: string;
  context: BuildContext;
  sourceDateEpoch?: number;
  network: 'none' | 'host';
  signal?: AbortSignal;
  /** Output of a RUN, line by line. */
  log: (line: string) => void;
}

/** Layers of an image state, bottom → top, as extracted dirs. */
export interface LayerStack {
  layers: readonly LayerInfo[];
}

const layerDirsOf = (env: StepEnv, stack: LayerStack): string[] => stack.layers.map((l) => env.images.layerDir(l.diffID));

async function snapshotAndCommit(env: StepEnv, dir: string, overlay: boolean): Promise<LayerInfo | undefined> {
  const outFile = path.join(env.images.tmpPath, `${process.pid}-${randomBytes(8).toString('hex')}.tar.gz`);
  try {
    const blob = await snapshotDir(dir, { overlay, outFile, ...(env.sourceDateEpoch !== undefined ? { sourceDateEpoch: env.sourceDateEpoch } : {}) });
    return blob ? await commitLayer(env.images, blob) : undefined;
  } finally {
    await fs.promises.rm(outFile, { force: true });
  }
}

// ------------------------------------------------------------------------------ RUN

export interface RunInputs {
  instr: Extract<ResolvedInstruction, { kind: 'RUN' }> & RunInstr;
  config: ImageRuntimeConfig;
  stack: LayerStack;
  /** Build args in RUN's environment (effectiveArgs plus the proxy args). */
  buildArgs: Record<string, string>;
  step: string;
}

/** Runs the command in a container over the current layers; its changes become the layer. */
export async function runStep(env: StepEnv, input: RunInputs): Promise<LayerInfo | undefined> {
  const { instr, step } = input;
  if (instr.mounts.length > 0) {
    throw new BuildError('D2P_BUILD_UNSUPPORTED', `RUN --mount=type=${instr.mounts[0]?.type} is not supported by d2p yet; COPY what the command needs instead`, { step });
  }
  if (instr.security === 'insecure') throw new BuildError('D2P_BUILD_UNSUPPORTED', 'RUN --security=insecure is not supported: build containers get the same isolation as any container', { step });
  const lowerDirs = layerDirsOf(env, input.stack);
  const existedBefore = new Set(MOUNT_STUBS.filter((stub) => lowerDirs.some((dir) => exists(path.join(dir, stub)))));
  const id = `build-${randomBytes(8).toString('hex')}`;
  const config: ContainerConfig = {
    id,
    rootfs: { lowerDirs: lowerDirs.length > 0 ? [...lowerDirs].reverse() : [await emptyLayerDir(env)] },
    image: {
      env: input.config.Env ?? [],
      ...(input.config.WorkingDir ? { workingDir: input.config.WorkingDir } : {}),
      ...(input.config.User ? { user: input.config.User } : {}),
    },
    entrypoint: [],
    command: instr.command,
    env: Object.entries(input.buildArgs).map(([name, value]) => ({ name, value })),
    // BuildKit's name for the build container's host (executor/oci/spec.go).
    hostname: 'buildkitsandbox',
    networkMode: (instr.network === 'host' ? 'host' : instr.network === 'none' ? 'none' : env.network),
  };
  try {
    await env.runtime.create(config);
  } catch (e) {
    throw new BuildError('D2P_BUILD_STEP_FAILED', `cannot create the build container: ${(e as Error).message}`, { step, cause: e, user: isSpecError(e) });
  }
  try {
    await env.runtime.start(id);
    const exit = await waitOrAbort(env, id);
    forwardLog(env, env.runtime.logPath(id));
    if (exit.exitCode !== 0 || exit.signal) {
      const how = exit.signal ? `killed by ${exit.signal}` : `exit code: ${exit.exitCode}`;
      throw new BuildError('D2P_BUILD_STEP_FAILED', `process ${JSON.stringify(instr.command.join(' '))} did not complete successfully: ${how}`, { step });
    }
    const upper = path.join(env.runtime.stateDir, id, 'upper');
    removeMountStubs(upper, existedBefore);
    return await snapshotAndCommit(env, upper, true);
  } finally {
    await env.runtime.delete(id, { force: true });
  }
}

const isSpecError = (e: unknown): boolean => (e as { code?: string }).code === 'D2P_RUNTIME_INVALID_SPEC' || (e as Error).name === 'InvalidSpecError';

async function waitOrAbort(env: StepEnv, id: string): Promise<{ exitCode: number; signal?: string }> {
  const signal = env.signal;
  if (!signal) return env.runtime.wait(id);
  const onAbort = () => {
    env.runtime.kill(id, 'SIGKILL').catch((e: unknown) => env.log(`stopping build container ${id} after abort: ${(e as Error).message}`));
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const exit = await env.runtime.wait(id);
    if (signal.aborted) throw new BuildError('D2P_BUILD_ABORTED', 'build aborted', { user: false });
    return exit;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/** The shim writes Docker's json-file log ({"log":…,"stream":…,"time":…} per line). */
function forwardLog(env: StepEnv, logFile: string): void {
  let text: string;
  try {
    text = fs.readFileSync(logFile, 'utf8');
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return;
    throw e;
  }
  let pending = '';
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const record = JSON.parse(line) as { log: string };
    pending += record.log;
    const parts = pending.split('\n');
    pending = parts.pop() ?? '';
    for (const p of parts) env.log(p);
  }
  if (pending !== '') env.log(pending);
}

async function emptyLayerDir(env: StepEnv): Promise<string> {
  const dir = path.join(env.workDir, 'empty-layer');
  await fs.promises.mkdir(dir, { recursive: true, mode: 0o755 });
  return dir;
}

// ------------------------------------------------------------------------------ WORKDIR

/** Creates the WORKDIR when the image lacks it, as Docker does; no layer when it exists. */
export async function workdirStep(env: StepEnv, stack: LayerStack, dir: string, step: string): Promise<LayerInfo | undefined> {
  const staging = await stagingDir(env);
  try {
    const created = await withRootfsView(layerDirsOf(env, stack), path.join(env.workDir, 'views'), async (view) => {
      const resolved = resolveInRoot(view, dir);
      const st = statInRoot(view, resolved);
      if (st?.isDirectory()) return false;
      if (st) throw new BuildError('D2P_BUILD_INVALID', `WORKDIR ${dir}: ${resolved} exists in the image and is not a directory`, { step });
      mirrorParents(view, staging, resolved, { uid: 0, gid: 0 }, true);
      return true;
    });
    return created ? await snapshotAndCommit(env, staging, false) : undefined;
  } finally {
    await fs.promises.rm(staging, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------ COPY / ADD

/** Where a COPY reads from: the context, or the root of another stage's or image's layers. */
export type CopySource = { kind: 'context' } | { kind: 'layers'; stack: LayerStack; what: string };

export interface CopyInputs {
  instr: (CopyInstr | AddInstr) & ResolvedInstruction;
  config: ImageRuntimeConfig;
  stack: LayerStack;
  source: CopySource;
  step: string;
}

interface Owner {
  uid: number;
  gid: number;
}

interface CopyPlan {
  /** In-image destination, symlinks of the image already followed. */
  dest: string;
  intoDir: boolean;
  owner?: Owner;
  mode?: number;
}

const isUrl = (s: string): boolean => /^[a-z][a-z0-9+.-]*:\/\//i.test(s) || s.startsWith('git@');

/** Refuses what d2p cannot do before any work: remote sources, --parents. */
export function checkCopySupported(instr: CopyInstr | AddInstr, step: string): void {
  for (const s of instr.sources) {
    if (isUrl(s)) {
      throw new BuildError('D2P_BUILD_UNSUPPORTED', `${instr.kind} ${s}: remote sources are not supported: d2p builds offline; download the file into the build context and COPY it`, { step });
    }
  }
  if (instr.kind === 'COPY' && instr.parents) throw new BuildError('D2P_BUILD_UNSUPPORTED', 'COPY --parents is not supported by d2p yet', { step });
  if (instr.chmod !== undefined && !/^[0-7]{3,4}$/.test(instr.chmod)) {
    throw new BuildError('D2P_BUILD_INVALID', `--chmod=${instr.chmod}: expected an octal mode such as 0644 or 755`, { step });
  }
}

export async function copyStep(env: StepEnv, input: CopyInputs): Promise<LayerInfo | undefined> {
  const { instr, step } = input;
  checkCopySupported(instr, step);
  const staging = await stagingDir(env);
  const archives: Archive[] = [];
  try {
    await withRootfsView(layerDirsOf(env, input.stack), path.join(env.workDir, 'views'), async (view) => {
      const plan = planCopy(view, input);
      if (input.source.kind === 'context') copyFromContext(env, view, staging, plan, input, archives);
      else {
        await withRootfsView(layerDirsOf(env, input.source.stack), path.join(env.workDir, 'views'), async (sourceRoot) =>
          copyFromRoot(sourceRoot, view, staging, plan, input),
        );
      }
      for (const file of instr.files) {
        const target = plan.intoDir ? path.posix.join(plan.dest, file.name) : plan.dest;
        mirrorParents(view, staging, path.posix.dirname(target), plan.owner ?? { uid: 0, gid: 0 }, true);
        const abs = path.join(staging, target);
        fs.writeFileSync(abs, file.content);
        setMeta(abs, plan.mode ?? 0o644, plan.owner ?? { uid: 0, gid: 0 });
      }
    });
    await unpackArchives(archives);
    return await snapshotAndCommit(env, staging, false);
  } finally {
    await fs.promises.rm(staging, { recursive: true, force: true });
  }
}

function planCopy(view: string, input: CopyInputs): CopyPlan {
  const { instr, config } = input;
  const destText = instr.dest;
  const absolute = path.posix.resolve(config.WorkingDir || '/', destText);
  const dirHint = destText.endsWith('/') || destText === '.' || destText.endsWith('/.') || destText === '..';
  const dest = resolveInRoot(view, absolute);
  const st = statInRoot(view, dest);
  const count = instr.sources.length + instr.files.length;
  const multiple = count > 1 || instr.sources.some(hasGlob);
  if (multiple && !dirHint && !st?.isDirectory()) {
    throw new BuildError('D2P_BUILD_INVALID', `When using ${instr.kind} with more than one source file, the destination must be a directory and end with a / (${destText})`, { step: input.step });
  }
  const plan: CopyPlan = { dest, intoDir: dirHint || multiple || st?.isDirectory() === true };
  if (instr.chown !== undefined) plan.owner = resolveChown(view, instr.chown, input.step);
  if (instr.chmod !== undefined) plan.mode = parseInt(instr.chmod, 8);
  return plan;
}

/** `--chown=user:group` against the image's /etc/passwd and /etc/group (names or numbers). */
function resolveChown(view: string, chown: string, step: string): Owner {
  try {
    const user = resolveUser(chown, [view]);
    // Docker: a user name alone gives that user's primary group... except for --chown,
    // where "--chown=10" means 10:10 (Dockerfile reference: "If only a user is given, the group is the same").
    if (!chown.includes(':') && /^\d+$/.test(chown)) return { uid: user.uid, gid: user.uid };
    return { uid: user.uid, gid: user.gid };
  } catch (e) {
    throw new BuildError('D2P_BUILD_INVALID', `--chown=${chown}: ${(e as Error).message}`, { step, cause: e });
  }
}

function copyFromContext(env: StepEnv, view: string, staging: string, plan: CopyPlan, input: CopyInputs, archives: Archive[]): void {
  const ctx = env.context;
  const unpack = input.instr.kind === 'ADD' && input.instr.unpack !== false;
  const owner = plan.owner ?? { uid: 0, gid: 0 };
  const exclude = input.instr.exclude.map(globRegExp);
  for (const source of input.instr.sources) {
    for (const rel of matchSources(ctx, source)) {
      const entry = ctx.entries.get(rel);
      if (!entry) continue;
      const srcAbs = path.join(ctx.dir, rel);
      if (entry.type === 'dir') {
        // "The directory itself is not copied, just its contents" (Dockerfile reference, COPY).
        mirrorParents(view, staging, plan.dest, owner, true, entry.mode);
        for (const inner of entriesUnder(ctx, rel)) {
          if (inner.rel === rel) continue;
          const innerRel = rel === '.' ? inner.rel : inner.rel.slice(rel.length + 1);
          if (exclude.some((re) => re.test(innerRel) || re.test(path.posix.basename(innerRel)))) continue;
          placeEntry(path.join(ctx.dir, inner.rel), path.join(staging, plan.dest, innerRel), plan, owner);
        }
        continue;
      }
      // A symlink named as a source is followed, but only inside the context (BuildKit's FollowPaths).
      const real = entry.type === 'symlink' ? followInContext(ctx.dir, srcAbs, input.step) : srcAbs;
      const kind = unpack ? archiveKind(real) : undefined;
      if (kind === 'unsupported') throw new BuildError('D2P_BUILD_UNSUPPORTED', `ADD ${rel}: bzip2 and xz archives are not unpacked by d2p yet; use a plain or gzip tar`, { step: input.step });
      if (kind === 'tar') {
        mirrorParents(view, staging, plan.dest, owner, true);
        archives.push({ file: real, destDir: path.join(staging, plan.dest) });
        continue;
      }
      const target = plan.intoDir ? path.posix.join(plan.dest, path.posix.basename(rel)) : plan.dest;
      mirrorParents(view, staging, path.posix.dirname(target), owner, true);
      placeEntry(real, path.join(staging, target), plan, owner);
    }
  }
}

function followInContext(contextDir: string, abs: string, step: string): string {
  const real = fs.realpathSync(abs);
  const rel = path.relative(fs.realpathSync(contextDir), real);
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw new BuildError('D2P_BUILD_INVALID', `${abs}: symlink points outside the build context`, { step });
  return real;
}

/** Copies one file system object into the staging dir with the COPY's owner and mode. */
function placeEntry(srcAbs: string, destAbs: string, plan: CopyPlan, owner: Owner): void {
  const st = fs.lstatSync(srcAbs);
  const who = plan.owner ?? owner;
  if (st.isDirectory()) {
    fs.mkdirSync(destAbs, { recursive: true });
    setMeta(destAbs, plan.mode ?? st.mode & 0o7777, who);
    fs.utimesSync(destAbs, st.atime, st.mtime);
  } else if (st.isSymbolicLink()) {
    fs.symlinkSync(fs.readlinkSync(srcAbs), destAbs);
    fs.lchownSync(destAbs, who.uid, who.gid);
    fs.lutimesSync(destAbs, st.atime, st.mtime);
  } else if (st.isFile()) {
    fs.copyFileSync(srcAbs, destAbs);
    setMeta(destAbs, plan.mode ?? st.mode & 0o7777, who);
    fs.utimesSync(destAbs, st.atime, st.mtime);
  }
  // Device nodes, fifos and sockets are not copied: BuildKit's copy skips sockets, and a
  // whiteout device seen in a one-layer view is no file of the image.
}

/** chmod after chown: chown(2) clears setuid/setgid bits. */
function setMeta(abs: string, mode: number, owner: Owner): void {
  fs.chownSync(abs, owner.uid, owner.gid);
  fs.chmodSync(abs, mode);
}

function copyFromRoot(sourceRoot: string, view: string, staging: string, plan: CopyPlan, input: CopyInputs): void {
  const what = input.source.kind === 'layers' ? input.source.what : 'source';
  for (const source of input.instr.sources) {
    for (const inImage of matchInRoot(sourceRoot, source, what, input.step)) {
      const resolved = resolveInRoot(sourceRoot, inImage);
      const abs = path.join(sourceRoot, resolved);
      const st = fs.lstatSync(abs);
      const keep = { uid: st.uid, gid: st.gid };
      if (st.isDirectory()) {
        mirrorParents(view, staging, plan.dest, plan.owner ?? keep, true, st.mode & 0o7777);
        copyTree(abs, path.join(staging, plan.dest), plan);
        continue;
      }
      const target = plan.intoDir ? path.posix.join(plan.dest, path.posix.basename(resolved)) : plan.dest;
      mirrorParents(view, staging, path.posix.dirname(target), plan.owner ?? { uid: 0, gid: 0 }, true);
      placeEntry(abs, path.join(staging, target), plan, keep);
    }
  }
}

/** Source paths in another stage or image: absolute in that image; a glob only in the last component. */
function matchInRoot(root: string, source: string, what: string, step: string): string[] {
  const absolute = path.posix.resolve('/', source);
  if (!hasGlob(absolute)) {
    if (!statInRoot(root, resolveInRoot(root, absolute))) throw new BuildError('D2P_BUILD_SOURCE_NOT_FOUND', `${JSON.stringify(source)}: not found in ${what}`, { step });
    return [absolute];
  }
  const dir = path.posix.dirname(absolute);
  if (hasGlob(dir)) throw new BuildError('D2P_BUILD_UNSUPPORTED', `${JSON.stringify(source)}: wildcards in --from sources are supported in the last path component only`, { step });
  const re = globRegExp(path.posix.basename(absolute));
  const resolvedDir = resolveInRoot(root, dir);
  const names = statInRoot(root, resolvedDir)?.isDirectory() ? fs.readdirSync(path.join(root, resolvedDir)).sort() : [];
  const hits = names.filter((n) => re.test(n)).map((n) => path.posix.join(dir, n));
  if (hits.length === 0) throw new BuildError('D2P_BUILD_SOURCE_NOT_FOUND', `${JSON.stringify(source)}: no source files were specified (nothing matches in ${what})`, { step });
  return hits;
}

/** Copies a directory's contents, owners kept (unless --chown), symlinks as symlinks. */
function copyTree(srcDir: string, destDir: string, plan: CopyPlan): void {
  for (const name of fs.readdirSync(srcDir).sort()) {
    const src = path.join(srcDir, name);
    const dest = path.join(destDir, name);
    const st = fs.lstatSync(src);
    const keep = { uid: st.uid, gid: st.gid };
    placeEntry(src, dest, plan, keep);
    if (st.isDirectory()) {
      copyTree(src, dest, plan);
      fs.utimesSync(dest, st.atime, st.mtime);
    }
  }
}

/**
 * Creates `inImageDir` and its parents in the staging dir. A parent the image already has
 * is created with the image's mode, owner and mtime, so the layer does not change it (in
 * a layer a directory entry replaces the metadata of the one below); a new one gets
 * `owner` and 0755 (or `leafMode` for the last component).
 */
function mirrorParents(view: string, staging: string, inImageDir: string, owner: Owner, includeLeaf: boolean, leafMode?: number): void {
  const parts = inImageDir.split('/').filter(Boolean);
  const upto = includeLeaf ? parts.length : parts.length - 1;
  for (let i = 0; i < upto; i++) {
    const rel = parts.slice(0, i + 1).join('/');
    const abs = path.join(staging, rel);
    if (exists(abs)) continue;
    fs.mkdirSync(abs);
    const existing = statInRoot(view, `/${rel}`);
    if (existing?.isDirectory()) {
      setMeta(abs, existing.mode & 0o7777, { uid: existing.uid, gid: existing.gid });
      fs.utimesSync(abs, existing.atime, existing.mtime);
    } else setMeta(abs, i === parts.length - 1 && leafMode !== undefined ? leafMode : 0o755, owner);
  }
}

/**
 * ADD of a local tar archive (plain or gzip) unpacks it at the destination (Dockerfile
 * reference, ADD: "a local tar archive in a recognized compression format… is unpacked as
 * a directory"); node-tar refuses absolute paths and ".." entries by default.
 */
async function unpackArchives(archives: readonly Archive[]): Promise<void> {
  for (const a of archives) {
    await fs.promises.mkdir(a.destDir, { recursive: true });
    await tar.x({ file: a.file, cwd: a.destDir, preserveOwner: true });
  }
}

interface Archive {
  file: string;
  destDir: string;
}

function archiveKind(file: string): 'tar' | 'unsupported' | undefined {
  const fd = fs.openSync(file, 'r');
  const head = Buffer.alloc(512);
  let n: number;
  try {
    n = fs.readSync(fd, head, 0, 512, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (n >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'tar';
  if (n >= 3 && head.subarray(0, 3).toString('latin1') === 'BZh') return 'unsupported';
  if (n >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'unsupported';
  if (n >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar') return 'tar';
  return undefined;
}

async function stagingDir(env: StepEnv): Promise<string> {
  const parent = path.join(env.workDir, 'staging');
  await fs.promises.mkdir(parent, { recursive: true, mode: 0o700 });
  return fs.promises.mkdtemp(path.join(parent, 'step-'));
}
