// Kernel NAT for published ports, through the iptables binary (iptables-nft or legacy),
// used only where it exists: the userland proxy (port-forward.ts) works everywhere and
// stays in front of every port, holding it. (iptables cannot create a table of its own;
// nft could, but the nft binary is not on this machine's image.)
//
// Every d2p rule lives in chains of our own, reached by jumps, so removeAll() takes every
// trace away. With the default chain name D2P-PORTS:
//   nat    D2P-PORTS        one DNAT rule per published port
//            ← PREROUTING  ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL   traffic from outside or from containers
//            ← OUTPUT      -m addrtype --dst-type LOCAL                    the host's own traffic, 127.0.0.1 included
//   nat    D2P-PORTS-MASQ  -s 127.0.0.0/8 -o <bridge> -j MASQUERADE, one per bridge with ports
//            ← POSTROUTING
//   filter D2P-PORTS-GUARD -d 127.0.0.0/8 ! -i lo -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
//            ← INPUT (first)
//
// The jumps follow Docker's (moby libnetwork/drivers/bridge/setup_ip_tables.go). Loopback
// is carried as Docker does with --userland-proxy=false: DNAT of 127.0.0.1 in OUTPUT,
// `route_localnet=1` on the target's bridge (without it the kernel refuses to route a
// packet with a 127.0.0.0/8 source out of a non-loopback device: net/ipv4/route.c,
// __mkroute_output), and MASQUERADE of the 127.0.0.0/8 source so the container can answer.
// route_localnet also makes the host accept packets *to* 127.0.0.0/8 arriving on the
// bridge, which let containers (or neighbours) reach services bound to the host's
// loopback: CVE-2020-8558. kube-proxy's fix is the guard above (kubernetes#91569), and
// d2p installs it before it sets route_localnet and removes it only after it resets it;
// PREROUTING never DNATs a 127.0.0.0/8 destination, so such a packet cannot slip past the
// guard as "DNAT" either. A rule whose target has no bridge keeps loopback on the proxy.
//
// Each operation reads the tables with one iptables-save and writes with one
// iptables-restore, both asynchronous (rule by rule with `iptables -C`/`-A`, a published
// port took 10–15 processes and 20–50 ms of blocked event loop; now 1–5 ms), and a second
// restore only where the order above needs the sysctl in between:
//   add     restore: chains, jumps, guard, MASQUERADE → route_localnet=1 → restore: DNAT rule
//           (one restore when route_localnet is already on, or the rule carries no loopback)
//   remove  restore: DNAT rule → route_localnet=0 → restore: MASQUERADE rule, and the guard,
//           MASQUERADE and DNAT chains with their jumps once no rule is left in them
import * as fs from 'node:fs';
import { isIP } from 'node:net';
import * as path from 'node:path';

import { NetworkError, errnoOf, isNetworkError } from './errors';
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
  ruleHeld,
  savedLine,
  uniqueRules,
  type IptablesRule,
  type IptablesTable,
  type IptablesTools,
} from './iptables';
import type { NatPortRule, NatReach, PortNat } from './port-forward';

export const DEFAULT_NAT_CHAIN = 'D2P-PORTS';

/** iptables chain names hold at most 28 characters (XT_EXTENSION_MAXNAMELEN 29 with the NUL). */
const CHAIN_NAME_MAX = 28;
const LONGEST_SUFFIX = '-GUARD';
const LOOPBACK_NET = '127.0.0.0/8';
/** Linux interface names: at most 15 bytes (IFNAMSIZ), no '/', no whitespace (net/core/dev.c dev_valid_name). */
const INTERFACE_NAME = /^[^/\s:]{1,15}$/;
const DNAT_HOOKS = ['PREROUTING', 'OUTPUT'];

export interface IptablesNatOptions {
  /** Path of the iptables binary; default: found on PATH (and in /usr/sbin, /sbin). */
  iptables?: string;
  /** Name of the DNAT chain; the MASQUERADE and guard chains get `-MASQ` and `-GUARD` after it. */
  chain?: string;
  /** Injected in unit tests: an in-memory iptables instead of the binaries. */
  tools?: IptablesTools;
  /**
   * DNAT 127.0.0.0/8 destinations too, for rules whose target sits behind a bridge
   * (route_localnet + MASQUERADE + the CVE-2020-8558 guard); default true. False leaves
   * loopback to the userland proxy, as Docker's default userland-proxy does.
   */
  loopback?: boolean;
  /** The per-interface IPv4 sysctls; default /proc/sys/net/ipv4/conf (a temp dir in unit tests). */
  sysctlDir?: string;
}

