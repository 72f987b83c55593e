// `init: true` in real containers (issue 5): d2p-init is PID 1, reaps orphaned zombies,
// forwards the stop signal and passes exit codes through; without init nothing changes.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { describe, expect, it } from 'vitest';

import type { ContainerConfig } from '../../src/runtime/index';
import { INIT_PATH_IN_CONTAINER } from '../../src/runtime/oci';
import { readJsonLog, runtimeHarness, sh } from '../helpers/runtime-harness';
import { requireSandbox } from '../helpers/sandbox-guard';
import { until } from '../helpers/wait';

requireSandbox('init integration tests');

const harness = runtimeHarness('init');
const { container } = harness;

// A container's log file may not exist yet when it is polled or when the process wrote
// nothing; these tests read that as no output rather than as an error.
const readLog = (file: string) => readJsonLog(file, { missingIsEmpty: true });
const runToEnd = (config: ContainerConfig) => harness.runToEnd(config, { missingIsEmpty: true });

interface ContainerProcess {
  pid: number;
  ppid: number;
  state: string;
  cmdline: string;
}

// Lists the container's processes from inside (its own /proc), leaving out the listing
// shell and the children it forks for each line.
const PS_SCRIPT =
  'for d in /proc/[0-9]*; do ' +
  'echo "${d#/proc/} $(awk \'/^PPid:/{p=$2} /^State:/{s=$2} END{print p, s}\' $d/status 2>/dev/null) $(tr "\\0" " " < $d/cmdline 2>/dev/null)"; ' +
  'done; echo "self $$"';

async function containerProcesses(id: string): Promise<ContainerProcess[]> {
  const r = await harness.runtime.exec(id, { args: ['sh', '-c', PS_SCRIPT] });
  expect(r.exitCode).toBe(0);
  const lines = r.stdout.toString().trim().split('\n');
  const self = Number(/^self (\d+)$/.exec(lines.pop() ?? '')?.[1]);
  if (!self) throw new Error(`no "self" line in the process listing: ${r.stdout.toString()}`);
  const procs: ContainerProcess[] = [];
  for (const line of lines) {
    const m = /^(\d+) (\d+) ([A-Z]) ?(.*)$/.exec(line);
    if (!m) continue; // it exited between the glob and the read
    const proc = { pid: Number(m[1]), ppid: Number(m[2]), state: m[3]!, cmdline: m[4]!.trim() };
    if (proc.pid !== self && proc.ppid !== self) procs.push(proc);
  }
  return procs;
}

// The subshell forks `sleep 0.2` and exits at once; sh reaps the subshell, so the sleep is
// an orphan, re-parented to PID 1. After `exec sleep 1000`, a PID 1 without init never
// calls wait(2), so the orphan stays a zombie once it exits.
const ORPHAN_MAKER = sh('(sleep 0.2 &); exec sleep 1000');

describe('PID 1', () => {
  it('is d2p-init with the workload as its child', async () => {
    const script = 'tr "\\0" " " < /proc/1/cmdline; echo; echo "pid=$$ ppid=$PPID"; grep " /dev/init " /proc/mounts';
    const r = await runToEnd(container('pid1-init', sh(script), { init: true }));
    expect(r.exitCode).toBe(0);
    const [cmdline, ids, mount] = r.stdout.split('\n');
    expect(cmdline).toBe(`${INIT_PATH_IN_CONTAINER} -- sh -c ${script} `);
    expect(ids).toBe('pid=2 ppid=1');
    // Read-only, so the workload can't replace the binary it runs under.
    expect(mount?.split(' ')[3]?.split(',')).toContain('ro');
  });

  it('is the workload itself without init, and there is no /dev/init', async () => {
    const r = await runToEnd(container('pid1-plain', sh('echo "pid=$$"; test -e /dev/init || echo no-init')));
    expect(r).toMatchObject({ exitCode: 0, stdout: 'pid=1\nno-init\n' });
  });

  it('runs as the container user, who can execute it', async () => {
    const r = await runToEnd(container('pid1-user', sh('id -u; awk \'/^Uid:/{print $2}\' /proc/1/status'), { init: true, user: 'app' }));
    expect(r).toMatchObject({ exitCode: 0, stdout: '1000\n1000\n' });
  });

  it('writes nothing into the image: works on a read-only rootfs, no /dev in the upper dir', async () => {
    const ro = await runToEnd(container('init-ro', ['true'], { init: true, readOnlyRootfs: true }));
    expect(ro.exitCode).toBe(0);
    const rw = await runToEnd(container('init-rw', ['true'], { init: true }));
    expect(rw.exitCode).toBe(0);
    const state = await harness.runtime.state('init-rw');
    expect(fs.readdirSync(path.join(state.bundle, 'upper'))).not.toContain('dev');
  });

  it('hands a terminal to the workload as its foreground process group', async () => {
    // /proc/PID/stat fields 5 and 8: the process group, and the terminal's foreground group.
    const r = await runToEnd(container('init-tty', sh('cut -d " " -f 5,8 /proc/$$/stat'), { init: true, tty: true }));
    expect(r.exitCode).toBe(0);
    expect(r.stdout.trim()).toBe('2 2');
  });
});

