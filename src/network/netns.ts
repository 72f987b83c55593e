// The machine boundary of d2p networking (DESIGN.md §10's `Host`): named network
// namespaces, the netlink calls of addon/netlink.ts, and the firewall rules of bridge
// networks. Every operation is low-level and idempotent where the kernel lets it be; the
// decisions live in controllers/network.ts and src/network/attach.ts, so a recording fake
// of NetHost lets unit tests check them without root.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { addon, MNT_DETACH } from '../../addon/index';
import * as netlink from '../../addon/netlink';
import type { Address, Link, Route, RouteSpec } from '../../addon/netlink';
import { NetworkError, errnoOf } from './errors';
import {
  IptablesState,
  OneAtATime,
  RestoreInput,
  addMissing,
  deleteEveryCopy,
  deleteJumpsTo,
  deleteOtherForms,
  findIptables,
  iptablesTools,
  savedLine,
  uniqueRules,
  type IptablesRule,
  type IptablesTable,
  type IptablesTools,
} from './iptables';

export type { Address, Link, Route, RouteSpec } from '../../addon/netlink';

/** Firewall rules of one bridge network: isolation from the other d2p bridges, masquerading out. */
export interface BridgeRules {
  bridge: string;
  subnet: string;
  /** No traffic in or out of the bridge except between its own endpoints (Docker's --internal). */
  internal: boolean;
}

export interface NetworkFirewall {
  /** Which tool carries the rules, for status messages ("iptables (/usr/sbin/iptables)"). */
  readonly description: string;
  ensureBridgeRules(rules: BridgeRules): Promise<void>;
  /** Removes every rule of this bridge; rules already gone are not an error. */
  removeBridgeRules(rules: BridgeRules): Promise<void>;
  /** net.ipv4.ip_forward=1, which routing containers' traffic out needs (Docker sets it too). */
  enableForwarding(): void;
}

export interface NetHost {
  linkList(netns?: string): Link[];
  /** Whether a link of that name is in the host's namespace: one lookup, not a list of all. */
  linkExists(name: string): boolean;
  addrList(link: string | null, netns?: string): Address[];
  routeList(netns?: string): Route[];
  addBridge(name: string, mtu?: number): void;
  /** A veth pair whose peer is created directly inside `peerNetns` (so it never shows on the host). */
  addVeth(hostName: string, peerName: string, peerNetns: string, mtu?: number): void;
  deleteLink(name: string, netns?: string): void;
  setLinkUp(name: string, netns?: string): void;
  setMaster(name: string, bridge: string): void;
  addAddress(link: string, cidr: string, netns?: string): void;
  addRoute(route: RouteSpec, netns?: string): void;
  /**
   * Makes `file` a bind mount of a new network namespace, its loopback up; true when it
   * made one, false for a file that already is one (kept as it is).
   */
  createNetns(file: string): boolean;
  /** Unmounts and removes a netns file; a file already gone is not an error. */
  removeNetns(file: string): void;
  netnsExists(file: string): boolean;
  /** Undefined when the machine has no iptables: then nothing is masqueraded nor forwarded. */
  readonly firewall: NetworkFirewall | undefined;
}

/** The real NetHost: the addon for netlink, mounts and namespaces, iptables when present. */
export function realNetHost(options: { iptables?: string | null } = {}): NetHost {
  const iptables = options.iptables === null ? undefined : (options.iptables ?? findIptables());
  const firewall = iptables !== undefined ? new IptablesFirewall(iptablesTools(iptables), `iptables (${iptables})`) : undefined;
  const ns = (netns?: string) => (netns === undefined ? {} : { netns });
  return {
    linkList: (netns) => netlink.linkList(ns(netns)),
    linkExists,
    addrList: (link, netns) => netlink.addrList(link, ns(netns)),
    routeList: (netns) => netlink.routeList({ ...ns(netns), family: 4 }),
    addBridge: (name, mtu) => netlink.linkAddBridge(name, mtu === undefined ? {} : { mtu }),
    addVeth: (hostName, peerName, peerNetns, mtu) => netlink.linkAddVeth(hostName, peerName, { peerNetnsPath: peerNetns, ...(mtu === undefined ? {} : { mtu }) }),
    deleteLink: (name, netns) => netlink.linkDel(name, ns(netns)),
    setLinkUp: (name, netns) => netlink.linkSetUp(name, ns(netns)),
    setMaster: (name, bridge) => netlink.linkSetMaster(name, bridge),
    addAddress: (link, cidr, netns) => netlink.addrAdd(link, cidr, ns(netns)),
    addRoute: (route, netns) => netlink.routeAdd(route, ns(netns)),
    createNetns,
    removeNetns,
    netnsExists: isMountedNetns,
    firewall,
  };
}

