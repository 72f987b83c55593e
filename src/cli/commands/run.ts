// d2p run [--rm] [-d] [--name N] [-e K=V] [-v SRC:DST[:ro]] [-p H:C] [-w DIR] [-u USER]
// [--entrypoint E] [--restart P] IMAGE [CMD…] — docker run: an Image object (when none
// has that ref) and a Container object in namespace "default", then, attached, the
// container's output as it comes and its exit code as ours; --rm deletes it afterwards;
// -d prints the name and returns. -t gives the container's process a pseudo-terminal
// (held by its shim) and -i an open stdin; the CLI reaches both through the shim's
// attach.sock (src/runtime/attach.ts), with our terminal in raw mode for -it so keys,
// Ctrl-C included, go to the container. Parsing is a pure function (buildRunObjects) so
// every flag's meaning is tested without a daemon.
import { isIP } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { isApiError } from '../../api/errors';
import { API_VERSION, DEFAULT_NAMESPACE } from '../../api/meta';
import type { Container, ContainerSpec, Image, Mount, PortMapping, RestartPolicy, Volume } from '../../api/types';
import type { Client } from '../../client';
import { imageObjectName } from '../../api/object-names';
import { CONTAINER_FINALIZER } from '../../../controllers/finalizers';
import type { CommandContext } from '../context';
import { ObjectChanges } from '../changes';
import { CliError } from '../io';
import { lazy } from '../lazy';
import * as fs from 'node:fs';
import type { AttachSession } from '../../runtime/attach';
import { parseEnvFlags } from '../env-flags';
import { bridgeTerminal, NOT_A_TTY, pipeToWriter, type TerminalBridge, type TerminalStreams } from '../terminal';
import { containerId, getIfExists, interruptSignal, removeContainer, setDesiredState } from '../container-state';
import { PrefixedPrinter, ProjectFollower } from '../log-follower';

export interface RunFlags {
  image: string;
  command?: string[];
  name?: string;
  env?: string[];
  volume?: string[];
  publish?: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string;
  restart?: string;
  rm?: boolean;
  detach?: boolean;
  tty?: boolean;
  interactive?: boolean;
  init?: boolean;
  hostname?: string;
}

export interface RunOptions extends RunFlags {
  cwd?: string;
  signal?: AbortSignal;
  /** Tests pin the generated name. */
  random?: () => number;
  /** The terminal side for -i/-t (process.stdin/stdout by default). */
  terminal?: TerminalStreams;
}

/** Labels d2p puts on what `run` creates, so `d2p get ctr -l d2p.dev/run=true` finds them. */
export const RUN_LABEL = 'd2p.dev/run';

// ------------------------------------------------------------------------------ parsing

/** -p [IP:][HOST:]CONTAINER[/PROTO] as docker/go-connections nat.ParsePortSpec; ranges expand. */
export function parsePublish(spec: string): PortMapping[] {
  const fail = (why: string): never => {
    throw new CliError(`-p ${JSON.stringify(spec)}: ${why} (expected [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp])`, { code: 'D2P_USAGE' });
  };
  const slash = spec.indexOf('/');
  const protocol = slash < 0 ? 'tcp' : spec.slice(slash + 1).toLowerCase();
  if (protocol !== 'tcp' && protocol !== 'udp') fail(`unsupported protocol ${JSON.stringify(protocol)}`);
  const body = slash < 0 ? spec : spec.slice(0, slash);
  const parts = body.split(':');
  const containerText = parts[parts.length - 1];
  const hostText = parts.length >= 2 ? parts[parts.length - 2] : '';
  let ip = parts.length >= 3 ? parts.slice(0, -2).join(':') : '';
  if (ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1);
  if (ip !== '' && isIP(ip) === 0) fail(`invalid IP address ${JSON.stringify(ip)}`);
  const range = (text: string, what: string): [number, number] => {
    const m = /^(\d+)(?:-(\d+))?$/.exec(text);
    const start = m ? Number(m[1]) : NaN;
    const end = m?.[2] !== undefined ? Number(m[2]) : start;
    if (!m || start < 1 || end > 65535 || end < start) return fail(`invalid ${what} ${JSON.stringify(text)}`);
    return [start, end];
  };
  const [cStart, cEnd] = range(containerText, 'container port');
  const host = hostText === '' ? undefined : range(hostText, 'host port');
  if (host && host[1] - host[0] !== cEnd - cStart) fail('the host and container port ranges have different lengths');
  const out: PortMapping[] = [];
  for (let i = 0; i <= cEnd - cStart; i++) {
    const mapping: PortMapping = { containerPort: cStart + i, protocol: protocol as 'tcp' | 'udp' };
    if (host) mapping.hostPort = host[0] + i;
    if (ip !== '') mapping.hostIP = ip;
    out.push(mapping);
  }
  return out;
}

