// json-file rotation in the shim (issue 5: "per-container json-file logs with rotation
// (max-size, max-file)"), as Docker's json-file driver: log → log.1 → … → log.(N-1), the
// newest records in the main file, and a follower that keeps reading across rotations.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { describe, expect, it } from 'vitest';

import { LogFollower } from '../../src/cli/logs-reader';
import type { ContainerConfig } from '../../src/runtime/index';
import { runtimeHarness, sh } from '../helpers/runtime-harness';
import { requireSandbox } from '../helpers/sandbox-guard';

requireSandbox('log rotation integration tests');

const harness = runtimeHarness('logrot');

function container(id: string, script: string, logging: ContainerConfig['logging']): ContainerConfig {
  return harness.container(id, sh(script), { logging, stopGracePeriod: '100ms' });
}

function logFiles(id: string): string[] {
  const log = harness.runtime.logPath(id);
  return fs.readdirSync(path.dirname(log)).filter((f) => f.startsWith(path.basename(log))).sort();
}

function records(file: string): { log: string; stream: string }[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { log: string; stream: string });
}

/** The longest record the test writes, in bytes, with its newline: the allowed overshoot. */
function longestRecord(files: string[]): number {
  return Math.max(...files.flatMap((f) => fs.readFileSync(f, 'utf8').split('\n').map((l) => Buffer.byteLength(l) + 1)));
}

describe('json-file rotation', () => {
  it('keeps at most max-file files of about max-size each, the newest in the main file', async () => {
    const id = 'rot3';
    await harness.runtime.run(container(id, 'i=0; while [ $i -lt 400 ]; do echo "line $i"; i=$((i+1)); done', { driver: 'json-file', options: { 'max-size': '1k', 'max-file': '3' } }));
    expect((await harness.runtime.wait(id)).exitCode).toBe(0);
    const log = harness.runtime.logPath(id);
    const base = path.basename(log);
    expect(logFiles(id)).toEqual([base, `${base}.1`, `${base}.2`]);
    const files = [log, `${log}.1`, `${log}.2`];
    const overshoot = longestRecord(files);
    for (const f of files) expect(fs.statSync(f).size).toBeLessThanOrEqual(1024 + overshoot);
    // Rotation happens once a file reached the size, so the full ones are at least 1k.
    for (const f of [`${log}.1`, `${log}.2`]) expect(fs.statSync(f).size).toBeGreaterThanOrEqual(1024);
    const lines = [...files].reverse().flatMap((f) => records(f).map((r) => r.log));
    // Newest last: the main file ends with the last line, .1 precedes it, .2 precedes .1.
    expect(lines[lines.length - 1]).toBe('line 399\n');
    const numbers = lines.map((l) => Number(/^line (\d+)\n$/.exec(l)![1]));
    expect(numbers).toEqual(numbers.map((_, i) => numbers[0] + i));
    expect(numbers[0]).toBeGreaterThan(0);
  });

  it('truncates in place with max-size alone (max-file 1)', async () => {
    const id = 'rot1';
    await harness.runtime.run(container(id, 'i=0; while [ $i -lt 200 ]; do echo "entry $i"; i=$((i+1)); done', { options: { 'max-size': '1k' } }));
    expect((await harness.runtime.wait(id)).exitCode).toBe(0);
    expect(logFiles(id)).toEqual([path.basename(harness.runtime.logPath(id))]);
    const recs = records(harness.runtime.logPath(id));
    expect(fs.statSync(harness.runtime.logPath(id)).size).toBeLessThanOrEqual(1024 + longestRecord([harness.runtime.logPath(id)]));
    expect(recs[recs.length - 1].log).toBe('entry 199\n');
    expect(recs.length).toBeLessThan(200);
  });

  it('never rotates without max-size', async () => {
    const id = 'norot';
    await harness.runtime.run(container(id, 'i=0; while [ $i -lt 200 ]; do echo "entry $i"; i=$((i+1)); done', undefined));
    await harness.runtime.wait(id);
    expect(logFiles(id)).toEqual([path.basename(harness.runtime.logPath(id))]);
    expect(records(harness.runtime.logPath(id))).toHaveLength(200);
  });

  it('lets a LogFollower keep following the main file across rotations', async () => {
    const id = 'follow';
    // Slow enough that the follower sees most records before they rotate away.
    await harness.runtime.run(container(id, 'i=0; while [ $i -lt 120 ]; do echo "tick $i"; i=$((i+1)); sleep 0.01; done; sleep 1000', { options: { 'max-size': '1k', 'max-file': '2' } }));
    const follower = new LogFollower(harness.runtime.logPath(id));
    const seen: string[] = [];
    const deadline = Date.now() + 20_000;
    while (!seen.includes('tick 119\n') && Date.now() < deadline) {
      seen.push(...follower.poll().map((r) => r.log));
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(seen).toContain('tick 119\n');
    expect(fs.existsSync(`${harness.runtime.logPath(id)}.1`)).toBe(true);
    // Records after the first rotation were followed too, in order.
    const numbers = seen.map((l) => Number(/^tick (\d+)\n$/.exec(l)![1]));
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
    expect(numbers.filter((n) => n > 60).length).toBeGreaterThan(30);
  });
});
