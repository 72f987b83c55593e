// d2p network ls|inspect|create|rm|connect|disconnect — the docker network commands, on
// Network objects through the API. connect and disconnect edit the Container's
// spec.networks; the Container controller applies a change of networks alone to the
// running container's namespace without restarting it (controllers/container.ts), as
// `docker network connect` does, and these commands wait until it has, so an error (an
// address taken, a network not ready) is printed here, naming the network and container.
//
// A container a Service owns is connected directly, as Docker connects a Compose
// container: the Service's template is not changed, so a replica the Service creates
// again (after `up` with another template, or a scale) is back on the template's networks.
import { Command } from 'commander';
import * as net from 'node:net';
import { isApiError } from '../../api/errors';
import { DEFAULT_NAMESPACE } from '../../api/meta';
import type { Container, Network, NetworkAttachment, NetworkSpec } from '../../api/types';
import type { Client } from '../../client';
import { cidrContains, ipToNumber, parseCidr } from '../../network/ipam';
import { ObjectChanges } from '../changes';
import type { CommandContext } from '../context';
import { runSubcommands } from '../subcommands';
import { formatError } from '../format-error';
import { CliError, ReportedError } from '../io';
import { renderTable } from '../printers';
import { resolveTargets } from './lifecycle';
import { containerRef } from '../container-state';
import { findProject } from './ps';

export interface NetworkCommandOptions {
  /** The subcommand and its arguments: ["connect", "--alias", "db", "shop_back", "shop-web-1"]. */
  args: string[];
  /** Where a Compose file is looked for when no -p is given (default: the process's cwd). */
  cwd?: string;
  /** How long create, rm, connect and disconnect wait for the controllers (default 60 s). */
  waitTimeoutMs?: number;
}

export const NETWORK_SUBCOMMANDS = ['ls', 'inspect', 'create', 'rm', 'connect', 'disconnect'] as const;

const DEFAULT_WAIT_MS = 60_000;
/** The condition the Container controller sets False when spec.networks cannot be applied. */
const NETWORKS_CONDITION = 'NetworksAttached';
/** docker network create -o com.docker.network.driver.mtu=N, as Docker's bridge driver reads it. */
const MTU_OPTION = 'com.docker.network.driver.mtu';

export async function networkCommand(opts: NetworkCommandOptions, ctx: CommandContext): Promise<number> {
  return runSubcommands((setStatus) => buildNetworkProgram(ctx, opts, setStatus), opts.args);
}

interface NamespaceFlags {
  namespace?: string;
  projectName?: string;
}

type Finish = (status: number) => void;
const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

function withNamespace(cmd: Command): Command {
  return cmd
    .option('-n, --namespace <ns>', 'namespace of the networks')
    .option('-p, --project-name <name>', 'Compose project (the namespace of its objects)');
}