interface PendingAdd {
  rule: NatPortRule;
  loopback: boolean;
  /** The bridge whose loopback path the rule needs, if it carries loopback. */
  bridge: string | undefined;
  resolve(): void;
  reject(error: unknown): void;
}

export class IptablesNat implements PortNat {
  readonly chain: string;
  readonly masqueradeChain: string;
  readonly guardChain: string;
  readonly loopback: boolean;
  private readonly tools: IptablesTools;
  private readonly sysctlDir: string;
  private readonly ownChains: ReadonlySet<string>;
  private readonly queue = new OneAtATime();
  /** Adds waiting for the next batch (addPending). */
  private readonly pendingAdds: PendingAdd[] = [];

  constructor(options: IptablesNatOptions = {}) {
    this.chain = options.chain ?? DEFAULT_NAT_CHAIN;
    if (this.chain.length + LONGEST_SUFFIX.length > CHAIN_NAME_MAX) {
      throw new NetworkError('D2P_NETWORK_INVALID', `NAT chain name ${JSON.stringify(this.chain)} is too long: iptables chains hold ${CHAIN_NAME_MAX} characters and "${LONGEST_SUFFIX}" is appended`);
    }
    this.masqueradeChain = `${this.chain}-MASQ`;
    this.guardChain = `${this.chain}-GUARD`;
    this.ownChains = new Set([this.chain, this.masqueradeChain, this.guardChain]);
    this.loopback = options.loopback ?? true;
    this.sysctlDir = options.sysctlDir ?? '/proc/sys/net/ipv4/conf';
    if (options.tools) {
      this.tools = options.tools;
    } else {
      const binary = options.iptables ?? findIptables();
      if (binary === undefined) throw new NetworkError('D2P_NETWORK_SYSTEM', 'kernel NAT for published ports needs the iptables binary, and none was found on PATH, /usr/sbin or /sbin');
      this.tools = iptablesTools(binary);
    }
  }

  /** Creates the DNAT chain and its two jumps when missing. Idempotent. */
  ensureChain(): Promise<void> {
    return this.queue.run(async () => {
      const changes = new RestoreInput();
      await addMissing(this.tools, await this.readState(), [['nat', this.chain]], this.dnatJumps(), new Set(), changes);
      if (!changes.empty) await this.tools.restore(changes.toString());
    });
  }

  /**
   * Adds the DNAT rule of one published port (idempotent: a daemon adopting its containers
   * after a restart adds the same rules again) and says which destinations it carries.
   * IPv6 is left to the proxy: this is iptables, not ip6tables.
   */
  async addPortRule(rule: NatPortRule): Promise<NatReach> {
    if (isIP(rule.hostIP) !== 4 || isIP(rule.targetIP) !== 4) return 'none';
    const loopback = this.carriesLoopback(rule);
    if (isLoopbackAddress(rule.hostIP) && !loopback) return 'none';
    const bridge = loopback ? rule.targetInterface! : undefined;
    if (bridge !== undefined) checkInterfaceName(bridge);
    await new Promise<void>((resolve, reject) => {
      this.pendingAdds.push({ rule, loopback, bridge, resolve, reject });
      // The first add to wait queues the batch; those that come while it waits join it.
      if (this.pendingAdds.length === 1) void this.queue.run(() => this.addPending());
    });
    return loopback || rule.hostIP !== '0.0.0.0' ? 'all' : 'non-loopback';
  }

  /**
   * The adds that waited, in one save and one or two restores: the containers of an `up`
   * publish their ports at about the same time, and one at a time they took ~19 ms each
   * of wall time (10 ports: ~190 ms of the up). A batch that fails is applied again one
   * add at a time, so only a bad rule's own caller sees its error.
   */
  private async addPending(): Promise<void> {
    const batch = this.pendingAdds.splice(0);
    try {
      await this.applyAdds(batch);
      for (const add of batch) add.resolve();
    } catch (error) {
      if (batch.length === 1) return batch[0].reject(error);
      for (const add of batch) {
        try {
          await this.applyAdds([add]);
          add.resolve();
        } catch (alone) {
          add.reject(alone);
        }
      }
    }
  }