function linkExists(name: string): boolean {
  try {
    netlink.linkGet(name);
    return true;
  } catch (error) {
    if (errnoOf(error) === 'ENODEV') return false;
    throw error;
  }
}

// ---------------------------------------------------------------------------- named netns

/**
 * The way ip-netns(8) and `unshare --net=FILE` keep a namespace alive without a process:
 * bind-mount its nsfs file onto an ordinary file (the addon's netnsCreate, which needs
 * the file to exist, and brings the namespace's loopback up as it makes it).
 */
export function createNetns(file: string): boolean {
  if (isMountedNetns(file)) return false;
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.closeSync(fs.openSync(file, 'a', 0o444));
  try {
    addon().netnsCreate(file);
  } catch (error) {
    throw new NetworkError('D2P_NETWORK_SYSTEM', `cannot create network namespace ${file}: ${(error as Error).message}`, { errno: errnoOf(error), cause: error });
  }
  return true;
}

export function removeNetns(file: string): void {
  if (isMountedNetns(file)) {
    try {
      // MNT_DETACH: a process still inside the namespace keeps it alive; the file goes now.
      addon().umount2(file, MNT_DETACH);
    } catch (error) {
      // EINVAL: not a mount point any more (someone unmounted it between our check and now).
      if (errnoOf(error) !== 'EINVAL') throw error;
    }
  }
  try {
    fs.unlinkSync(file);
  } catch (error) {
    if (errnoOf(error) !== 'ENOENT') throw error;
  }
}

/**
 * Every nsfs file shares one device (fs/nsfs.c mounts a single internal superblock), so a
 * file with the device of our own /proc/self/ns/net is a namespace bind mount.
 */
export function isMountedNetns(file: string): boolean {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return false;
    throw error;
  }
  return stat.dev === fs.statSync('/proc/self/ns/net').dev;
}

// ---------------------------------------------------------------------------- firewall

export const FORWARD_CHAIN = 'D2P-FORWARD';
/** How long bridge rules checked by this process are trusted before iptables is asked again. */
export const FIREWALL_RECHECK_MS = 60_000;
export const ISOLATION_STAGE_1 = 'D2P-ISOLATION-1';
export const ISOLATION_STAGE_2 = 'D2P-ISOLATION-2';
export const POSTROUTING_CHAIN = 'D2P-POSTROUTING';

const D2P_CHAINS: ReadonlyArray<readonly [IptablesTable, string]> = [
  ['filter', FORWARD_CHAIN],
  ['filter', ISOLATION_STAGE_1],
  ['filter', ISOLATION_STAGE_2],
  ['nat', POSTROUTING_CHAIN],
];
const D2P_CHAIN_NAMES: ReadonlySet<string> = new Set(D2P_CHAINS.map(([, chain]) => chain));

/** The isolation jump is first in D2P-FORWARD and D2P-FORWARD first in FORWARD, as Docker's are. */
const ISOLATION_JUMP: IptablesRule = { table: 'filter', chain: FORWARD_CHAIN, spec: ['-j', ISOLATION_STAGE_1], anchor: ISOLATION_STAGE_1, first: true };
/** The jumps from the kernel's hooks into our chains: what makes the chains take effect. */
const HOOK_JUMPS: readonly IptablesRule[] = [
  { table: 'filter', chain: 'FORWARD', spec: ['-j', FORWARD_CHAIN], anchor: FORWARD_CHAIN, first: true },
  { table: 'nat', chain: 'POSTROUTING', spec: ['-j', POSTROUTING_CHAIN], anchor: POSTROUTING_CHAIN },
];

/**
 * Docker's bridge rules (moby libnetwork/drivers/bridge/setup_ip_tables.go), in chains of
 * our own so that removing a network removes exactly its rules:
 *  - two-stage isolation: traffic entering from one d2p bridge and leaving by another is
 *    dropped, so networks do not reach each other through the host's routing;
 *  - internal networks: nothing in or out of the bridge but between its endpoints;
 *  - other networks: out and back (conntrack), and MASQUERADE of the subnet leaving by
 *    any other interface.
 *
 * Each operation reads the tables with one iptables-save and writes every change with
 * one iptables-restore, both asynchronous: checking and adding rule by rule took ~20
 * iptables processes per network, ~45 ms of blocked event loop on the path of every
 * container's start (and ~300 ms per network at `down`).
 */
export class IptablesFirewall implements NetworkFirewall {
  /** Rule sets this process has checked, by bridge: the fingerprint and when. */
  private readonly verified = new Map<string, { fingerprint: string; at: number }>();
  private readonly queue = new OneAtATime();

  constructor(
    private readonly tools: IptablesTools,
    readonly description: string,
    private readonly options: { recheckMs?: number; now?: () => number } = {},
  ) {}