function buildNetworkProgram(ctx: CommandContext, opts: NetworkCommandOptions, finish: Finish): Command {
  const program = new Command('d2p network')
    .description('manage networks (docker network …)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => void ctx.io.stdout.write(s), writeErr: (s) => void ctx.io.stderr.write(s) })
    .showHelpAfterError("(run 'd2p network --help' for usage)");
  const act =
    <A extends unknown[]>(fn: (...args: A) => Promise<number>) =>
    async (...args: A) =>
      finish(await fn(...args));
  const timeoutMs = opts.waitTimeoutMs ?? DEFAULT_WAIT_MS;

  withNamespace(program.command('ls').alias('list'))
    .description('list networks (of every namespace unless -n or -p names one)')
    .option('-q, --quiet', 'names only')
    .action(act((flags: NamespaceFlags & { quiet?: boolean }) => listNetworks(ctx, flags)));

  withNamespace(program.command('inspect'))
    .description('show networks as JSON, with the containers attached to them')
    .argument('<networks...>', 'network names, or namespace/name')
    .action(act((names: string[], flags: NamespaceFlags) => inspectNetworks(ctx, names, flags)));

  withNamespace(program.command('create'))
    .description('create a network (namespace "default" unless -n or -p)')
    .argument('<name>', 'network name')
    .option('-d, --driver <driver>', 'bridge, host or none', 'bridge')
    .option('--subnet <cidr>', 'subnet, e.g. 10.30.0.0/24 (default: the first free one of the pools)')
    .option('--gateway <ip>', 'gateway address in the subnet')
    .option('--ip-range <cidr>', 'allocate container addresses from this part of the subnet')
    .option('--internal', 'no route out of the network')
    .option('-o, --opt <key=value>', `driver option; repeatable (${MTU_OPTION}=N sets the MTU)`, collect)
    .option('--label <key=value>', 'label; repeatable', collect)
    .action(act((name: string, flags: CreateFlags) => createNetwork(ctx, name, flags, timeoutMs)));

  withNamespace(program.command('rm').alias('remove'))
    .description('remove networks; refused while a running container is on them')
    .argument('<networks...>', 'network names, or namespace/name')
    .option('-f, --force', 'no error for networks that do not exist')
    .action(act((names: string[], flags: NamespaceFlags & { force?: boolean }) => removeNetworks(ctx, names, flags, timeoutMs)));

  program
    .command('connect')
    .description(
      'connect a container to a network; a running container gets the new interface without a restart. ' +
        "A container of a Service is connected directly: the Service's template is not changed, so a replica it creates again is not connected",
    )
    .argument('<network>', "network name (in the container's namespace), or namespace/name")
    .argument('<container>', 'container name, or namespace/name')
    .option('--alias <name>', 'extra DNS name of the container on this network; repeatable', collect)
    .option('--ip <address>', 'IPv4 address of the container on this network')
    .option('-p, --project-name <name>', 'Compose project of the container')
    .action(act((network: string, container: string, flags: ConnectFlags) => connectContainer(ctx, network, container, { ...flags, cwd: opts.cwd }, timeoutMs)));

  program
    .command('disconnect')
    .description('disconnect a container from a network; a running container loses the interface without a restart')
    .argument('<network>', "network name (in the container's namespace), or namespace/name")
    .argument('<container>', 'container name, or namespace/name')
    .option('-f, --force', 'no error when the container is not connected to the network')
    .option('-p, --project-name <name>', 'Compose project of the container')
    .action(act((network: string, container: string, flags: DisconnectFlags) => disconnectContainer(ctx, network, container, { ...flags, cwd: opts.cwd }, timeoutMs)));

  return program;
}

// ------------------------------------------------------------------------------ names

/** -n, else -p (checked as Compose checks a project name), else undefined; both must agree. */
async function namespaceOf(flags: NamespaceFlags): Promise<string | undefined> {
  const project = flags.projectName === undefined ? undefined : await findProject({ projectName: flags.projectName });
  if (flags.namespace !== undefined && project !== undefined && flags.namespace !== project) {
    throw new CliError(`-n ${flags.namespace} and -p ${flags.projectName} name different namespaces; give one`, { code: 'D2P_USAGE' });
  }
  return flags.namespace ?? project;
}

function splitQualified(word: string): { namespace?: string; name: string } {
  const slash = word.indexOf('/');
  return slash < 0 ? { name: word } : { namespace: word.slice(0, slash), name: word.slice(slash + 1) };
}

async function getNetworkIfExists(client: Client, namespace: string, name: string): Promise<Network | undefined> {
  try {
    return await client.networks.get(namespace, name);
  } catch (err) {
    if (isApiError(err, 'NotFound')) return undefined;
    throw err;
  }
}

/**
 * A network by `name` in `namespace`, or by the name Compose gives a project's network
 * ("<project>_<name>", so `backend` finds shop_backend in project shop).
 */
async function findInNamespace(client: Client, namespace: string, name: string): Promise<Network | undefined> {
  return (await getNetworkIfExists(client, namespace, name)) ?? (name.startsWith(`${namespace}_`) ? undefined : getNetworkIfExists(client, namespace, `${namespace}_${name}`));
}

/** "namespace/name"; a name in the namespace given; else the one network of that name in any namespace. */
async function resolveNetwork(client: Client, word: string, namespace: string | undefined): Promise<Network> {
  const qualified = splitQualified(word);
  const ns = qualified.namespace ?? namespace;
  if (ns !== undefined) {
    const found = await findInNamespace(client, ns, qualified.name);
    if (!found) throw new CliError(`No such network: ${qualified.name} (namespace ${ns})`, { code: 'D2P_NOT_FOUND' });
    return found;
  }
  const everywhere = (await client.networks.list({})).items.filter((n) => n.metadata.name === word);
  if (everywhere.length === 1) return everywhere[0];
  if (everywhere.length === 0) throw new CliError(`No such network: ${word}`, { code: 'D2P_NOT_FOUND' });
  const where = everywhere.map((n) => `${n.metadata.namespace ?? DEFAULT_NAMESPACE}/${word}`).join(', ');
  throw new CliError(`network name ${word} is ambiguous: it exists as ${where}; pass -n NAMESPACE or namespace/name`, { code: 'D2P_AMBIGUOUS' });
}

const namespaceOfObject = (obj: { metadata: { namespace?: string } }): string => obj.metadata.namespace ?? DEFAULT_NAMESPACE;
const networkRef = (n: Network): string => `${namespaceOfObject(n)}/${n.metadata.name}`;

// ------------------------------------------------------------------------------ ls, inspect

async function listNetworks(ctx: CommandContext, flags: NamespaceFlags & { quiet?: boolean }): Promise<number> {
  const namespace = await namespaceOf(flags);
  const client = await ctx.client();
  const items = (await client.networks.list(namespace === undefined ? {} : { namespace })).items.sort((a, b) => networkRef(a).localeCompare(networkRef(b)));
  if (flags.quiet) {
    for (const n of items) ctx.io.stdout.write(`${namespace === undefined ? networkRef(n) : n.metadata.name}\n`);
    return 0;
  }
  const header = ['NAME', 'DRIVER', 'SUBNET', 'GATEWAY', 'INTERNAL', 'STATUS'];
  const rows = items.map((n) => [
    n.metadata.name,
    n.spec?.driver ?? 'bridge',
    n.status?.subnet ?? n.spec?.subnet ?? '',
    n.status?.gateway ?? n.spec?.gateway ?? '',
    n.spec?.internal ? 'true' : 'false',
    n.status?.phase ?? 'Pending',
  ]);
  const table = namespace === undefined ? [['NAMESPACE', ...header], ...rows.map((r, i) => [namespaceOfObject(items[i]), ...r])] : [header, ...rows];
  ctx.io.stdout.write(renderTable(table));
  return 0;
}

async function inspectNetworks(ctx: CommandContext, names: string[], flags: NamespaceFlags): Promise<number> {
  const namespace = await namespaceOf(flags);
  const client = await ctx.client();
  const found: object[] = [];
  let missing = 0;
  for (const word of names) {
    try {
      const network = await resolveNetwork(client, word, namespace);
      const containers = (await client.containers.list({ namespace: namespaceOfObject(network) })).items;
      found.push(inspectView(network, containers));
    } catch (err) {
      if (!(err instanceof CliError)) throw err;
      missing++;
      ctx.io.stderr.write(formatError(err));
    }
  }
  ctx.io.stdout.write(`${JSON.stringify(found, null, 4)}\n`);
  if (missing > 0) throw new ReportedError();
  return 0;
}

/** docker network inspect's shape (Name, Driver, IPAM.Config, Containers…), from the Network and its Containers. */
export function inspectView(network: Network, containers: readonly Container[]): object {
  const prefix = network.status?.subnet ? `/${parseCidr(network.status.subnet).prefixLength}` : '';
  const attached = containers
    .map((c) => ({ c, attachment: c.spec?.networks?.find((a) => a.name === network.metadata.name) }))
    .filter((x): x is { c: Container; attachment: NetworkAttachment } => x.attachment !== undefined)
    .map(({ c, attachment }) => {
      const ip = c.status?.ipAddresses?.[network.metadata.name];
      return [c.metadata.name, { IPv4Address: ip ? `${ip}${prefix}` : '', Aliases: attachment.aliases ?? [], State: c.status?.phase ?? 'Pending' }] as const;
    });
  return {
    Name: network.metadata.name,
    Namespace: namespaceOfObject(network),
    Id: network.metadata.uid ?? '',
    Created: network.metadata.creationTimestamp ?? '',
    Driver: network.spec?.driver ?? 'bridge',
    Internal: network.spec?.internal ?? false,
    IPAM: { Config: network.status?.subnet || network.spec?.subnet ? [{ Subnet: network.status?.subnet ?? network.spec?.subnet, Gateway: network.status?.gateway ?? network.spec?.gateway, ...(network.spec?.ipRange ? { IPRange: network.spec.ipRange } : {}) }] : [] },
    Bridge: network.status?.bridge ?? '',
    Containers: Object.fromEntries(attached.sort(([a], [b]) => a.localeCompare(b))),
    Options: network.spec?.driverOpts ?? {},
    Labels: network.metadata.labels ?? {},
    Status: { Phase: network.status?.phase ?? 'Pending', Conditions: network.status?.conditions ?? [] },
  };
}

// ------------------------------------------------------------------------------ create, rm

interface CreateFlags extends NamespaceFlags {
  driver: string;
  subnet?: string;
  gateway?: string;
  ipRange?: string;
  internal?: boolean;
  opt?: string[];
  label?: string[];
}

/** The Network a `docker network create` command line describes; bad flags are usage errors naming the flag. */
export function networkFromFlags(name: string, namespace: string, flags: CreateFlags): Network {
  if (flags.driver !== 'bridge' && flags.driver !== 'host' && flags.driver !== 'none') {
    throw new CliError(`--driver ${JSON.stringify(flags.driver)}: d2p has the bridge, host and none drivers`, { code: 'D2P_USAGE' });
  }
  if (flags.driver !== 'bridge' && (flags.subnet || flags.gateway || flags.ipRange || flags.internal)) {
    throw new CliError(`--subnet, --gateway, --ip-range and --internal need the bridge driver, not ${flags.driver}`, { code: 'D2P_USAGE' });
  }
  if (flags.gateway !== undefined && !net.isIPv4(flags.gateway)) throw new CliError(`--gateway ${JSON.stringify(flags.gateway)}: not an IPv4 address`, { code: 'D2P_USAGE' });
  if ((flags.gateway !== undefined || flags.ipRange !== undefined) && flags.subnet === undefined) {
    throw new CliError('--gateway and --ip-range need --subnet, as docker network create does', { code: 'D2P_USAGE' });
  }
  const driverOpts = keyValues(flags.opt, '--opt');
  const labels = keyValues(flags.label, '--label');
  const spec: NetworkSpec = { driver: flags.driver };
  if (flags.subnet !== undefined) spec.subnet = flags.subnet;
  if (flags.gateway !== undefined) spec.gateway = flags.gateway;
  if (flags.ipRange !== undefined) spec.ipRange = flags.ipRange;
  if (flags.internal) spec.internal = true;
  const mtu = driverOpts[MTU_OPTION];
  if (mtu !== undefined) {
    if (!/^\d+$/.test(mtu)) throw new CliError(`--opt ${MTU_OPTION}=${mtu}: not a number`, { code: 'D2P_USAGE' });
    spec.mtu = Number(mtu);
    delete driverOpts[MTU_OPTION];
  }
  if (Object.keys(driverOpts).length > 0) spec.driverOpts = driverOpts;
  return {
    apiVersion: 'd2p.dev/v1alpha1',
    kind: 'Network',
    metadata: { name, namespace, ...(Object.keys(labels).length > 0 ? { labels } : {}) },
    spec,
  };
}

function keyValues(pairs: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CliError(`${flag} ${JSON.stringify(pair)}: expected key=value`, { code: 'D2P_USAGE' });
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/**
 * docker network create answers once the network exists. Here the Network controller makes
 * the bridge, so this waits for Ready; a network it refuses (a subnet overlapping another)
 * is deleted again and the reason printed, so a failed create leaves nothing behind.
 */
async function createNetwork(ctx: CommandContext, name: string, flags: CreateFlags, timeoutMs: number): Promise<number> {
  const namespace = (await namespaceOf(flags)) ?? DEFAULT_NAMESPACE;
  const network = networkFromFlags(name, namespace, flags);
  const client = await ctx.client();
  try {
    await client.networks.create(network);
  } catch (err) {
    if (isApiError(err, 'AlreadyExists')) throw new CliError(`network with name ${name} already exists in namespace ${namespace}`, { code: 'D2P_CONFLICT', cause: err });
    throw err;
  }
  const settled = await waitForObject<Network>(client, 'Network', namespace, name, (n) => n === undefined || n.status?.phase === 'Ready' || readyFailure(n) !== undefined, {
    timeoutMs,
    what: `network ${namespace}/${name} to be ready`,
  });
  const failure = settled && readyFailure(settled);
  if (failure !== undefined) {
    await client.networks.delete(namespace, name);
    throw new CliError(`network ${namespace}/${name} could not be created: ${failure}`, { code: 'D2P_NETWORK_REFUSED' });
  }
  ctx.io.stdout.write(`${name}\n`);
  return 0;
}

/** The controller's reason for not making the network (Ready=False for its current generation), if any. */
function readyFailure(n: Network): string | undefined {
  const ready = n.status?.conditions?.find((c) => c.type === 'Ready');
  if (ready?.status !== 'False' || ready.observedGeneration !== n.metadata.generation) return undefined;
  return ready.message ?? ready.reason;
}

async function removeNetworks(ctx: CommandContext, names: string[], flags: NamespaceFlags & { force?: boolean }, timeoutMs: number): Promise<number> {
  const namespace = await namespaceOf(flags);
  const client = await ctx.client();
  let failed = 0;
  for (const word of names) {
    try {
      const network = await resolveNetwork(client, word, namespace);
      await removeNetwork(client, network, timeoutMs);
      ctx.io.stdout.write(`${word}\n`);
    } catch (err) {
      if (flags.force && err instanceof CliError && err.code === 'D2P_NOT_FOUND') continue;
      if (!(err instanceof CliError) && !isApiError(err)) throw err;
      failed++;
      ctx.io.stderr.write(formatError(err, { context: 'error while removing network' }));
    }
  }
  if (failed > 0) throw new ReportedError();
  return 0;
}

/** docker network rm refuses a network with active endpoints rather than waiting for them. */
async function removeNetwork(client: Client, network: Network, timeoutMs: number): Promise<void> {
  const namespace = namespaceOfObject(network);
  const users = (await client.containers.list({ namespace })).items
    .filter((c) => (c.spec?.networks ?? []).some((a) => a.name === network.metadata.name))
    .filter((c) => ['Running', 'Paused', 'Creating'].includes(c.status?.phase ?? ''))
    .map((c) => c.metadata.name)
    .sort();
  if (users.length > 0) {
    throw new CliError(`network ${networkRef(network)} has active endpoints (container ${users.join(', ')}): stop them or disconnect them first`, { code: 'D2P_CONFLICT' });
  }
  try {
    await client.networks.delete(namespace, network.metadata.name);
  } catch (err) {
    if (!isApiError(err, 'NotFound')) throw err;
  }
  await waitForObject<Network>(client, 'Network', namespace, network.metadata.name, (n) => n === undefined || n.metadata.uid !== network.metadata.uid, {
    timeoutMs,
    what: `network ${networkRef(network)} to be removed (a stopped container may still hold it: remove or disconnect it)`,
  });
}

// ------------------------------------------------------------------------------ connect, disconnect

interface ConnectFlags {
  alias?: string[];
  ip?: string;
  projectName?: string;
  cwd?: string;
}

interface DisconnectFlags {
  force?: boolean;
  projectName?: string;
  cwd?: string;
}

/** One container, as docker network connect takes one; a service with several replicas must be narrowed down. */
async function resolveContainer(client: Client, word: string, flags: { projectName?: string; cwd?: string }): Promise<Container> {
  const found = await resolveTargets(client, [word], { projectName: flags.projectName, cwd: flags.cwd });
  if (found.length === 1) return found[0];
  if (found.length === 0) throw new CliError(`No such container: ${word} (the service has no container)`, { code: 'D2P_NOT_FOUND' });
  throw new CliError(`${word} names ${found.length} containers (${found.map((c) => c.metadata.name).join(', ')}); name one container`, { code: 'D2P_AMBIGUOUS' });
}

/** The network a container of `namespace` may join: only one of its own namespace, as a Container's spec.networks names them. */
async function networkForContainer(client: Client, word: string, c: Container): Promise<Network> {
  const namespace = namespaceOfObject(c);
  const qualified = splitQualified(word);
  if (qualified.namespace !== undefined && qualified.namespace !== namespace) {
    throw new CliError(`network ${word} is in namespace ${qualified.namespace}, but container ${containerRef(c)} is in namespace ${namespace}: a container joins networks of its own namespace (project)`, {
      code: 'D2P_NETWORK_OTHER_NAMESPACE',
    });
  }
  const found = await findInNamespace(client, namespace, qualified.name);
  if (found) return found;
  const elsewhere = (await client.networks.list({})).items.filter((n) => n.metadata.name === qualified.name).map(networkRef);
  const hint = elsewhere.length > 0 ? `; ${elsewhere.join(', ')} is in another namespace, and a container joins networks of its own namespace (project) only` : '';
  throw new CliError(`No such network: ${qualified.name} in namespace ${namespace} of container ${c.metadata.name}${hint}`, { code: 'D2P_NOT_FOUND' });
}

function checkNetworkMode(c: Container, verb: 'connected to' | 'disconnected from'): void {
  const mode = c.spec?.networkMode ?? 'bridge';
  if (mode === 'bridge') return;
  throw new CliError(`container ${c.metadata.name} has network mode ${mode}: it has no network namespace of its own that can be ${verb} a network (only bridge containers can)`, {
    code: 'D2P_NETWORK_MODE',
  });
}

/** docker network connect's checks, made before anything is written so nothing needs undoing. */
export function checkConnect(c: Container, network: Network, flags: { ip?: string; alias?: string[] }): void {
  checkNetworkMode(c, 'connected to');
  const name = network.metadata.name;
  const driver = network.spec?.driver ?? 'bridge';
  if (driver !== 'bridge') throw new CliError(`network ${name} has driver ${driver}: only bridge networks can be connected to a container`, { code: 'D2P_NETWORK_MODE' });
  if ((c.spec?.networks ?? []).some((a) => a.name === name)) {
    throw new CliError(`endpoint with name ${c.metadata.name} already exists in network ${name}`, { code: 'D2P_CONFLICT' });
  }
  for (const alias of flags.alias ?? []) {
    if (alias.trim() === '' || /\s/.test(alias)) throw new CliError(`--alias ${JSON.stringify(alias)}: a DNS name has no spaces`, { code: 'D2P_USAGE' });
  }
  if (flags.ip !== undefined) checkRequestedIp(c, network, flags.ip);
}

function checkRequestedIp(c: Container, network: Network, ip: string): void {
  const name = network.metadata.name;
  if (!net.isIPv4(ip)) throw new CliError(`--ip ${JSON.stringify(ip)}: not an IPv4 address`, { code: 'D2P_USAGE' });
  const subnet = network.status?.subnet ?? network.spec?.subnet;
  if (subnet === undefined) {
    // Docker's rule: a user-chosen address needs a user-chosen subnet, or it could fall outside it later.
    throw new CliError(`--ip ${ip}: network ${name} has no subnet yet (not ready); user specified IP address is supported only with a network created with --subnet`, { code: 'D2P_USAGE' });
  }
  if (!cidrContains(parseCidr(subnet), ipToNumber(ip))) throw new CliError(`--ip ${ip} is not in subnet ${subnet} of network ${name}`, { code: 'D2P_USAGE' });
  const gateway = network.status?.gateway ?? network.spec?.gateway;
  if (ip === gateway) throw new CliError(`--ip ${ip} is the gateway address of network ${name}`, { code: 'D2P_USAGE' });
  const self = containerRef(c);
  const holder = Object.entries(network.status?.allocations ?? {}).find(([key, address]) => address === ip && key !== self)?.[0];
  if (holder !== undefined) throw new CliError(`Address already in use: ${ip} on network ${name} belongs to container ${holder}`, { code: 'D2P_CONFLICT' });
}

async function connectContainer(ctx: CommandContext, networkWord: string, containerWord: string, flags: ConnectFlags, timeoutMs: number): Promise<number> {
  const client = await ctx.client();
  const c = await resolveContainer(client, containerWord, flags);
  const network = await networkForContainer(client, networkWord, c);
  checkConnect(c, network, flags);
  const name = network.metadata.name;
  const attachment: NetworkAttachment = { name, ...(flags.alias?.length ? { aliases: flags.alias } : {}), ...(flags.ip ? { ipv4Address: flags.ip } : {}) };
  const updated = await editNetworks(client, c, (networks) => [...networks.filter((a) => a.name !== name), attachment]);
  noteServiceOwner(ctx, c);
  if (!isAlive(updated)) return 0;
  const failure = await waitForNetworks(client, updated, (now) => now.status?.ipAddresses?.[name] !== undefined, timeoutMs, `connect to network ${name}`);
  if (failure !== undefined) {
    // As a failed docker network connect, leave the container as it was.
    await editNetworks(client, updated, (networks) => networks.filter((a) => a.name !== name));
    throw new CliError(`failed to connect container ${c.metadata.name} to network ${name}: ${failure}`, { code: 'D2P_NETWORK_CONNECT' });
  }
  return 0;
}

async function disconnectContainer(ctx: CommandContext, networkWord: string, containerWord: string, flags: DisconnectFlags, timeoutMs: number): Promise<number> {
  const client = await ctx.client();
  const c = await resolveContainer(client, containerWord, flags);
  checkNetworkMode(c, 'disconnected from');
  const name = connectedNetworkName(c, networkWord);
  if (name === undefined) {
    if (flags.force) return 0;
    throw new CliError(`container ${c.metadata.name} is not connected to network ${networkWord}`, { code: 'D2P_NOT_CONNECTED' });
  }
  const updated = await editNetworks(client, c, (networks) => networks.filter((a) => a.name !== name));
  noteServiceOwner(ctx, c);
  if (!isAlive(updated)) return 0;
  const failure = await waitForNetworks(client, updated, (now) => now.status?.ipAddresses?.[name] === undefined, timeoutMs, `disconnect from network ${name}`);
  if (failure !== undefined) throw new CliError(`failed to disconnect container ${c.metadata.name} from network ${name}: ${failure}`, { code: 'D2P_NETWORK_DISCONNECT' });
  return 0;
}

/** The entry of spec.networks `word` means: its name, namespace/name, or the Compose short name. */
export function connectedNetworkName(c: Container, word: string): string | undefined {
  const namespace = namespaceOfObject(c);
  const qualified = splitQualified(word);
  if (qualified.namespace !== undefined && qualified.namespace !== namespace) return undefined;
  const names = (c.spec?.networks ?? []).map((a) => a.name);
  return names.find((n) => n === qualified.name) ?? names.find((n) => n === `${namespace}_${qualified.name}`);
}

function noteServiceOwner(ctx: CommandContext, c: Container): void {
  const owner = c.metadata.ownerReferences?.find((o) => o.kind === 'Service');
  if (owner) {
    ctx.io.stderr.write(`note: ${c.metadata.name} belongs to service ${owner.name}, whose template is not changed: a replica it creates again has the template's networks\n`);
  }
}

const isAlive = (c: Container): boolean => c.status?.phase === 'Running' || c.status?.phase === 'Paused';

/** Read-modify-write of spec.networks with the resourceVersion as precondition, again on a conflict. */
async function editNetworks(client: Client, c: Container, edit: (networks: NetworkAttachment[]) => NetworkAttachment[]): Promise<Container> {
  let current = c;
  for (let attempt = 1; ; attempt++) {
    const spec = current.spec;
    if (!spec) throw new CliError(`container ${containerRef(current)} has no spec`, { code: 'D2P_INVALID' });
    try {
      return await client.containers.update({ ...current, spec: { ...spec, networks: edit(spec.networks ?? []) } });
    } catch (err) {
      if (!isApiError(err, 'Conflict') || attempt >= 5) throw err;
      current = await client.containers.get(namespaceOfObject(c), c.metadata.name);
    }
  }
}

/**
 * Waits until the controller applied the new spec.networks to the running container
 * (`applied`), or reported why it could not (NetworksAttached=False for this generation);
 * resolves with that reason, or undefined on success.
 */
async function waitForNetworks(client: Client, c: Container, applied: (now: Container) => boolean, timeoutMs: number, what: string): Promise<string | undefined> {
  const generation = c.metadata.generation ?? 0;
  let failure: string | undefined;
  const done = (now: Container | undefined): boolean => {
    if (now === undefined || now.metadata.uid !== c.metadata.uid) {
      failure = 'the container was removed';
      return true;
    }
    const condition = now.status?.conditions?.find((cond) => cond.type === NETWORKS_CONDITION);
    if (condition?.status === 'False' && (condition.observedGeneration ?? 0) >= generation) {
      failure = condition.message ?? condition.reason ?? 'unknown reason';
      return true;
    }
    return (now.status?.observedGeneration ?? 0) >= generation && applied(now);
  };
  await waitForObject<Container>(client, 'Container', namespaceOfObject(c), c.metadata.name, done, { timeoutMs, what: `container ${c.metadata.name} to ${what}` });
  return failure;
}

const POLL_START_MS = 50;
const POLL_MAX_MS = 500;

/** Reads an object until `done`; a watch wakes it early, reads keep it level-triggered (lifecycle.ts waitForContainer does the same). */
async function waitForObject<T extends Container | Network>(
  client: Client,
  kind: string,
  namespace: string,
  name: string,
  done: (obj: T | undefined) => boolean,
  opts: { timeoutMs: number; what: string },
): Promise<T | undefined> {
  const changes = new ObjectChanges(client, kind, { namespace, name });
  try {
    const deadline = Date.now() + opts.timeoutMs;
    for (let interval = POLL_START_MS; ; interval = Math.min(interval * 2, POLL_MAX_MS)) {
      const current = await getIfExists<T>(client, kind, namespace, name);
      if (done(current)) return current;
      if (Date.now() >= deadline) throw new CliError(`timed out after ${Math.round(opts.timeoutMs / 1000)}s waiting for ${opts.what}`, { code: 'D2P_TIMEOUT' });
      await changes.next(Math.min(interval, Math.max(0, deadline - Date.now())));
    }
  } finally {
    changes.stop();
  }
}

async function getIfExists<T extends Container | Network>(client: Client, kind: string, namespace: string, name: string): Promise<T | undefined> {
  try {
    return await client.for<T>(kind).get(namespace, name);
  } catch (err) {
    if (isApiError(err, 'NotFound')) return undefined;
    throw err;
  }
}
