// IptablesNat against a fake iptables that keeps a nat table in memory with the exit
// codes of the real one (1 for a missing rule or chain); the real binary is exercised
// in test/integration/network-userland.test.ts inside the sandbox.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { IptablesExitError, IptablesNat, findIptables } from '../../src/network/nat';

class FakeNatTable {
  readonly chains = new Map<string, string[]>([
    ['PREROUTING', []],
    ['OUTPUT', []],
  ]);
  readonly calls: string[] = [];

  run = (args: string[]): string => {
    this.calls.push(args.join(' '));
    expect(args.slice(0, 2)).toEqual(['-t', 'nat']);
    const [op, chain, ...rule] = args.slice(2);
    const rules = this.chains.get(chain);
    const fail = (message: string) => {
      throw new IptablesExitError(args, 1, message, undefined);
    };
    const text = rule.join(' ');
    switch (op) {
      case '-N':
        if (rules) fail('Chain already exists.');
        this.chains.set(chain, []);
        return '';
      case '-S':
        if (!rules) fail('No chain/target/match by that name.');
        return [`-N ${chain}`, ...rules!.map((r) => `-A ${chain} ${r}`)].join('\n') + '\n';
      case '-C':
        if (!this.chains.has(rule[rule.length - 1]) && rule[rule.length - 2] === '-j' && rule[rule.length - 1].startsWith('D2P')) {
          throw new IptablesExitError(args, 2, `Chain '${rule[rule.length - 1]}' does not exist`, undefined);
        }
        if (!rules?.includes(text)) fail('Bad rule (does a matching rule exist in that chain?).');
        return '';
      case '-A':
        if (!rules) fail('No chain/target/match by that name.');
        rules!.push(text);
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
      case '-X':
        if (rules!.length > 0) fail('Directory not empty');
        this.chains.delete(chain);
        return '';
      default:
        throw new Error(`fake iptables: unexpected ${args.join(' ')}`);
    }
  };
}

describe('iptables NAT for published ports', () => {
  it('creates the chain and the jumps once, adds a DNAT rule per port', () => {
    const table = new FakeNatTable();
    const nat = new IptablesNat({ run: table.run });
    nat.addPortRule({ hostIP: '0.0.0.0', hostPort: 8080, protocol: 'tcp', targetIP: '172.18.0.2', targetPort: 80, targetInterface: 'd2p-br1' });
    nat.addPortRule({ hostIP: '192.0.2.5', hostPort: 5353, protocol: 'udp', targetIP: '172.18.0.3', targetPort: 53 });
    nat.addPortRule({ hostIP: '192.0.2.5', hostPort: 5353, protocol: 'udp', targetIP: '172.18.0.3', targetPort: 53 });
    expect(table.chains.get('PREROUTING')).toEqual(['-m addrtype --dst-type LOCAL -j D2P-PORTS']);
    expect(table.chains.get('OUTPUT')).toEqual(['! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j D2P-PORTS']);
    expect(nat.listRules()).toEqual([
      '-A D2P-PORTS ! -i d2p-br1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:80',
      '-A D2P-PORTS -d 192.0.2.5/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 172.18.0.3:53',
    ]);
  });

  it('removes one port\'s rule, tolerates removing it twice, and removeAll leaves nothing', () => {
    const table = new FakeNatTable();
    const nat = new IptablesNat({ run: table.run, chain: 'D2P-TEST' });
    const rule = { hostIP: '0.0.0.0', hostPort: 8080, protocol: 'tcp' as const, targetIP: '172.18.0.2', targetPort: 80 };
    nat.addPortRule(rule);
    nat.addPortRule({ ...rule, hostPort: 8081 });
    nat.removePortRule(rule);
    nat.removePortRule(rule);
    expect(nat.listRules()).toHaveLength(1);
    nat.removeAll();
    expect([...table.chains.keys()]).toEqual(['PREROUTING', 'OUTPUT']);
    expect(table.chains.get('PREROUTING')).toEqual([]);
    expect(table.chains.get('OUTPUT')).toEqual([]);
    expect(nat.listRules()).toEqual([]);
    nat.removeAll();
  });

  it('passes on failures other than "does not exist", with the command and message', () => {
    const nat = new IptablesNat({
      run: (args) => {
        throw new IptablesExitError(args, 4, 'iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied', undefined);
      },
    });
    expect(() => nat.addPortRule({ hostIP: '0.0.0.0', hostPort: 1, protocol: 'tcp', targetIP: '10.0.0.2', targetPort: 1 })).toThrow(/iptables -t nat -S D2P-PORTS failed \(exit 4\): .*Permission denied/);
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
