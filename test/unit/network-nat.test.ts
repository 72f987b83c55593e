// IptablesNat against the in-memory iptables of test/helpers/fake-iptables.ts (save,
// restore, -C, -D) and a temp dir standing for /proc/sys/net/ipv4/conf: which processes
// run, what each restore is fed and what route_localnet was when it ran (the order the
// CVE-2020-8558 guard depends on), and what the tables hold afterwards. The real binaries
// and kernel are exercised in test/integration/network-userland.test.ts inside the sandbox.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { IptablesExitError, IptablesRestoreError, findIptables, type IptablesTools } from '../../src/network/iptables';
import { IptablesNat } from '../../src/network/nat';
import type { NatPortRule } from '../../src/network/port-forward';
import { FakeIptables } from '../helpers/fake-iptables';

const GUARD = '-d 127.0.0.0/8 ! -i lo -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP';
const PREROUTING_JUMP = '! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j D2P-PORTS';
const OUTPUT_JUMP = '-m addrtype --dst-type LOCAL -j D2P-PORTS';

/** The fake, noting at each restore the route_localnet of every bridge at that moment. */
class WatchedIptables extends FakeIptables {
  readonly routeLocalnetAtRestore: string[] = [];

  constructor(private readonly sysctlDir: string) {
    super();
  }

  override async restore(input: string): Promise<void> {
    const values = fs.readdirSync(this.sysctlDir).map((bridge) => `${bridge}=${fs.readFileSync(path.join(this.sysctlDir, bridge, 'route_localnet'), 'utf8').trim()}`);
    this.routeLocalnetAtRestore.push(values.join(' '));
    return super.restore(input);
  }

  /** Forgets the processes run so far, to look at one operation's. */
  forget(): void {
    this.calls.length = 0;
    this.restored.length = 0;
    this.routeLocalnetAtRestore.length = 0;
  }
}

