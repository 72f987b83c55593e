// d2p up [-f …] [-p P] [-d] [--wait] [--wait-timeout S] [--build] — docker compose up:
// apply the project (all or nothing, apply's own code path), then
//  - -d: return;
//  - --wait: return once every service is available (a one-shot service that exited 0
//    counts as done), or fail naming the service and why;
//  - attached: print every container's output with compose's "web-1  | " prefixes until
//    they have all exited, or until Ctrl-C, which stops the project's containers (desired
//    state "stopped", as compose stops them) and exits 130.
import { parseDuration } from '../../api/duration';
import type { Condition } from '../../api/meta';
import type { Build, Container, Service } from '../../api/types';
import type { Client } from '../../client';
import type { CommandContext } from '../context';
import { ObjectChanges } from '../changes';
import { CliError } from '../io';
import { lazy } from '../lazy';
import { loadObjects } from '../load-objects';
import { describeObject, type ManifestObject } from '../manifests';
import { applyObjects } from './apply';
import { containerLabel, interruptSignal, isStopped, serviceOf, setDesiredState, sleep } from '../container-state';
import { PrefixedPrinter, ProjectFollower } from '../log-follower';
import { wantsColour } from './logs';
import { findComposeFile, projectContainers, type ProjectFlags } from './ps';

// The builder, the image store and the runtime it brings are ~40 ms of every `up`'s start;
// only a project built here (--build with a build: section) needs them.
const buildModule = lazy(() => require('./build'), () => import('./build.js'));

export interface UpOptions extends ProjectFlags {
  detach?: boolean;
  wait?: boolean;
  /** --wait-timeout, in seconds as compose takes it (a Go duration is accepted too). */
  waitTimeout?: string;
  build?: boolean;
  noColor?: boolean;
  cwd?: string;
  /** Ends the attached mode as Ctrl-C does (tests). */
  signal?: AbortSignal;
}

/** Exit status after Ctrl-C, as a shell reports a SIGINT death (128 + 2). */
export const EXIT_INTERRUPTED = 130;
const DEFAULT_WAIT_TIMEOUT_MS = 10 * 60_000;
const STOP_TIMEOUT_MS = 60_000;

export async function upCommand(opts: UpOptions, ctx: CommandContext): Promise<number> {
  const cwd = opts.cwd ?? process.cwd();
  const files = opts.files && opts.files.length > 0 ? opts.files : [findComposeFile(cwd)].filter((f): f is string => f !== undefined);
  if (files.length === 0) throw new CliError(`no configuration file provided: not found (looked in ${cwd} and its parents); pass -f FILE`, { code: 'D2P_NO_PROJECT' });
  const waitTimeoutMs = parseWaitTimeout(opts.waitTimeout);
  const loaded = await loadProject(files, opts, ctx);
  await buildFirst(loaded.builds, opts.build ?? false, ctx);
  const applied = await applyObjects(loaded.objects, 'none', ctx);
  if (applied !== 0) return applied;
  const client = await ctx.client();
  if (opts.wait) {
    await waitForServices(client, loaded.project, loaded.services, waitTimeoutMs);
    return 0;
  }
  if (opts.detach) return 0;
  return attachProject(client, loaded.project, opts, ctx);
}

function parseWaitTimeout(text: string | undefined): number {
  if (text === undefined) return DEFAULT_WAIT_TIMEOUT_MS;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  try {
    return parseDuration(text);
  } catch (err) {
    throw new CliError(`--wait-timeout ${JSON.stringify(text)}: expected seconds or a duration (90s, 2m)`, { code: 'D2P_USAGE', cause: err });
  }
}

interface LoadedProject {
  project: string;
  services: string[];
  /** The Build objects of services built from a Dockerfile. */
  builds: Build[];
  /** Everything the apply sends. */
  objects: ManifestObject[];
}

/**
 * Reads and converts the project once, for the apply and for what up needs to know (the
 * second read and conversion of every file was ~45 ms of each up). The server validates
 * what it is sent and refuses the whole batch, at its Compose line, if anything is wrong;
 * with --build, where a build would run before the apply, it is validated here first.
 */