  private async applyAdds(adds: readonly PendingAdd[]): Promise<void> {
    const state = await this.readState();
    // A rule's other form (a daemon restarted with the other loopback setting) is another rule, not this one printed differently.
    const known = new Set(adds.flatMap((add) => this.dnatForms(add.rule)).map(savedLine));
    const bridges = [...new Set(adds.flatMap((add) => (add.bridge === undefined ? [] : [add.bridge])))];
    const prepared = new RestoreInput();
    if (bridges.length === 0) {
      await addMissing(this.tools, state, [['nat', this.chain]], this.dnatJumps(), known, prepared);
    } else {
      // The filter table first: a legacy iptables-restore commits table by table, in the
      // order of its input, and the guard must never be the one still missing.
      const chains: Array<[IptablesTable, string]> = [['filter', this.guardChain], ['nat', this.chain], ['nat', this.masqueradeChain]];
      const rules = [this.guardRule(), this.guardJump(), ...this.dnatJumps(), this.masqueradeJump(), ...bridges.map((bridge) => this.masqueradeRule(bridge))];
      await addMissing(this.tools, state, chains, rules, known, prepared);
    }
    const dnats = uniqueRules(adds.map((add) => this.dnatRule(add.rule, add.loopback)));
    const held = await Promise.all(dnats.map((dnat) => ruleHeld(this.tools, state, dnat, known)));
    const missing = dnats.filter((_, index) => !held[index]);
    const turningOn = bridges.filter((bridge) => !this.routeLocalnetIs(bridge, '1'));
    if (turningOn.length > 0) {
      // route_localnet only once the guard (and MASQUERADE) are in the tables, and the
      // DNAT rules only once route_localnet is on: the loopback packets they send to the
      // bridge would be dropped as martians before, and answered by no one without MASQUERADE.
      if (!prepared.empty) await this.tools.restore(prepared.toString());
      for (const bridge of turningOn) this.writeRouteLocalnet(bridge, '1');
      if (missing.length > 0) await this.restoreRules(missing);
    } else {
      for (const dnat of missing) prepared.addRule(dnat);
      if (!prepared.empty) await this.tools.restore(prepared.toString());
    }
  }

  /**
   * Removes the rule of one published port; a rule already gone is not an error. Both
   * forms go (with and without loopback), whatever this instance would add now. When no
   * port is left on the target's bridge, its loopback path goes too; with no rule left at
   * all, the chains and jumps, as before the first port.
   */
  removePortRule(rule: NatPortRule): Promise<void> {
    return this.queue.run(async () => {
      let state = await this.readState();
      if (!state.hasChain('nat', this.chain)) return;
      const forms = this.dnatForms(rule);
      if (await deleteOtherForms(this.tools, state, forms)) state = await this.readState();
      const changes = new RestoreInput();
      const deleted = deleteEveryCopy(state, forms, changes);
      const bridge = rule.targetInterface;
      const bridgeKeepsPorts = bridge !== undefined && state.rulesLeft('nat', this.chain, deleted).some((line) => hasInterfaceMatch(line, bridge));
      if (bridge === undefined || bridgeKeepsPorts || !(await this.hasLoopbackPath(state, bridge))) {
        this.addRemovalIfUnused(state, deleted, changes);
        if (!changes.empty) await this.tools.restore(changes.toString());
        return;
      }
      // The reverse of addPortRule: no DNAT rule sends loopback traffic to the bridge any
      // more when route_localnet goes off, and the guard stays until it is off.
      if (!changes.empty) await this.tools.restore(changes.toString());
      await this.releaseLoopbackPath(state, deleted, bridge);
    });
  }

  /** The DNAT chain's rules as iptables-save prints them (`-A CHAIN …`). */
  listRules(): Promise<string[]> {
    return this.queue.run(async () => (await this.readState()).rulesOf('nat', this.chain));
  }

  /** Bridges whose loopback path (route_localnet, MASQUERADE) is in place. */
  loopbackBridges(): Promise<string[]> {
    return this.queue.run(async () => this.loopbackBridgesOf(await this.readState()));
  }

  /** removeAll() when no published port is left in the chain (other daemons of this network namespace may share it). */
  removeAllIfUnused(): Promise<void> {
    return this.queue.run(async () => {
      const state = await this.readState();
      if (state.rulesOf('nat', this.chain).length === 0) await this.removeAllOf(state);
    });
  }

  /** Takes away every trace of d2p's NAT: route_localnet, jumps, rules and chains, the guard last. */
  removeAll(): Promise<void> {
    return this.queue.run(async () => this.removeAllOf(await this.readState()));
  }

  private async removeAllOf(state: IptablesState): Promise<void> {
    // route_localnet off before the guard goes, in a restore of its own that ends with the guard.
    for (const bridge of this.loopbackBridgesOf(state)) this.resetRouteLocalnet(bridge);
    const changes = new RestoreInput();
    this.addChainRemoval(state, 'nat', this.chain, DNAT_HOOKS, changes);
    this.addChainRemoval(state, 'nat', this.masqueradeChain, ['POSTROUTING'], changes);
    this.addChainRemoval(state, 'filter', this.guardChain, ['INPUT'], changes);
    if (!changes.empty) await this.tools.restore(changes.toString());
  }

