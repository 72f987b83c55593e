// d2p ps — docker compose ps: the project's containers with NAME, IMAGE, COMMAND, SERVICE,
// CREATED, STATUS and PORTS, worded as Docker words them. This module also holds what the
// other Compose commands (up, down, logs, exec, stats…) share: which project the command
// is about, and which Containers belong to it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_NAMESPACE } from '../../api/meta';
import { COMPOSE_LABELS, type Container, type Image, type ImageConfig } from '../../api/types';
import type { Client } from '../../client';
import type { CommandContext } from '../context';
import { CliError } from '../io';
import { containerLabel, serviceOf } from '../container-state';
import { lazy } from '../lazy';
import { formatPorts, renderTable } from '../printers';

// ------------------------------------------------------------------------------ project

/** -f/-p/--profile as every Compose command takes them. */
export interface ProjectFlags {
  files?: string[];
  projectName?: string;
  profiles?: string[];
}

/** The names `docker compose` looks for, in its order (compose-go cli.DefaultFileNames). */
export const COMPOSE_FILE_NAMES = ['compose.yaml', 'compose.yml', 'docker-compose.yaml', 'docker-compose.yml'];

/** The Compose file of `dir` or of its nearest parent that has one, as docker compose searches. */
export function findComposeFile(dir: string): string | undefined {
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    for (const name of COMPOSE_FILE_NAMES) {
      const candidate = path.join(current, name);
      if (fs.existsSync(candidate)) return candidate;
    }
    if (path.dirname(current) === current) return undefined;
  }
}

export interface ResolveOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
}

// findProject's Compose modules are loaded when it runs: ~3 ms to name a project, ~35 ms
// more (the parser and yaml) to read the name from a file; run and the commands given
// container names need neither.
const composeErrorsModule = lazy(() => require('../../compose/errors'), () => import('../../compose/errors.js'));
const composeProjectModule = lazy(() => require('../../compose/project'), () => import('../../compose/project.js'));
const composeModule = lazy(() => require('../../compose'), () => import('../../compose/index.js'));

/**
 * The project (= namespace) a command is about: -p, else the project of -f or of the
 * Compose file found from the current directory (its `name:`, COMPOSE_PROJECT_NAME or
 * its directory), as docker compose decides it. Undefined when there is neither.
 */
export async function findProject(flags: ProjectFlags, opts: ResolveOptions = {}): Promise<string | undefined> {
  const cwd = opts.cwd ?? process.cwd();
  const env = opts.env ?? process.env;
  const { ComposeError } = await composeErrorsModule();
  try {
    if (flags.projectName) return (await composeProjectModule()).resolveProjectName({ explicit: flags.projectName, env: {}, projectDir: cwd });
    const files = flags.files && flags.files.length > 0 ? flags.files : [findComposeFile(cwd)].filter((f): f is string => f !== undefined);
    if (files.length === 0) return env.COMPOSE_PROJECT_NAME || undefined;
    const { loadCompose } = await composeModule();
    return (await loadCompose({ files, env, profiles: flags.profiles })).project;
  } catch (err) {
    if (err instanceof ComposeError) throw new CliError(err.message, { code: err.code, cause: err });
    throw err;
  }
}

/** findProject, failing as docker compose does when there is nothing to go on. */
export async function requireProject(flags: ProjectFlags, opts: ResolveOptions = {}): Promise<string> {
  const project = await findProject(flags, opts);
  if (project !== undefined) return project;
  const cwd = opts.cwd ?? process.cwd();
  throw new CliError(
    `no configuration file provided: not found (looked for ${COMPOSE_FILE_NAMES.join(', ')} in ${cwd} and its parents); pass -f FILE or -p PROJECT`,
    { code: 'D2P_NO_PROJECT' },
  );
}

function numberOf(c: Container): number {
  const n = Number(c.metadata.labels?.[COMPOSE_LABELS.containerNumber]);
  return Number.isInteger(n) ? n : 0;
}

