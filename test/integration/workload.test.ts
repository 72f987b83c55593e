// The Compose commands end to end: a daemon in-process with the real controllers, the real
// runtime and shim, an image imported into the ImageStore from a locally built OCI layout
// (hack/test-images/lib.js, no registry), and the command functions called as the CLI
// calls them. Checked against the machine: pids in /proc, processes gone after down.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';

import type { Container } from '../../src/api/types';
import { downCommand } from '../../src/cli/commands/down';
import { execCommand } from '../../src/cli/commands/exec';
import { lifecycleCommand } from '../../src/cli/commands/lifecycle';
import { logsCommand } from '../../src/cli/commands/logs';
import { psCommand } from '../../src/cli/commands/ps';
import { runCommand } from '../../src/cli/commands/run';
import { statsCommand } from '../../src/cli/commands/stats';
import { topCommand } from '../../src/cli/commands/top';
import { upCommand } from '../../src/cli/commands/up';
import { connect } from '../../src/cli/connect';
import { createContext, type CommandContext } from '../../src/cli/context';
import { CliError, StringWriter } from '../../src/cli/io';
import { useTestDaemon } from '../helpers/daemon';
import { requireSandbox } from '../helpers/sandbox-guard';
import { runsNotZombie } from '../helpers/process';

requireSandbox('workload command integration tests');

const IMAGE = 'd2p.test/workload:1';
const PROJECT = 'wl';

const cgroupParent = `d2p-wl-test-${process.pid}`;
let projectDir: string;

// sleep as PID 1 ignores SIGTERM (no handler, kernel rule for a namespace's init), so the
// short grace period keeps stops quick.
const COMPOSE = `
name: ${PROJECT}
services:
  db:
    image: ${IMAGE}
    command: ["sh", "-c", "echo db ready; exec sleep 1000"]
    stop_grace_period: 500ms
    healthcheck:
      test: ["CMD", "true"]
      interval: 200ms
      start_interval: 100ms
  web:
    image: ${IMAGE}
    command: ["sh", "-c", "echo web started; exec sleep 1000"]
    stop_grace_period: 500ms
    depends_on:
      db:
        condition: service_healthy
  worker:
    image: ${IMAGE}
    command: ["sh", "-c", "echo worker on $$HOSTNAME; exec sleep 1000"]
    stop_grace_period: 500ms
    deploy:
      replicas: 2
    volumes:
      - data:/data
volumes:
  data: {}
`;

// The CLI opens the runtime with the daemon's cgroup parent (exec, kill, stats).
const harness = useTestDaemon('workload-it', { cgroupParent, exportCgroupParent: true, images: [{ ref: IMAGE, extraDirs: ['data'] }] });

beforeAll(() => {
  projectDir = path.join(harness.tmp, 'project');
  fs.mkdirSync(projectDir);
  fs.writeFileSync(path.join(projectDir, 'compose.yaml'), COMPOSE);
});

interface Captured {
  ctx: CommandContext;
  out: StringWriter;
  err: StringWriter;
}

function cli(): Captured {
  const out = new StringWriter();
  const err = new StringWriter();
  const ctx = createContext({ root: harness.daemon.paths.root, socket: harness.daemon.paths.socket }, { stdout: out, stderr: err }, { startDaemon: false, connect });
  return { ctx, out, err };
}

/** Runs one command as main() would: its status (a CliError's exit code), its output, and the context closed after. */
async function call<O>(command: (opts: O, ctx: CommandContext) => Promise<number>, opts: O): Promise<{ status: number; out: string; err: string }> {
  const c = cli();
  try {
    const status = await command(opts, c.ctx);
    return { status, out: c.out.toString(), err: c.err.toString() };
  } catch (error) {
    if (!(error instanceof CliError)) throw error;
    return { status: error.exitCode, out: c.out.toString(), err: c.err.toString() + (error.message ? `error: ${error.message}\n` : '') };
  } finally {
    await c.ctx.close();
  }
}

const project = { cwd: '/', projectName: PROJECT };

