// The bridge rules of IptablesFirewall against an in-memory iptables (save, restore, -C):
// which processes run, what they are fed, and what the tables hold afterwards. Then the
// real asynchronous runner against stand-in binaries, for the context its errors carry.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { IptablesExitError, IptablesRestoreError, iptablesTools, type IptablesTools } from '../../src/network/iptables';
import { IptablesFirewall } from '../../src/network/netns';
import { BUILTIN, FakeIptables } from '../helpers/fake-iptables';

const RULES = { bridge: 'd2p-abc', subnet: '172.18.0.0/16', internal: false };
const OTHER = { bridge: 'd2p-def', subnet: '172.19.0.0/16', internal: false };
const MASQUERADE = '-s 172.18.0.0/16 ! -o d2p-abc -j MASQUERADE';

/** A firewall that always looks again (no trust of its own checks), as a freshly started daemon. */
const fresh = (iptables: FakeIptables) => new IptablesFirewall(iptables, 'iptables', { recheckMs: 0 });

describe('IptablesFirewall.ensureBridgeRules', () => {
  it('on a fresh machine, reads with one save and writes chains, jumps and rules with one restore', async () => {
    const iptables = new FakeIptables();
    iptables.tables.filter.get('FORWARD')!.push('-j ACCEPT');
    await fresh(iptables).ensureBridgeRules(RULES);

    expect(iptables.calls).toEqual(['iptables-save', 'iptables-restore']);
    const input = iptables.restored[0];
    expect(input).toMatch(/^\*filter\n:D2P-FORWARD - \[0:0\]\n:D2P-ISOLATION-1 - \[0:0\]\n:D2P-ISOLATION-2 - \[0:0\]\n/);
    expect(input).toMatch(/\nCOMMIT\n\*nat\n:D2P-POSTROUTING - \[0:0\]\n[^*]*\nCOMMIT\n$/);
    expect(input).toContain('-I FORWARD 1 -j D2P-FORWARD\n');
    expect(input).toContain(`-A D2P-POSTROUTING ${MASQUERADE}\n`);
    expect(iptables.rules('filter', 'FORWARD')).toEqual(['-j D2P-FORWARD', '-j ACCEPT']);
    expect(iptables.rules('filter', 'D2P-FORWARD')[0]).toBe('-j D2P-ISOLATION-1');
    expect(iptables.rules('filter', 'D2P-FORWARD')).toHaveLength(4);
    expect(iptables.rules('nat', 'POSTROUTING')).toEqual(['-j D2P-POSTROUTING']);
    expect(iptables.rules('nat', 'D2P-POSTROUTING')).toEqual([MASQUERADE]);
  });

  it('in the steady state only reads: one save, no restore, no -C', async () => {
    const iptables = new FakeIptables();
    await fresh(iptables).ensureBridgeRules(RULES);
    await fresh(iptables).ensureBridgeRules({ ...RULES, internal: true });
    await fresh(iptables).ensureBridgeRules(OTHER);
    const before = iptables.dump();
    iptables.calls.length = 0;

    await fresh(iptables).ensureBridgeRules(OTHER);
    await fresh(iptables).ensureBridgeRules({ ...RULES, internal: true });
    expect(iptables.calls).toEqual(['iptables-save', 'iptables-save']);
    expect(iptables.dump()).toBe(before);
  });

  it('adds only the rule that is missing, declaring no chain (which would flush it)', async () => {
    const iptables = new FakeIptables();
    await fresh(iptables).ensureBridgeRules(OTHER);
    await fresh(iptables).ensureBridgeRules(RULES);
    const stage2 = iptables.rules('filter', 'D2P-ISOLATION-2');
    stage2.splice(stage2.indexOf('-o d2p-abc -j DROP'), 1);
    iptables.restored.length = 0;

    await fresh(iptables).ensureBridgeRules(RULES);
    expect(iptables.restored).toEqual(['*filter\n-A D2P-ISOLATION-2 -o d2p-abc -j DROP\nCOMMIT\n']);
    expect(iptables.rules('filter', 'D2P-ISOLATION-2')).toEqual(['-o d2p-def -j DROP', '-o d2p-abc -j DROP']);
  });

  it('puts a missing isolation jump back first in D2P-FORWARD and a missing hook jump first in FORWARD', async () => {
    const iptables = new FakeIptables();
    await fresh(iptables).ensureBridgeRules(RULES);
    iptables.tables.filter.get('D2P-FORWARD')!.shift();
    iptables.tables.filter.get('FORWARD')!.splice(0, 1, '-j ACCEPT');

    await fresh(iptables).ensureBridgeRules(RULES);
    expect(iptables.rules('filter', 'D2P-FORWARD')[0]).toBe('-j D2P-ISOLATION-1');
    expect(iptables.rules('filter', 'FORWARD')).toEqual(['-j D2P-FORWARD', '-j ACCEPT']);
  });

  it('asks iptables -C about a rule saved in another form, and does not add it twice', async () => {
    const iptables = new FakeIptables();
    await fresh(iptables).ensureBridgeRules(RULES);
    iptables.tables.nat.get('D2P-POSTROUTING')!.splice(0, 1, '! -o d2p-abc -s 172.18.0.0/16 -j MASQUERADE');
    iptables.calls.length = 0;

    await fresh(iptables).ensureBridgeRules(RULES);
    expect(iptables.calls).toEqual(['iptables-save', `iptables -t nat -C D2P-POSTROUTING ${MASQUERADE}`]);
    expect(iptables.rules('nat', 'D2P-POSTROUTING')).toHaveLength(1);
  });

  it('trusts rules it checked for a while, then checks them again and puts back one deleted by hand', async () => {
    const iptables = new FakeIptables();
    let clock = 0;
    const firewall = new IptablesFirewall(iptables, 'iptables', { recheckMs: 60_000, now: () => clock });
    await firewall.ensureBridgeRules(RULES);
    const afterFirst = iptables.calls.length;
    clock += 1_000;
    await firewall.ensureBridgeRules(RULES);
    expect(iptables.calls.length).toBe(afterFirst);

    iptables.tables.nat.get('D2P-POSTROUTING')!.length = 0;
    clock += 60_000;
    await firewall.ensureBridgeRules(RULES);
    expect(iptables.calls.slice(afterFirst)).toEqual(['iptables-save', 'iptables-restore']);
    expect(iptables.rules('nat', 'D2P-POSTROUTING')).toEqual([MASQUERADE]);
  });

  it('checks again at once when the network changed or its rules were removed', async () => {
    const iptables = new FakeIptables();
    const firewall = new IptablesFirewall(iptables, 'iptables', { now: () => 0 });
    await firewall.ensureBridgeRules(RULES);
    await firewall.ensureBridgeRules({ ...RULES, internal: true });
    expect(iptables.rules('filter', 'D2P-FORWARD')).toContain('-i d2p-abc ! -o d2p-abc -j DROP');

    await firewall.removeBridgeRules({ ...RULES, internal: true });
    expect(iptables.chains('filter')).toEqual(BUILTIN.filter);
    await firewall.ensureBridgeRules(RULES);
    expect(iptables.rules('nat', 'D2P-POSTROUTING')).toEqual([MASQUERADE]);
  });

  it('runs one operation at a time, so two networks set up at once do not both declare (and flush) the chains', async () => {
    const iptables = new FakeIptables();
    const firewall = fresh(iptables);
    await Promise.all([firewall.ensureBridgeRules(RULES), firewall.ensureBridgeRules(OTHER)]);
    expect(iptables.rules('nat', 'D2P-POSTROUTING')).toEqual([MASQUERADE, '-s 172.19.0.0/16 ! -o d2p-def -j MASQUERADE']);
    expect(iptables.rules('filter', 'D2P-ISOLATION-2')).toEqual(['-o d2p-abc -j DROP', '-o d2p-def -j DROP']);
  });

  it('reports a failed restore with the command, exit status, message and the lines it was applying', async () => {
    const iptables = new FakeIptables();
    iptables.failRestore = { line: 2, message: 'No chain/target/match by that name.', status: 1 };
    const error = await fresh(iptables).ensureBridgeRules(RULES).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(IptablesRestoreError);
    expect((error as IptablesRestoreError).failedLine).toBe(':D2P-FORWARD - [0:0]');
    expect((error as Error).message).toContain('iptables-restore -w --noflush failed (exit 1): iptables-restore: line 2 failed: No chain/target/match by that name.');
    expect((error as Error).message).toContain('-A D2P-POSTROUTING -s 172.18.0.0/16 ! -o d2p-abc -j MASQUERADE');

    // The failure is not remembered as checked, and does not block the next operation.
    iptables.failRestore = undefined;
    await fresh(iptables).ensureBridgeRules(RULES);
    expect(iptables.rules('nat', 'D2P-POSTROUTING')).toEqual([MASQUERADE]);
  });

  it('a -C that fails for another reason than "no such rule" is an error, not a missing rule', async () => {
    const iptables = new FakeIptables();
    await fresh(iptables).ensureBridgeRules(RULES);
    iptables.tables.nat.get('D2P-POSTROUTING')!.splice(0, 1, '! -o d2p-abc -s 172.18.0.0/16 -j MASQUERADE');
    const broken: IptablesTools = {
      run: async (args) => {
        throw new IptablesExitError(args, 4, 'Could not fetch rule set generation id: Permission denied', undefined);
      },
      save: () => iptables.save(),
      restore: (input) => iptables.restore(input),
    };
    await expect(new IptablesFirewall(broken, 'iptables', { recheckMs: 0 }).ensureBridgeRules(RULES)).rejects.toThrow(/-C D2P-POSTROUTING .* failed \(exit 4\): Could not fetch/);
    expect(iptables.rules('nat', 'D2P-POSTROUTING')).toHaveLength(1);
  });
});

