// The bridge rules of IptablesFirewall, through a recording stand-in for iptables: which
// commands run, and that rules checked a moment ago are not checked again.
import { describe, expect, it } from 'vitest';

import { IptablesExitError, type IptablesRun } from '../../src/network/iptables';
import { IptablesFirewall } from '../../src/network/netns';

/** iptables with an in-memory rule set: -C/-S exit 1 when missing, -A/-N/-I/-D change it. */
function fakeIptables(): { run: IptablesRun; calls: string[][]; rules: Set<string> } {
  const rules = new Set<string>();
  const calls: string[][] = [];
  const run: IptablesRun = (args) => {
    calls.push(args);
    const [, table, op, chain, ...rest] = args;
    const key = `${table} ${chain} ${rest.filter((a) => !/^\d+$/.test(a)).join(' ')}`;
    const chainKey = `${table} ${chain} :chain`;
    const missing = (k: string) => {
      if (!rules.has(k)) throw new IptablesExitError(args, 1, 'not there', undefined);
      return '';
    };
    if (op === '-C') return missing(key);
    if (op === '-S') return missing(chainKey);
    if (op === '-N') rules.add(chainKey);
    else if (op === '-A' || op === '-I') rules.add(key);
    else if (op === '-D') rules.delete(key);
    return '';
  };
  return { run, calls, rules };
}

const RULES = { bridge: 'd2p-abc', subnet: '172.18.0.0/16', internal: false };

describe('IptablesFirewall bridge rules', () => {
  it('adds the chains, jumps and the network\'s rules once, including the masquerade of its subnet', () => {
    const iptables = fakeIptables();
    new IptablesFirewall(iptables.run, 'iptables').ensureBridgeRules(RULES);
    const added = iptables.calls.filter((c) => ['-A', '-I', '-N'].includes(c[2])).map((c) => c.join(' '));
    expect(added).toContain('-t nat -A D2P-POSTROUTING -s 172.18.0.0/16 ! -o d2p-abc -j MASQUERADE');
    expect(added).toContain('-t filter -I FORWARD 1 -j D2P-FORWARD');
    expect(added.filter((c) => c.includes(' -N '))).toHaveLength(4);
  });

  it('trusts rules it checked for a while, then checks them again and puts back one deleted by hand', () => {
    const iptables = fakeIptables();
    let clock = 0;
    const firewall = new IptablesFirewall(iptables.run, 'iptables', { recheckMs: 60_000, now: () => clock });
    firewall.ensureBridgeRules(RULES);
    const afterFirst = iptables.calls.length;
    clock += 1_000;
    firewall.ensureBridgeRules(RULES);
    expect(iptables.calls.length).toBe(afterFirst);

    iptables.rules.delete('nat D2P-POSTROUTING -s 172.18.0.0/16 ! -o d2p-abc -j MASQUERADE');
    clock += 60_000;
    firewall.ensureBridgeRules(RULES);
    expect(iptables.calls.length).toBeGreaterThan(afterFirst);
    expect(iptables.rules.has('nat D2P-POSTROUTING -s 172.18.0.0/16 ! -o d2p-abc -j MASQUERADE')).toBe(true);
  });

  it('checks again at once when the network changed or its rules were removed', () => {
    const iptables = fakeIptables();
    const firewall = new IptablesFirewall(iptables.run, 'iptables', { now: () => 0 });
    firewall.ensureBridgeRules(RULES);
    let count = iptables.calls.length;
    firewall.ensureBridgeRules({ ...RULES, internal: true });
    expect(iptables.calls.length).toBeGreaterThan(count);
    expect(iptables.rules.has('filter D2P-FORWARD -i d2p-abc ! -o d2p-abc -j DROP')).toBe(true);

    firewall.removeBridgeRules({ ...RULES, internal: true });
    expect([...iptables.rules].filter((r) => r.includes('d2p-abc'))).toEqual([]);
    count = iptables.calls.length;
    firewall.ensureBridgeRules(RULES);
    expect(iptables.calls.length).toBeGreaterThan(count);
    expect(iptables.rules.has('nat D2P-POSTROUTING -s 172.18.0.0/16 ! -o d2p-abc -j MASQUERADE')).toBe(true);
  });
});