  /**
   * A Network is reconciled on every change of its containers, so rules this process has
   * just checked are trusted for a while, then checked again, which still puts back rules
   * someone deleted by hand.
   */
  ensureBridgeRules(rules: BridgeRules): Promise<void> {
    return this.queue.run(async () => {
      const fingerprint = JSON.stringify([rules.subnet, rules.internal]);
      const now = (this.options.now ?? Date.now)();
      const last = this.verified.get(rules.bridge);
      if (last?.fingerprint === fingerprint && now - last.at < (this.options.recheckMs ?? FIREWALL_RECHECK_MS)) return;
      const changes = new RestoreInput();
      await addMissing(this.tools, await this.readState(), D2P_CHAINS, [ISOLATION_JUMP, ...HOOK_JUMPS, ...this.rulesOf(rules)], new Set(), changes);
      if (!changes.empty) await this.tools.restore(changes.toString());
      this.verified.set(rules.bridge, { fingerprint, at: now });
    });
  }

  removeBridgeRules(rules: BridgeRules): Promise<void> {
    return this.queue.run(async () => {
      this.verified.delete(rules.bridge);
      // Both variants: a network whose `internal` changed still has the other kind's rules.
      const ours = uniqueRules([...this.rulesOf({ ...rules, internal: true }), ...this.rulesOf({ ...rules, internal: false })]);
      let state = await this.readState();
      if (await deleteOtherForms(this.tools, state, ours)) state = await this.readState();
      const changes = new RestoreInput();
      const deleted = deleteEveryCopy(state, ours, changes);
      const removesChains = this.addChainRemovalIfUnused(state, deleted, changes);
      if (!changes.empty) await this.tools.restore(changes.toString());
      // No chains, no rules: whatever this process had checked is gone.
      if (removesChains) this.verified.clear();
    });
  }

  /**
   * With the last network's rules gone, the chains and the jumps into them go too, so a
   * machine after `down` has no trace of d2p in its tables (as before the first `up`).
   * `deleted` are the rules (`table -A …`) the same change deletes. True when it removes them.
   */
  private addChainRemovalIfUnused(state: IptablesState, deleted: string[], changes: RestoreInput): boolean {
    const existing = D2P_CHAINS.filter(([table, chain]) => state.hasChain(table, chain));
    if (existing.length === 0) return false;
    if (existing.some(([table, chain]) => state.rulesLeft(table, chain, deleted).some((line) => line !== savedLine(ISOLATION_JUMP)))) return false;
    for (const hook of HOOK_JUMPS) if (state.hasChain(hook.table, hook.anchor)) deleteJumpsTo(state, hook.table, hook.anchor, [hook.chain], changes);
    // Flushed first, then deleted: D2P-FORWARD jumps to stage 1, stage 1 to stage 2.
    for (const [table, chain] of existing) changes.add(table, ['-F', chain]);
    for (const [table, chain] of existing) changes.add(table, ['-X', chain]);
    return true;
  }

  enableForwarding(): void {
    const file = '/proc/sys/net/ipv4/ip_forward';
    if (fs.readFileSync(file, 'utf8').trim() !== '1') fs.writeFileSync(file, '1\n');
  }

  /** Written as iptables-save prints them (e.g. `! -i` before `-o`), so a save shows them verbatim. */
  private rulesOf({ bridge, subnet, internal }: BridgeRules): IptablesRule[] {
    const rule = (table: IptablesTable, chain: string, spec: string[]): IptablesRule => ({ table, chain, spec, anchor: bridge });
    const rules = [
      rule('filter', ISOLATION_STAGE_1, ['-i', bridge, '!', '-o', bridge, '-j', ISOLATION_STAGE_2]),
      rule('filter', ISOLATION_STAGE_2, ['-o', bridge, '-j', 'DROP']),
      rule('filter', FORWARD_CHAIN, ['-i', bridge, '-o', bridge, '-j', 'ACCEPT']),
    ];
    if (internal) {
      rules.push(rule('filter', FORWARD_CHAIN, ['-i', bridge, '!', '-o', bridge, '-j', 'DROP']));
      rules.push(rule('filter', FORWARD_CHAIN, ['!', '-i', bridge, '-o', bridge, '-j', 'DROP']));
    } else {
      rules.push(rule('filter', FORWARD_CHAIN, ['-o', bridge, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']));
      rules.push(rule('filter', FORWARD_CHAIN, ['-i', bridge, '!', '-o', bridge, '-j', 'ACCEPT']));
      rules.push(rule('nat', POSTROUTING_CHAIN, ['-s', subnet, '!', '-o', bridge, '-j', 'MASQUERADE']));
    }
    return rules;
  }

  private async readState(): Promise<IptablesState> {
    return new IptablesState(await this.tools.save(), D2P_CHAIN_NAMES);
  }
}