const PROPAGATIONS = ['private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave'];

/**
 * -v as docker run reads it: SRC:DST[:OPTS] where a SRC starting with "/", "." or "~" is a
 * host path (relative ones against the current directory, as compose does) and anything
 * else names a volume; a lone DST is an anonymous volume. OPTS: ro, rw, nocopy, z/Z
 * (SELinux relabelling: nothing to do without SELinux) and a propagation mode.
 */
export function parseVolumeFlag(spec: string, cwd: string): Mount {
  const fail = (why: string): never => {
    throw new CliError(`-v ${JSON.stringify(spec)}: ${why} (expected [SOURCE:]TARGET[:ro])`, { code: 'D2P_USAGE' });
  };
  const parts = spec.split(':');
  if (parts.some((p) => p === '') || parts.length > 3) fail('malformed');
  const [source, target, options] = parts.length === 1 ? [undefined, parts[0], ''] : [parts[0], parts[1], parts[2] ?? ''];
  if (!target.startsWith('/')) fail(`the target ${JSON.stringify(target)} must be an absolute path`);
  const mount: Mount = { type: 'volume', target };
  if (source !== undefined) {
    if (/^[/.~]/.test(source)) {
      mount.type = 'bind';
      mount.source = source.startsWith('~') ? path.join(os.homedir(), source.slice(1)) : path.resolve(cwd, source);
    } else {
      if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(source)) fail(`invalid volume name ${JSON.stringify(source)}`);
      mount.source = source;
    }
  }
  for (const option of options === '' ? [] : options.split(',')) {
    if (option === 'ro') mount.readOnly = true;
    else if (option === 'rw') mount.readOnly = false;
    else if (option === 'nocopy' && mount.type === 'volume') mount.volume = { nocopy: true };
    else if (option === 'z' || option === 'Z') continue;
    else if (PROPAGATIONS.includes(option) && mount.type === 'bind') mount.bind = { propagation: option as NonNullable<Mount['bind']>['propagation'] };
    else fail(`unknown option ${JSON.stringify(option)}`);
  }
  return mount;
}

/** --restart no|always|unless-stopped|on-failure[:N] */
export function parseRestart(text: string): { restartPolicy: RestartPolicy; maxRetries?: number } {
  const m = /^(no|always|unless-stopped|on-failure)(?::(\d+))?$/.exec(text);
  if (!m || (m[2] !== undefined && m[1] !== 'on-failure')) {
    throw new CliError(`--restart ${JSON.stringify(text)}: expected no, always, unless-stopped or on-failure[:max-retries]`, { code: 'D2P_USAGE' });
  }
  return m[2] === undefined ? { restartPolicy: m[1] as RestartPolicy } : { restartPolicy: 'on-failure', maxRetries: Number(m[2]) };
}

