// d2p start|stop|restart|kill|pause|unpause|rm — docker's container verbs. Everything about
// objects goes through the API: start/stop/pause set the annotation the Container
// controller honours (d2p.dev/desired-state), rm deletes the object (its finalizer stops the
// process). Only `kill` reaches the runtime directly, because a signal is not a state, and
// `stop -t` does when the deadline passes. Targets are container names, `namespace/name`,
// or services of the current project (`d2p stop web` stops every replica, as compose does).
// Also here: finding the containers a command line names (exec, stats, top, network). What
// the commands share to read, steer and wait on one container is in ../container-state.ts.
import { isApiError } from '../../api/errors';
import type { Container } from '../../api/types';
import type { Client } from '../../client';
import type { Paths } from '../../config';
import { parseDuration } from '../../api/duration';
import { ContainerStateError } from '../../runtime/errors';
import type { Runtime } from '../../runtime/runtime';
import type { CommandContext } from '../context';
import { containerId, containerRef, getIfExists, isRunning, isStopped, removeContainer, setDesiredState, sleep, waitForContainer } from '../container-state';
import { CliError, ReportedError } from '../io';
import { lazy } from '../lazy';
import { COMPOSE_LABELS } from '../../api/types';
import { findProject, sortContainers, type ProjectFlags } from './ps';

/**
 * The cgroup parent the Container controller gives its Runtime ("d2p" unless the daemon
 * was started with another, as tests do). The CLI opens a Runtime over the same state dir
 * (paths.containers) for exec, kill and stats, so both must agree.
 */
export function runtimeCgroupParent(env: Record<string, string | undefined> = process.env): string {
  return env.D2P_CGROUP_PARENT || 'd2p';
}

// The runtime (its addon, OCI bundles, shim protocol) is ~6 ms of start-up that only exec,
// stats and a signal (kill, stop -t, rm -f) need; run, up and the others never use it.
const runtimeModule = lazy(() => require('../../runtime/runtime'), () => import('../../runtime/runtime.js'));

/** A Runtime over the daemon's state: the CLI runs as root on the same machine. */
export async function openRuntime(paths: Paths): Promise<Runtime> {
  const { Runtime } = await runtimeModule();
  return new Runtime({ stateDir: paths.containers, cgroupParent: runtimeCgroupParent() });
}

// ------------------------------------------------------------------------------ targets

export interface TargetOptions extends ProjectFlags {
  cwd?: string;
}

/**
 * Containers named by `words`: "namespace/name"; a service of the project (-p, or the
 * Compose file of the current directory) meaning all its replicas; a container of the
 * project; or, without -p, a container of that name in any namespace (refused when the
 * name is in several, asking for -p). Unknown names fail as docker's "No such container".
 */
export async function resolveTargets(client: Client, words: readonly string[], opts: TargetOptions): Promise<Container[]> {
  if (words.length === 0) throw new CliError('name at least one container or service', { code: 'D2P_USAGE' });
  const project = await findProject(opts, { cwd: opts.cwd });
  const found: Container[] = [];
  for (const word of words) found.push(...(await resolveWord(client, word, project, opts.projectName !== undefined)));
  return found;
}

async function resolveWord(client: Client, word: string, project: string | undefined, projectExplicit: boolean): Promise<Container[]> {
  if (word.includes('/')) {
    const [namespace, name] = word.split('/', 2);
    return [await getContainer(client, namespace, name)];
  }
  if (project !== undefined) {
    const replicas = await serviceReplicas(client, project, word);
    if (replicas !== undefined) return replicas;
    const own = await getIfExists(client, project, word);
    if (own) return [own];
    if (projectExplicit) throw new CliError(`No such service or container: ${word} (project ${project})`, { code: 'D2P_NOT_FOUND' });
  }
  const everywhere = (await client.containers.list({})).items.filter((c) => c.metadata.name === word);
  if (everywhere.length === 1) return everywhere;
  if (everywhere.length === 0) throw new CliError(`No such container: ${word}`, { code: 'D2P_NOT_FOUND' });
  throw new CliError(`container name ${word} is ambiguous: it exists in ${everywhere.map(containerRef).join(', ')}; pass -p PROJECT or namespace/name`, {
    code: 'D2P_AMBIGUOUS',
  });
}

