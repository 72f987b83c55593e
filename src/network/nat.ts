// Kernel NAT for published ports, through the iptables binary (iptables-nft or legacy),
// used only where it exists: the userland proxy (port-forward.ts) works everywhere and
// stays in front of every port. All d2p rules live in one chain of our own in the nat
// table, reached by two jump rules, so removeAll() takes every trace away: the jumps,
// the rules, the chain. (iptables cannot create a table of its own; nft could, but the
// nft binary is not on this machine's image.)
//
// The jumps follow Docker's (moby libnetwork/drivers/bridge/setup_ip_tables.go):
//   PREROUTING  -m addrtype --dst-type LOCAL                    → traffic from outside or from containers
//   OUTPUT      ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL   → the host's own traffic to its non-loopback addresses
// Loopback destinations are left to the proxy: DNAT from 127.0.0.1 to a container would
// need route_localnet=1 and a MASQUERADE rule, which Docker also avoids by default.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NetworkError, errnoOf } from './errors';
import type { NatPortRule, PortNat } from './port-forward';

export const DEFAULT_NAT_CHAIN = 'D2P-PORTS';

/** Runs iptables with these arguments and returns stdout; throws with stderr on failure. */
export type IptablesRunner = (args: string[]) => string;

export interface IptablesNatOptions {
  /** Path of the iptables binary; default: found on PATH (and in /usr/sbin, /sbin). */
  iptables?: string;
  chain?: string;
  /** Injected in unit tests to record the calls instead of running them. */
  run?: IptablesRunner;
}

/** The iptables binary if this machine has one, else undefined (then the proxy alone serves). */
export function findIptables(searchPath = process.env.PATH ?? ''): string | undefined {
  const dirs = [...searchPath.split(':').filter((d) => d !== ''), '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    const candidate = path.join(dir, 'iptables');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch (error) {
      if (!['ENOENT', 'EACCES', 'ENOTDIR'].includes(errnoOf(error) ?? '')) throw error;
    }
  }
  return undefined;
}

export class IptablesNat implements PortNat {
  readonly chain: string;
  private readonly run: IptablesRunner;

  constructor(options: IptablesNatOptions = {}) {
    this.chain = options.chain ?? DEFAULT_NAT_CHAIN;
    if (options.run) {
      this.run = options.run;
    } else {
      const binary = options.iptables ?? findIptables();
      if (binary === undefined) throw new NetworkError('D2P_NETWORK_SYSTEM', 'kernel NAT for published ports needs the iptables binary, and none was found on PATH, /usr/sbin or /sbin');
      this.run = execIptables(binary);
    }
  }

  /** Creates the chain and the two jumps when missing. Idempotent. */
  ensureChain(): void {
    if (!this.exists(['-S', this.chain])) this.run(['-t', 'nat', '-N', this.chain]);
    for (const [hook, match] of this.jumps()) {
      const rule = [hook, ...match, '-j', this.chain];
      if (!this.exists(['-C', ...rule])) this.run(['-t', 'nat', '-A', ...rule]);
    }
  }

  addPortRule(rule: NatPortRule): void {
    this.ensureChain();
    const spec = this.ruleSpec(rule);
    if (!this.exists(['-C', this.chain, ...spec])) this.run(['-t', 'nat', '-A', this.chain, ...spec]);
  }

  /** Removes the rule of one published port; a rule already gone is not an error. */
  removePortRule(rule: NatPortRule): void {
    if (!this.exists(['-S', this.chain])) return;
    const spec = this.ruleSpec(rule);
    while (this.exists(['-C', this.chain, ...spec])) this.run(['-t', 'nat', '-D', this.chain, ...spec]);
  }

  /** The chain's rules as `iptables -S` prints them (without the -N line). */
  listRules(): string[] {
    if (!this.exists(['-S', this.chain])) return [];
    return this.run(['-t', 'nat', '-S', this.chain]).split('\n').filter((line) => line.startsWith('-A '));
  }

  /** Takes away every trace of d2p's NAT: jumps, rules and the chain itself. */
  removeAll(): void {
    // No chain, no jumps: a jump cannot exist without its target (and `-C` of one exits 2).
    if (!this.exists(['-S', this.chain])) return;
    for (const [hook, match] of this.jumps()) {
      const rule = [hook, ...match, '-j', this.chain];
      while (this.exists(['-C', ...rule])) this.run(['-t', 'nat', '-D', ...rule]);
    }
    this.run(['-t', 'nat', '-F', this.chain]);
    this.run(['-t', 'nat', '-X', this.chain]);
  }

  private jumps(): Array<[string, string[]]> {
    return [
      ['PREROUTING', ['-m', 'addrtype', '--dst-type', 'LOCAL']],
      ['OUTPUT', ['!', '-d', '127.0.0.0/8', '-m', 'addrtype', '--dst-type', 'LOCAL']],
    ];
  }

  /**
   * One DNAT rule. A wildcard host address matches every local address (the jump already
   * checks LOCAL). Traffic entering from the target's own bridge is left to the proxy:
   * DNAT back onto the same bridge would make the target answer the client directly, from
   * an address the client never asked (Docker's `! -i docker0` for the same reason).
   */
  private ruleSpec(rule: NatPortRule): string[] {
    const spec: string[] = [];
    if (rule.hostIP !== '0.0.0.0') spec.push('-d', `${rule.hostIP}/32`);
    if (rule.targetInterface !== undefined) spec.push('!', '-i', rule.targetInterface);
    spec.push('-p', rule.protocol, '-m', rule.protocol, '--dport', String(rule.hostPort));
    spec.push('-j', 'DNAT', '--to-destination', `${rule.targetIP}:${rule.targetPort}`);
    return spec;
  }

  /** `iptables -C` and `-S CHAIN` exit 1 when the rule or chain does not exist. */
  private exists(args: string[]): boolean {
    try {
      this.run(['-t', 'nat', ...args]);
      return true;
    } catch (error) {
      if (error instanceof IptablesExitError && error.status === 1) return false;
      throw error;
    }
  }
}

export class IptablesExitError extends NetworkError {
  readonly status: number | null;
  constructor(args: string[], status: number | null, stderr: string, cause: unknown) {
    super('D2P_NETWORK_SYSTEM', `iptables ${args.join(' ')} failed (exit ${status}): ${stderr.trim() || 'no message'}`, { cause });
    this.status = status;
  }
}

function execIptables(binary: string): IptablesRunner {
  return (args) => {
    try {
      // -w: wait for the xtables lock instead of failing when another tool holds it.
      return execFileSync(binary, ['-w', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      const failed = error as { status?: number | null; stderr?: string };
      throw new IptablesExitError(args, failed.status ?? null, String(failed.stderr ?? (error as Error).message), error);
    }
  };
}
