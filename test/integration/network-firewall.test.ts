// The Network controller's bridge rules in the sandbox's own iptables: added per network,
// removed per network, and with the last network gone no trace of d2p in any table.
import { execFileSync } from 'node:child_process';

import { afterEach, describe, expect, it } from 'vitest';

import { findIptables, iptablesTools } from '../../src/network/iptables';
import { IptablesFirewall, realNetHost } from '../../src/network/netns';
import { requireSandbox } from '../helpers/sandbox-guard';

requireSandbox('test/integration/network-firewall.test.ts');

const save = (): string => execFileSync('iptables-save', { encoding: 'utf8' });
const ruleLines = (): string[] => save().split('\n').filter((line) => line.startsWith('-'));
const d2pLines = (): string[] => save().split('\n').filter((line) => /D2P|d2p-/.test(line));
const FRONT = { bridge: 'd2p-fwtest1', subnet: '172.31.1.0/24', internal: false };
const BACK = { bridge: 'd2p-fwtest2', subnet: '172.31.2.0/24', internal: true };
/** A subnet given by an address inside it: iptables saves the rule as 172.31.3.0/24, so only -C recognises it. */
const HOST_BITS = { bridge: 'd2p-fwtest3', subnet: '172.31.3.1/24', internal: false };

describe('bridge firewall rules', () => {
  const firewall = realNetHost().firewall!;
  /** Trusts nothing it checked before, so every call reads the tables again. */
  const rechecking = new IptablesFirewall(iptablesTools(findIptables()!), 'iptables', { recheckMs: 0 });

  afterEach(async () => {
    for (const rules of [FRONT, BACK, HOST_BITS]) await rechecking.removeBridgeRules(rules);
    expect(d2pLines()).toEqual([]);
  });

  it('removes one network\'s rules, and with the last one the chains and jumps', async () => {
    const before = ruleLines();
    await firewall.ensureBridgeRules(FRONT);
    await firewall.ensureBridgeRules(BACK);
    expect(d2pLines()).toContain('-A D2P-POSTROUTING -s 172.31.1.0/24 ! -o d2p-fwtest1 -j MASQUERADE');
    expect(d2pLines()).toContain('-A D2P-FORWARD -i d2p-fwtest2 ! -o d2p-fwtest2 -j DROP');
    expect(d2pLines()).toContain('-A D2P-FORWARD ! -i d2p-fwtest2 -o d2p-fwtest2 -j DROP');

    await firewall.removeBridgeRules(FRONT);
    expect(d2pLines().filter((line) => line.includes('d2p-fwtest1'))).toEqual([]);
    expect(d2pLines()).toContain('-A FORWARD -j D2P-FORWARD');

    await firewall.removeBridgeRules(BACK);
    expect(d2pLines()).toEqual([]);
    expect(ruleLines()).toEqual(before);
  });

  it('ensured twice, holds each rule once, jumps first; removed, leaves the tables as they were', async () => {
    execFileSync('iptables', ['-w', '-A', 'FORWARD', '-j', 'ACCEPT']);
    const before = save();
    const beforeRules = ruleLines();
    for (let round = 0; round < 2; round++) {
      await rechecking.ensureBridgeRules(FRONT);
      await rechecking.ensureBridgeRules(BACK);
    }
    const lines = d2pLines();
    const rules = lines.filter((line) => line.startsWith('-A'));
    expect(rules.length).toBeGreaterThan(10);
    expect(new Set(rules).size).toBe(rules.length);
    expect(lines.filter((line) => line.startsWith(':')).sort()).toEqual([':D2P-FORWARD - [0:0]', ':D2P-ISOLATION-1 - [0:0]', ':D2P-ISOLATION-2 - [0:0]', ':D2P-POSTROUTING - [0:0]']);
    const forward = ruleLines().filter((line) => line.startsWith('-A FORWARD '));
    expect(forward).toEqual(['-A FORWARD -j D2P-FORWARD', '-A FORWARD -j ACCEPT']);
    expect(rules.find((line) => line.startsWith('-A D2P-FORWARD '))).toBe('-A D2P-FORWARD -j D2P-ISOLATION-1');

    await rechecking.removeBridgeRules(BACK);
    await rechecking.removeBridgeRules(FRONT);
    expect(ruleLines()).toEqual(beforeRules);
    expect(save().split('\n').filter((line) => line.startsWith(':'))).toEqual(before.split('\n').filter((line) => line.startsWith(':')));
    execFileSync('iptables', ['-w', '-D', 'FORWARD', '-j', 'ACCEPT']);
  });

  it('does not add twice a rule iptables saves in another form, and removes it', async () => {
    await rechecking.ensureBridgeRules(HOST_BITS);
    await rechecking.ensureBridgeRules(HOST_BITS);
    expect(d2pLines().filter((line) => line.includes('MASQUERADE'))).toEqual(['-A D2P-POSTROUTING -s 172.31.3.0/24 ! -o d2p-fwtest3 -j MASQUERADE']);
    await rechecking.removeBridgeRules(HOST_BITS);
    expect(d2pLines()).toEqual([]);
  });

  it('removes every copy of a duplicated rule, and puts back a rule deleted by hand', async () => {
    await rechecking.ensureBridgeRules(FRONT);
    const masquerade = ['-s', '172.31.1.0/24', '!', '-o', 'd2p-fwtest1', '-j', 'MASQUERADE'];
    execFileSync('iptables', ['-w', '-t', 'nat', '-A', 'D2P-POSTROUTING', ...masquerade]);
    execFileSync('iptables', ['-w', '-t', 'nat', '-A', 'D2P-POSTROUTING', ...masquerade]);
    execFileSync('iptables', ['-w', '-D', 'D2P-ISOLATION-2', '-o', 'd2p-fwtest1', '-j', 'DROP']);
    await rechecking.ensureBridgeRules(FRONT);
    expect(d2pLines()).toContain('-A D2P-ISOLATION-2 -o d2p-fwtest1 -j DROP');
    expect(d2pLines().filter((line) => line.includes('MASQUERADE'))).toHaveLength(3);

    await rechecking.removeBridgeRules(FRONT);
    expect(d2pLines()).toEqual([]);
  });
});