/** The replicas of a Service, or undefined when the project has no Service of that name. */
async function serviceReplicas(client: Client, project: string, service: string): Promise<Container[] | undefined> {
  try {
    await client.services.get(project, service);
  } catch (err) {
    if (isApiError(err, 'NotFound')) return undefined;
    throw err;
  }
  const list = await client.containers.list({ namespace: project, labelSelector: `${COMPOSE_LABELS.service}=${service}` });
  return sortContainers(list.items);
}

async function getContainer(client: Client, namespace: string, name: string): Promise<Container> {
  const found = await getIfExists(client, namespace, name);
  if (!found) throw new CliError(`No such container: ${namespace}/${name}`, { code: 'D2P_NOT_FOUND' });
  return found;
}

/** One container: a name, or replica `index` (from 1) of a service, as `docker compose exec --index`. */
export async function resolveOne(client: Client, word: string, opts: TargetOptions & { index?: number }): Promise<Container> {
  const found = await resolveTargets(client, [word], opts);
  if (found.length === 0) throw new CliError(`service "${word}" has no container (is the project up?)`, { code: 'D2P_NOT_RUNNING' });
  const index = opts.index ?? 1;
  const byIndex = found.find((c) => c.metadata.labels?.[COMPOSE_LABELS.containerNumber] === String(index));
  if (found.length > 1 || opts.index !== undefined) {
    if (!byIndex) throw new CliError(`service "${word}" has no container #${index}`, { code: 'D2P_NOT_RUNNING' });
    return byIndex;
  }
  return found[0];
}

// ------------------------------------------------------------------------------ command

export type LifecycleAction = 'start' | 'stop' | 'restart' | 'kill' | 'pause' | 'unpause' | 'rm';

export interface LifecycleOptions extends TargetOptions {
  action: LifecycleAction;
  targets: string[];
  /** stop/restart -t: seconds before SIGKILL. */
  timeout?: string;
  /** kill -s */
  signal?: string;
  /** rm -f */
  force?: boolean;
}

/** How long to wait for a state the controller reaches by itself (start, pause). */
const STATE_TIMEOUT_MS = 60_000;
/** Beyond a container's grace period, how long stop waits for the controller. */
const STOP_SLACK_MS = 30_000;

export async function lifecycleCommand(opts: LifecycleOptions, ctx: CommandContext): Promise<number> {
  const client = await ctx.client();
  const containers = await resolveTargets(client, opts.targets, opts);
  const timeoutMs = parseStopTimeout(opts.timeout);
  let failed = 0;
  for (const c of containers) {
    try {
      await ACTIONS[opts.action](client, c, { ...opts, timeoutMs }, ctx);
      ctx.io.stdout.write(`${c.metadata.name}\n`);
    } catch (err) {
      failed++;
      ctx.io.stderr.write(`Error response from daemon: ${c.metadata.name}: ${(err as Error).message}\n`);
    }
  }
  if (failed > 0) throw new ReportedError();
  return 0;
}

function parseStopTimeout(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) throw new CliError(`-t/--timeout ${JSON.stringify(text)}: expected whole seconds`, { code: 'D2P_USAGE' });
  return Number(text) * 1000;
}

type ActionOptions = LifecycleOptions & { timeoutMs?: number };
type Action = (client: Client, c: Container, opts: ActionOptions, ctx: CommandContext) => Promise<void>;

const ACTIONS: Record<LifecycleAction, Action> = {
  start: (client, c) => startContainer(client, c),
  stop: (client, c, opts, ctx) => stopContainer(client, c, opts.timeoutMs, ctx),
  restart: async (client, c, opts, ctx) => {
    await stopContainer(client, c, opts.timeoutMs, ctx);
    await startContainer(client, c);
  },
  kill: (client, c, opts, ctx) => killContainer(client, c, opts.signal ?? 'SIGKILL', ctx),
  pause: async (client, c) => {
    if (!isRunning(c)) throw new Error(`container is not running (phase ${c.status?.phase ?? 'unknown'})`);
    await setDesiredState(client, c, 'paused');
    await waitForContainer(client, c, (now) => now?.status?.phase === 'Paused', { timeoutMs: STATE_TIMEOUT_MS, what: 'pause' });
  },
  unpause: async (client, c) => {
    if (c.status?.phase !== 'Paused') throw new Error(`container is not paused (phase ${c.status?.phase ?? 'unknown'})`);
    await setDesiredState(client, c, 'running');
    await waitForContainer(client, c, (now) => now?.status?.phase !== 'Paused', { timeoutMs: STATE_TIMEOUT_MS, what: 'unpause' });
  },
  rm: async (client, c, opts, ctx) => {
    if (!opts.force && !isStopped(c)) {
      throw new Error('cannot remove container: container is running: stop the container before removing or force remove (-f)');
    }
    // docker rm -f kills at once (SIGKILL), it does not wait for a grace period.
    if (!isStopped(c)) await killContainer(client, c, 'SIGKILL', ctx);
    await removeContainer(client, c, STATE_TIMEOUT_MS + graceOf(c));
    // Unlike compose, a Service keeps reconciling: say so rather than let the container reappear unexplained.
    const owner = c.metadata.ownerReferences?.find((o) => o.kind === 'Service');
    if (owner) ctx.io.stderr.write(`note: ${c.metadata.name} belongs to service ${owner.name}, which creates it again; use "d2p down" or scale the service to remove it for good\n`);
  },
};