  // -------------------------------------------------------------- loopback path

  private carriesLoopback(rule: NatPortRule): boolean {
    const wanted = this.loopback && rule.targetInterface !== undefined;
    return wanted && (rule.hostIP === '0.0.0.0' || isLoopbackAddress(rule.hostIP));
  }

  /** The MASQUERADE rule is the mark that d2p turned route_localnet on for this bridge. */
  private hasLoopbackPath(state: IptablesState, bridge: string): Promise<boolean> {
    checkInterfaceName(bridge);
    const masquerade = this.masqueradeRule(bridge);
    return ruleHeld(this.tools, state, masquerade, new Set([savedLine(masquerade)]));
  }

  /**
   * route_localnet off, then its mark (a crash in between leaves the mark, and the next
   * removal finds it), then the guard and the chains when no bridge needs them.
   * `deleted`: the lines the restore just applied deleted from `state`.
   */
  private async releaseLoopbackPath(state: IptablesState, deleted: string[], bridge: string): Promise<void> {
    this.resetRouteLocalnet(bridge);
    const masquerade = this.masqueradeRule(bridge);
    let current = state;
    let applied = deleted;
    if (await deleteOtherForms(this.tools, state, [masquerade])) {
      current = await this.readState();
      applied = [];
    }
    const changes = new RestoreInput();
    const removed = [...applied, ...deleteEveryCopy(current, [masquerade], changes)];
    this.addRemovalIfUnused(current, removed, changes);
    if (!changes.empty) await this.tools.restore(changes.toString());
  }

  /**
   * With no bridge's loopback path left (no MASQUERADE rule), the guard and MASQUERADE
   * chains go, and with no published port left either, the DNAT chain: no trace of d2p in
   * the tables, as before the first port. `deleted`: lines the same change deletes.
   */
  private addRemovalIfUnused(state: IptablesState, deleted: string[], changes: RestoreInput): void {
    if (state.rulesLeft('nat', this.masqueradeChain, deleted).length > 0) return;
    if (state.rulesLeft('nat', this.chain, deleted).length === 0) this.addChainRemoval(state, 'nat', this.chain, DNAT_HOOKS, changes);
    this.addChainRemoval(state, 'nat', this.masqueradeChain, ['POSTROUTING'], changes);
    // Last, after the nat table: a legacy iptables-restore commits table by table.
    this.addChainRemoval(state, 'filter', this.guardChain, ['INPUT'], changes);
  }

  private loopbackBridgesOf(state: IptablesState): string[] {
    return state.rulesOf('nat', this.masqueradeChain).map(outInterfaceOf).filter((name): name is string => name !== undefined);
  }

  private resetRouteLocalnet(bridge: string): void {
    try {
      this.writeRouteLocalnet(bridge, '0');
    } catch (error) {
      // The bridge is already gone (network deleted): so is its sysctl.
      if (!isNetworkError(error) || error.context.errno !== 'ENOENT') throw error;
    }
  }

  private routeLocalnetIs(bridge: string, value: '0' | '1'): boolean {
    return this.routeLocalnetFile(bridge, value, (file) => fs.readFileSync(file, 'utf8').trim() === value);
  }

  private writeRouteLocalnet(bridge: string, value: '0' | '1'): void {
    this.routeLocalnetFile(bridge, value, (file) => {
      if (fs.readFileSync(file, 'utf8').trim() !== value) fs.writeFileSync(file, `${value}\n`);
    });
  }

  /** Reads or writes the sysctl on the way to setting it to `value`; its errors name the bridge and the file. */
  private routeLocalnetFile<T>(bridge: string, value: '0' | '1', use: (file: string) => T): T {
    checkInterfaceName(bridge);
    const file = path.join(this.sysctlDir, bridge, 'route_localnet');
    try {
      return use(file);
    } catch (error) {
      const errno = errnoOf(error);
      const why = errno === 'ENOENT' ? 'the interface does not exist' : (error as Error).message;
      throw new NetworkError('D2P_NETWORK_SYSTEM', `cannot set route_localnet=${value} on ${bridge} (${file}): ${why}`, { errno, cause: error });
    }
  }

  // -------------------------------------------------------------- rules

  private dnatJumps(): IptablesRule[] {
    return [
      { table: 'nat', chain: 'PREROUTING', spec: ['!', '-d', LOOPBACK_NET, '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', this.chain], anchor: this.chain },
      { table: 'nat', chain: 'OUTPUT', spec: ['-m', 'addrtype', '--dst-type', 'LOCAL', '-j', this.chain], anchor: this.chain },
    ];
  }