describe('IptablesFirewall.removeBridgeRules', () => {
  it('deletes every copy of the network\'s rules with one save and one restore, and keeps the other network\'s', async () => {
    const iptables = new FakeIptables();
    await fresh(iptables).ensureBridgeRules(OTHER);
    await fresh(iptables).ensureBridgeRules(RULES);
    const otherBefore = iptables.rules('nat', 'D2P-POSTROUTING').filter((r) => r.includes('d2p-def'));
    iptables.tables.nat.get('D2P-POSTROUTING')!.push(MASQUERADE, MASQUERADE);
    iptables.tables.filter.get('D2P-ISOLATION-2')!.push('-o d2p-abc -j DROP');
    iptables.calls.length = 0;
    iptables.restored.length = 0;

    await fresh(iptables).removeBridgeRules(RULES);
    expect(iptables.calls).toEqual(['iptables-save', 'iptables-restore']);
    expect(iptables.restored[0].match(/-D D2P-POSTROUTING /g)).toHaveLength(3);
    expect(iptables.dump()).not.toContain('d2p-abc');
    expect(iptables.rules('nat', 'D2P-POSTROUTING')).toEqual(otherBefore);
    expect(iptables.rules('filter', 'FORWARD')).toEqual(['-j D2P-FORWARD']);
  });

  it('with the last network gone, removes the chains and the jumps, leaving the tables as they were', async () => {
    const iptables = new FakeIptables();
    iptables.tables.filter.get('FORWARD')!.push('-j ACCEPT');
    const before = iptables.dump();
    await fresh(iptables).ensureBridgeRules(RULES);
    await fresh(iptables).ensureBridgeRules(OTHER);
    // A duplicate jump (another d2p's, or an older one) must go too, or the chain could not.
    iptables.tables.filter.get('FORWARD')!.push('-j D2P-FORWARD');

    await fresh(iptables).removeBridgeRules(OTHER);
    expect(iptables.chains('filter')).toContain('D2P-FORWARD');
    iptables.calls.length = 0;
    await fresh(iptables).removeBridgeRules(RULES);
    expect(iptables.calls).toEqual(['iptables-save', 'iptables-restore']);
    expect(iptables.dump()).toBe(before);
  });

  it('keeps the chains while a rule it does not know lives in them', async () => {
    const iptables = new FakeIptables();
    await fresh(iptables).ensureBridgeRules(RULES);
    iptables.tables.filter.get('D2P-FORWARD')!.push('-i somebody -j ACCEPT');
    await fresh(iptables).removeBridgeRules(RULES);
    expect(iptables.rules('filter', 'D2P-FORWARD')).toEqual(['-j D2P-ISOLATION-1', '-i somebody -j ACCEPT']);
    expect(iptables.rules('filter', 'FORWARD')).toEqual(['-j D2P-FORWARD']);
  });

  it('deletes a rule saved in another form by asking iptables, then removes the chains', async () => {
    const iptables = new FakeIptables();
    const before = iptables.dump();
    await fresh(iptables).ensureBridgeRules(RULES);
    iptables.tables.nat.get('D2P-POSTROUTING')!.splice(0, 1, '! -o d2p-abc -s 172.18.0.0/16 -j MASQUERADE', '! -o d2p-abc -s 172.18.0.0/16 -j MASQUERADE');
    await fresh(iptables).removeBridgeRules(RULES);
    expect(iptables.dump()).toBe(before);
  });

  it('with nothing of the network left, only reads', async () => {
    const iptables = new FakeIptables();
    await fresh(iptables).ensureBridgeRules(OTHER);
    iptables.calls.length = 0;
    await fresh(iptables).removeBridgeRules(RULES);
    await fresh(iptables).removeBridgeRules({ ...RULES, internal: true });
    expect(iptables.calls).toEqual(['iptables-save', 'iptables-save']);
  });
});