// A small part of moby's pkg/namesgenerator lists: docker's random names read "focused_turing".
const ADJECTIVES = [
  'admiring', 'agitated', 'amazing', 'awesome', 'blissful', 'bold', 'brave', 'charming', 'clever', 'compassionate',
  'competent', 'confident', 'cool', 'dazzling', 'determined', 'eager', 'ecstatic', 'elegant', 'epic', 'festive',
  'focused', 'friendly', 'gallant', 'gifted', 'goofy', 'gracious', 'happy', 'hopeful', 'inspiring', 'jolly',
  'keen', 'kind', 'laughing', 'loving', 'lucid', 'magical', 'modest', 'nifty', 'nostalgic', 'optimistic',
  'peaceful', 'pensive', 'practical', 'quirky', 'relaxed', 'serene', 'sharp', 'stoic', 'sweet', 'tender',
  'trusting', 'upbeat', 'vibrant', 'vigilant', 'wizardly', 'wonderful', 'youthful', 'zealous', 'zen',
];
const SURNAMES = [
  'agnesi', 'albattani', 'archimedes', 'babbage', 'bardeen', 'bartik', 'bell', 'bhabha', 'blackwell', 'bohr',
  'booth', 'cannon', 'carson', 'curie', 'darwin', 'dijkstra', 'einstein', 'euclid', 'euler', 'fermat',
  'feynman', 'franklin', 'galileo', 'goldberg', 'goodall', 'hamilton', 'hawking', 'hopper', 'hypatia', 'johnson',
  'kepler', 'knuth', 'lamport', 'leakey', 'lovelace', 'mayer', 'mcclintock', 'meitner', 'mendel', 'morse',
  'newton', 'noether', 'pascal', 'pasteur', 'ramanujan', 'ritchie', 'shannon', 'sinoussi', 'thompson', 'tesla',
  'torvalds', 'turing', 'wilson', 'wozniak', 'wright', 'yalow', 'yonath',
];

/** adjective_surname, never "boring_wozniak" (moby's one exception, kept for the joke's sake). */
export function generateName(random: () => number = Math.random): string {
  for (;;) {
    const name = `${ADJECTIVES[Math.floor(random() * ADJECTIVES.length)]}_${SURNAMES[Math.floor(random() * SURNAMES.length)]}`;
    if (name !== 'boring_wozniak') return name;
  }
}

export interface RunObjects {
  image: Image;
  container: Container;
  /** Named volumes -v refers to, created when missing (docker creates them on first use). */
  volumes: Volume[];
}

/** The objects `d2p run` creates, from its flags alone. */
export function buildRunObjects(flags: RunFlags, opts: { cwd: string; env?: Record<string, string | undefined>; name: string }): RunObjects {
  if (flags.image === '') throw new CliError('run needs an image: d2p run IMAGE [CMD…]', { code: 'D2P_USAGE' });
  const spec: ContainerSpec = { image: flags.image };
  if (flags.entrypoint !== undefined) spec.entrypoint = flags.entrypoint === '' ? [] : [flags.entrypoint];
  if (flags.command && flags.command.length > 0) spec.command = flags.command;
  const env = parseEnvFlags(flags.env ?? [], opts.env);
  if (env.length > 0) spec.env = env;
  const mounts = (flags.volume ?? []).map((v) => parseVolumeFlag(v, opts.cwd));
  if (mounts.length > 0) spec.mounts = mounts;
  const ports = (flags.publish ?? []).flatMap(parsePublish);
  if (ports.length > 0) spec.ports = ports;
  if (flags.workdir !== undefined) {
    if (!flags.workdir.startsWith('/')) throw new CliError(`-w ${JSON.stringify(flags.workdir)}: the working directory must be an absolute path`, { code: 'D2P_USAGE' });
    spec.workingDir = flags.workdir;
  }
  if (flags.user !== undefined) spec.user = flags.user;
  if (flags.hostname !== undefined) spec.hostname = flags.hostname;
  if (flags.init) spec.init = true;
  if (flags.tty) spec.tty = true;
  if (flags.interactive) spec.stdinOpen = true;
  Object.assign(spec, parseRestart(flags.restart ?? 'no'));
  if (flags.rm && spec.restartPolicy !== 'no') {
    throw new CliError('conflicting options: cannot specify both --restart and --rm', { code: 'D2P_USAGE' });
  }
  // Detached, the daemon deletes it once it has exited (docker's AutoRemove). Attached, we
  // delete it once we have read all it printed: the daemon's deletion takes its log with
  // it, and would race our last read of a process that exits at once.
  if (flags.rm && flags.detach) spec.autoRemove = true;
  const labels = { [RUN_LABEL]: 'true' };
  // Born with the Container controller's finalizer, which it would otherwise add first.
  const container: Container = { apiVersion: API_VERSION, kind: 'Container', metadata: { name: opts.name, namespace: DEFAULT_NAMESPACE, labels, finalizers: [CONTAINER_FINALIZER] }, spec };
  const image: Image = {
    apiVersion: API_VERSION,
    kind: 'Image',
    metadata: { name: imageObjectName(flags.image), namespace: DEFAULT_NAMESPACE, labels },
    spec: { ref: flags.image, pullPolicy: 'IfNotPresent' },
  };
  const volumes: Volume[] = mounts
    .filter((m) => m.type === 'volume' && m.source !== undefined)
    .map((m) => ({ apiVersion: API_VERSION, kind: 'Volume', metadata: { name: m.source!, namespace: DEFAULT_NAMESPACE }, spec: {} }));
  return { image, container, volumes };
}