  /** First in INPUT: an ACCEPT ahead of it (a host firewall's) must not let the packets by. */
  private guardJump(): IptablesRule {
    return { table: 'filter', chain: 'INPUT', spec: ['-j', this.guardChain], anchor: this.guardChain, first: true };
  }

  /** kube-proxy's rule for CVE-2020-8558 (pkg/proxy/iptables/proxier.go, KUBE-FIREWALL). */
  private guardRule(): IptablesRule {
    return { table: 'filter', chain: this.guardChain, spec: ['-d', LOOPBACK_NET, '!', '-i', 'lo', '-m', 'conntrack', '!', '--ctstate', 'RELATED,ESTABLISHED,DNAT', '-j', 'DROP'], anchor: 'DROP' };
  }

  private masqueradeJump(): IptablesRule {
    return { table: 'nat', chain: 'POSTROUTING', spec: ['-j', this.masqueradeChain], anchor: this.masqueradeChain };
  }

  private masqueradeRule(bridge: string): IptablesRule {
    return { table: 'nat', chain: this.masqueradeChain, spec: ['-s', LOOPBACK_NET, '-o', bridge, '-j', 'MASQUERADE'], anchor: bridge };
  }

  /**
   * One DNAT rule. A wildcard host address matches every local address (the jump already
   * checks LOCAL), loopback ones only when the loopback path carries them. Traffic entering
   * from the target's own bridge is left to the proxy: DNAT back onto the same bridge would
   * make the target answer the client directly, from an address the client never asked
   * (Docker's `! -i docker0` for the same reason). Written as iptables-save prints it.
   */
  private dnatRule(rule: NatPortRule, loopback: boolean): IptablesRule {
    const spec: string[] = [];
    if (rule.hostIP !== '0.0.0.0') spec.push('-d', `${rule.hostIP}/32`);
    else if (!loopback) spec.push('!', '-d', LOOPBACK_NET);
    if (rule.targetInterface !== undefined) spec.push('!', '-i', rule.targetInterface);
    spec.push('-p', rule.protocol, '-m', rule.protocol, '--dport', String(rule.hostPort));
    const destination = `${rule.targetIP}:${rule.targetPort}`;
    spec.push('-j', 'DNAT', '--to-destination', destination);
    return { table: 'nat', chain: this.chain, spec, anchor: destination };
  }

  /** The rule with and without loopback; one rule when the host address is not the wildcard (it is the same either way). */
  private dnatForms(rule: NatPortRule): IptablesRule[] {
    const [withLoopback, without] = [true, false].map((loopback) => this.dnatRule(rule, loopback));
    return savedLine(withLoopback) === savedLine(without) ? [withLoopback] : [withLoopback, without];
  }

  private async restoreRules(rules: IptablesRule[]): Promise<void> {
    const changes = new RestoreInput();
    for (const rule of rules) changes.addRule(rule);
    await this.tools.restore(changes.toString());
  }

  /**
   * Deletes every jump to `chain` from the hooks, whatever its matches (so jumps of an
   * older d2p with other matches go too), then the chain. No chain, no jumps: a jump cannot
   * exist without its target.
   */
  private addChainRemoval(state: IptablesState, table: IptablesTable, chain: string, hooks: string[], changes: RestoreInput): void {
    if (!state.hasChain(table, chain)) return;
    deleteJumpsTo(state, table, chain, hooks, changes);
    changes.add(table, ['-F', chain]);
    changes.add(table, ['-X', chain]);
  }

  private async readState(): Promise<IptablesState> {
    return new IptablesState(await this.tools.save(), this.ownChains);
  }
}

function isLoopbackAddress(ip: string): boolean {
  return ip.startsWith('127.');
}

function checkInterfaceName(name: string): void {
  if (!INTERFACE_NAME.test(name) || name === '.' || name === '..') {
    throw new NetworkError('D2P_NETWORK_INVALID', `invalid interface name ${JSON.stringify(name)} for the loopback NAT path (at most 15 characters, no '/', ':' or whitespace)`);
  }
}

/** Whether a saved line matches (or excludes) packets entering by `name`. */
function hasInterfaceMatch(line: string, name: string): boolean {
  return ` ${line} `.includes(` -i ${name} `);
}

function outInterfaceOf(line: string): string | undefined {
  const words = line.split(/\s+/);
  const index = words.indexOf('-o');
  return index >= 0 ? words[index + 1] : undefined;
}