describe('iptablesTools (the asynchronous runner)', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  /** Stand-ins for iptables, iptables-save and iptables-restore: shell scripts, so no real firewall is touched. */
  function standIns(scripts: Record<'iptables' | 'iptables-save' | 'iptables-restore', string>): string {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-iptables-'));
    for (const [name, body] of Object.entries(scripts)) fs.writeFileSync(path.join(dir, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    return path.join(dir, 'iptables');
  }

  it('feeds restore its input on stdin, runs save without -w, and iptables with it', async () => {
    const binary = standIns({
      iptables: 'echo "args: $*"',
      'iptables-save': 'echo "save args: [$*]"',
      'iptables-restore': `echo "$*" > "$(dirname "$0")/restore.args"; cat > "$(dirname "$0")/restore.input"`,
    });
    const tools = iptablesTools(binary);
    expect(await tools.run(['-t', 'nat', '-S'])).toBe('args: -w -t nat -S\n');
    expect(await tools.save()).toBe('save args: []\n');
    await tools.restore('*filter\n-A X -j ACCEPT\nCOMMIT\n');
    expect(fs.readFileSync(path.join(dir!, 'restore.args'), 'utf8')).toBe('-w --noflush\n');
    expect(fs.readFileSync(path.join(dir!, 'restore.input'), 'utf8')).toBe('*filter\n-A X -j ACCEPT\nCOMMIT\n');
  });

  it('rejects with the command, exit status, stderr and, for restore, the failing line and the input', async () => {
    const binary = standIns({
      iptables: 'echo "iptables: Bad rule (does a matching rule exist in that chain?)." >&2; exit 1',
      'iptables-save': 'echo "iptables-save: cannot open table" >&2; exit 4',
      'iptables-restore': 'cat > /dev/null; echo "iptables-restore: line 3 failed: No chain/target/match by that name." >&2; exit 2',
    });
    const tools = iptablesTools(binary);

    const checked = await tools.run(['-t', 'nat', '-C', 'D2P-POSTROUTING', '-j', 'MASQUERADE']).catch((e: unknown) => e);
    expect(checked).toBeInstanceOf(IptablesExitError);
    expect((checked as IptablesExitError).status).toBe(1);
    expect((checked as Error).message).toBe('iptables -t nat -C D2P-POSTROUTING -j MASQUERADE failed (exit 1): iptables: Bad rule (does a matching rule exist in that chain?).');

    const saved = await tools.save().catch((e: unknown) => e);
    expect((saved as IptablesExitError).status).toBe(4);
    expect((saved as Error).message).toBe(`${binary}-save failed (exit 4): iptables-save: cannot open table`);

    const restored = (await tools.restore('*nat\n-A D2P-POSTROUTING -j MASQUERADE\n-A NOPE -j ACCEPT\nCOMMIT\n').catch((e: unknown) => e)) as IptablesRestoreError;
    expect(restored).toBeInstanceOf(IptablesRestoreError);
    expect(restored.status).toBe(2);
    expect(restored.failedLine).toBe('-A NOPE -j ACCEPT');
    expect(restored.lines).toEqual(['*nat', '-A D2P-POSTROUTING -j MASQUERADE', '-A NOPE -j ACCEPT', 'COMMIT']);
    expect(restored.message).toContain('iptables-restore -w --noflush failed (exit 2): iptables-restore: line 3 failed: No chain/target/match by that name. (line 3 is "-A NOPE -j ACCEPT")');
    expect(restored.message).toContain('-A D2P-POSTROUTING -j MASQUERADE');
  });

  it('names the missing binary when there is no iptables-save', async () => {
    const binary = standIns({ iptables: 'true', 'iptables-save': 'true', 'iptables-restore': 'true' });
    fs.unlinkSync(`${binary}-save`);
    const error = await iptablesTools(binary).save().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IptablesExitError);
    expect((error as IptablesExitError).context.errno).toBe('ENOENT');
    expect((error as Error).message).toContain(`${binary}-save`);
  });
});
