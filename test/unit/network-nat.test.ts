// IptablesNat against a fake iptables that keeps the nat and filter tables in memory with
// the exit codes of the real one (1 for a missing rule or chain), and a temp dir standing
// for /proc/sys/net/ipv4/conf; the real binary and kernel are exercised in
// test/integration/network-userland.test.ts inside the sandbox.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { IptablesExitError, findIptables } from '../../src/network/iptables';
import { IptablesNat } from '../../src/network/nat';

const BUILT_IN: Record<string, string[]> = { nat: ['PREROUTING', 'OUTPUT', 'POSTROUTING'], filter: ['INPUT', 'FORWARD', 'OUTPUT'] };

class FakeIptables {
  readonly tables = new Map<string, Map<string, string[]>>(Object.entries(BUILT_IN).map(([table, chains]) => [table, new Map(chains.map((c) => [c, []]))]));
  readonly calls: string[] = [];

  chain(table: string, chain: string): string[] | undefined {
    return this.tables.get(table)!.get(chain);
  }

  run = (args: string[]): string => {
    this.calls.push(args.join(' '));
    expect(args[0]).toBe('-t');
    const chains = this.tables.get(args[1]);
    if (!chains) throw new Error(`fake iptables: unknown table ${args[1]}`);
    const [op, chain, ...rest] = args.slice(2);
    const rules = chains.get(chain);
    const fail = (message: string, status = 1) => {
      throw new IptablesExitError(args, status, message, undefined);
    };
    const rule = op === '-I' ? rest.slice(1) : rest;
    const text = rule.join(' ');
    const jumpTarget = rule[rule.length - 2] === '-j' ? rule[rule.length - 1] : undefined;
    if (['-A', '-I', '-C'].includes(op) && jumpTarget?.startsWith('D2P') && !chains.has(jumpTarget)) fail(`Chain '${jumpTarget}' does not exist`, 2);
    switch (op) {
      case '-N':
        if (rules) fail('Chain already exists.');
        chains.set(chain, []);
        return '';
      case '-S':
        if (!rules) fail('No chain/target/match by that name.');
        return [`-N ${chain}`, ...rules!.map((r) => `-A ${chain} ${r}`)].join('\n') + '\n';
      case '-C':
        if (!rules?.includes(text)) fail('Bad rule (does a matching rule exist in that chain?).');
        return '';
      case '-A':
        if (!rules) fail('No chain/target/match by that name.');
        rules!.push(text);
        return '';
      case '-I':
        if (!rules) fail('No chain/target/match by that name.');
        rules!.splice(Number(rest[0]) - 1, 0, text);
        return '';
      case '-D': {
        const index = rules?.indexOf(text) ?? -1;
        if (index < 0) fail('Bad rule');
        rules!.splice(index, 1);
        return '';
      }
      case '-F':
        rules!.length = 0;
        return '';
      case '-X': {
        if (rules!.length > 0) fail('Directory not empty');
        const referenced = [...chains.values()].some((rs) => rs.some((r) => r.endsWith(`-j ${chain}`)));
        if (referenced) fail('Too many links');
        chains.delete(chain);
        return '';
      }
      default:
        throw new Error(`fake iptables: unexpected ${args.join(' ')}`);
    }
  };

  /** Every rule and user chain, as a sorted dump for before/after comparisons. */
  dump(): string[] {
    const lines: string[] = [];
    for (const [table, chains] of this.tables) {
      for (const [chain, rules] of chains) {
        if (!BUILT_IN[table].includes(chain)) lines.push(`${table} -N ${chain}`);
        for (const rule of rules) lines.push(`${table} -A ${chain} ${rule}`);
      }
    }
    return lines.sort();
  }
}

const GUARD = '-d 127.0.0.0/8 ! -i lo -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP';

