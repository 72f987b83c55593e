// d2p image pull|ls|inspect|rm|tag|push|prune|save|load|login|logout — the docker image
// commands, acting on the local image store directly: the CLI runs as root on the machine
// that owns the store, as `docker` talks to its engine, so no daemon is needed except to
// learn which Containers use an image (rm, prune), asked only if a daemon answers.
// Output follows the docker CLI's wording so scripts and habits carry over.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import * as tar from 'tar';
import { DEFAULT_NAMESPACE } from '../../api/meta';
import type { Container } from '../../api/types';
import type { Client } from '../../client';
import {
  DEFAULT_PLATFORM,
  DOCKER_HUB,
  ImageStore,
  familiarReference,
  formatPlatform,
  formatReference,
  isImageError,
  loadImages,
  login,
  logout,
  parseReference,
  pushImage,
  referenceName,
  saveOciLayout,
  type StoredImage,
} from '../../images/index';
import { ANNOTATION } from '../../runtime/oci';
import { registryAuthFile } from '../../../controllers/image';
import { connect } from '../connect';
import type { CommandContext } from '../context';
import { runSubcommands } from '../subcommands';
import { formatError } from '../format-error';
import { CliError, ReportedError } from '../io';
import { humanSize, renderTable, shortDigest } from '../printers';
import { ProgressDisplay, pullProgress, pushProgress, shortId } from '../progress';
import { humanDuration } from './ps';

export interface ImageCommandOptions {
  /** The subcommand and its arguments: ["pull", "--platform", "linux/arm64", "nginx"]. */
  args: string[];
  /** Where --password-stdin reads; default process.stdin. */
  stdin?: NodeJS.ReadableStream;
}

export const IMAGE_SUBCOMMANDS = ['pull', 'ls', 'inspect', 'rm', 'tag', 'push', 'prune', 'save', 'load', 'login', 'logout'] as const;

export async function imageCommand(opts: ImageCommandOptions, ctx: CommandContext): Promise<number> {
  return runSubcommands((setStatus) => buildImageProgram(ctx, opts, setStatus), opts.args);
}

type Finish = (status: number) => void;