/** By service, then replica number, then name: the order docker compose prints. */
export function sortContainers(containers: readonly Container[]): Container[] {
  return [...containers].sort(
    (a, b) => (serviceOf(a) ?? '').localeCompare(serviceOf(b) ?? '') || numberOf(a) - numberOf(b) || a.metadata.name.localeCompare(b.metadata.name),
  );
}

/**
 * The Containers of a project, optionally of some services only. A service name that the
 * project does not have is an error, as `docker compose logs nosuch` says "no such service".
 */
export async function projectContainers(client: Client, project: string, services: readonly string[] = []): Promise<Container[]> {
  if (services.length > 0) {
    const known = new Set((await client.services.list({ namespace: project })).items.map((s) => s.metadata.name));
    const unknown = services.filter((s) => !known.has(s));
    if (unknown.length > 0) throw new CliError(`no such service: ${unknown.join(', ')} (project ${project})`, { code: 'D2P_NO_SUCH_SERVICE' });
  }
  const items = (await client.containers.list({ namespace: project })).items;
  const wanted = services.length === 0 ? items : items.filter((c) => services.includes(serviceOf(c) ?? ''));
  return sortContainers(wanted);
}

// ------------------------------------------------------------------------------ formatting

/**
 * Docker's human duration (github.com/docker/go-units HumanDuration), used in STATUS and
 * CREATED: "Less than a second", "5 seconds", "About a minute", "3 hours", "2 weeks".
 */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.trunc(ms / 60_000);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.round(ms / 3_600_000);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.trunc(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.trunc(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24 / 30)} months`;
  return `${Math.trunc(ms / 3_600_000 / 24 / 365)} years`;
}

function since(timestamp: string | undefined, now: number): string {
  const t = timestamp ? Date.parse(timestamp) : NaN;
  return humanDuration(Number.isNaN(t) ? 0 : now - t);
}

/** docker ps's health suffix: " (healthy)", " (unhealthy)", " (health: starting)". */
function healthSuffix(c: Container): string {
  const health = c.status?.health;
  if (health === undefined) return '';
  return health === 'starting' ? ' (health: starting)' : ` (${health})`;
}

/** Docker's STATUS column (container.State.String in moby): "Up 5 seconds (healthy)", "Exited (1) 3 seconds ago". */
export function formatStatus(c: Container, now: number): string {
  const status = c.status ?? {};
  if (c.metadata.deletionTimestamp) return 'Removing';
  switch (status.phase) {
    case 'Running':
      return `Up ${since(status.startedAt, now)}${healthSuffix(c)}`;
    case 'Paused':
      return `Up ${since(status.startedAt, now)} (Paused)`;
    case 'CrashLoopBackOff':
      return `Restarting (${status.exitCode ?? 0}) ${since(status.finishedAt, now)} ago`;
    case 'Exited':
    case 'Failed':
      if (status.finishedAt === undefined) return status.phase === 'Failed' ? 'Created' : 'Exited';
      return `Exited (${status.exitCode ?? 0}) ${since(status.finishedAt, now)} ago`;
    default:
      return 'Created';
  }
}

/** docker's State: created, restarting, running, removing, paused, exited. */
export function stateOf(c: Container): string {
  if (c.metadata.deletionTimestamp) return 'removing';
  switch (c.status?.phase) {
    case 'Running':
      return 'running';
    case 'Paused':
      return 'paused';
    case 'CrashLoopBackOff':
      return 'restarting';
    case 'Exited':
      return 'exited';
    case 'Failed':
      return c.status?.finishedAt ? 'exited' : 'created';
    default:
      return 'created';
  }
}

/**
 * What runs: as the controller recorded it when it created the process, else entrypoint
 * then command, each from the spec or else the image, as Docker resolves them.
 */
export function effectiveCommand(c: Container, image: ImageConfig | undefined): string[] {
  if (c.status?.command) return c.status.command;
  const spec = c.spec;
  const entrypoint = spec?.entrypoint ?? image?.entrypoint ?? [];
  // Docker: setting an entrypoint drops the image's CMD (container create, "--entrypoint").
  const command = spec?.command ?? (spec?.entrypoint !== undefined ? [] : (image?.cmd ?? []));
  return [...entrypoint, ...command];
}

/** COMMAND as docker ps shows it: quoted, cut to 20 characters with an ellipsis. */
export function formatCommand(args: readonly string[], noTrunc = false): string {
  const text = args.join(' ');
  const cut = !noTrunc && text.length > 20 ? `${text.slice(0, 20)}…` : text;
  return `"${cut}"`;
}

/** Image config by ref, for COMMAND: the Image objects of the namespace. */
export function imageConfigs(images: readonly Image[]): Map<string, ImageConfig> {
  const byRef = new Map<string, ImageConfig>();
  for (const img of images) if (img.spec?.ref && img.status?.config) byRef.set(img.spec.ref, img.status.config);
  return byRef;
}

/** Without -a, docker compose ps shows what is running (paused and restarting included). */
export function isShownByDefault(c: Container): boolean {
  return ['running', 'paused', 'restarting', 'removing'].includes(stateOf(c));
}

export const PS_HEADER = ['NAME', 'IMAGE', 'COMMAND', 'SERVICE', 'CREATED', 'STATUS', 'PORTS'];

export function psRow(c: Container, images: Map<string, ImageConfig>, now: number, noTrunc = false): string[] {
  const image = c.spec?.image ?? '';
  return [
    c.metadata.name,
    image,
    formatCommand(effectiveCommand(c, images.get(image)), noTrunc),
    serviceOf(c) ?? '',
    `${since(c.metadata.creationTimestamp, now)} ago`,
    formatStatus(c, now),
    formatPorts(c),
  ];
}

/** One object per line, with the field names of `docker compose ps --format json`. */
export function psJson(c: Container, images: Map<string, ImageConfig>, now: number): string {
  const image = c.spec?.image ?? '';
  const record = {
    Name: c.metadata.name,
    Image: image,
    Command: effectiveCommand(c, images.get(image)).join(' '),
    Project: c.metadata.labels?.[COMPOSE_LABELS.project] ?? c.metadata.namespace ?? DEFAULT_NAMESPACE,
    Service: serviceOf(c) ?? '',
    CreatedAt: c.metadata.creationTimestamp ?? '',
    State: stateOf(c),
    Status: formatStatus(c, now),
    Health: c.status?.health ?? '',
    ExitCode: c.status?.exitCode ?? 0,
    Pid: c.status?.pid ?? 0,
    Publishers: (c.status?.ports?.length ? c.status.ports : (c.spec?.ports ?? [])).map((p) => ({
      URL: p.hostPort === undefined ? '' : (p.hostIP ?? '0.0.0.0'),
      TargetPort: p.containerPort,
      PublishedPort: p.hostPort ?? 0,
      Protocol: p.protocol ?? 'tcp',
    })),
  };
  return `${JSON.stringify(record)}\n`;
}

// ------------------------------------------------------------------------------ command

export interface PsOptions extends ProjectFlags {
  all?: boolean;
  /** "table" (default) or "json". */
  format?: string;
  quiet?: boolean;
  noTrunc?: boolean;
  services?: string[];
  cwd?: string;
}

export async function psCommand(opts: PsOptions, ctx: CommandContext): Promise<number> {
  const format = opts.format ?? 'table';
  if (format !== 'table' && format !== 'json') throw new CliError(`--format must be "table" or "json", not ${JSON.stringify(format)}`, { code: 'D2P_USAGE' });
  const project = await requireProject(opts, { cwd: opts.cwd });
  const client = await ctx.client();
  const containers = (await projectContainers(client, project, opts.services)).filter((c) => opts.all || isShownByDefault(c));
  if (opts.quiet) {
    for (const c of containers) ctx.io.stdout.write(`${c.metadata.name}\n`);
    return 0;
  }
  const images = imageConfigs((await client.images.list({ namespace: project })).items);
  const now = ctx.now();
  if (format === 'json') {
    for (const c of containers) ctx.io.stdout.write(psJson(c, images, now));
    return 0;
  }
  ctx.io.stdout.write(renderTable([PS_HEADER, ...containers.map((c) => psRow(c, images, now, opts.noTrunc))]));
  return 0;
}