async function psJson(all = false): Promise<{ Name: string; Service: string; State: string; Status: string; Pid: number; ExitCode: number }[]> {
  const { out } = await call(psCommand, { ...project, all, format: 'json' });
  return out.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

describe('Compose commands on the real runtime', () => {
  const pidsSeen: number[] = [];

  it('up -d --wait brings up a healthchecked service, its dependent and two replicas; ps agrees with /proc', async () => {
    const up = await call(upCommand, { cwd: projectDir, detach: true, wait: true, waitTimeout: '60' });
    expect(up.status).toBe(0);
    expect(up.out).toContain('service/web created');
    const rows = await psJson();
    expect(rows.map((r) => r.Name)).toEqual(['wl-db-1', 'wl-web-1', 'wl-worker-1', 'wl-worker-2']);
    for (const row of rows) {
      expect(row.State).toBe('running');
      expect(runsNotZombie(row.Pid)).toBe(true);
      expect(fs.readFileSync(`/proc/${row.Pid}/cmdline`, 'utf8').split('\0')).toContain('sleep');
      pidsSeen.push(row.Pid);
    }
    expect(rows.find((r) => r.Service === 'db')!.Status).toMatch(/^Up .* \(healthy\)$/);
    // The table, from the Compose file of the current directory (no -p).
    const table = await call(psCommand, { cwd: projectDir });
    expect(table.out.split('\n')[0]).toMatch(/^NAME\s+IMAGE\s+COMMAND\s+SERVICE\s+CREATED\s+STATUS\s+PORTS$/);
    expect(table.out).toMatch(/wl-web-1\s+d2p\.test\/workload:1\s+"sh -c echo web start…"\s+web\s+/);
  });

  it('logs shows every container, prefixed and filtered by service and --tail', async () => {
    await vi.waitFor(async () => {
      const { out } = await call(logsCommand, project);
      expect(out).toMatch(/^db-1\s+\| db ready$/m);
      expect(out).toMatch(/^web-1\s+\| web started$/m);
      expect(out).toMatch(/^worker-1\s+\| worker on \S+$/m);
      expect(out).toMatch(/^worker-2\s+\| worker on \S+$/m);
    }, { timeout: 10_000, interval: 100 });
    const onlyWeb = await call(logsCommand, { ...project, services: ['web'], timestamps: true });
    expect(onlyWeb.out).toMatch(/^web-1\s+\| \d{4}-\d{2}-\d{2}T\S+Z web started\n$/);
    expect((await call(logsCommand, { ...project, tail: '0' })).out).toBe('');
    expect(await call(logsCommand, { ...project, services: ['nosuch'] })).toMatchObject({ status: 1, err: 'error: no such service: nosuch (project wl)\n' });
  });

  it('exec passes exit codes and output through, by service, replica index or container name', async () => {
    expect(await call(execCommand, { ...project, target: 'web', command: ['sh', '-c', 'echo out; echo err >&2; exit 3'] })).toEqual({ status: 3, out: 'out\n', err: 'err\n' });
    expect((await call(execCommand, { ...project, target: 'worker', index: '2', command: ['touch', '/tmp/mark'] })).status).toBe(0);
    expect((await call(execCommand, { ...project, target: 'wl-worker-2', command: ['test', '-e', '/tmp/mark'] })).status).toBe(0);
    expect((await call(execCommand, { ...project, target: 'worker', command: ['test', '-e', '/tmp/mark'] })).status).toBe(1);
    expect(await call(execCommand, { ...project, target: 'worker', index: '3', command: ['true'] })).toMatchObject({ status: 1, err: 'error: service "worker" has no container #3\n' });
    expect((await call(execCommand, { cwd: '/', target: 'wl-db-1', command: ['true'] })).status).toBe(0);
    expect((await call(execCommand, { ...project, target: 'web', stdin: Buffer.from('piped\n'), command: ['cat'] })).out).toBe('piped\n');
  });

  it('top lists the container processes from its cgroup; stats reads its cgroup', async () => {
    await call(execCommand, { ...project, target: 'web', command: ['sh', '-c', 'sleep 30 >/dev/null 2>&1 & exit 0'] });
    const top = await call(topCommand, { ...project, targets: ['web'] });
    expect(top.out.split('\n')[0]).toMatch(/^UID\s+PID\s+PPID\s+TIME\s+CMD$/);
    expect(top.out).toMatch(/root\s+\d+\s+\d+\s+\d\d:\d\d:\d\d\s+sleep 1000/);
    expect(top.out).toMatch(/sleep 30/);
    const stats = await call(statsCommand, { ...project, noStream: true });
    const lines = stats.out.trim().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+CPU %\s+MEM USAGE \/ LIMIT\s+MEM %\s+NET I\/O\s+BLOCK I\/O\s+PIDS$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(['wl-db-1', 'wl-web-1', 'wl-worker-1', 'wl-worker-2']);
    expect(lines.find((l) => l.startsWith('wl-web-1'))).toMatch(/\d+\.\d\d%\s+[\d.]+\w?i?B \/ [\d.]+\w?i?B\s+\d+\.\d\d%.*\s[2-9]$/);
  });

  it('stop and start a service; logs -f follows the container across the restart', async () => {
    const abort = new AbortController();
    const followed = cli();
    // Settled into a value at once, so a failure is reported by the await below and never unhandled meanwhile.
    const following = logsCommand({ ...project, services: ['web'], follow: true, signal: abort.signal }, followed.ctx).then(
      (status) => ({ status, error: undefined as unknown }),
      (error: unknown) => ({ status: -1, error }),
    );
    try {
      const webPid = (await psJson()).find((r) => r.Service === 'web')!.Pid;
      expect((await call(lifecycleCommand, { ...project, action: 'stop', targets: ['web'] })).out).toBe('wl-web-1\n');
      const stopped = (await psJson(true)).find((r) => r.Service === 'web')!;
      expect(stopped.State).toBe('exited');
      expect(stopped.Status).toMatch(/^Exited \(\d+\) /);
      expect(runsNotZombie(webPid)).toBe(false);
      expect((await psJson()).map((r) => r.Service)).not.toContain('web');
      expect((await call(lifecycleCommand, { ...project, action: 'start', targets: ['web'] })).status).toBe(0);
      const restarted = (await psJson()).find((r) => r.Service === 'web')!;
      expect(restarted.State).toBe('running');
      expect(restarted.Pid).not.toBe(webPid);
      expect(runsNotZombie(restarted.Pid)).toBe(true);
      pidsSeen.push(restarted.Pid);
      await vi.waitFor(() => expect(followed.out.toString().match(/web started/g)).toHaveLength(2), { timeout: 10_000, interval: 100 });
    } finally {
      abort.abort();
      const ended = await following;
      await followed.ctx.close();
      if (ended.error) throw ended.error;
      expect(ended.status).toBe(0);
    }
  });

  it('run --rm streams stdout and stderr apart, exits with the exit code and leaves nothing', async () => {
    const result = await call(runCommand, { image: IMAGE, command: ['sh', '-c', 'echo out; echo err >&2; exit 7'], rm: true, name: 'once' });
    expect(result).toEqual({ status: 7, out: 'out\n', err: 'err\n' });
    expect((await harness.client.containers.list({ namespace: 'default' })).items).toEqual([]);
    // -d --rm: the daemon removes it once it has exited, as docker's AutoRemove does.
    const detachedRm = await call(runCommand, { image: IMAGE, command: ['sh', '-c', 'exit 3'], detach: true, rm: true, name: 'gone-after' });
    expect(detachedRm).toEqual({ status: 0, out: 'gone-after\n', err: '' });
    await vi.waitFor(async () => expect((await harness.client.containers.list({ namespace: 'default' })).items).toEqual([]), { timeout: 20_000, interval: 100 });
    const detached = await call(runCommand, { image: IMAGE, command: ['sleep', '1000'], detach: true, random: () => 0 });
    expect(detached.out).toBe('admiring_agnesi\n');
    await vi.waitFor(async () => expect((await harness.client.containers.get('default', 'admiring_agnesi')).status?.phase).toBe('Running'), { timeout: 20_000 });
    const pid = (await harness.client.containers.get('default', 'admiring_agnesi')).status!.pid!;
    const refused = await call(lifecycleCommand, { cwd: '/', action: 'rm', targets: ['admiring_agnesi'] });
    expect(refused.status).toBe(1);
    expect(refused.err).toMatch(/admiring_agnesi: cannot remove container: container is running/);
    expect((await call(lifecycleCommand, { cwd: '/', action: 'rm', force: true, targets: ['admiring_agnesi'] })).status).toBe(0);
    expect(runsNotZombie(pid)).toBe(false);
  });

  it('up attached prints prefixed logs and, on Ctrl-C, stops the project and exits 130', async () => {
    const abort = new AbortController();
    const attached = cli();
    const running = upCommand({ cwd: projectDir, signal: abort.signal }, attached.ctx).then(
      (status) => ({ status, error: undefined as unknown }),
      (error: unknown) => ({ status: -1, error }),
    );
    try {
      await vi.waitFor(() => expect(attached.out.toString()).toMatch(/^worker-2\s+\| worker on \S+$/m), { timeout: 20_000, interval: 100 });
      expect(attached.out.toString()).toMatch(/^web-1\s+\| web started$/m);
    } finally {
      abort.abort();
    }
    const ended = await running;
    await attached.ctx.close();
    if (ended.error) throw ended.error;
    expect(ended.status).toBe(130);
    expect(attached.err.toString()).toContain('Gracefully stopping...');
    const rows = await psJson(true);
    expect(rows.map((r) => r.State)).toEqual(['exited', 'exited', 'exited', 'exited']);
    expect((await psJson()).length).toBe(0);
  });

  it('up refuses an invalid Compose file at its line, and a manifest, and applies nothing', async () => {
    const bad = path.join(harness.tmp, 'bad');
    fs.mkdirSync(bad);
    // The loader converts it; the schema the server checks refuses it.
    fs.writeFileSync(path.join(bad, 'compose.yaml'), `name: wlbad\nservices:\n  ok:\n    image: ${IMAGE}\n  broken:\n    image: ${IMAGE}\n    dns: ['not-an-ip']\n`);
    const refused = await call(upCommand, { cwd: bad, detach: true, wait: true });
    expect(refused.status).not.toBe(0);
    expect(refused.err).toMatch(/compose\.yaml:5:3: services\.broken: .*dns\[0\]: must be an IPv4 or IPv6 address/);
    expect(refused.err).toContain('nothing was applied');
    for (const kind of ['Service', 'Container', 'Network'] as const) expect((await harness.client.for(kind).list({ namespace: 'wlbad' })).items).toEqual([]);

    const manifest = path.join(bad, 'volume.yaml');
    fs.writeFileSync(manifest, 'apiVersion: d2p.dev/v1alpha1\nkind: Volume\nmetadata:\n  name: wlbad-data\n  namespace: wlbad\n');
    const notCompose = await call(upCommand, { cwd: bad, files: [path.join(bad, 'compose.yaml'), manifest], detach: true });
    expect(notCompose.status).not.toBe(0);
    expect(notCompose.err).toContain('up takes Compose files');
    expect((await harness.client.for('Volume').list({ namespace: 'wlbad' })).items).toEqual([]);
  });

  it('down -v removes containers, networks and volumes, and no process is left', async () => {
    const down = await call(downCommand, { ...project, volumes: true });
    expect(down.status).toBe(0);
    for (const name of ['wl-db-1', 'wl-web-1', 'wl-worker-1', 'wl-worker-2']) expect(down.out).toContain(` ✔ Container ${name}  Removed\n`);
    expect(down.out).toContain(' ✔ Volume wl_data  Removed\n');
    for (const kind of ['Service', 'Container', 'Network', 'Volume'] as const) {
      expect((await harness.client.for(kind).list({ namespace: PROJECT })).items).toEqual([]);
    }
    for (const pid of pidsSeen) expect(runsNotZombie(pid)).toBe(false);
    expect(fs.existsSync(path.join(harness.daemon.paths.volumes, PROJECT, 'wl_data'))).toBe(false);
    const leftover = (await harness.client.containers.list({})).items as Container[];
    expect(leftover).toEqual([]);
  });
});