function graceOf(c: Container): number {
  return parseDuration(c.spec?.stopGracePeriod ?? '10s');
}

/** docker start: resolves once the process has started (or already ran and exited again). */
export async function startContainer(client: Client, c: Container): Promise<void> {
  const before = c.status?.startedAt;
  if (isRunning(c)) return void (await setDesiredState(client, c, 'running'));
  if (c.status?.phase === 'Exited' && readyReason(c) !== 'Stopped') {
    // The controller starts again only what the user stopped (an exit under restart
    // policy "no" is final), so a container that ended by itself is marked stopped first.
    await setDesiredState(client, c, 'stopped');
    await waitForContainer(client, c, (now) => now === undefined || readyReason(now) === 'Stopped', { timeoutMs: STATE_TIMEOUT_MS, what: 'be marked stopped' });
  }
  await setDesiredState(client, (await getIfExists(client, c.metadata.namespace ?? 'default', c.metadata.name)) ?? c, 'running');
  await waitForContainer(client, c, (now) => isRunning(now) || (now?.status?.startedAt !== undefined && now.status.startedAt !== before), {
    timeoutMs: STATE_TIMEOUT_MS,
    what: 'start',
  });
}

/**
 * docker stop: the controller sends the stop signal and, after the grace period, SIGKILL.
 * `-t` shorter than the grace period is honoured here: when it passes, the CLI sends
 * SIGKILL itself; the desired state is already "stopped", so no restart policy revives it.
 */
export async function stopContainer(client: Client, c: Container, timeoutMs: number | undefined, ctx: CommandContext): Promise<void> {
  await setDesiredState(client, c, 'stopped');
  if (isStopped(c)) return;
  const grace = graceOf(c);
  if (timeoutMs !== undefined && timeoutMs < grace) {
    const stoppedInTime = await waitForContainer(client, c, isStopped, { timeoutMs, what: 'stop' }).then(
      () => true,
      (err: unknown) => {
        if ((err as { code?: unknown }).code === 'D2P_TIMEOUT') return false;
        throw err;
      },
    );
    if (stoppedInTime) return;
    await signalContainer(c, 'SIGKILL', ctx);
  }
  await waitForContainer(client, c, isStopped, { timeoutMs: grace + STOP_SLACK_MS, what: 'stop' });
}

/**
 * docker kill: the signal goes straight to the container's first process. SIGKILL (the
 * default) ends it, and Docker then treats the container as stopped by the user (no
 * restart policy applies), so the desired state is set to "stopped" first.
 */
async function killContainer(client: Client, c: Container, signal: string, ctx: CommandContext): Promise<void> {
  if (!isRunning(c) && c.status?.phase !== 'Paused') throw new Error(`container is not running (phase ${c.status?.phase ?? 'unknown'})`);
  const normalized = signal.toUpperCase().startsWith('SIG') || /^\d+$/.test(signal) ? signal.toUpperCase() : `SIG${signal.toUpperCase()}`;
  if (normalized === 'SIGKILL' || normalized === '9') await setDesiredState(client, c, 'stopped');
  await signalContainer(c, normalized, ctx);
}

async function signalContainer(c: Container, signal: string, ctx: CommandContext): Promise<void> {
  const runtime = await openRuntime(ctx.paths);
  try {
    await runtime.kill(containerId(c), /^\d+$/.test(signal) ? Number(signal) : signal);
  } catch (err) {
    // It exited on its own between our check and the signal: what kill wanted.
    if (err instanceof ContainerStateError) return;
    throw err;
  }
}

/** The reason of the Ready condition: "Stopped" is the controller's word for stopped by the user. */
function readyReason(c: Container): string | undefined {
  return c.status?.conditions?.find((cond) => cond.type === 'Ready')?.reason;
}