async function loadProject(files: string[], opts: UpOptions, ctx: CommandContext): Promise<LoadedProject> {
  const objects = await loadObjects({ files, projectName: opts.projectName, profiles: opts.profiles }, ctx.io, { validate: true, serverValidatesCompose: !opts.build });
  const notCompose = objects.find((m) => !m.source.compose);
  if (notCompose) {
    throw new CliError(`${notCompose.source.file}: up takes Compose files; ${describeObject(notCompose)} is a manifest (use d2p apply -f)`, { code: 'D2P_USAGE' });
  }
  const project = objects[0].object.metadata.namespace!;
  return {
    project,
    services: objects.filter((m) => m.object.kind === 'Service').map((m) => m.object.metadata.name),
    builds: objects.map((m) => m.object).filter((o): o is Build => o.kind === 'Build'),
    objects,
  };
}

/**
 * --build: every Build of the project is built here, in the CLI process, before the apply
 * (compose builds before it creates containers). Without --build the Build controller
 * builds them in the daemon and the services wait for their image.
 */
async function buildFirst(builds: readonly Build[], build: boolean, ctx: CommandContext): Promise<void> {
  if (builds.length === 0 || !build) return;
  await (await buildModule()).buildObjects(builds, ctx);
}

// ------------------------------------------------------------------------------ --wait

/** Why a service is not done yet, or undefined when it is (available, or all replicas exited 0). */
export function serviceVerdict(service: Service | undefined, containers: readonly Container[]): { done: boolean; failure?: string; waiting?: string } {
  if (!service) return { done: false, waiting: 'the Service object does not exist yet' };
  const available = service.status?.conditions?.find((c) => c.type === 'Available');
  if (available?.status === 'True') return { done: true };
  const replicas = service.spec?.replicas ?? 1;
  if (replicas === 0) return { done: true };
  const exited = containers.filter((c) => c.status?.phase === 'Exited' && c.status.finishedAt !== undefined);
  if (exited.length >= replicas && exited.every((c) => c.status?.exitCode === 0)) return { done: true };
  const failure = failureOf(service, containers);
  if (failure) return { done: false, failure };
  const summary = describeCondition(available) ?? `${service.status?.readyReplicas ?? 0}/${replicas} replicas ready`;
  const blocked = containers.find((c) => c.status?.conditions?.find((cond) => cond.type === 'Ready')?.status !== 'True');
  return { done: false, waiting: blocked ? `${summary}; ${describeContainer(blocked)}` : summary };
}

/** "container wl-db-1 is Pending: image … is not present yet" — what the user needs to look at. */
function describeContainer(c: Container): string {
  const ready = c.status?.conditions?.find((cond) => cond.type === 'Ready');
  const why = c.status?.message ?? ready?.message ?? ready?.reason;
  return `container ${c.metadata.name} is ${c.status?.phase ?? 'Pending'}${c.status?.health ? ` (${c.status.health})` : ''}${why ? `: ${why}` : ''}`;
}

/** Something that will not fix itself: an exit with no restart to come, or a container that cannot start. */
function failureOf(service: Service, containers: readonly Container[]): string | undefined {
  for (const c of containers) {
    const s = c.status ?? {};
    const restarts = (c.spec?.restartPolicy ?? 'no') !== 'no';
    if (s.phase === 'Exited' && s.finishedAt !== undefined && s.exitCode !== 0 && !restarts) return `container ${c.metadata.name} exited (${s.exitCode})`;
    if (s.phase === 'Failed' && !restarts) return `container ${c.metadata.name} failed: ${s.message ?? 'no reason recorded'}`;
    if (s.health === 'unhealthy' && !restarts) return `container ${c.metadata.name} is unhealthy`;
  }
  const deps = service.status?.conditions?.find((c) => c.type === 'DependenciesReady');
  if (deps?.status === 'False' && deps.reason === 'DependencyFailed') return `dependency failed: ${deps.message ?? ''}`;
  return undefined;
}

function describeCondition(c: Condition | undefined): string | undefined {
  if (!c) return undefined;
  return `${c.type}=${c.status}${c.reason ? ` (${c.reason}${c.message ? `: ${c.message}` : ''})` : ''}`;
}