function checkName(name: string): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(name)) {
    throw new CliError(`--name ${JSON.stringify(name)}: invalid container name, only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`, { code: 'D2P_USAGE' });
  }
}

// ------------------------------------------------------------------------------ command

/** docker run's own failures (the container could not be created or started) exit with 125. */
export const EXIT_RUN_FAILED = 125;
const START_TIMEOUT_MS = 5 * 60_000;
const REMOVE_TIMEOUT_MS = 60_000;
/** How long a container found gone may take to show its last state on the watch. */
const REMOVED_STATE_WAIT_MS = 2_000;
/** How long run trusts its watch alone before it reads the container itself. */
const RECHECK_MS = 1_000;

export async function runCommand(opts: RunOptions, ctx: CommandContext): Promise<number> {
  const term = opts.terminal ?? { input: process.stdin, output: process.stdout };
  if (opts.tty && opts.interactive && !opts.detach && term.input.isTTY !== true) {
    throw new CliError(NOT_A_TTY, { code: 'D2P_NOT_A_TTY', exitCode: EXIT_RUN_FAILED });
  }
  if (opts.name !== undefined) checkName(opts.name);
  const cwd = opts.cwd ?? process.cwd();
  const generated = opts.name === undefined;
  const planned = buildRunObjects(opts, { cwd, name: opts.name ?? generateName(opts.random) });
  const client = await ctx.client();
  const container = await createRunObjects(client, planned, generated, opts.random);
  if (opts.detach) {
    ctx.io.stdout.write(`${container.metadata.name}\n`);
    return 0;
  }
  const interrupt = interruptSignal(opts.signal);
  const session = opts.tty || opts.interactive ? new SessionAttacher(ctx, container, term, { tty: opts.tty === true, interactive: opts.interactive === true }) : undefined;
  // Every change after the create, so an exit and a deletion are seen even if they come
  // before the watch is connected.
  const changes = new ObjectChanges(client, 'Container', { namespace: DEFAULT_NAMESPACE, name: container.metadata.name, resourceVersion: container.metadata.resourceVersion });
  let final: Final | undefined;
  try {
    final = await attach(client, container, ctx, changes, interrupt.signal, session);
    return exitCodeOf(container.metadata.name, final.container, ctx);
  } finally {
    session?.dispose();
    interrupt.dispose();
    try {
      if (opts.rm) await afterRun(client, container, changes, final);
    } finally {
      changes.stop();
    }
  }
}

/** The container as attach last saw it, and whether that was its deletion. */
interface Final {
  container: Container | undefined;
  removed: boolean;
}

/** --rm, attached: deletes the container once its output has been read, and waits until it is gone, as docker run waits for its removal. */
async function afterRun(client: Client, container: Container, changes: ObjectChanges, final: Final | undefined): Promise<void> {
  if (!final?.removed) await removeContainer(client, container, REMOVE_TIMEOUT_MS, changes);
}

/**
 * The Image, the volumes and the Container are sent at once: one round trip instead of
 * one each (the controllers wait for what is missing, whatever comes first). Should the
 * Image or a volume be refused while the Container was made, the Container is deleted
 * again, so that nothing is left half-made.
 */
async function createRunObjects(client: Client, planned: RunObjects, generated: boolean, random?: () => number): Promise<Container> {
  const [needed, made] = await Promise.all([
    Promise.allSettled([createIfMissing(client, planned.image), ...planned.volumes.map((v) => createIfMissing(client, v))]),
    createContainer(client, planned.container, generated, random).then(
      (container) => ({ container }),
      (error: unknown) => ({ error }),
    ),
  ]);
  const refused = needed.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (refused === undefined) {
    if ('error' in made) throw made.error;
    return made.container;
  }
  if ('container' in made) {
    const { name, uid } = made.container.metadata;
    try {
      await client.containers.delete(DEFAULT_NAMESPACE, name, { preconditionUid: uid });
    } catch (err) {
      if (!isApiError(err, 'NotFound')) {
        throw new CliError(`${(refused.reason as Error).message}; and container ${name}, created beside it, could not be removed: ${(err as Error).message}`, { cause: refused.reason });
      }
    }
  }
  throw refused.reason;
}

