// The Network reconciler (DESIGN.md §6): a bridge Network is a Linux bridge `d2p-<hash>`
// carrying the gateway address of a subnet chosen like Docker's (src/network/ipam.ts:
// never overlapping another Network nor a host route), firewall rules when the machine
// has iptables (isolation between networks; masquerading out unless `internal`), and the
// embedded DNS server listening on the gateway. host and none networks need nothing.
//  - Level-triggered and idempotent: the bridge name derives from namespace/name, so after
//    a daemon restart the existing bridge is found and adopted, not made twice.
//  - Addresses handed to containers live in status.allocations, so a restarted daemon
//    gives every container the address it had (the allocator is rebuilt from it, and from
//    the Containers' own status.ipAddresses for anything attached just before a crash).
//  - Deletion is guarded by the finalizer d2p.dev/network-cleanup: like `docker network rm`
//    ("network has active endpoints"), it waits while a running Container lists the network,
//    then removes DNS listener, firewall rules and bridge.
import { isDeepStrictEqual } from 'node:util';

import { DEFAULT_NAMESPACE } from '../src/api/meta';
import type { Container, Network, NetworkStatus } from '../src/api/types';
import { isNetworkError, type NetworkError } from '../src/network/errors';
import { bridgeName, networkKey, networkingFor, type BridgeNetwork, type Networking } from '../src/network/attach';
import { parseCidr, planNetworkAddressing, type NetworkAddressing } from '../src/network/ipam';
import type { NetHost } from '../src/network/netns';
import { setCondition } from './conditions';
import { describeError, TerminalError } from './errors';
import { splitKey, type Controller, type ReconcileContext, type Result } from './manager';
import { ensureFinalizer, getIfExists } from './objects';

export const NETWORK_FINALIZER = 'd2p.dev/network-cleanup';
/** How often a Network waiting for its containers to go away looks again. */
export const NETWORK_RECHECK_MS = 2_000;

const CONDITION_READY = 'Ready';
/** Whether containers' traffic can leave the network (masquerade) — False explains why not. */
const CONDITION_OUTBOUND = 'Outbound';
const CONDITION_DNS = 'DNSReady';

export interface NetworkControllerOptions {
  /** The shared Networking of the daemon (default: networkingFor(ctx.paths)). */
  networking?: (ctx: ReconcileContext) => Networking;
}

export function networkController(opts: NetworkControllerOptions = {}): Controller {
  const networking = opts.networking ?? ((ctx: ReconcileContext) => networkingFor(ctx.paths));
  return {
    kind: 'Network',
    // One at a time: two new networks planned concurrently could both pick the same free
    // subnet before either recorded it.
    workers: 1,
    // A Container appearing, changing or going away changes the allocations to persist and
    // may unblock a deletion.
    watches: [{ kind: 'Container', map: (obj) => networksOfContainer(obj as Container) }],
    reconcile: (key, ctx) => reconcileNetwork(key, ctx, networking(ctx)),
  };
}

export async function reconcileNetwork(key: string, ctx: ReconcileContext, networking: Networking): Promise<Result | void> {
  const { namespace, name } = splitKey(key);
  const network = await getIfExists<Network>(ctx.client('Network'), namespace, name);
  if (!network) return;
  if (network.metadata.deletionTimestamp) return finalize(ctx, networking, network);
  const driver = network.spec?.driver ?? 'bridge';
  if (driver !== 'bridge') return markReady(ctx, network, {}, `driver ${driver}: nothing to create`);
  return reconcileBridge(ctx, networking, await ensureFinalizer(ctx.client('Network'), network, NETWORK_FINALIZER));
}

async function reconcileBridge(ctx: ReconcileContext, networking: Networking, network: Network): Promise<Result | void> {
  const namespace = network.metadata.namespace ?? DEFAULT_NAMESPACE;
  const name = network.metadata.name;
  const host = networking.host;
  const bridge = bridgeName(namespace, name);
  const addressing = await planAddressing(ctx, networking, network, bridge);
  ensureBridge(host, bridge, addressing, network.spec?.mtu);
  const internal = network.spec?.internal === true;
  const outbound = await applyFirewall(host, { bridge, subnet: addressing.subnet, internal });
  const containers = await containersOn(ctx, network);
  networking.registerNetwork(bridgeNetwork(network, bridge, addressing), persistedAllocations(network, containers));
  networking.releaseStale(namespace, name, (endpoint) => containers.some((c) => endpointKey(c) === endpoint));
  const dns = await serveDns(networking, namespace, name);
  const status: NetworkStatus = structuredClone(network.status ?? {});
  status.phase = 'Ready';
  status.bridge = bridge;
  status.subnet = addressing.subnet;
  status.gateway = addressing.gateway;
  status.allocations = networking.allocations(namespace, name) ?? {};
  status.observedGeneration = network.metadata.generation;
  const generation = network.metadata.generation;
  setCondition(status, { type: CONDITION_OUTBOUND, ...outbound, observedGeneration: generation });
  setCondition(status, { type: CONDITION_DNS, ...dns, observedGeneration: generation });
  setCondition(status, { type: CONDITION_READY, status: 'True', reason: 'BridgeReady', message: `bridge ${bridge} ${addressing.gateway}/${parseCidr(addressing.subnet).prefixLength}`, observedGeneration: generation });
  await writeStatus(ctx, network, status, [outbound, dns]);
}