describe('zombies', () => {
  it('are reaped by d2p-init', async () => {
    await harness.runtime.run(container('reap', ORPHAN_MAKER, { init: true }));
    // Settled: the workload runs, the orphan is gone from /proc rather than left as Z.
    const procs = await until('the orphan to exit and be reaped', async () => {
      const list = await containerProcesses('reap');
      const settled = list.some((p) => p.cmdline === 'sleep 1000') && !list.some((p) => p.cmdline === 'sleep 0.2') && !list.some((p) => p.state === 'Z');
      return settled ? list : undefined;
    });
    expect(procs.map((p) => [p.pid, p.ppid, p.cmdline])).toEqual([
      [1, 0, `${INIT_PATH_IN_CONTAINER} -- sh -c (sleep 0.2 &); exec sleep 1000`],
      [2, 1, 'sleep 1000'],
    ]);
  });

  it('stay without init (the control)', async () => {
    await harness.runtime.run(container('no-reap', ORPHAN_MAKER));
    const zombie = await until('the orphan to exit', async () => (await containerProcesses('no-reap')).find((p) => p.state === 'Z'));
    expect(zombie).toMatchObject({ ppid: 1, cmdline: '' });
    // Still there on a second look: nobody is ever going to wait for it.
    expect((await containerProcesses('no-reap')).filter((p) => p.state === 'Z').map((p) => p.pid)).toEqual([zombie.pid]);
  });
});

describe('stop and exit codes', () => {
  it('delivers the stop signal to the workload, whose trap decides the exit code', async () => {
    await harness.runtime.run(container('trap', sh('trap "exit 7" TERM; echo ready; while :; do sleep 0.1; done'), { init: true, stopGracePeriod: '60s' }));
    await until('the trap to be set', () => (readLog(harness.runtime.logPath('trap')).stdout.includes('ready') ? true : undefined));
    const s = await harness.runtime.stop('trap');
    expect(s).toMatchObject({ status: 'stopped', exitCode: 7 });
    expect(s.signal).toBeUndefined();
  });

  it('lets SIGTERM end a workload without a handler (143), where PID 1 alone ignores it', async () => {
    await harness.runtime.run(container('term-init', ['sleep', '1000'], { init: true, stopGracePeriod: '60s' }));
    await harness.runtime.run(container('term-plain', ['sleep', '1000'], { stopGracePeriod: '300ms' }));
    const [withInit, without] = await Promise.all([harness.runtime.stop('term-init'), harness.runtime.stop('term-plain')]);
    // With init the workload died of SIGTERM and d2p-init exited 128+15 well before the
    // 60 s grace; without, the kernel dropped SIGTERM and only the SIGKILL ended it.
    expect(withInit).toMatchObject({ status: 'stopped', exitCode: 143 });
    expect(withInit.signal).toBeUndefined();
    expect(without).toMatchObject({ status: 'stopped', exitCode: 137, signal: 'SIGKILL' });
  });

  it('passes the workload\'s exit code through', async () => {
    expect((await runToEnd(container('exit3', sh('exit 3'), { init: true }))).exitCode).toBe(3);
    expect((await runToEnd(container('exit0', ['true'], { init: true }))).exitCode).toBe(0);
  });

  it('reports 128+n for a workload killed by signal n', async () => {
    const r = await runToEnd(container('killed', sh('kill -USR1 $$'), { init: true }));
    expect(r.exitCode).toBe(128 + 10);
    expect(r.signal).toBeUndefined();
  });

  it('exits 127 for a missing command, saying so in the log', async () => {
    const r = await runToEnd(container('missing', ['no-such-command', 'arg'], { init: true }));
    expect(r.exitCode).toBe(127);
    expect(r.stderr).toBe('d2p-init: exec no-such-command failed: No such file or directory\n');
  });
});
