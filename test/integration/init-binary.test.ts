// d2p-init on its own, outside any container: argument handling, exit codes, signal
// forwarding and reaping. Not being PID 1 here, it makes itself a child subreaper
// (prctl(2) PR_SET_CHILD_SUBREAPER), so orphans come to it just as they would in a
// container. The in-container behaviour is in init.test.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { initPath } from '../../addon/index';
import { until } from '../helpers/wait';

let tmp: string;
let started: ChildProcess[];

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-init-bin-'));
  started = [];
});

afterEach(() => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface Running {
  child: ChildProcess;
  /** Everything written to stdout so far. */
  stdout: () => string;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startInit(args: string[]): Running {
  const child = spawn(initPath(), args, { cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(child);
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  return { child, stdout: () => out, stderr: () => err, exit };
}

/** A field of /proc/PID/status, or undefined once the process is gone (reaped). */
function procStatusField(pid: number, field: string): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ESRCH') return undefined;
    throw e;
  }
  return new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(text)?.[1];
}

describe('arguments', () => {
  it('refuses to run without a command, with a usage line', async () => {
    const r = startInit([]);
    expect((await r.exit).code).toBe(2);
    expect(r.stderr()).toMatch(/^d2p-init: no command given; usage: d2p-init \[--\] COMMAND/);
  });

  it('refuses an option it does not know instead of running it', async () => {
    const r = startInit(['-g', 'true']);
    expect((await r.exit).code).toBe(2);
    expect(r.stderr()).toContain('unknown option -g');
  });

  it('passes every argument after "--" through unchanged', async () => {
    const r = startInit(['--', 'sh', '-c', 'printf "[%s]" "$@"', 'argv0', 'a b', '--', '-x']);
    expect((await r.exit).code).toBe(0);
    expect(r.stdout()).toBe('[a b][--][-x]');
  });
});

describe('exit status', () => {
  it('exits with the workload\'s code, with or without "--"', async () => {
    expect((await startInit(['--', 'sh', '-c', 'exit 3']).exit).code).toBe(3);
    expect((await startInit(['sh', '-c', 'exit 4']).exit).code).toBe(4);
  });

  it('exits 128+n when signal n killed the workload', async () => {
    const r = startInit(['--', 'sh', '-c', 'kill -KILL $$']);
    expect(await r.exit).toEqual({ code: 137, signal: null });
  });

  it('exits 127 naming the command and the error when it does not exist', async () => {
    const r = startInit(['--', '/nonexistent/d2p-no-such-command', 'arg']);
    expect((await r.exit).code).toBe(127);
    expect(r.stderr()).toBe('d2p-init: exec /nonexistent/d2p-no-such-command failed: No such file or directory\n');
  });

  it('exits 126 when the command is not executable', async () => {
    const file = path.join(tmp, 'not-executable');
    fs.writeFileSync(file, '#!/bin/sh\necho never\n', { mode: 0o644 });
    const r = startInit(['--', file]);
    expect((await r.exit).code).toBe(126);
    expect(r.stderr()).toBe(`d2p-init: exec ${file} failed: Permission denied\n`);
    expect(r.stdout()).toBe('');
  });
});

describe('signals', () => {
  it('forwards signals sent to it to the workload, which decides how to exit', async () => {
    const r = startInit(['--', 'sh', '-c', 'trap "echo got-usr1" USR1; trap "exit 7" TERM; echo ready; while :; do sleep 0.05; done']);
    await until('the workload to set its traps', () => (r.stdout().includes('ready') ? true : undefined));
    r.child.kill('SIGUSR1');
    await until('SIGUSR1 to reach the workload', () => (r.stdout().includes('got-usr1') ? true : undefined));
    r.child.kill('SIGTERM');
    expect(await r.exit).toEqual({ code: 7, signal: null });
  });

  it('puts the workload in its own process group and forwards to it alone', async () => {
    // The workload's background `sleep` shares the workload's group: had the group been
    // signalled it would be dead (State Z, unreaped) when the trap looks at it.
    const script = `sleep 1000 & echo "$$ $!"; trap 'echo "grandchild $(cut -d " " -f3 /proc/$!/stat)"; kill $!; wait; exit 5' TERM; while :; do sleep 0.05; done`;
    const r = startInit(['--', 'sh', '-c', script]);
    const [workload] = (await until('the pids', () => (/^\d+ \d+\n/.test(r.stdout()) ? r.stdout() : undefined))).trim().split(' ').map(Number);
    const stat = fs.readFileSync(`/proc/${workload}/stat`, 'utf8');
    const pgrp = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
    expect(pgrp).toBe(workload);
    expect(pgrp).not.toBe(r.child.pid);
    r.child.kill('SIGTERM');
    expect(await r.exit).toEqual({ code: 5, signal: null });
    expect(r.stdout()).toMatch(/\ngrandchild S\n$/);
  });

  it('ends with 143 when SIGTERM kills a workload that has no handler', async () => {
    const r = startInit(['--', 'sh', '-c', 'echo ready; exec sleep 1000']);
    await until('the workload to start', () => (r.stdout().includes('ready') ? true : undefined));
    // `exec` may not have happened yet; either way SIGTERM's default action ends it.
    r.child.kill('SIGTERM');
    expect(await r.exit).toEqual({ code: 143, signal: null });
  });
});

describe('reaping', () => {
  it('adopts an orphan and reaps it when it exits, leaving no zombie', async () => {
    // The subshell forks `sleep` and exits at once; sh reaps the subshell, so the sleep is
    // an orphan whose new parent (the subreaper) must wait(2) for it.
    const r = startInit(['--', 'sh', '-c', '(sleep 0.5 & echo $!); exec sleep 1000']);
    const orphan = Number(await until('the orphan pid', () => /^(\d+)\n/.exec(r.stdout())?.[1]));
    const parent = await until('the orphan to be re-parented', () => {
      const ppid = procStatusField(orphan, 'PPid');
      return ppid === undefined || ppid === String(r.child.pid) ? (ppid ?? 'gone') : undefined;
    });
    expect(parent === 'gone' || parent === String(r.child.pid)).toBe(true);
    // Once it exits it must vanish from /proc, not linger as State: Z.
    await until('the orphan to be reaped', () => (procStatusField(orphan, 'State') === undefined ? true : undefined));
    expect(r.child.exitCode).toBeNull();
    r.child.kill('SIGTERM');
    expect((await r.exit).code).toBe(143);
  });
});