describe('iptables NAT for published ports', () => {
  let sysctl: string;
  let table: FakeIptables;

  beforeEach(() => {
    sysctl = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-nat-sysctl-'));
    table = new FakeIptables();
  });
  afterEach(() => fs.rmSync(sysctl, { recursive: true, force: true }));

  /** A bridge as the kernel shows it under /proc/sys/net/ipv4/conf. */
  function bridge(name: string, routeLocalnet = '0'): string {
    fs.mkdirSync(path.join(sysctl, name));
    fs.writeFileSync(path.join(sysctl, name, 'route_localnet'), `${routeLocalnet}\n`);
    return name;
  }
  const routeLocalnet = (name: string) => fs.readFileSync(path.join(sysctl, name, 'route_localnet'), 'utf8').trim();
  const natOf = (options: { chain?: string; loopback?: boolean } = {}) => new IptablesNat({ run: table.run, sysctlDir: sysctl, ...options });

  it('creates the chain and the jumps once, adds a DNAT rule per port, loopback kept off rules without a bridge', () => {
    const nat = natOf();
    const rule = { hostIP: '192.0.2.5', hostPort: 5353, protocol: 'udp' as const, targetIP: '172.18.0.3', targetPort: 53 };
    expect(nat.addPortRule(rule)).toBe('all');
    expect(nat.addPortRule(rule)).toBe('all');
    expect(nat.addPortRule({ hostIP: '0.0.0.0', hostPort: 8080, protocol: 'tcp', targetIP: '172.18.0.2', targetPort: 80 })).toBe('non-loopback');
    expect(table.chain('nat', 'PREROUTING')).toEqual(['! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j D2P-PORTS']);
    expect(table.chain('nat', 'OUTPUT')).toEqual(['-m addrtype --dst-type LOCAL -j D2P-PORTS']);
    expect(nat.listRules()).toEqual([
      '-A D2P-PORTS -d 192.0.2.5/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 172.18.0.3:53',
      '-A D2P-PORTS ! -d 127.0.0.0/8 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:80',
    ]);
    // No bridge, so no loopback path: no guard, no MASQUERADE.
    expect(table.chain('filter', 'D2P-PORTS-GUARD')).toBeUndefined();
    expect(table.chain('nat', 'D2P-PORTS-MASQ')).toBeUndefined();
  });

  it('leaves to the proxy what iptables cannot carry: IPv6, and 127.0.0.1 without a bridge', () => {
    const nat = natOf();
    expect(nat.addPortRule({ hostIP: '::', hostPort: 80, protocol: 'tcp', targetIP: '172.18.0.2', targetPort: 80, targetInterface: bridge('d2p-br1') })).toBe('none');
    expect(nat.addPortRule({ hostIP: '127.0.0.1', hostPort: 80, protocol: 'tcp', targetIP: '172.18.0.2', targetPort: 80 })).toBe('none');
    expect(natOf({ loopback: false }).addPortRule({ hostIP: '127.0.0.1', hostPort: 80, protocol: 'tcp', targetIP: '172.18.0.2', targetPort: 80, targetInterface: 'd2p-br1' })).toBe('none');
    expect(table.calls).toEqual([]);
  });

  it('carries loopback to a bridged target: the guard first in INPUT, then MASQUERADE, then route_localnet, then the DNAT rule', () => {
    table.chain('filter', 'INPUT')!.push('-j ACCEPT');
    const br = bridge('d2p-br1');
    // route_localnet must not be on before the guard is in place: record it at every rule added.
    const order: string[] = [];
    const nat = new IptablesNat({
      run: (args) => {
        const op = args.findIndex((arg) => arg === '-A' || arg === '-I');
        if (op >= 0) order.push(`${args[op + 1]} route_localnet=${routeLocalnet(br)}`);
        return table.run(args);
      },
      sysctlDir: sysctl,
    });
    expect(nat.addPortRule({ hostIP: '0.0.0.0', hostPort: 8080, protocol: 'tcp', targetIP: '172.18.0.2', targetPort: 80, targetInterface: br })).toBe('all');
    expect(order).toEqual([
      'PREROUTING route_localnet=0',
      'OUTPUT route_localnet=0',
      'D2P-PORTS-GUARD route_localnet=0',
      'INPUT route_localnet=0',
      'POSTROUTING route_localnet=0',
      'D2P-PORTS-MASQ route_localnet=0',
      'D2P-PORTS route_localnet=1',
    ]);
    expect(table.chain('filter', 'INPUT')).toEqual(['-j D2P-PORTS-GUARD', '-j ACCEPT']);
    expect(table.chain('filter', 'D2P-PORTS-GUARD')).toEqual([GUARD]);
    expect(table.chain('nat', 'POSTROUTING')).toEqual(['-j D2P-PORTS-MASQ']);
    expect(table.chain('nat', 'D2P-PORTS-MASQ')).toEqual([`-s 127.0.0.0/8 -o ${br} -j MASQUERADE`]);
    expect(nat.listRules()).toEqual([`-A D2P-PORTS ! -i ${br} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:80`]);
    expect(nat.loopbackBridges()).toEqual([br]);
    expect(routeLocalnet(br)).toBe('1');
  });

  it('keeps a bridge\'s loopback path while it has ports, releases it with the last one', () => {
    const nat = natOf();
    const br1 = bridge('d2p-br1');
    const br2 = bridge('d2p-br2');
    const web = { hostIP: '0.0.0.0', hostPort: 8080, protocol: 'tcp' as const, targetIP: '172.18.0.2', targetPort: 80, targetInterface: br1 };
    const dns = { hostIP: '127.0.0.1', hostPort: 5353, protocol: 'udp' as const, targetIP: '172.18.0.3', targetPort: 53, targetInterface: br1 };
    const other = { hostIP: '0.0.0.0', hostPort: 9090, protocol: 'tcp' as const, targetIP: '172.19.0.2', targetPort: 90, targetInterface: br2 };
    for (const rule of [web, dns, other]) expect(nat.addPortRule(rule)).toBe('all');
    expect(nat.listRules()).toContain(`-A D2P-PORTS -d 127.0.0.1/32 ! -i ${br1} -p udp -m udp --dport 5353 -j DNAT --to-destination 172.18.0.3:53`);
    nat.removePortRule(web);
    expect([routeLocalnet(br1), nat.loopbackBridges()]).toEqual(['1', [br1, br2]]);
    nat.removePortRule(dns);
    nat.removePortRule(dns);
    expect([routeLocalnet(br1), routeLocalnet(br2), nat.loopbackBridges()]).toEqual(['0', '1', [br2]]);
    expect(nat.listRules()).toHaveLength(1);
    // The guard stays while any bridge has route_localnet on.
    expect(table.chain('filter', 'D2P-PORTS-GUARD')).toEqual([GUARD]);
  });

  it('removes a rule added with the other loopback setting (a daemon restarted with another configuration)', () => {
    const br = bridge('d2p-br1');
    const rule = { hostIP: '0.0.0.0', hostPort: 8080, protocol: 'tcp' as const, targetIP: '172.18.0.2', targetPort: 80, targetInterface: br };
    expect(natOf({ loopback: false }).addPortRule(rule)).toBe('non-loopback');
    natOf().removePortRule(rule);
    expect(natOf().listRules()).toEqual([]);
  });

  it('removeAll resets route_localnet, then leaves the tables as they were; removeAllIfUnused waits for the last rule', () => {
    const before = table.dump();
    const nat = natOf();
    const br = bridge('d2p-br1');
    const rule = { hostIP: '0.0.0.0', hostPort: 8080, protocol: 'tcp' as const, targetIP: '172.18.0.2', targetPort: 80, targetInterface: br };
    nat.addPortRule(rule);
    nat.addPortRule({ ...rule, hostPort: 8081, targetInterface: bridge('d2p-gone') });
    fs.rmSync(path.join(sysctl, 'd2p-gone'), { recursive: true });
    nat.removeAllIfUnused();
    expect(nat.listRules()).toHaveLength(2);
    nat.removeAll();
    expect(routeLocalnet(br)).toBe('0');
    expect(table.dump()).toEqual(before);
    nat.removeAll();
    nat.removeAllIfUnused();
    expect(table.dump()).toEqual(before);
  });

  it('removeAll takes away jumps of any form to its chain (an older d2p\'s), and no one else\'s', () => {
    const nat = natOf({ chain: 'D2P-TEST' });
    nat.ensureChain();
    table.chain('nat', 'OUTPUT')!.push('! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j D2P-TEST', '-j DOCKER-LIKE');
    nat.removeAll();
    expect(table.chain('nat', 'OUTPUT')).toEqual(['-j DOCKER-LIKE']);
    expect(table.chain('nat', 'PREROUTING')).toEqual([]);
    expect(table.chain('nat', 'D2P-TEST')).toBeUndefined();
  });

  it('passes on failures other than "does not exist", with the command and message', () => {
    const nat = new IptablesNat({
      run: (args) => {
        throw new IptablesExitError(args, 4, 'iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied', undefined);
      },
    });
    expect(() => nat.addPortRule({ hostIP: '0.0.0.0', hostPort: 1, protocol: 'tcp', targetIP: '10.0.0.2', targetPort: 1 })).toThrow(/iptables -t nat -S D2P-PORTS failed \(exit 4\): .*Permission denied/);
  });

  it('refuses a bridge that does not exist, naming it, and interface names that are paths', () => {
    const nat = natOf();
    const rule = { hostIP: '0.0.0.0', hostPort: 8080, protocol: 'tcp' as const, targetIP: '172.18.0.2', targetPort: 80 };
    expect(() => nat.addPortRule({ ...rule, targetInterface: 'd2p-missing' })).toThrow(/route_localnet=1 on d2p-missing .*the interface does not exist/);
    expect(() => nat.addPortRule({ ...rule, targetInterface: '../all' })).toThrow(/invalid interface name "..\/all"/);
    expect(fs.readdirSync(sysctl)).toEqual([]);
  });

  it('refuses a chain name too long for iptables', () => {
    expect(() => natOf({ chain: 'D2P-A-VERY-LONG-CHAIN-NAME' })).toThrow(/too long/);
  });
});

describe('finding the iptables binary', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-nat-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('finds an executable on the given PATH first', () => {
    const binary = path.join(dir, 'iptables');
    fs.writeFileSync(binary, '#!/bin/sh\n', { mode: 0o755 });
    expect(findIptables(`${path.join(dir, 'missing')}:${dir}`)).toBe(binary);
  });
});
