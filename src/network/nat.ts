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
import * as fs from 'node:fs';
import { isIP } from 'node:net';
import * as path from 'node:path';

import { NetworkError, errnoOf, isNetworkError } from './errors';
import { findIptables, iptablesHas, runIptables, type IptablesRun } from './iptables';
import type { NatPortRule, NatReach, PortNat } from './port-forward';

export const DEFAULT_NAT_CHAIN = 'D2P-PORTS';

/** iptables chain names hold at most 28 characters (XT_EXTENSION_MAXNAMELEN 29 with the NUL). */
const CHAIN_NAME_MAX = 28;
const LONGEST_SUFFIX = '-GUARD';
const LOOPBACK_NET = '127.0.0.0/8';
/** Linux interface names: at most 15 bytes (IFNAMSIZ), no '/', no whitespace (net/core/dev.c dev_valid_name). */
const INTERFACE_NAME = /^[^/\s:]{1,15}$/;

type Table = 'nat' | 'filter';

export interface IptablesNatOptions {
  /** Path of the iptables binary; default: found on PATH (and in /usr/sbin, /sbin). */
  iptables?: string;
  /** Name of the DNAT chain; the MASQUERADE and guard chains get `-MASQ` and `-GUARD` after it. */
  chain?: string;
  /** Injected in unit tests to record the calls instead of running them. */
  run?: IptablesRun;
  /**
   * DNAT 127.0.0.0/8 destinations too, for rules whose target sits behind a bridge
   * (route_localnet + MASQUERADE + the CVE-2020-8558 guard); default true. False leaves
   * loopback to the userland proxy, as Docker's default userland-proxy does.
   */
  loopback?: boolean;
  /** The per-interface IPv4 sysctls; default /proc/sys/net/ipv4/conf (a temp dir in unit tests). */
  sysctlDir?: string;
}

export class IptablesNat implements PortNat {
  readonly chain: string;
  readonly masqueradeChain: string;
  readonly guardChain: string;
  readonly loopback: boolean;
  private readonly run: IptablesRun;
  private readonly sysctlDir: string;

  constructor(options: IptablesNatOptions = {}) {
    this.chain = options.chain ?? DEFAULT_NAT_CHAIN;
    if (this.chain.length + LONGEST_SUFFIX.length > CHAIN_NAME_MAX) {
      throw new NetworkError('D2P_NETWORK_INVALID', `NAT chain name ${JSON.stringify(this.chain)} is too long: iptables chains hold ${CHAIN_NAME_MAX} characters and "${LONGEST_SUFFIX}" is appended`);
    }
    this.masqueradeChain = `${this.chain}-MASQ`;
    this.guardChain = `${this.chain}-GUARD`;
    this.loopback = options.loopback ?? true;
    this.sysctlDir = options.sysctlDir ?? '/proc/sys/net/ipv4/conf';
    if (options.run) {
      this.run = options.run;
    } else {
      const binary = options.iptables ?? findIptables();
      if (binary === undefined) throw new NetworkError('D2P_NETWORK_SYSTEM', 'kernel NAT for published ports needs the iptables binary, and none was found on PATH, /usr/sbin or /sbin');
      this.run = runIptables(binary);
    }
  }

  /** Creates the DNAT chain and its two jumps when missing. Idempotent. */
  ensureChain(): void {
    this.ensureChainExists('nat', this.chain);
    for (const [hook, match] of this.dnatJumps()) this.ensureRule('nat', hook, [...match, '-j', this.chain]);
  }

  /**
   * Adds the DNAT rule of one published port (idempotent: a daemon adopting its containers
   * after a restart adds the same rules again) and says which destinations it carries.
   * IPv6 is left to the proxy: this is iptables, not ip6tables.
   */
  addPortRule(rule: NatPortRule): NatReach {
    if (isIP(rule.hostIP) !== 4 || isIP(rule.targetIP) !== 4) return 'none';
    const loopback = this.carriesLoopback(rule);
    if (isLoopbackAddress(rule.hostIP) && !loopback) return 'none';
    this.ensureChain();
    // The loopback path is complete (guard, MASQUERADE, route_localnet) before any rule
    // sends loopback traffic into it, or those packets would be dropped as martians.
    if (loopback) this.ensureLoopbackPath(rule.targetInterface!);
    this.ensureRule('nat', this.chain, this.ruleSpec(rule, loopback));
    return loopback || rule.hostIP !== '0.0.0.0' ? 'all' : 'non-loopback';
  }