async function createIfMissing(client: Client, obj: Image | Volume): Promise<void> {
  try {
    await client.for(obj.kind).create(obj);
  } catch (err) {
    if (!isApiError(err, 'AlreadyExists')) throw err;
  }
}

/** Creates the container; a generated name that is taken is drawn again, a chosen one is an error. */
async function createContainer(client: Client, container: Container, generated: boolean, random?: () => number): Promise<Container> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await client.containers.create(container);
    } catch (err) {
      if (!isApiError(err, 'AlreadyExists')) throw err;
      if (!generated || attempt >= 10) {
        throw new CliError(`the container name "${container.metadata.name}" is already in use; remove it (d2p rm ${container.metadata.name}) or choose another --name`, {
          code: 'D2P_NAME_IN_USE',
          exitCode: EXIT_RUN_FAILED,
        });
      }
      container = { ...container, metadata: { ...container.metadata, name: generateName(random) } };
    }
  }
}

/** A container that is done: exited for good, or failed before it ever ran. */
function isFinished(c: Container | undefined): boolean {
  if (c === undefined) return true;
  const phase = c.status?.phase;
  return phase === 'Failed' || (phase === 'Exited' && c.status?.finishedAt !== undefined);
}

/**
 * Prints the container's stdout and stderr as they come (each to ours, as docker run
 * attaches them) until it has finished, then returns it as last seen. Ctrl-C stops it
 * (desired state "stopped"), and the exit code is then the one it stopped with.
 */
async function attach(client: Client, container: Container, ctx: CommandContext, changes: ObjectChanges, signal: AbortSignal, session?: SessionAttacher): Promise<Final> {
  const printer = new PrefixedPrinter(ctx.io.stdout, { colour: false, timestamps: false, prefix: false, stderr: ctx.io.stderr });
  const follower = new ProjectFollower(ctx.paths.containers, printer);
  // With a terminal the output comes raw over attach.sock; the log has it as records.
  if (!session?.tty) follower.addNew([container]);
  const uid = container.metadata.uid;
  let stopping = false;
  let last: Container | undefined = container;
  let removed = false;
  let readAt = Date.now();
  const deadline = Date.now() + START_TIMEOUT_MS;
  // Output is read from the log every 100 ms; a state change wakes the loop at once. The
  // watch, from the resourceVersion of the create, brings every state in order; a read of
  // our own once a second without news covers a watch that would have missed one.
  for (;;) {
    follower.pollOnce();
    let gone = changes.removed(uid) as Container | undefined;
    let current: Container | undefined = gone ? undefined : ((changes.latest(uid) as Container | undefined) ?? last);
    if (!gone && Date.now() - readAt >= RECHECK_MS) {
      current = await getIfExists(client, DEFAULT_NAMESPACE, container.metadata.name);
      readAt = Date.now();
      if (current?.metadata.uid !== uid) current = undefined;
    }
    if (current === undefined) {
      // Deleted meanwhile (d2p rm -f): the deletion's watch event carries its last state.
      gone ??= (await changes.removedObject(uid, REMOVED_STATE_WAIT_MS)) as Container | undefined;
      // Deleted before it finished: there is no exit code to report.
      last = isFinished(gone) ? gone : undefined;
      removed = true;
      break;
    }
    last = current;
    if (isFinished(last)) break;
    if (last?.status?.phase === 'Running') await session?.tryAttach();
    if (waitsForImage(last)) await checkImage(client, container);
    if (signal.aborted && !stopping) {
      stopping = true;
      await setDesiredState(client, last!, 'stopped');
    }
    if (last?.status?.phase !== 'Running' && last?.status?.startedAt === undefined && Date.now() > deadline) {
      throw new CliError(`container ${container.metadata.name} did not start within ${START_TIMEOUT_MS / 1000}s (phase ${last?.status?.phase ?? 'Pending'})`, {
        code: 'D2P_TIMEOUT',
        exitCode: EXIT_RUN_FAILED,
      });
    }
    await changes.next(100, signal);
  }
  follower.pollOnce();
  await session?.outputDone();
  return { container: last, removed };
}