/**
 * Subnet and gateway: kept from status once chosen (so a restart never renumbers a live
 * network), else the spec's, else the first free pool subnet avoiding other Networks and
 * the host's routes — except routes through this network's own bridge, which are ours.
 */
async function planAddressing(ctx: ReconcileContext, networking: Networking, network: Network, bridge: string): Promise<NetworkAddressing> {
  const spec = network.spec ?? {};
  const others = (await ctx.client('Network').list()).items as Network[];
  const usedSubnets = others
    .filter((o) => o.metadata.uid !== network.metadata.uid && (o.spec?.driver ?? 'bridge') === 'bridge')
    .map((o) => o.status?.subnet ?? o.spec?.subnet)
    .filter((s): s is string => s !== undefined);
  const hostRoutes = networking.host
    .routeList()
    .filter((r) => r.dst !== 'default' && r.dev !== bridge && !r.dst.includes(':'))
    .map((r) => (r.dst.includes('/') ? r.dst : `${r.dst}/32`));
  try {
    return planNetworkAddressing({
      network: `${network.metadata.namespace ?? DEFAULT_NAMESPACE}/${network.metadata.name}`,
      subnet: spec.subnet ?? network.status?.subnet,
      gateway: spec.gateway ?? (spec.subnet === undefined ? network.status?.gateway : undefined),
      ipRange: spec.ipRange,
      usedSubnets,
      hostRoutes,
    });
  } catch (error) {
    // A spec the pools cannot satisfy right now may become satisfiable when another
    // network goes away; everything else is the spec's fault.
    if (isNetworkError(error) && error.code !== 'D2P_NETWORK_POOL_EXHAUSTED') throw specError(error);
    throw error;
  }
}

function specError(error: NetworkError): TerminalError {
  const reason = error.code === 'D2P_NETWORK_SUBNET_OVERLAP' ? 'SubnetOverlap' : 'InvalidSpec';
  return new TerminalError(reason, error.message, { cause: error });
}

/** ip link add … type bridge; ip addr add GATEWAY/LEN dev …; ip link set … up — each only when missing. */
function ensureBridge(host: NetHost, bridge: string, addressing: NetworkAddressing, mtu: number | undefined): void {
  const existing = host.linkList().find((l) => l.name === bridge);
  if (existing && existing.type !== 'bridge') {
    throw new TerminalError('BridgeNameTaken', `interface ${bridge} exists but is a ${existing.type}, not a bridge; remove it or rename the network`);
  }
  if (!existing) host.addBridge(bridge, mtu);
  const cidr = `${addressing.gateway}/${parseCidr(addressing.subnet).prefixLength}`;
  if (!host.addrList(bridge).some((a) => a.cidr === cidr)) host.addAddress(bridge, cidr);
  if (!existing?.up) host.setLinkUp(bridge);
}

type ConditionParts = { status: 'True' | 'False'; reason: string; message: string };

async function applyFirewall(host: NetHost, rules: { bridge: string; subnet: string; internal: boolean }): Promise<ConditionParts> {
  const firewall = host.firewall;
  if (!firewall) {
    if (rules.internal) return { status: 'False', reason: 'Internal', message: 'internal network: no route out' };
    return {
      status: 'False',
      reason: 'NoFirewallTool',
      message: 'neither iptables nor nft is installed: no masquerading, so containers reach each other and the host but not outside; networks are isolated only while IP forwarding stays off',
    };
  }
  await firewall.ensureBridgeRules(rules);
  if (rules.internal) return { status: 'False', reason: 'Internal', message: `internal network: ${firewall.description} drops traffic in and out of ${rules.bridge}` };
  firewall.enableForwarding();
  return { status: 'True', reason: 'Masquerading', message: `${rules.subnet} is masqueraded by ${firewall.description}` };
}

async function serveDns(networking: Networking, namespace: string, name: string): Promise<ConditionParts> {
  try {
    const address = await networking.serveDns(namespace, name);
    return { status: 'True', reason: 'Listening', message: `embedded DNS on ${address.host}:${address.port}` };
  } catch (error) {
    // The network still works without names (addresses do); say why names do not.
    return { status: 'False', reason: 'ListenFailed', message: describeError(error) };
  }
}

function bridgeNetwork(network: Network, bridge: string, addressing: NetworkAddressing): BridgeNetwork {
  return {
    namespace: network.metadata.namespace ?? DEFAULT_NAMESPACE,
    name: network.metadata.name,
    bridge,
    subnet: addressing.subnet,
    gateway: addressing.gateway,
    ...(addressing.ipRange ? { ipRange: addressing.ipRange } : {}),
    internal: network.spec?.internal === true,
    ...(network.spec?.mtu ? { mtu: network.spec.mtu } : {}),
  };
}