function buildImageProgram(ctx: CommandContext, opts: ImageCommandOptions, finish: Finish): Command {
  const program = new Command('d2p image')
    .description('manage images in the local store (docker image …)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => void ctx.io.stdout.write(s), writeErr: (s) => void ctx.io.stderr.write(s) })
    .showHelpAfterError("(run 'd2p image --help' for usage)");
  const act =
    <A extends unknown[]>(fn: (...args: A) => Promise<number>) =>
    async (...args: A) =>
      finish(await fn(...args));

  program
    .command('pull')
    .description('download an image from a registry')
    .argument('<ref>', 'image reference, e.g. nginx:1.27 or 127.0.0.1:5000/app@sha256:…')
    .option('--platform <os/arch[/variant]>', 'platform to pick from a multi-platform image (default linux/amd64)')
    .option('-q, --quiet', 'print only the image reference')
    .action(act((ref: string, flags: { platform?: string; quiet?: boolean }) => pullImage(ctx, ref, flags)));

  program
    .command('ls')
    .alias('list')
    .description('list images')
    .option('-q, --quiet', 'only image IDs')
    .option('--digests', 'show digests')
    .option('--no-trunc', 'do not truncate IDs')
    .action(act((flags: ListFlags) => listImages(ctx, flags)));

  program
    .command('inspect')
    .description('show images as JSON')
    .argument('<refs...>', 'image references or IDs')
    .action(act((refs: string[]) => inspectImages(ctx, refs)));

  program
    .command('rm')
    .alias('remove')
    .alias('rmi')
    .description('remove images (untag, then delete when no tag is left)')
    .argument('<refs...>', 'image references or IDs')
    .option('-f, --force', 'remove even if a container uses it')
    .action(act((refs: string[], flags: { force?: boolean }) => removeImages(ctx, refs, flags.force ?? false)));

  program
    .command('tag')
    .description('create a tag DST that refers to SRC')
    .argument('<src>', 'image reference or ID')
    .argument('<dst>', 'new reference, e.g. 127.0.0.1:5000/app:v2')
    .action(act((src: string, dst: string) => tagImage(ctx, src, dst)));

  program
    .command('push')
    .description('upload an image to its registry')
    .argument('<ref>', 'image reference')
    .option('-q, --quiet', 'no progress output')
    .action(act((ref: string, flags: { quiet?: boolean }) => pushToRegistry(ctx, ref, flags.quiet ?? false)));

  program
    .command('prune')
    .description('remove dangling images (-a: every image no container uses) and the blobs and layers nothing refers to')
    .option('-a, --all', 'remove all images not used by a container, not only untagged ones')
    .option('-f, --force', 'accepted for docker compatibility: d2p does not ask for confirmation')
    .action(act((flags: { all?: boolean }) => pruneImages(ctx, flags.all ?? false)));

  program
    .command('save')
    .description('write images to a tar archive (an OCI image layout; --format docker adds docker save’s manifest.json)')
    .argument('<refs...>', 'image references or IDs')
    .option('-o, --output <file>', 'archive to write')
    .option('--format <format>', 'oci or docker', 'oci')
    .action(act((refs: string[], flags: { output?: string; format: string }) => saveImages(ctx, refs, flags)));

  program
    .command('load')
    .description('import images from an OCI layout tar or a docker save archive')
    .option('-i, --input <file>', 'archive (or OCI layout directory) to read')
    .option('--platform <os/arch[/variant]>', 'platform to import from a multi-platform archive')
    .option('-q, --quiet', 'print nothing')
    .action(act((flags: { input?: string; platform?: string; quiet?: boolean }) => loadArchive(ctx, flags)));

  program
    .command('login')
    .description('check credentials against a registry and store them for pulls and pushes')
    .argument('[registry]', 'registry host[:port]', DOCKER_HUB)
    .option('-u, --username <user>', 'user name')
    .option('-p, --password <password>', 'password (visible to other users of this machine: prefer --password-stdin)')
    .option('--password-stdin', 'read the password from stdin')
    .action(act((registry: string, flags: LoginFlags) => loginToRegistry(ctx, registry, flags, opts.stdin ?? process.stdin)));

  program
    .command('logout')
    .description('forget the stored credentials of a registry')
    .argument('[registry]', 'registry host[:port]', DOCKER_HUB)
    .action(act(async (registry: string) => logoutOfRegistry(ctx, registry)));

  return program;
}

const openStore = (ctx: CommandContext) => ImageStore.open(ctx.paths.images);
const isTerminal = (ctx: CommandContext) => (ctx.io.stdout as { isTTY?: boolean }).isTTY === true;
const terminalColumns = (ctx: CommandContext) => (ctx.io.stdout as { columns?: number }).columns;

function notFound(ref: string): CliError {
  return new CliError(`No such image: ${ref}`, { code: 'D2P_IMAGE_NOT_FOUND' });
}

/** "nginx:latest" for docker.io/library/nginx:latest; other registries keep their host. */
function familiar(reference: string): string {
  return familiarReference(parseReference(reference));
}

// ------------------------------------------------------------------------------ pull

async function pullImage(ctx: CommandContext, ref: string, flags: { platform?: string; quiet?: boolean }): Promise<number> {
  const reference = parseReference(ref);
  const store = await openStore(ctx);
  const before = await store.get(ref);
  const display = new ProgressDisplay(ctx.io.stdout, { tty: isTerminal(ctx), columns: terminalColumns(ctx) });
  if (!flags.quiet) display.message(`${reference.tag ?? reference.digest}: Pulling from ${reference.repository}`);
  const image = await store.pull(ref, {
    authFile: registryAuthFile(ctx.paths),
    ...(flags.platform ? { platform: flags.platform } : {}),
    ...(flags.quiet ? {} : { onProgress: pullProgress(display) }),
  });
  if (!flags.quiet) {
    const repoDigest = image.repoDigests.find((d) => d.startsWith(`${referenceName(reference)}@`));
    display.message(`Digest: ${repoDigest ? repoDigest.slice(repoDigest.indexOf('@') + 1) : image.digest}`);
    const upToDate = before?.digest === image.digest;
    display.message(`Status: ${upToDate ? 'Image is up to date for' : 'Downloaded newer image for'} ${familiarReference(reference)}`);
  }
  ctx.io.stdout.write(`${formatReference(reference)}\n`);
  return 0;
}

// ------------------------------------------------------------------------------ ls

interface ListFlags {
  quiet?: boolean;
  digests?: boolean;
  /** commander's --no-trunc sets trunc to false. */
  trunc?: boolean;
}

async function listImages(ctx: CommandContext, flags: ListFlags): Promise<number> {
  const store = await openStore(ctx);
  const images = (await store.list()).sort((a, b) => createdOf(b) - createdOf(a) || a.id.localeCompare(b.id));
  const id = (image: StoredImage) => (flags.trunc === false ? image.id : shortDigest(image.id));
  if (flags.quiet) {
    for (const imageId of new Set(images.map(id))) ctx.io.stdout.write(`${imageId}\n`);
    return 0;
  }
  const header = ['REPOSITORY', 'TAG', ...(flags.digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'];
  const rows = images.flatMap((image) =>
    repositoryRows(image).map((r) => [
      r.repository,
      r.tag,
      ...(flags.digests ? [r.digest] : []),
      id(image),
      createdAgo(image, ctx.now()),
      humanSize(image.size),
    ]),
  );
  ctx.io.stdout.write(renderTable([header, ...rows]));
  return 0;
}

/** One row per tag, as `docker images` does; an untagged image is "<none> <none>". */
function repositoryRows(image: StoredImage): { repository: string; tag: string; digest: string }[] {
  const digestFor = (name: string) => {
    const repoDigest = image.repoDigests.find((d) => d.startsWith(`${name}@`));
    return repoDigest ? repoDigest.slice(repoDigest.indexOf('@') + 1) : '<none>';
  };
  if (image.repoTags.length === 0) {
    const first = image.repoDigests[0];
    const name = first ? first.slice(0, first.indexOf('@')) : undefined;
    return [{ repository: name ? familiar(name) : '<none>', tag: '<none>', digest: name ? digestFor(name) : '<none>' }];
  }
  return image.repoTags.map((t) => {
    const ref = parseReference(t);
    return { repository: familiarReference({ registry: ref.registry, repository: ref.repository }), tag: ref.tag ?? '<none>', digest: digestFor(referenceName(ref)) };
  });
}

function createdOf(image: StoredImage): number {
  const t = Date.parse(image.config.created ?? image.createdAt);
  return Number.isNaN(t) ? 0 : t;
}

/** CREATED is the image config's creation time, as docker shows it, not the time of the pull. */
function createdAgo(image: StoredImage, now: number): string {
  const created = createdOf(image);
  return created === 0 ? 'N/A' : `${humanDuration(now - created)} ago`;
}

// ------------------------------------------------------------------------------ inspect

async function inspectImages(ctx: CommandContext, refs: string[]): Promise<number> {
  const store = await openStore(ctx);
  const found: object[] = [];
  let missing = 0;
  for (const ref of refs) {
    const image = await store.get(ref);
    if (image) found.push(inspectView(image));
    else {
      missing++;
      ctx.io.stderr.write(formatError(notFound(ref)));
    }
  }
  ctx.io.stdout.write(`${JSON.stringify(found, null, 4)}\n`);
  if (missing > 0) throw new ReportedError();
  return 0;
}

/** The keys of `docker image inspect`, so `jq '.[0].Config.Env'` habits keep working. */
export function inspectView(image: StoredImage): object {
  const c = image.config;
  const set = (keys: string[]) => (keys.length > 0 ? Object.fromEntries(keys.map((k) => [k, {}])) : null);
  return {
    Id: image.id,
    RepoTags: image.repoTags.map(familiar),
    RepoDigests: image.repoDigests.map(familiar),
    Descriptor: { mediaType: image.mediaType, digest: image.digest },
    Created: c.created ?? image.createdAt,
    Architecture: image.platform.architecture,
    ...(image.platform.variant ? { Variant: image.platform.variant } : {}),
    Os: image.platform.os,
    Size: image.size,
    Config: {
      User: c.user,
      ExposedPorts: set(c.exposedPorts),
      Env: c.env,
      Cmd: c.cmd,
      Entrypoint: c.entrypoint,
      Volumes: set(c.volumes),
      WorkingDir: c.workingDir,
      Labels: Object.keys(c.labels).length > 0 ? c.labels : null,
      ...(c.stopSignal ? { StopSignal: c.stopSignal } : {}),
      ...(c.healthcheck
        ? {
            Healthcheck: {
              Test: c.healthcheck.test,
              Interval: c.healthcheck.interval,
              Timeout: c.healthcheck.timeout,
              StartPeriod: c.healthcheck.startPeriod,
              StartInterval: c.healthcheck.startInterval,
              Retries: c.healthcheck.retries,
            },
          }
        : {}),
    },
    GraphDriver: { Name: 'overlay', Data: { LowerDir: [...image.layerDirs].reverse().join(':') } },
    RootFS: { Type: 'layers', Layers: image.layers.map((l) => l.diffID) },
    Layers: image.layers,
  };
}

// ------------------------------------------------------------------------------ rm

async function removeImages(ctx: CommandContext, refs: string[], force: boolean): Promise<number> {
  const store = await openStore(ctx);
  const uses = force ? [] : await containerImageUses(ctx, store, 'removing');
  let failed = 0;
  for (const ref of refs) {
    try {
      await removeOne(ctx, store, ref, uses);
    } catch (err) {
      // docker rmi goes on with the other images and fails at the end.
      failed++;
      ctx.io.stderr.write(formatError(err, { debug: ctx.debug }));
    }
  }
  if (failed > 0) throw new ReportedError();
  return 0;
}

async function removeOne(ctx: CommandContext, store: ImageStore, ref: string, uses: readonly ContainerUse[]): Promise<void> {
  const image = await store.get(ref);
  if (!image) throw notFound(ref);
  const users = uses.filter((u) => u.digest === image.digest).map((u) => u.container);
  if (users.length > 0) {
    throw new CliError(`unable to remove image "${ref}" (must force with -f): image is being used by container ${users.join(', ')}`, {
      code: 'D2P_IMAGE_IN_USE',
    });
  }
  const { untagged, deleted } = await store.remove(ref);
  for (const t of untagged) ctx.io.stdout.write(`Untagged: ${familiar(t)}\n`);
  if (deleted.length > 0) ctx.io.stdout.write(`Deleted: ${image.id}\n`);
}

interface ContainerUse {
  /** "namespace/name" */
  container: string;
  /** Manifest digest of the stored image the container's spec.image names. */
  digest: string;
}

/**
 * Which stored image each Container object names, asked of the daemon if one answers.
 * Without a daemon there is nobody to ask: say so, and let the caller go on, as the
 * containers' running bundles keep their layers anyway (see layersInUseByBundles).
 */
async function containerImageUses(ctx: CommandContext, store: ImageStore, doing: string): Promise<ContainerUse[]> {
  const client = await connectIfRunning(ctx);
  if (!client) {
    ctx.io.stderr.write(`warning: no d2p daemon answers on ${ctx.paths.socket}; ${doing} images without checking which containers use them\n`);
    return [];
  }
  try {
    const containers = (await client.containers.list()).items as Container[];
    const uses: ContainerUse[] = [];
    for (const c of containers) {
      const image = await resolveQuietly(store, c.spec?.image);
      if (image) uses.push({ container: `${c.metadata.namespace ?? DEFAULT_NAMESPACE}/${c.metadata.name}`, digest: image.digest });
    }
    return uses;
  } finally {
    await client.close();
  }
}

async function connectIfRunning(ctx: CommandContext): Promise<Client | undefined> {
  try {
    return await connect(ctx.paths, false);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'D2P_DAEMON_UNREACHABLE') return undefined;
    throw err;
  }
}

/** A container naming an unparseable image uses no stored image (its own controller reports the bad name). */
async function resolveQuietly(store: ImageStore, ref: string | undefined): Promise<StoredImage | undefined> {
  if (!ref) return undefined;
  try {
    return await store.get(ref);
  } catch (err) {
    if (isImageError(err, 'D2P_IMAGE_INVALID_REFERENCE')) return undefined;
    throw err;
  }
}

// ------------------------------------------------------------------------------ tag

async function tagImage(ctx: CommandContext, src: string, dst: string): Promise<number> {
  const store = await openStore(ctx);
  if (!(await store.get(src))) throw notFound(src);
  await store.tag(src, dst);
  return 0;
}

// ------------------------------------------------------------------------------ push

async function pushToRegistry(ctx: CommandContext, ref: string, quiet: boolean): Promise<number> {
  const reference = parseReference(ref);
  const store = await openStore(ctx);
  const image = await store.get(ref);
  if (!image) throw new CliError(`An image does not exist locally with the tag: ${familiarReference(reference)}`, { code: 'D2P_IMAGE_NOT_FOUND' });
  const display = new ProgressDisplay(ctx.io.stdout, { tty: isTerminal(ctx), columns: terminalColumns(ctx) });
  const layers = image.layers.map((l) => l.digest);
  if (!quiet) {
    display.message(`The push refers to repository [${referenceName(reference)}]`);
    for (const digest of layers) display.update(shortId(digest), 'Preparing');
  }
  const pushed = await pushImage(store, ref, {
    authFile: registryAuthFile(ctx.paths),
    ...(quiet ? {} : { onProgress: pushProgress(display, layers) }),
  });
  const { bytes } = await store.manifestOf(pushed.digest);
  if (!quiet) display.message(`${reference.tag ?? reference.digest}: digest: ${pushed.digest} size: ${bytes.length}`);
  else ctx.io.stdout.write(`${formatReference(reference)}\n`);
  return 0;
}

// ------------------------------------------------------------------------------ prune

async function pruneImages(ctx: CommandContext, all: boolean): Promise<number> {
  const store = await openStore(ctx);
  const used = new Set((await containerImageUses(ctx, store, 'pruning')).map((u) => u.digest));
  const lines: string[] = [];
  for (const image of await store.list()) {
    const unused = !used.has(image.digest);
    const dangling = image.repoTags.length === 0;
    if (!unused || !(all || dangling)) continue;
    const { untagged, deleted } = await store.remove(image.digest);
    lines.push(...untagged.map((t) => `untagged: ${familiar(t)}`));
    if (deleted.length > 0) lines.push(`deleted: ${image.id}`);
  }
  const blobsBefore = await blobBytes(store);
  const removed = await store.prune({ keepLayers: await layersInUseByBundles(ctx, store) });
  const reclaimed = blobsBefore - (await blobBytes(store));
  if (lines.length > 0) ctx.io.stdout.write(`Deleted Images:\n${lines.join('\n')}\n\n`);
  if (removed.layers.length > 0) ctx.io.stdout.write(`Deleted layers: ${removed.layers.length}\n`);
  ctx.io.stdout.write(`Total reclaimed space: ${humanSize(reclaimed)}\n`);
  return 0;
}

/** Bytes of the compressed blobs: what a prune gives back, without walking extracted trees. */
async function blobBytes(store: ImageStore): Promise<number> {
  const dir = path.join(store.root, 'blobs', 'sha256');
  let total = 0;
  for (const name of await fs.readdir(dir)) total += (await fs.lstat(path.join(dir, name))).size;
  return total;
}

/**
 * diffIDs of the layers that container bundles (<root>/containers/<id>/config.json) have
 * as overlay lowerdirs: a container keeps its layers even when its image was removed with
 * -f, as Docker keeps a removed image's layers while a container uses them.
 */
async function layersInUseByBundles(ctx: CommandContext, store: ImageStore): Promise<string[]> {
  const layerRoot = path.join(store.root, 'layers', 'sha256') + path.sep;
  let ids: string[];
  try {
    ids = await fs.readdir(ctx.paths.containers);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const diffIDs: string[] = [];
  for (const id of ids) {
    const overlay = await overlayOptionsOf(path.join(ctx.paths.containers, id, 'config.json'));
    const lower = overlay?.split(',').find((o) => o.startsWith('lowerdir='));
    for (const dir of lower?.slice('lowerdir='.length).split(':') ?? []) {
      if (dir.startsWith(layerRoot)) diffIDs.push(`sha256:${path.basename(dir)}`);
    }
  }
  return diffIDs;
}

async function overlayOptionsOf(configFile: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await fs.readFile(configFile, 'utf8');
  } catch (err) {
    // A container directory being created or removed has no config.json (yet, any more).
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const config = JSON.parse(text) as { annotations?: Record<string, string> };
  return config.annotations?.[ANNOTATION.overlay];
}

// ------------------------------------------------------------------------------ save / load

async function saveImages(ctx: CommandContext, refs: string[], flags: { output?: string; format: string }): Promise<number> {
  if (!flags.output) throw new CliError('missing -o FILE: d2p image save writes the archive to a file', { code: 'D2P_USAGE' });
  if (flags.format !== 'oci' && flags.format !== 'docker') {
    throw new CliError(`--format "${flags.format}" is not supported: use oci or docker`, { code: 'D2P_USAGE' });
  }
  const store = await openStore(ctx);
  for (const ref of refs) if (!(await store.get(ref))) throw notFound(ref);
  const dest = path.resolve(flags.output);
  // Built beside the destination and renamed into place, so a failed save leaves no half archive.
  const work = path.join(path.dirname(dest), `.${path.basename(dest)}.d2p-save-${process.pid}-${randomBytes(4).toString('hex')}`);
  const layout = `${work}.layout`;
  const archive = `${work}.tar`;
  try {
    await saveOciLayout(store, refs, layout);
    const entries = ['oci-layout', 'index.json', 'blobs'];
    if (flags.format === 'docker') {
      await fs.writeFile(path.join(layout, 'manifest.json'), JSON.stringify(await dockerSaveManifest(store, refs)));
      entries.push('manifest.json');
    }
    await tar.create({ cwd: layout, file: archive, portable: true }, entries);
    await fs.rename(archive, dest);
  } finally {
    await fs.rm(layout, { recursive: true, force: true });
    await fs.rm(archive, { force: true });
  }
  return 0;
}

/**
 * The manifest.json of `docker save` (Docker ≥ 25 writes it next to the OCI layout in one
 * archive, moby image/tarexport): paths of the config and layer blobs inside the layout.
 */
async function dockerSaveManifest(store: ImageStore, refs: string[]): Promise<object[]> {
  const blob = (digest: string) => `blobs/sha256/${digest.slice('sha256:'.length)}`;
  const out: object[] = [];
  for (const ref of refs) {
    const { image, manifest } = await store.manifestOf(ref);
    const named = namedTag(ref, image);
    out.push({
      Config: blob(manifest.config.digest),
      RepoTags: named ? [named] : image.repoTags.map(familiar),
      Layers: manifest.layers.map((l) => blob(l.digest)),
    });
  }
  return out;
}

/** The tag `ref` names, when it is one of the image's tags (saving by ID keeps all tags). */
function namedTag(ref: string, image: StoredImage): string | undefined {
  try {
    const parsed = parseReference(ref);
    if (parsed.digest === undefined && image.repoTags.includes(formatReference(parsed))) return familiarReference(parsed);
  } catch (err) {
    // An image ID is not a reference; then every tag of the image goes into the archive.
    if (!isImageError(err, 'D2P_IMAGE_INVALID_REFERENCE')) throw err;
  }
  return undefined;
}

async function loadArchive(ctx: CommandContext, flags: { input?: string; platform?: string; quiet?: boolean }): Promise<number> {
  if (!flags.input) throw new CliError('missing -i FILE: d2p image load reads an archive file', { code: 'D2P_USAGE' });
  const store = await openStore(ctx);
  const loaded = await loadImages(store, path.resolve(flags.input), flags.platform ? { platform: flags.platform } : {});
  if (flags.quiet) return 0;
  for (const image of loaded) {
    if (image.repoTags.length === 0) ctx.io.stdout.write(`Loaded image ID: ${image.id}\n`);
    for (const t of image.repoTags) ctx.io.stdout.write(`Loaded image: ${familiar(t)}\n`);
  }
  if (loaded.length === 0) ctx.io.stderr.write(`warning: ${flags.input} holds no image for platform ${flags.platform ?? formatPlatform(DEFAULT_PLATFORM)}\n`);
  return 0;
}

// ------------------------------------------------------------------------------ login / logout

interface LoginFlags {
  username?: string;
  password?: string;
  passwordStdin?: boolean;
}

async function loginToRegistry(ctx: CommandContext, registry: string, flags: LoginFlags, stdin: NodeJS.ReadableStream): Promise<number> {
  if (flags.password !== undefined && flags.passwordStdin) throw new CliError('--password and --password-stdin are mutually exclusive', { code: 'D2P_USAGE' });
  if (!flags.username) throw new CliError('missing -u USER: d2p login does not prompt', { code: 'D2P_USAGE' });
  let password = flags.password;
  if (flags.passwordStdin) password = await readPassword(stdin);
  else if (password !== undefined) ctx.io.stderr.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
  if (!password) throw new CliError('missing password: pass --password-stdin (or -p); d2p login does not prompt', { code: 'D2P_USAGE' });
  await login(registry, flags.username, password, { authFile: registryAuthFile(ctx.paths) });
  ctx.io.stdout.write('Login Succeeded\n');
  return 0;
}

/** The whole of stdin without its final line break, as docker's --password-stdin reads it. */
async function readPassword(stdin: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

function logoutOfRegistry(ctx: CommandContext, registry: string): number {
  const host = registry.includes('/') ? parseReference(registry).registry : registry;
  if (logout(host, registryAuthFile(ctx.paths))) ctx.io.stdout.write(`Removing login credentials for ${host}\n`);
  else ctx.io.stdout.write(`Not logged in to ${host}\n`);
  return 0;
}
