// The Network controller's bridge rules in the sandbox's own iptables: added per network,
// removed per network, and with the last network gone no trace of d2p in any table.
import { execFileSync } from 'node:child_process';

import { afterEach, describe, expect, it } from 'vitest';

import { realNetHost } from '../../src/network/netns';
import { requireSandbox } from '../helpers/sandbox-guard';

requireSandbox('test/integration/network-firewall.test.ts');

const save = (): string => execFileSync('iptables-save', { encoding: 'utf8' });
const d2pLines = (): string[] => save().split('\n').filter((line) => /D2P|d2p-/.test(line));
const FRONT = { bridge: 'd2p-fwtest1', subnet: '172.31.1.0/24', internal: false };
const BACK = { bridge: 'd2p-fwtest2', subnet: '172.31.2.0/24', internal: true };

describe('bridge firewall rules', () => {
  const firewall = realNetHost().firewall!;

  afterEach(() => {
    firewall.removeBridgeRules(FRONT);
    firewall.removeBridgeRules(BACK);
  });

  it('removes one network\'s rules, and with the last one the chains and jumps', () => {
    const before = save().split('\n').filter((line) => line.startsWith('-'));
    firewall.ensureBridgeRules(FRONT);
    firewall.ensureBridgeRules(BACK);
    expect(d2pLines()).toContain('-A D2P-POSTROUTING -s 172.31.1.0/24 ! -o d2p-fwtest1 -j MASQUERADE');
    expect(d2pLines()).toContain('-A D2P-FORWARD -i d2p-fwtest2 ! -o d2p-fwtest2 -j DROP');

    firewall.removeBridgeRules(FRONT);
    expect(d2pLines().filter((line) => line.includes('d2p-fwtest1'))).toEqual([]);
    expect(d2pLines()).toContain('-A FORWARD -j D2P-FORWARD');

    firewall.removeBridgeRules(BACK);
    expect(d2pLines()).toEqual([]);
    expect(save().split('\n').filter((line) => line.startsWith('-'))).toEqual(before);
  });
});
