// The shared test helpers are what every integration cleanup and poll relies on: a cleanup
// that swallowed a failure or a poll that never timed out would hide real bugs.
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';

import { combinedError, runAllSteps, throwCollected } from '../helpers/errors';
import { pidExists, runsNotZombie } from '../helpers/process';
import { poller, until } from '../helpers/wait';

describe('cleanup errors', () => {
  it('runs every step after a failing one and returns the failures in order', async () => {
    const ran: string[] = [];
    const first = new Error('first');
    const second = new Error('second');
    const errors = await runAllSteps([
      () => ran.push('a'),
      () => {
        throw first;
      },
      async () => {
        ran.push('c');
        throw second;
      },
      () => ran.push('d'),
    ]);
    expect(ran).toEqual(['a', 'c', 'd']);
    expect(errors).toEqual([first, second]);
  });

  it('throws nothing for no failure, the error itself for one, an AggregateError naming all for more', () => {
    expect(() => throwCollected('cleanup', [])).not.toThrow();
    const only = new Error('only');
    expect(() => throwCollected('cleanup', [only])).toThrow(only);
    const all = combinedError('stopping x', new Error('one'), [new Error('two')]);
    expect(all).toBeInstanceOf(AggregateError);
    expect((all as AggregateError).errors).toHaveLength(2);
    expect((all as Error).message).toBe('stopping x: 2 steps failed: one; two');
  });
});

describe('until', () => {
  it('returns the first defined value of a sync or async probe', async () => {
    let calls = 0;
    expect(await until('the third call', () => (++calls === 3 ? 'done' : undefined), { intervalMs: 1 })).toBe('done');
    expect(await until('an async value', async () => 0)).toBe(0);
  });

  it('fails naming what it waited for once the timeout has passed', async () => {
    await expect(until('never', () => undefined, { timeoutMs: 30, intervalMs: 5 })).rejects.toThrow('timed out waiting for never');
  });

  it('a poller uses its defaults unless a call overrides them', async () => {
    const quick = poller({ timeoutMs: 30, intervalMs: 5 });
    await expect(quick('never', () => undefined)).rejects.toThrow('timed out waiting for never');
    let calls = 0;
    expect(await quick('the fifth call', () => (++calls === 5 ? true : undefined), { timeoutMs: 5_000 })).toBe(true);
  });
});

describe('process probes', () => {
  it('this process exists and runs; an exited, reaped child does neither', async () => {
    expect(pidExists(process.pid)).toBe(true);
    expect(runsNotZombie(process.pid)).toBe(true);
    const child = spawn(process.execPath, ['-e', '']);
    const pid = child.pid!;
    await new Promise((resolve) => child.once('exit', resolve));
    expect(pidExists(pid)).toBe(false);
    expect(runsNotZombie(pid)).toBe(false);
  });
});