  /**
   * Removes the rule of one published port; a rule already gone is not an error. Both
   * forms go (with and without loopback), whatever this instance would add now. When no
   * port is left on the target's bridge, its loopback path goes too.
   */
  removePortRule(rule: NatPortRule): void {
    if (!this.exists('nat', ['-S', this.chain])) return;
    for (const loopback of [true, false]) this.deleteRule('nat', this.chain, this.ruleSpec(rule, loopback));
    const bridge = rule.targetInterface;
    if (bridge !== undefined && !this.listRules().some((line) => hasInterfaceMatch(line, bridge))) this.releaseLoopbackPath(bridge);
  }

  /** The DNAT chain's rules as `iptables -S` prints them (without the -N line). */
  listRules(): string[] {
    return this.rulesOf('nat', this.chain);
  }

  /** Bridges whose loopback path (route_localnet, MASQUERADE) is in place. */
  loopbackBridges(): string[] {
    return this.rulesOf('nat', this.masqueradeChain).map(outInterfaceOf).filter((name): name is string => name !== undefined);
  }

  /** removeAll() when no published port is left in the chain (other daemons of this network namespace may share it). */
  removeAllIfUnused(): void {
    if (this.listRules().length === 0) this.removeAll();
  }

  /** Takes away every trace of d2p's NAT: route_localnet, jumps, rules and chains, the guard last. */
  removeAll(): void {
    for (const bridge of this.loopbackBridges()) this.resetRouteLocalnet(bridge);
    this.removeChain('nat', this.chain, ['PREROUTING', 'OUTPUT']);
    this.removeChain('nat', this.masqueradeChain, ['POSTROUTING']);
    this.removeChain('filter', this.guardChain, ['INPUT']);
  }

  // -------------------------------------------------------------- loopback path

  private carriesLoopback(rule: NatPortRule): boolean {
    const wanted = this.loopback && rule.targetInterface !== undefined;
    return wanted && (rule.hostIP === '0.0.0.0' || isLoopbackAddress(rule.hostIP));
  }

  private ensureLoopbackPath(bridge: string): void {
    checkInterfaceName(bridge);
    this.ensureChainExists('filter', this.guardChain);
    this.ensureRule('filter', this.guardChain, this.guardRule());
    // First in INPUT: an ACCEPT ahead of it (a host firewall's) must not let the packets by.
    if (!this.exists('filter', ['-C', 'INPUT', '-j', this.guardChain])) this.run(['-t', 'filter', '-I', 'INPUT', '1', '-j', this.guardChain]);
    this.ensureChainExists('nat', this.masqueradeChain);
    this.ensureRule('nat', 'POSTROUTING', ['-j', this.masqueradeChain]);
    this.ensureRule('nat', this.masqueradeChain, masqueradeRule(bridge));
    this.writeRouteLocalnet(bridge, '1');
  }

  /** The MASQUERADE rule is the mark that d2p turned route_localnet on for this bridge. */
  private releaseLoopbackPath(bridge: string): void {
    checkInterfaceName(bridge);
    if (!this.exists('nat', ['-S', this.masqueradeChain])) return;
    if (!this.exists('nat', ['-C', this.masqueradeChain, ...masqueradeRule(bridge)])) return;
    this.resetRouteLocalnet(bridge);
    this.deleteRule('nat', this.masqueradeChain, masqueradeRule(bridge));
  }

  /** kube-proxy's rule for CVE-2020-8558 (pkg/proxy/iptables/proxier.go, KUBE-FIREWALL). */
  private guardRule(): string[] {
    return ['-d', LOOPBACK_NET, '!', '-i', 'lo', '-m', 'conntrack', '!', '--ctstate', 'RELATED,ESTABLISHED,DNAT', '-j', 'DROP'];
  }

  private resetRouteLocalnet(bridge: string): void {
    try {
      this.writeRouteLocalnet(bridge, '0');
    } catch (error) {
      // The bridge is already gone (network deleted): so is its sysctl.
      if (!isNetworkError(error) || error.context.errno !== 'ENOENT') throw error;
    }
  }