const OUTPUT_DRAIN_MS = 2000;

// The shim's attach client is ~1 ms of start-up that only -t and -i use.
const attachModule = lazy(() => require('../../runtime/attach'), () => import('../../runtime/attach.js'));

/**
 * docker run -i/-t's attachment: once the container runs, connects to its shim's
 * attach.sock, forwards our stdin (raw with -it) and window size, and with -t copies the
 * terminal's output to ours. The shim kept what the terminal printed before we came.
 */
class SessionAttacher {
  private socket: AttachSession | undefined;
  private bridge: TerminalBridge | undefined;
  private copy: Promise<void> | undefined;

  constructor(
    private readonly ctx: CommandContext,
    private readonly container: Container,
    private readonly term: TerminalStreams,
    readonly opts: { tty: boolean; interactive: boolean },
  ) {}

  get tty(): boolean {
    return this.opts.tty;
  }

  async tryAttach(): Promise<void> {
    if (this.socket) return;
    const { attach: attachSocket, attachSocketPath } = await attachModule();
    const socketPath = attachSocketPath(this.ctx.paths.containers, containerId(this.container));
    // The shim creates it before the container is recorded as running.
    if (!fs.existsSync(socketPath)) return;
    const socket = await attachSocket(socketPath);
    this.socket = socket;
    socket.output.on('error', (err: NodeJS.ErrnoException) => {
      // The shim going away mid-write ends the session; the exit code comes from the API.
      if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') throw err;
    });
    if (this.opts.tty) this.copy = pipeToWriter(socket.output, this.ctx.io.stdout);
    else socket.output.resume();
    this.bridge = bridgeTerminal(this.term, {
      raw: this.opts.tty && this.opts.interactive,
      input: this.opts.interactive,
      onInput: (data) => socket.write(data),
      onEnd: () => socket.endInput(),
      onResize: (cols, rows) => socket.resize(cols, rows),
    });
    if (this.opts.tty && this.bridge.size) socket.resize(this.bridge.size.cols, this.bridge.size.rows);
  }

  /** The terminal's last output, which the shim sends just before it closes the socket. */
  async outputDone(): Promise<void> {
    if (!this.copy) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.copy, new Promise<void>((resolve) => (timer = setTimeout(resolve, OUTPUT_DRAIN_MS)))]);
    clearTimeout(timer);
  }

  dispose(): void {
    this.bridge?.dispose();
    this.socket?.output.destroy();
  }
}

/** The controller says the image is not there yet (ImagePulled=False): it may be being pulled, or have failed to. */
function waitsForImage(c: Container | undefined): boolean {
  return c?.status?.conditions?.some((cond) => cond.type === 'ImagePulled' && cond.status === 'False') === true;
}

/** A pull that failed will not heal by waiting: say so instead of waiting for the deadline. */
async function checkImage(client: Client, container: Container): Promise<void> {
  const name = imageObjectName(container.spec!.image);
  const image = await client.images.get(DEFAULT_NAMESPACE, name).catch((err: unknown) => {
    if (isApiError(err, 'NotFound')) return undefined;
    throw err;
  });
  if (image?.status?.phase !== 'Failed') return;
  const why = image.status.conditions?.find((c) => c.status === 'False' && c.message)?.message ?? 'no reason recorded';
  throw new CliError(`Unable to find image '${container.spec!.image}': ${why}`, { code: 'D2P_IMAGE_FAILED', exitCode: EXIT_RUN_FAILED });
}

function exitCodeOf(name: string, c: Container | undefined, ctx: CommandContext): number {
  if (c === undefined) throw new CliError(`container ${name} was removed while it ran`, { code: 'D2P_GONE', exitCode: EXIT_RUN_FAILED });
  if (c.status?.phase === 'Failed' && c.status.startedAt === undefined) {
    const ready = c.status.conditions?.find((cond) => cond.status === 'False' && cond.message);
    const why = c.status.message ?? ready?.message ?? 'no reason recorded';
    ctx.io.stderr.write(`d2p: error: container ${name} could not start: ${why}\n`);
    return EXIT_RUN_FAILED;
  }
  return c.status?.exitCode ?? 0;
}