/** status.allocations, plus addresses Containers report that status did not record yet. */
function persistedAllocations(network: Network, containers: Container[]): Record<string, string> {
  const allocations = { ...(network.status?.allocations ?? {}) };
  for (const c of containers) {
    const ip = c.status?.ipAddresses?.[network.metadata.name];
    if (ip !== undefined && allocations[endpointKey(c)] === undefined) allocations[endpointKey(c)] = ip;
  }
  return allocations;
}

// ---------------------------------------------------------------------------- deletion

async function finalize(ctx: ReconcileContext, networking: Networking, network: Network): Promise<Result | void> {
  const finalizers = network.metadata.finalizers ?? [];
  if (!finalizers.includes(NETWORK_FINALIZER)) return;
  const namespace = network.metadata.namespace ?? DEFAULT_NAMESPACE;
  const running = (await containersOn(ctx, network)).filter(isRunning).map((c) => c.metadata.name);
  const attached = networking.attachedTo(namespace, network.metadata.name).map((k) => splitKey(k).name);
  const users = [...new Set([...running, ...attached])].sort();
  if (users.length > 0) {
    await ctx.events.record(network, 'Warning', 'NetworkInUse', `network has active endpoints: container(s) ${users.join(', ')}; it is removed when they are gone`);
    return { requeueAfter: NETWORK_RECHECK_MS };
  }
  if ((network.spec?.driver ?? 'bridge') === 'bridge') await removeBridge(ctx, networking, network);
  await ctx.client('Network').update({ ...network, metadata: { ...network.metadata, finalizers: finalizers.filter((f) => f !== NETWORK_FINALIZER) } });
}

async function removeBridge(ctx: ReconcileContext, networking: Networking, network: Network): Promise<void> {
  const namespace = network.metadata.namespace ?? DEFAULT_NAMESPACE;
  const bridge = network.status?.bridge ?? bridgeName(namespace, network.metadata.name);
  const registered = networking.network(namespace, network.metadata.name);
  const gateway = registered?.gateway ?? network.status?.gateway;
  if (gateway !== undefined) await networking.stopDns(gateway);
  networking.unregisterNetwork(namespace, network.metadata.name);
  const subnet = registered?.subnet ?? network.status?.subnet;
  if (subnet !== undefined) await networking.host.firewall?.removeBridgeRules({ bridge, subnet, internal: network.spec?.internal === true });
  if (networking.host.linkList().some((l) => l.name === bridge)) {
    networking.host.deleteLink(bridge);
    await ctx.events.record(network, 'Normal', 'Deleted', `removed bridge ${bridge}`);
  }
}

// ---------------------------------------------------------------------------- helpers

function isRunning(c: Container): boolean {
  const phase = c.status?.phase;
  return phase === 'Running' || phase === 'Paused' || phase === 'Creating';
}

function endpointKey(c: Container): string {
  return `${c.metadata.namespace ?? DEFAULT_NAMESPACE}/${c.metadata.name}`;
}

/** Containers of the network's namespace that list it in spec.networks. */
async function containersOn(ctx: ReconcileContext, network: Network): Promise<Container[]> {
  const list = await ctx.client('Container').list({ namespace: network.metadata.namespace ?? DEFAULT_NAMESPACE });
  return (list.items as Container[]).filter((c) => (c.spec?.networks ?? []).some((n) => n.name === network.metadata.name));
}

function networksOfContainer(c: Container): string[] {
  return (c.spec?.networks ?? []).map((n) => networkKey(c.metadata.namespace, n.name));
}

async function markReady(ctx: ReconcileContext, network: Network, fields: Partial<NetworkStatus>, message: string): Promise<void> {
  const status: NetworkStatus = { ...structuredClone(network.status ?? {}), ...fields, phase: 'Ready', observedGeneration: network.metadata.generation };
  setCondition(status, { type: CONDITION_READY, status: 'True', reason: 'NothingToCreate', message, observedGeneration: network.metadata.generation });
  await writeStatus(ctx, network, status, []);
}

/** Writes status when it changed; a condition turning False is also told as a Warning event once. */
async function writeStatus(ctx: ReconcileContext, network: Network, status: NetworkStatus, problems: ConditionParts[]): Promise<void> {
  if (isDeepStrictEqual(status, network.status)) return;
  const previous = network.status?.conditions ?? [];
  await ctx.client('Network').updateStatus({ ...network, status });
  for (const condition of status.conditions ?? []) {
    const before = previous.find((c) => c.type === condition.type);
    const problem = problems.find((p) => p.reason === condition.reason);
    if (condition.status === 'False' && problem && problem.reason !== 'Internal' && (before?.status !== 'False' || before.reason !== condition.reason)) {
      await ctx.events.record(network, 'Warning', condition.reason ?? condition.type, condition.message ?? '');
    }
  }
}