  private writeRouteLocalnet(bridge: string, value: '0' | '1'): void {
    checkInterfaceName(bridge);
    const file = path.join(this.sysctlDir, bridge, 'route_localnet');
    try {
      if (fs.readFileSync(file, 'utf8').trim() !== value) fs.writeFileSync(file, `${value}\n`);
    } catch (error) {
      const errno = errnoOf(error);
      const why = errno === 'ENOENT' ? 'the interface does not exist' : (error as Error).message;
      throw new NetworkError('D2P_NETWORK_SYSTEM', `cannot set route_localnet=${value} on ${bridge} (${file}): ${why}`, { errno, cause: error });
    }
  }

  // -------------------------------------------------------------- rules

  private dnatJumps(): Array<[string, string[]]> {
    return [
      ['PREROUTING', ['!', '-d', LOOPBACK_NET, '-m', 'addrtype', '--dst-type', 'LOCAL']],
      ['OUTPUT', ['-m', 'addrtype', '--dst-type', 'LOCAL']],
    ];
  }

  /**
   * One DNAT rule. A wildcard host address matches every local address (the jump already
   * checks LOCAL), loopback ones only when the loopback path carries them. Traffic entering
   * from the target's own bridge is left to the proxy: DNAT back onto the same bridge would
   * make the target answer the client directly, from an address the client never asked
   * (Docker's `! -i docker0` for the same reason).
   */
  private ruleSpec(rule: NatPortRule, loopback: boolean): string[] {
    const spec: string[] = [];
    if (rule.hostIP !== '0.0.0.0') spec.push('-d', `${rule.hostIP}/32`);
    else if (!loopback) spec.push('!', '-d', LOOPBACK_NET);
    if (rule.targetInterface !== undefined) spec.push('!', '-i', rule.targetInterface);
    spec.push('-p', rule.protocol, '-m', rule.protocol, '--dport', String(rule.hostPort));
    spec.push('-j', 'DNAT', '--to-destination', `${rule.targetIP}:${rule.targetPort}`);
    return spec;
  }

  private ensureChainExists(table: Table, chain: string): void {
    if (!this.exists(table, ['-S', chain])) this.run(['-t', table, '-N', chain]);
  }

  private ensureRule(table: Table, chain: string, spec: string[]): void {
    if (!this.exists(table, ['-C', chain, ...spec])) this.run(['-t', table, '-A', chain, ...spec]);
  }

  private deleteRule(table: Table, chain: string, spec: string[]): void {
    while (this.exists(table, ['-C', chain, ...spec])) this.run(['-t', table, '-D', chain, ...spec]);
  }

  private rulesOf(table: Table, chain: string): string[] {
    if (!this.exists(table, ['-S', chain])) return [];
    return this.run(['-t', table, '-S', chain]).split('\n').filter((line) => line.startsWith('-A '));
  }

  /**
   * Deletes every jump to `chain` from the hooks, whatever its matches (so jumps of an
   * older d2p with other matches go too), then the chain. No chain, no jumps: a jump cannot
   * exist without its target.
   */
  private removeChain(table: Table, chain: string, hooks: string[]): void {
    if (!this.exists(table, ['-S', chain])) return;
    for (const hook of hooks) {
      for (const line of this.rulesOf(table, hook)) {
        const words = line.split(/\s+/);
        if (words[words.length - 2] === '-j' && words[words.length - 1] === chain) this.run(['-t', table, '-D', ...words.slice(1)]);
      }
    }
    this.run(['-t', table, '-F', chain]);
    this.run(['-t', table, '-X', chain]);
  }

  private exists(table: Table, args: string[]): boolean {
    return iptablesHas(this.run, table, args);
  }
}

function isLoopbackAddress(ip: string): boolean {
  return ip.startsWith('127.');
}

function masqueradeRule(bridge: string): string[] {
  return ['-s', LOOPBACK_NET, '-o', bridge, '-j', 'MASQUERADE'];
}

function checkInterfaceName(name: string): void {
  if (!INTERFACE_NAME.test(name) || name === '.' || name === '..') {
    throw new NetworkError('D2P_NETWORK_INVALID', `invalid interface name ${JSON.stringify(name)} for the loopback NAT path (at most 15 characters, no '/', ':' or whitespace)`);
  }
}

/** Whether an `iptables -S` line matches (or excludes) packets entering by `name`. */
function hasInterfaceMatch(line: string, name: string): boolean {
  return ` ${line} `.includes(` -i ${name} `);
}

function outInterfaceOf(line: string): string | undefined {
  const words = line.split(/\s+/);
  const index = words.indexOf('-o');
  return index >= 0 ? words[index + 1] : undefined;
}