describe('iptables NAT for published ports', () => {
  let sysctl: string;
  let iptables: WatchedIptables;

  beforeEach(() => {
    sysctl = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-nat-sysctl-'));
    iptables = new WatchedIptables(sysctl);
  });
  afterEach(() => fs.rmSync(sysctl, { recursive: true, force: true }));

  /** A bridge as the kernel shows it under /proc/sys/net/ipv4/conf. */
  function bridge(name: string, routeLocalnet = '0'): string {
    fs.mkdirSync(path.join(sysctl, name));
    fs.writeFileSync(path.join(sysctl, name, 'route_localnet'), `${routeLocalnet}\n`);
    return name;
  }
  const routeLocalnet = (name: string) => fs.readFileSync(path.join(sysctl, name, 'route_localnet'), 'utf8').trim();
  const natOf = (options: { chain?: string; loopback?: boolean } = {}) => new IptablesNat({ tools: iptables, sysctlDir: sysctl, ...options });
  const rules = (table: string, chain: string) => iptables.tables[table].get(chain);
  const web = (br: string): NatPortRule => ({ hostIP: '0.0.0.0', hostPort: 8080, protocol: 'tcp', targetIP: '172.18.0.2', targetPort: 80, targetInterface: br });
  const dns = (br: string): NatPortRule => ({ hostIP: '127.0.0.1', hostPort: 5353, protocol: 'udp', targetIP: '172.18.0.3', targetPort: 53, targetInterface: br });

  describe('adding a port', () => {
    it('on a fresh machine: one save, the guard, jumps and MASQUERADE, then route_localnet, then the DNAT rule', async () => {
      rules('filter', 'INPUT')!.push('-j ACCEPT');
      const br = bridge('d2p-br1');
      const nat = natOf();
      expect(await nat.addPortRule(web(br))).toBe('all');

      expect(iptables.calls).toEqual(['iptables-save', 'iptables-restore', 'iptables-restore']);
      expect(iptables.restored[0]).toBe(
        [
          '*filter',
          ':D2P-PORTS-GUARD - [0:0]',
          `-A D2P-PORTS-GUARD ${GUARD}`,
          '-I INPUT 1 -j D2P-PORTS-GUARD',
          'COMMIT',
          '*nat',
          ':D2P-PORTS - [0:0]',
          ':D2P-PORTS-MASQ - [0:0]',
          `-A PREROUTING ${PREROUTING_JUMP}`,
          `-A OUTPUT ${OUTPUT_JUMP}`,
          '-A POSTROUTING -j D2P-PORTS-MASQ',
          `-A D2P-PORTS-MASQ -s 127.0.0.0/8 -o ${br} -j MASQUERADE`,
          'COMMIT',
          '',
        ].join('\n'),
      );
      expect(iptables.restored[1]).toBe(`*nat\n-A D2P-PORTS ! -i ${br} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:80\nCOMMIT\n`);
      // The guard was in before route_localnet went on; the DNAT rule went in only after.
      expect(iptables.routeLocalnetAtRestore).toEqual([`${br}=0`, `${br}=1`]);

      expect(rules('filter', 'INPUT')).toEqual(['-j D2P-PORTS-GUARD', '-j ACCEPT']);
      expect(rules('filter', 'D2P-PORTS-GUARD')).toEqual([GUARD]);
      expect(rules('nat', 'POSTROUTING')).toEqual(['-j D2P-PORTS-MASQ']);
      expect(await nat.listRules()).toEqual([`-A D2P-PORTS ! -i ${br} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:80`]);
      expect(await nat.loopbackBridges()).toEqual([br]);
      expect(routeLocalnet(br)).toBe('1');
    });

    it('ports published together go in one batch: one save, the guard path for every bridge, route_localnet, then every DNAT rule', async () => {
      const [br1, br2] = [bridge('d2p-br1'), bridge('d2p-br2')];
      const nat = natOf();
      const web2: NatPortRule = { ...web(br2), hostPort: 8081, targetIP: '172.19.0.2' };
      expect(await Promise.all([nat.addPortRule(web(br1)), nat.addPortRule(dns(br1)), nat.addPortRule(web2), nat.addPortRule(web(br1))])).toEqual(['all', 'all', 'all', 'all']);

      expect(iptables.calls).toEqual(['iptables-save', 'iptables-restore', 'iptables-restore']);
      expect(iptables.restored[0]).toContain(`-A D2P-PORTS-MASQ -s 127.0.0.0/8 -o ${br1} -j MASQUERADE\n-A D2P-PORTS-MASQ -s 127.0.0.0/8 -o ${br2} -j MASQUERADE`);
      expect(iptables.restored[0]).not.toContain('-j DNAT');
      // Both bridges' route_localnet went on between the guard and the DNAT rules.
      expect(iptables.routeLocalnetAtRestore).toEqual([`${br1}=0 ${br2}=0`, `${br1}=1 ${br2}=1`]);
      // The same port asked twice is one rule.
      expect(await nat.listRules()).toEqual([
        `-A D2P-PORTS ! -i ${br1} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:80`,
        `-A D2P-PORTS -d 127.0.0.1/32 ! -i ${br1} -p udp -m udp --dport 5353 -j DNAT --to-destination 172.18.0.3:53`,
        `-A D2P-PORTS ! -i ${br2} -p tcp -m tcp --dport 8081 -j DNAT --to-destination 172.19.0.2:80`,
      ]);
    });

    it('a batch the kernel refuses is applied one port at a time: only the refused port fails', async () => {
      const br = bridge('d2p-br1');
      const nat = natOf();
      iptables.refuseLinesWith = '--dport 6666';
      const bad: NatPortRule = { ...web(br), hostPort: 6666, targetPort: 66 };
      const results = await Promise.allSettled([nat.addPortRule(web(br)), nat.addPortRule(bad), nat.addPortRule(dns(br))]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(IptablesRestoreError);
      expect(await nat.listRules()).toEqual([
        `-A D2P-PORTS ! -i ${br} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:80`,
        `-A D2P-PORTS -d 127.0.0.1/32 ! -i ${br} -p udp -m udp --dport 5353 -j DNAT --to-destination 172.18.0.3:53`,
      ]);
      expect(rules('filter', 'D2P-PORTS-GUARD')).toEqual([GUARD]);
    });

    it('a second port on the same bridge: one save and one restore holding only its DNAT rule', async () => {
      const br = bridge('d2p-br1');
      const nat = natOf();
      await nat.addPortRule(web(br));
      iptables.forget();

      expect(await nat.addPortRule(dns(br))).toBe('all');
      expect(iptables.calls).toEqual(['iptables-save', 'iptables-restore']);
      // No chain declared again: iptables-restore would have flushed it, the first rule with it.
      expect(iptables.restored).toEqual([`*nat\n-A D2P-PORTS -d 127.0.0.1/32 ! -i ${br} -p udp -m udp --dport 5353 -j DNAT --to-destination 172.18.0.3:53\nCOMMIT\n`]);
      expect(await nat.listRules()).toHaveLength(2);
      expect(rules('filter', 'D2P-PORTS-GUARD')).toEqual([GUARD]);
      expect(rules('nat', 'D2P-PORTS-MASQ')).toEqual([`-s 127.0.0.0/8 -o ${br} -j MASQUERADE`]);
    });

    it('the same ports again (a daemon adopting its containers) only read: one save each, nothing added twice', async () => {
      const br = bridge('d2p-br1');
      const nat = natOf();
      const plain = { hostIP: '192.0.2.5', hostPort: 9090, protocol: 'tcp' as const, targetIP: '172.19.0.2', targetPort: 90 };
      for (const rule of [web(br), dns(br), plain]) await nat.addPortRule(rule);
      const before = iptables.dump();
      iptables.forget();

      expect(await natOf().addPortRule(web(br))).toBe('all');
      expect(await natOf().addPortRule(dns(br))).toBe('all');
      expect(await natOf().addPortRule(plain)).toBe('all');
      expect(iptables.calls).toEqual(['iptables-save', 'iptables-save', 'iptables-save']);
      expect(iptables.dump()).toBe(before);
    });

    it('puts back, first in INPUT, a guard jump deleted by hand, with route_localnet already on (one restore)', async () => {
      const br = bridge('d2p-br1');
      const nat = natOf();
      await nat.addPortRule(web(br));
      rules('filter', 'INPUT')!.splice(0, 1, '-j ACCEPT');
      iptables.forget();

      await nat.addPortRule(dns(br));
      expect(iptables.calls).toEqual(['iptables-save', 'iptables-restore']);
      expect(iptables.restored[0]).toMatch(/^\*filter\n-I INPUT 1 -j D2P-PORTS-GUARD\nCOMMIT\n\*nat\n-A D2P-PORTS -d 127\.0\.0\.1\/32 /);
      expect(rules('filter', 'INPUT')).toEqual(['-j D2P-PORTS-GUARD', '-j ACCEPT']);
    });

    it('without the target\'s bridge: chain, jumps and rule in one restore, loopback left to the proxy, no guard', async () => {
      const nat = natOf();
      const rule = { hostIP: '192.0.2.5', hostPort: 5353, protocol: 'udp' as const, targetIP: '172.18.0.3', targetPort: 53 };
      expect(await nat.addPortRule(rule)).toBe('all');
      expect(iptables.calls).toEqual(['iptables-save', 'iptables-restore']);
      expect(await nat.addPortRule({ hostIP: '0.0.0.0', hostPort: 8080, protocol: 'tcp', targetIP: '172.18.0.2', targetPort: 80 })).toBe('non-loopback');
      expect(rules('nat', 'PREROUTING')).toEqual([PREROUTING_JUMP]);
      expect(rules('nat', 'OUTPUT')).toEqual([OUTPUT_JUMP]);
      expect(await nat.listRules()).toEqual([
        '-A D2P-PORTS -d 192.0.2.5/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 172.18.0.3:53',
        '-A D2P-PORTS ! -d 127.0.0.0/8 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:80',
      ]);
      expect(iptables.chains('filter')).not.toContain('D2P-PORTS-GUARD');
      expect(iptables.chains('nat')).not.toContain('D2P-PORTS-MASQ');
    });

    it('leaves to the proxy what iptables cannot carry: IPv6, and 127.0.0.1 without a bridge', async () => {
      const nat = natOf();
      expect(await nat.addPortRule({ hostIP: '::', hostPort: 80, protocol: 'tcp', targetIP: '172.18.0.2', targetPort: 80, targetInterface: bridge('d2p-br1') })).toBe('none');
      expect(await nat.addPortRule({ hostIP: '127.0.0.1', hostPort: 80, protocol: 'tcp', targetIP: '172.18.0.2', targetPort: 80 })).toBe('none');
      expect(await natOf({ loopback: false }).addPortRule({ hostIP: '127.0.0.1', hostPort: 80, protocol: 'tcp', targetIP: '172.18.0.2', targetPort: 80, targetInterface: 'd2p-br1' })).toBe('none');
      expect(iptables.calls).toEqual([]);
    });

    it('asks iptables -C about a rule saved in another form, and does not add it twice', async () => {
      const br = bridge('d2p-br1');
      const nat = natOf();
      await nat.addPortRule(web(br));
      rules('nat', 'D2P-PORTS')!.splice(0, 1, `-p tcp -m tcp --dport 8080 ! -i ${br} -j DNAT --to-destination 172.18.0.2:80`);
      iptables.forget();

      await nat.addPortRule(web(br));
      expect(iptables.calls).toEqual(['iptables-save', `iptables -t nat -C D2P-PORTS ! -i ${br} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:80`]);
      expect(rules('nat', 'D2P-PORTS')).toHaveLength(1);
    });

    it('runs one operation at a time, so two ports added at once do not both declare (and flush) the chains', async () => {
      const br = bridge('d2p-br1');
      const nat = natOf();
      await Promise.all([nat.addPortRule(web(br)), nat.addPortRule(dns(br)), nat.addPortRule({ ...web(br), hostPort: 8081 })]);
      expect(await nat.listRules()).toHaveLength(3);
      expect(rules('nat', 'PREROUTING')).toEqual([PREROUTING_JUMP]);
      expect(rules('filter', 'INPUT')).toEqual(['-j D2P-PORTS-GUARD']);
    });
  });

  describe('removing a port', () => {
    it('one of two on a bridge: one save, one restore deleting its rule; the loopback path stays', async () => {
      const br = bridge('d2p-br1');
      const nat = natOf();
      await nat.addPortRule(web(br));
      await nat.addPortRule(dns(br));
      iptables.forget();

      await nat.removePortRule(web(br));
      expect(iptables.calls).toEqual(['iptables-save', 'iptables-restore']);
      expect(iptables.restored).toEqual([`*nat\n-D D2P-PORTS ! -i ${br} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:80\nCOMMIT\n`]);
      expect(routeLocalnet(br)).toBe('1');
      expect(await nat.loopbackBridges()).toEqual([br]);
      expect(rules('filter', 'D2P-PORTS-GUARD')).toEqual([GUARD]);
    });

    it('the last one: the DNAT rule, then route_localnet off, then MASQUERADE, chains and the guard last; the tables as before', async () => {
      rules('filter', 'INPUT')!.push('-j ACCEPT');
      const before = iptables.dump();
      const br = bridge('d2p-br1');
      const nat = natOf();
      await nat.addPortRule(web(br));
      iptables.forget();

      await nat.removePortRule(web(br));
      expect(iptables.calls).toEqual(['iptables-save', 'iptables-restore', 'iptables-restore']);
      expect(iptables.restored[0]).toBe(`*nat\n-D D2P-PORTS ! -i ${br} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:80\nCOMMIT\n`);
      expect(iptables.restored[1]).toBe(
        [
          '*nat',
          `-D D2P-PORTS-MASQ -s 127.0.0.0/8 -o ${br} -j MASQUERADE`,
          `-D PREROUTING ${PREROUTING_JUMP}`,
          `-D OUTPUT ${OUTPUT_JUMP}`,
          '-F D2P-PORTS',
          '-X D2P-PORTS',
          '-D POSTROUTING -j D2P-PORTS-MASQ',
          '-F D2P-PORTS-MASQ',
          '-X D2P-PORTS-MASQ',
          'COMMIT',
          '*filter',
          '-D INPUT -j D2P-PORTS-GUARD',
          '-F D2P-PORTS-GUARD',
          '-X D2P-PORTS-GUARD',
          'COMMIT',
          '',
        ].join('\n'),
      );
      // route_localnet went off after the DNAT rule was gone and before the guard went.
      expect(iptables.routeLocalnetAtRestore).toEqual([`${br}=1`, `${br}=0`]);
      expect(iptables.dump()).toBe(before);
    });

    it('keeps a bridge\'s loopback path while it has ports, and the guard while any bridge has one', async () => {
      const nat = natOf();
      const br1 = bridge('d2p-br1');
      const br2 = bridge('d2p-br2');
      const other = { hostIP: '0.0.0.0', hostPort: 9090, protocol: 'tcp' as const, targetIP: '172.19.0.2', targetPort: 90, targetInterface: br2 };
      for (const rule of [web(br1), dns(br1), other]) expect(await nat.addPortRule(rule)).toBe('all');
      await nat.removePortRule(web(br1));
      expect([routeLocalnet(br1), await nat.loopbackBridges()]).toEqual(['1', [br1, br2]]);
      await nat.removePortRule(dns(br1));
      expect([routeLocalnet(br1), routeLocalnet(br2), await nat.loopbackBridges()]).toEqual(['0', '1', [br2]]);
      expect(await nat.listRules()).toHaveLength(1);
      expect(rules('filter', 'D2P-PORTS-GUARD')).toEqual([GUARD]);
      expect(rules('filter', 'INPUT')).toEqual(['-j D2P-PORTS-GUARD']);
    });

    it('the last bridge\'s loopback path goes while ports without a bridge keep the DNAT chain', async () => {
      const nat = natOf();
      const br = bridge('d2p-br1');
      const plain = { hostIP: '192.0.2.5', hostPort: 9090, protocol: 'tcp' as const, targetIP: '172.19.0.2', targetPort: 90 };
      await nat.addPortRule(plain);
      await nat.addPortRule(web(br));
      await nat.removePortRule(web(br));
      expect(routeLocalnet(br)).toBe('0');
      expect(iptables.chains('filter')).not.toContain('D2P-PORTS-GUARD');
      expect(iptables.chains('nat')).not.toContain('D2P-PORTS-MASQ');
      expect(await nat.listRules()).toEqual(['-A D2P-PORTS -d 192.0.2.5/32 -p tcp -m tcp --dport 9090 -j DNAT --to-destination 172.19.0.2:90']);
      expect(rules('nat', 'OUTPUT')).toEqual([OUTPUT_JUMP]);
    });

    it('a rule already gone is not an error, and costs one save', async () => {
      const br = bridge('d2p-br1');
      const nat = natOf();
      await nat.removePortRule(web(br));
      await nat.addPortRule(web(br));
      await nat.addPortRule(dns(br));
      await nat.removePortRule(dns(br));
      iptables.forget();
      await nat.removePortRule(dns(br));
      expect(iptables.calls).toEqual(['iptables-save']);
    });

    it('removes a rule added with the other loopback setting (a daemon restarted with another configuration), every copy', async () => {
      const br = bridge('d2p-br1');
      const before = iptables.dump();
      const rule = web(br);
      expect(await natOf({ loopback: false }).addPortRule(rule)).toBe('non-loopback');
      rules('nat', 'D2P-PORTS')!.push(rules('nat', 'D2P-PORTS')![0]);
      await natOf().removePortRule(rule);
      expect(iptables.dump()).toBe(before);
    });

    it('deletes a rule saved in another form by asking iptables, then leaves the tables as they were', async () => {
      const before = iptables.dump();
      const br = bridge('d2p-br1');
      const nat = natOf();
      await nat.addPortRule(web(br));
      rules('nat', 'D2P-PORTS')!.splice(0, 1, `-p tcp -m tcp --dport 8080 ! -i ${br} -j DNAT --to-destination 172.18.0.2:80`);
      rules('nat', 'D2P-PORTS-MASQ')!.splice(0, 1, `-o ${br} -s 127.0.0.0/8 -j MASQUERADE`);
      await nat.removePortRule(web(br));
      expect(routeLocalnet(br)).toBe('0');
      expect(iptables.dump()).toBe(before);
    });
  });

  describe('removing everything', () => {
    it('removeAll resets route_localnet, then removes every chain in one restore, the guard last; removeAllIfUnused waits for the last rule', async () => {
      rules('filter', 'INPUT')!.push('-j ACCEPT');
      const before = iptables.dump();
      const nat = natOf();
      const br = bridge('d2p-br1');
      await nat.addPortRule(web(br));
      await nat.addPortRule({ ...web(br), hostPort: 8081, targetInterface: bridge('d2p-gone') });
      fs.rmSync(path.join(sysctl, 'd2p-gone'), { recursive: true });
      await nat.removeAllIfUnused();
      expect(await nat.listRules()).toHaveLength(2);
      iptables.forget();

      await nat.removeAll();
      expect(iptables.calls).toEqual(['iptables-save', 'iptables-restore']);
      expect(iptables.routeLocalnetAtRestore).toEqual([`${br}=0`]);
      expect(iptables.restored[0]).toMatch(/COMMIT\n\*filter\n-D INPUT -j D2P-PORTS-GUARD\n-F D2P-PORTS-GUARD\n-X D2P-PORTS-GUARD\nCOMMIT\n$/);
      expect(iptables.dump()).toBe(before);
      await nat.removeAll();
      await nat.removeAllIfUnused();
      expect(iptables.dump()).toBe(before);
    });

    it('removeAll takes away jumps of any form to its chain (an older d2p\'s), and no one else\'s', async () => {
      const nat = natOf({ chain: 'D2P-TEST' });
      await nat.ensureChain();
      rules('nat', 'OUTPUT')!.push('! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j D2P-TEST', '-j DOCKER-LIKE');
      await nat.removeAll();
      expect(rules('nat', 'OUTPUT')).toEqual(['-j DOCKER-LIKE']);
      expect(rules('nat', 'PREROUTING')).toEqual([]);
      expect(iptables.chains('nat')).not.toContain('D2P-TEST');
    });
  });

  describe('errors', () => {
    it('a failed iptables-save rejects with the command, exit status and message, and nothing is written', async () => {
      const broken: IptablesTools = {
        run: (args) => iptables.run(args),
        save: async () => {
          throw new IptablesExitError([], 4, 'iptables-save v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied', undefined, 'iptables-save');
        },
        restore: (input) => iptables.restore(input),
      };
      const br = bridge('d2p-br1');
      await expect(new IptablesNat({ tools: broken, sysctlDir: sysctl }).addPortRule(web(br))).rejects.toThrow(/^iptables-save failed \(exit 4\): .*Permission denied/);
      expect(iptables.calls).toEqual([]);
      expect(routeLocalnet(br)).toBe('0');
    });

    it('a failed first restore leaves route_localnet off, and the error names the line and the input', async () => {
      const br = bridge('d2p-br1');
      iptables.failRestore = { line: 4, message: 'Chain \'D2P-PORTS-GUARD\' does not exist', status: 2 };
      const error = (await natOf()
        .addPortRule(web(br))
        .catch((e: unknown) => e)) as IptablesRestoreError;
      expect(error).toBeInstanceOf(IptablesRestoreError);
      expect(error.status).toBe(2);
      expect(error.failedLine).toBe('-I INPUT 1 -j D2P-PORTS-GUARD');
      expect(error.lines).toContain(`-A D2P-PORTS-MASQ -s 127.0.0.0/8 -o ${br} -j MASQUERADE`);
      expect(error.message).toContain('iptables-restore -w --noflush failed (exit 2): iptables-restore: line 4 failed');
      expect(routeLocalnet(br)).toBe('0');
      expect(iptables.calls).toEqual(['iptables-save', 'iptables-restore']);

      // The failure does not block the next operation.
      iptables.failRestore = undefined;
      expect(await natOf().addPortRule(web(br))).toBe('all');
      expect(routeLocalnet(br)).toBe('1');
    });

    it('a -C that fails for another reason than "no such rule" is an error, not a missing rule', async () => {
      const br = bridge('d2p-br1');
      await natOf().addPortRule(web(br));
      rules('nat', 'D2P-PORTS')!.splice(0, 1, `-p tcp -m tcp --dport 8080 ! -i ${br} -j DNAT --to-destination 172.18.0.2:80`);
      const broken: IptablesTools = {
        run: async (args) => {
          throw new IptablesExitError(args, 4, 'Could not fetch rule set generation id: Permission denied', undefined);
        },
        save: () => iptables.save(),
        restore: (input) => iptables.restore(input),
      };
      await expect(new IptablesNat({ tools: broken, sysctlDir: sysctl }).addPortRule(web(br))).rejects.toThrow(/iptables -t nat -C D2P-PORTS .* failed \(exit 4\): Could not fetch/);
      expect(rules('nat', 'D2P-PORTS')).toHaveLength(1);
    });

    it('refuses a bridge that does not exist, naming it, before writing anything; and interface names that are paths', async () => {
      const nat = natOf();
      const before = iptables.dump();
      await expect(nat.addPortRule(web('d2p-missing'))).rejects.toThrow(/route_localnet=1 on d2p-missing .*the interface does not exist/);
      expect(iptables.calls).toEqual(['iptables-save']);
      expect(iptables.dump()).toBe(before);
      await expect(nat.addPortRule(web('../all'))).rejects.toThrow(/invalid interface name "..\/all"/);
      expect(fs.readdirSync(sysctl)).toEqual([]);
    });

    it('refuses a chain name too long for iptables', () => {
      expect(() => natOf({ chain: 'D2P-A-VERY-LONG-CHAIN-NAME' })).toThrow(/too long/);
    });
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