async function waitForServices(client: Client, project: string, services: readonly string[], timeoutMs: number): Promise<void> {
  // Readiness is written on the Services' status, which follows their Containers'.
  const changes = new ObjectChanges(client, 'Service', { namespace: project });
  try {
    const deadline = Date.now() + timeoutMs;
    for (let interval = 50; ; interval = Math.min(interval * 2, 500)) {
      const [serviceList, containers] = await Promise.all([client.services.list({ namespace: project }), projectContainers(client, project)]);
      const byName = new Map(serviceList.items.map((s) => [s.metadata.name, s]));
      const verdicts = services.map((name) => ({ name, ...serviceVerdict(byName.get(name), containers.filter((c) => serviceOf(c) === name)) }));
      const failed = verdicts.find((v) => v.failure !== undefined);
      if (failed) throw new CliError(`service "${failed.name}" of project ${project} failed: ${failed.failure}`, { code: 'D2P_UP_FAILED' });
      const pending = verdicts.filter((v) => !v.done);
      if (pending.length === 0) return;
      if (Date.now() >= deadline) {
        const list = pending.map((v) => `service "${v.name}": ${v.waiting}`).join('; ');
        throw new CliError(`timed out after ${Math.round(timeoutMs / 1000)}s waiting for project ${project}: ${list}`, { code: 'D2P_TIMEOUT' });
      }
      await changes.next(Math.min(interval, Math.max(0, deadline - Date.now())));
    }
  } finally {
    changes.stop();
  }
}

// ------------------------------------------------------------------------------ attached

/**
 * Follows the project's logs, printing "web-1 exited with code 0" as containers end, until
 * every container has exited or the user interrupts. A second Ctrl-C stops waiting for the
 * containers to stop (the controller still stops them).
 */
async function attachProject(client: Client, project: string, opts: UpOptions, ctx: CommandContext): Promise<number> {
  const printer = new PrefixedPrinter(ctx.io.stdout, { colour: wantsColour(ctx.io.stdout, opts.noColor), timestamps: false, prefix: true });
  const follower = new ProjectFollower(ctx.paths.containers, printer);
  const announced = new Map<string, string>();
  const interrupt = interruptSignal(opts.signal);
  try {
    follower.addNew(await projectContainers(client, project));
    let sawContainers = false;
    await follower.run(() => projectContainers(client, project), interrupt.signal, (current) => {
      if (!current) return false;
      sawContainers ||= current.length > 0;
      announceExits(current, announced, printer);
      return sawContainers && current.every((c) => isStopped(c) && c.status?.finishedAt !== undefined);
    });
  } finally {
    interrupt.dispose();
  }
  if (!interrupt.signal.aborted) return 0;
  ctx.io.stderr.write('Gracefully stopping... (press Ctrl+C again to force)\n');
  await stopProject(client, project, ctx);
  return EXIT_INTERRUPTED;
}

/** "web-1 exited with code 0", once per run of each container. */
function announceExits(containers: readonly Container[], announced: Map<string, string>, printer: PrefixedPrinter): void {
  for (const c of containers) {
    const s = c.status;
    if (s?.phase !== 'Exited' || s.finishedAt === undefined) continue;
    const key = `${c.metadata.name}`;
    if (announced.get(key) === s.finishedAt) continue;
    announced.set(key, s.finishedAt);
    printer.note(containerLabel(c), `exited with code ${s.exitCode ?? 0}`);
  }
}

async function stopProject(client: Client, project: string, ctx: CommandContext): Promise<void> {
  const force = interruptSignal();
  try {
    const containers = await projectContainers(client, project);
    await Promise.all(containers.map((c) => setDesiredState(client, c, 'stopped')));
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (!force.signal.aborted && Date.now() < deadline) {
      const current = await projectContainers(client, project);
      if (current.every(isStopped)) {
        for (const c of current) ctx.io.stderr.write(` ✔ Container ${c.metadata.name}  Stopped\n`);
        return;
      }
      await sleep(100, force.signal);
    }
  } finally {
    force.dispose();
  }
}
