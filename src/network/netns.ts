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
import { findIptables, iptablesHas, runIptables, type IptablesRun } from './iptables';

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
  ensureBridgeRules(rules: BridgeRules): void;
  /** Removes every rule of this bridge; rules already gone are not an error. */
  removeBridgeRules(rules: BridgeRules): void;
  /** net.ipv4.ip_forward=1, which routing containers' traffic out needs (Docker sets it too). */
  enableForwarding(): void;
}

export interface NetHost {
  linkList(netns?: string): Link[];
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
  /** Makes `file` a bind mount of a new network namespace; a file that already is one is kept. */
  createNetns(file: string): void;
  /** Unmounts and removes a netns file; a file already gone is not an error. */
  removeNetns(file: string): void;
  netnsExists(file: string): boolean;
  /** Undefined when the machine has no iptables: then nothing is masqueraded nor forwarded. */
  readonly firewall: NetworkFirewall | undefined;
}

/** The real NetHost: the addon for netlink, mounts and namespaces, iptables when present. */
export function realNetHost(options: { iptables?: string | null } = {}): NetHost {
  const iptables = options.iptables === null ? undefined : (options.iptables ?? findIptables());
  const firewall = iptables !== undefined ? new IptablesFirewall(runIptables(iptables), `iptables (${iptables})`) : undefined;
  const ns = (netns?: string) => (netns === undefined ? {} : { netns });
  return {
    linkList: (netns) => netlink.linkList(ns(netns)),
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

// ---------------------------------------------------------------------------- named netns

/**
 * The way ip-netns(8) and `unshare --net=FILE` keep a namespace alive without a process:
 * bind-mount its nsfs file onto an ordinary file (the addon's netnsCreate, which needs
 * the file to exist).
 */
export function createNetns(file: string): void {
  if (isMountedNetns(file)) return;
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.closeSync(fs.openSync(file, 'a', 0o444));
  try {
    addon().netnsCreate(file);
  } catch (error) {
    throw new NetworkError('D2P_NETWORK_SYSTEM', `cannot create network namespace ${file}: ${(error as Error).message}`, { errno: errnoOf(error), cause: error });
  }
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

/**
 * Docker's bridge rules (moby libnetwork/drivers/bridge/setup_ip_tables.go), in chains of
 * our own so that removing a network removes exactly its rules:
 *  - two-stage isolation: traffic entering from one d2p bridge and leaving by another is
 *    dropped, so networks do not reach each other through the host's routing;
 *  - internal networks: nothing in or out of the bridge but between its endpoints;
 *  - other networks: out and back (conntrack), and MASQUERADE of the subnet leaving by
 *    any other interface.
 */
export class IptablesFirewall implements NetworkFirewall {
  /** Rule sets this process has checked, by bridge: the fingerprint and when. */
  private readonly verified = new Map<string, { fingerprint: string; at: number }>();

  constructor(
    private readonly run: IptablesRun,
    readonly description: string,
    private readonly options: { recheckMs?: number; now?: () => number } = {},
  ) {}

  /**
   * Each check is an iptables process (~16 per network), and a Network is reconciled on
   * every change of its containers: an `up` of 10 spent half a second of blocked event
   * loop here. So rules this process has just checked are trusted for a while, then
   * checked again, which still puts back rules someone deleted by hand.
   */
  ensureBridgeRules(rules: BridgeRules): void {
    const fingerprint = JSON.stringify([rules.subnet, rules.internal]);
    const now = (this.options.now ?? Date.now)();
    const last = this.verified.get(rules.bridge);
    if (last?.fingerprint === fingerprint && now - last.at < (this.options.recheckMs ?? FIREWALL_RECHECK_MS)) return;
    this.ensureChains();
    for (const [table, chain, spec] of this.rulesOf(rules)) {
      if (!this.exists(table, ['-C', chain, ...spec])) this.run(['-t', table, '-A', chain, ...spec]);
    }
    this.verified.set(rules.bridge, { fingerprint, at: now });
  }

  removeBridgeRules(rules: BridgeRules): void {
    this.verified.delete(rules.bridge);
    // Both variants: a network whose `internal` changed still has the other kind's rules.
    for (const internal of [true, false]) {
      for (const [table, chain, spec] of this.rulesOf({ ...rules, internal })) {
        if (!this.exists(table, ['-S', chain])) continue;
        while (this.exists(table, ['-C', chain, ...spec])) this.run(['-t', table, '-D', chain, ...spec]);
      }
    }
    this.removeChainsIfUnused();
  }

  /**
   * With the last network's rules gone, the chains and the jumps into them go too, so a
   * machine after `down` has no trace of d2p in its tables (as before the first `up`).
   */
  private removeChainsIfUnused(): void {
    const bridgeRules = (table: string, chain: string): string[] =>
      this.exists(table, ['-S', chain])
        ? this.run(['-t', table, '-S', chain])
            .split('\n')
            .filter((line) => line.startsWith('-A ') && !line.endsWith(`-j ${ISOLATION_STAGE_1}`))
        : [];
    const chains = [
      ['filter', FORWARD_CHAIN],
      ['filter', ISOLATION_STAGE_1],
      ['filter', ISOLATION_STAGE_2],
      ['nat', POSTROUTING_CHAIN],
    ] as const;
    if (chains.some(([table, chain]) => bridgeRules(table, chain).length > 0)) return;
    for (const [table, hook, chain] of [
      ['filter', 'FORWARD', FORWARD_CHAIN],
      ['nat', 'POSTROUTING', POSTROUTING_CHAIN],
    ] as const) {
      while (this.exists(table, ['-S', chain]) && this.exists(table, ['-C', hook, '-j', chain])) this.run(['-t', table, '-D', hook, '-j', chain]);
    }
    // Flushed first, then deleted: D2P-FORWARD jumps to stage 1, stage 1 to stage 2.
    for (const [table, chain] of chains) if (this.exists(table, ['-S', chain])) this.run(['-t', table, '-F', chain]);
    for (const [table, chain] of chains) if (this.exists(table, ['-S', chain])) this.run(['-t', table, '-X', chain]);
  }

  enableForwarding(): void {
    const file = '/proc/sys/net/ipv4/ip_forward';
    if (fs.readFileSync(file, 'utf8').trim() !== '1') fs.writeFileSync(file, '1\n');
  }

  private rulesOf({ bridge, subnet, internal }: BridgeRules): Array<['filter' | 'nat', string, string[]]> {
    const rules: Array<['filter' | 'nat', string, string[]]> = [
      ['filter', ISOLATION_STAGE_1, ['-i', bridge, '!', '-o', bridge, '-j', ISOLATION_STAGE_2]],
      ['filter', ISOLATION_STAGE_2, ['-o', bridge, '-j', 'DROP']],
      ['filter', FORWARD_CHAIN, ['-i', bridge, '-o', bridge, '-j', 'ACCEPT']],
    ];
    if (internal) {
      rules.push(['filter', FORWARD_CHAIN, ['-i', bridge, '!', '-o', bridge, '-j', 'DROP']]);
      rules.push(['filter', FORWARD_CHAIN, ['-o', bridge, '!', '-i', bridge, '-j', 'DROP']]);
    } else {
      rules.push(['filter', FORWARD_CHAIN, ['-o', bridge, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']]);
      rules.push(['filter', FORWARD_CHAIN, ['-i', bridge, '!', '-o', bridge, '-j', 'ACCEPT']]);
      rules.push(['nat', POSTROUTING_CHAIN, ['-s', subnet, '!', '-o', bridge, '-j', 'MASQUERADE']]);
    }
    return rules;
  }

  /** Our chains and the jumps into them; the isolation jump is first in D2P-FORWARD, as Docker's is. */
  private ensureChains(): void {
    for (const [table, chain] of [
      ['filter', FORWARD_CHAIN],
      ['filter', ISOLATION_STAGE_1],
      ['filter', ISOLATION_STAGE_2],
      ['nat', POSTROUTING_CHAIN],
    ] as const) {
      if (!this.exists(table, ['-S', chain])) this.run(['-t', table, '-N', chain]);
    }
    if (!this.exists('filter', ['-C', FORWARD_CHAIN, '-j', ISOLATION_STAGE_1])) this.run(['-t', 'filter', '-I', FORWARD_CHAIN, '1', '-j', ISOLATION_STAGE_1]);
    if (!this.exists('filter', ['-C', 'FORWARD', '-j', FORWARD_CHAIN])) this.run(['-t', 'filter', '-I', 'FORWARD', '1', '-j', FORWARD_CHAIN]);
    if (!this.exists('nat', ['-C', 'POSTROUTING', '-j', POSTROUTING_CHAIN])) this.run(['-t', 'nat', '-A', 'POSTROUTING', '-j', POSTROUTING_CHAIN]);
  }

  private exists(table: string, args: string[]): boolean {
    return iptablesHas(this.run, table, args);
  }
}
