// The Compose commands' pure parts: ps STATUS/PORTS/COMMAND, log reading, merging,
// prefixing, --tail/--since and following, run's flags → Container spec, names, stats and
// top formatting, up's --wait verdicts, down's plan, project resolution, and the CLI's
// argument parsing of the new commands.
import { CONTAINER_FINALIZER } from '../../controllers/finalizers';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Container, Service } from '../../src/api/types';
import { downPlan } from '../../src/cli/commands/down';
import { execCommand } from '../../src/cli/commands/exec';
import { runtimeCgroupParent } from '../../src/cli/commands/lifecycle';
import { containerLabel } from '../../src/cli/container-state';
import { parseEnvFlags } from '../../src/cli/env-flags';
import { PrefixedPrinter, ProjectFollower } from '../../src/cli/log-follower';
import { NOT_A_TTY } from '../../src/cli/terminal';
import {
  effectiveCommand,
  findComposeFile,
  findProject,
  formatCommand,
  formatStatus,
  humanDuration,
  isShownByDefault,
  psJson,
  psRow,
  requireProject,
  sortContainers,
} from '../../src/cli/commands/ps';
import { buildRunObjects, generateName, parsePublish, parseRestart, parseVolumeFlag } from '../../src/cli/commands/run';
import { bytesSize, cpuPercent, parseNetDev, statsRow, type Sample } from '../../src/cli/commands/stats';
import { cgroupProcsDir, formatCpuTime, parseStat } from '../../src/cli/commands/top';
import { serviceVerdict } from '../../src/cli/commands/up';
import { StringWriter } from '../../src/cli/io';
import {
  containerLogPath,
  filterRecords,
  formatLogLine,
  formatPrefix,
  LogFollower,
  mergeByTime,
  parseSince,
  parseTail,
  parseTimestampNs,
  readLogFile,
  type LogRecord,
} from '../../src/cli/logs-reader';
import { buildProgram, COMMAND_NAMES, commandWord, main, type CommandLoader } from '../../src/cli/main';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-cli-workload-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

const NOW = Date.parse('2024-05-01T12:00:00Z');
const ago = (ms: number) => new Date(NOW - ms).toISOString();

function container(name: string, status: Container['status'], extra: Partial<Container['metadata']> = {}, spec: Partial<Container['spec']> = {}): Container {
  return {
    apiVersion: 'd2p.dev/v1alpha1',
    kind: 'Container',
    metadata: { name, namespace: 'shop', creationTimestamp: ago(120_000), ...extra },
    spec: { image: 'busybox:1.36', ...spec },
    status,
  };
}

function composeLabels(service: string, n: number) {
  return { labels: { 'com.docker.compose.project': 'shop', 'com.docker.compose.service': service, 'com.docker.compose.container-number': String(n) } };
}

// ------------------------------------------------------------------------------ ps

describe('ps formatting', () => {
  it('words durations as go-units HumanDuration', () => {
    expect(humanDuration(300)).toBe('Less than a second');
    expect(humanDuration(1_000)).toBe('1 second');
    expect(humanDuration(5_400)).toBe('5 seconds');
    expect(humanDuration(61_000)).toBe('About a minute');
    expect(humanDuration(30 * 60_000)).toBe('30 minutes');
    expect(humanDuration(70 * 60_000)).toBe('About an hour');
    expect(humanDuration(5 * 3_600_000)).toBe('5 hours');
    expect(humanDuration(3 * 86_400_000)).toBe('3 days');
    expect(humanDuration(20 * 86_400_000)).toBe('2 weeks');
    expect(humanDuration(90 * 86_400_000)).toBe('3 months');
    expect(humanDuration(800 * 86_400_000)).toBe('2 years');
  });

  it('writes STATUS as docker ps does for each phase', () => {
    expect(formatStatus(container('a', { phase: 'Running', startedAt: ago(5_000), health: 'healthy' }), NOW)).toBe('Up 5 seconds (healthy)');
    expect(formatStatus(container('a', { phase: 'Running', startedAt: ago(2_000), health: 'starting' }), NOW)).toBe('Up 2 seconds (health: starting)');
    expect(formatStatus(container('a', { phase: 'Running', startedAt: ago(600_000) }), NOW)).toBe('Up 10 minutes');
    expect(formatStatus(container('a', { phase: 'Paused', startedAt: ago(3_000) }), NOW)).toBe('Up 3 seconds (Paused)');
    expect(formatStatus(container('a', { phase: 'Exited', exitCode: 1, finishedAt: ago(3_000) }), NOW)).toBe('Exited (1) 3 seconds ago');
    expect(formatStatus(container('a', { phase: 'CrashLoopBackOff', exitCode: 2, finishedAt: ago(1_000) }), NOW)).toBe('Restarting (2) 1 second ago');
    expect(formatStatus(container('a', { phase: 'Pending' }), NOW)).toBe('Created');
    expect(formatStatus(container('a', { phase: 'Running', startedAt: ago(1) }, { deletionTimestamp: ago(0) }), NOW)).toBe('Removing');
  });

  it('renders a row with COMMAND from spec or image, SERVICE from labels and PORTS as docker', () => {
    const c = container(
      'shop-web-1',
      { phase: 'Running', startedAt: ago(5_000) },
      composeLabels('web', 1),
      { ports: [{ containerPort: 8080, hostPort: 8080, hostIP: '127.0.0.1' }, { containerPort: 53, protocol: 'udp' }] },
    );
    const images = new Map([['busybox:1.36', { entrypoint: ['/docker-entrypoint.sh'], cmd: ['nginx', '-g', 'daemon off;'] }]]);
    expect(psRow(c, images, NOW)).toEqual([
      'shop-web-1',
      'busybox:1.36',
      '"/docker-entrypoint.s…"',
      'web',
      '2 minutes ago',
      'Up 5 seconds',
      '127.0.0.1:8080->8080/tcp, 53/udp',
    ]);
    expect(JSON.parse(psJson(c, images, NOW))).toMatchObject({ Name: 'shop-web-1', Service: 'web', State: 'running', Publishers: [{ URL: '127.0.0.1', PublishedPort: 8080 }, { PublishedPort: 0, Protocol: 'udp' }] });
  });

  it('follows Docker: an explicit entrypoint drops the image CMD, an explicit command keeps the image entrypoint', () => {
    const image = { entrypoint: ['/init'], cmd: ['serve'] };
    expect(effectiveCommand(container('a', {}, {}, { entrypoint: ['sh'] }), image)).toEqual(['sh']);
    expect(effectiveCommand(container('a', {}, {}, { command: ['run', 'x'] }), image)).toEqual(['/init', 'run', 'x']);
    expect(effectiveCommand(container('a', {}, {}), undefined)).toEqual([]);
    // What the controller recorded wins: a built image has no Image object to look in.
    expect(effectiveCommand(container('a', { command: ['/app/serve', '--port', '80'] }, {}), undefined)).toEqual(['/app/serve', '--port', '80']);
    expect(formatCommand(['sleep', '1000'])).toBe('"sleep 1000"');
    expect(formatCommand(['a'.repeat(30)], true)).toBe(`"${'a'.repeat(30)}"`);
  });

  it('sorts by service and replica number, labels "service-n", and hides exited containers without -a', () => {
    const web2 = container('shop-web-2', { phase: 'Exited', finishedAt: ago(1) }, composeLabels('web', 2));
    const web10 = container('shop-web-10', { phase: 'Running' }, composeLabels('web', 10));
    const db = container('shop-db-1', { phase: 'Running' }, composeLabels('db', 1));
    expect(sortContainers([web10, web2, db]).map((c) => c.metadata.name)).toEqual(['shop-db-1', 'shop-web-2', 'shop-web-10']);
    expect(containerLabel(web2)).toBe('web-2');
    expect(containerLabel(container('plain', {}))).toBe('plain');
    expect(isShownByDefault(web2)).toBe(false);
    expect(isShownByDefault(db)).toBe(true);
  });
});

// ------------------------------------------------------------------------------ project

describe('project resolution', () => {
  it('uses -p, else the Compose file found in the directory or a parent (its name: key)', async () => {
    const app = path.join(tmp, 'My App');
    fs.mkdirSync(path.join(app, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(app, 'compose.yaml'), 'services:\n  web:\n    image: busybox\n');
    expect(findComposeFile(path.join(app, 'sub'))).toBe(path.join(app, 'compose.yaml'));
    expect(await findProject({}, { cwd: path.join(app, 'sub'), env: {} })).toBe('myapp');
    fs.writeFileSync(path.join(app, 'compose.yaml'), 'name: shop\nservices:\n  web:\n    image: busybox\n');
    expect(await findProject({}, { cwd: app, env: {} })).toBe('shop');
    expect(await findProject({ projectName: 'other' }, { cwd: app, env: {} })).toBe('other');
    await expect(findProject({ projectName: 'Bad Name' }, { cwd: app })).rejects.toThrow(/invalid project name "Bad Name"/);
  });

  it('fails like compose when there is neither -p nor a Compose file', async () => {
    const empty = path.join(tmp, 'empty');
    fs.mkdirSync(empty);
    // A Compose file in a parent of the temp dir would be found: only check when there is none.
    if (findComposeFile(empty) === undefined) {
      await expect(requireProject({}, { cwd: empty, env: {} })).rejects.toThrow(/no configuration file provided: not found/);
    }
    expect(await findProject({}, { cwd: empty, env: { COMPOSE_PROJECT_NAME: 'fromenv' } })).toBe(findComposeFile(empty) ? expect.any(String) : 'fromenv');
  });
});

// ------------------------------------------------------------------------------ logs

function record(time: string, log: string, stream = 'stdout'): string {
  return `${JSON.stringify({ log, stream, time })}\n`;
}

describe('log files', () => {
  it('keeps nanosecond order, applies --since then --tail, and skips a record still being written', () => {
    const file = path.join(tmp, 'a-json.log');
    fs.writeFileSync(
      file,
      record('2024-05-01T12:00:00.000000001Z', 'one\n') +
        record('2024-05-01T12:00:00.000000002Z', 'two\n', 'stderr') +
        record('2024-05-01T12:00:05.5Z', 'three\n') +
        '{"log":"half',
    );
    const all = readLogFile(file);
    expect(all.records.map((r) => r.log)).toEqual(['one\n', 'two\n', 'three\n']);
    expect(all.records[1].stream).toBe('stderr');
    expect(all.offset).toBe(fs.statSync(file).size - '{"log":"half'.length);
    expect(readLogFile(file, { tail: 2 }).records.map((r) => r.log)).toEqual(['two\n', 'three\n']);
    expect(readLogFile(file, { tail: 0 }).records).toEqual([]);
    const since = parseTimestampNs('2024-05-01T12:00:00.000000002Z')!;
    expect(readLogFile(file, { sinceNs: since, tail: 5 }).records.map((r) => r.log)).toEqual(['two\n', 'three\n']);
    expect(readLogFile(path.join(tmp, 'missing.log')).records).toEqual([]);
  });

  it('names the file and line of a corrupt record', () => {
    const file = path.join(tmp, 'bad-json.log');
    fs.writeFileSync(file, record('2024-05-01T12:00:00Z', 'ok\n') + 'not json\n');
    expect(() => readLogFile(file)).toThrow(`${file}:2: not a json-file log record`);
  });

  it('parses --since forms and --tail', () => {
    expect(parseSince('2024-05-01T12:00:00Z', NOW)).toBe(BigInt(NOW) * 1_000_000n);
    expect(parseSince('1714564800.5', NOW)).toBe(1714564800_500_000_000n);
    expect(parseSince('10m', NOW)).toBe(BigInt(NOW - 600_000) * 1_000_000n);
    expect(() => parseSince('yesterday', NOW)).toThrow(/--since "yesterday"/);
    expect(parseTail('all')).toBeUndefined();
    expect(parseTail('3')).toBe(3);
    expect(() => parseTail('-1')).toThrow(/--tail "-1"/);
  });

  it('merges containers by time and prefixes like compose, coloured only when asked', () => {
    const rec = (t: string, log: string): LogRecord => ({ log, stream: 'stdout', time: t, timeNs: parseTimestampNs(t)! });
    const merged = mergeByTime([
      { label: 'web-1', records: [rec('2024-05-01T12:00:00.1Z', 'a\n'), rec('2024-05-01T12:00:00.3Z', 'c\n')] },
      { label: 'db-1', records: [rec('2024-05-01T12:00:00.2Z', 'b\n'), rec('2024-05-01T12:00:00.3Z', 'd\n')] },
    ]);
    expect(merged.map((m) => `${m.label}:${m.record.log.trim()}`)).toEqual(['web-1:a', 'db-1:b', 'web-1:c', 'db-1:d']);
    expect(formatPrefix('db-1', { width: 5, colour: false })).toBe('db-1   | ');
    expect(formatPrefix('db-1', { width: 5, colour: true, colourIndex: 1 })).toBe('\u001b[33mdb-1   | \u001b[0m');
    expect(formatLogLine(rec('2024-05-01T12:00:00.1Z', 'no newline'), 'x  | ', true)).toBe('x  | 2024-05-01T12:00:00.1Z no newline\n');
    expect(filterRecords([rec('2024-05-01T12:00:00.1Z', 'a')], { tail: 1 })).toHaveLength(1);
  });

  it('follows appends, a partial last line, truncation and a replaced file', () => {
    const file = path.join(tmp, 'f-json.log');
    const follower = new LogFollower(file);
    expect(follower.poll()).toEqual([]);
    fs.writeFileSync(file, record('2024-05-01T12:00:00Z', 'first\n') + '{"log":"sec');
    expect(follower.poll().map((r) => r.log)).toEqual(['first\n']);
    fs.appendFileSync(file, 'ond\\n","stream":"stdout","time":"2024-05-01T12:00:01Z"}\n');
    expect(follower.poll().map((r) => r.log)).toEqual(['second\n']);
    fs.truncateSync(file, 0);
    fs.appendFileSync(file, record('2024-05-01T12:00:02Z', 'after truncation\n'));
    expect(follower.poll().map((r) => r.log)).toEqual(['after truncation\n']);
    // A recreated container: the directory and file are removed and written anew.
    fs.rmSync(file);
    expect(follower.poll()).toEqual([]);
    fs.writeFileSync(path.join(tmp, 'new.log'), record('2024-05-01T12:00:03Z', 'new run\n') + record('2024-05-01T12:00:04Z', 'and more, longer than before\n'));
    fs.renameSync(path.join(tmp, 'new.log'), file);
    expect(follower.poll().map((r) => r.log)).toEqual(['new run\n', 'and more, longer than before\n']);
  });

  it('loses nothing across a rename rotation: the rest of log.1 comes before the new file', () => {
    const file = path.join(tmp, 'rot-json.log');
    fs.writeFileSync(file, record('2024-05-01T12:00:00Z', 'one\n'));
    const follower = new LogFollower(file);
    expect(follower.poll().map((r) => r.log)).toEqual(['one\n']);
    // Written after the poll, then rotated away before the next one, as the shim does.
    fs.appendFileSync(file, record('2024-05-01T12:00:01Z', 'two\n'));
    fs.renameSync(file, `${file}.1`);
    fs.writeFileSync(file, record('2024-05-01T12:00:02Z', 'three\n'));
    expect(follower.poll().map((r) => r.log)).toEqual(['two\n', 'three\n']);
  });

  it('notices a log truncated in place that grew back past where it was read', () => {
    const file = path.join(tmp, 'trunc-json.log');
    fs.writeFileSync(file, record('2024-05-01T12:00:00Z', 'same text\n'));
    const follower = new LogFollower(file);
    expect(follower.poll().map((r) => r.log)).toEqual(['same text\n']);
    // max-file 1: truncated, then more was written than before the truncation.
    fs.truncateSync(file, 0);
    fs.appendFileSync(file, record('2024-05-01T12:00:05Z', 'same text\n') + record('2024-05-01T12:00:06Z', 'more\n'));
    expect(follower.poll().map((r) => r.log)).toEqual(['same text\n', 'more\n']);
  });

  it('prints project logs merged and prefixed, then new lines and new containers while following', () => {
    const dir = path.join(tmp, 'containers');
    const web = container('shop-web-1', { phase: 'Running' }, composeLabels('web', 1));
    const db = container('shop-db-1', { phase: 'Running' }, composeLabels('db', 1));
    const write = (c: Container, text: string) => {
      const file = containerLogPath(dir, 'shop', c.metadata.name);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.appendFileSync(file, text);
    };
    write(web, record('2024-05-01T12:00:00.2Z', 'web up\n'));
    write(db, record('2024-05-01T12:00:00.1Z', 'db up\n'));
    const out = new StringWriter();
    const follower = new ProjectFollower(dir, new PrefixedPrinter(out, { colour: false, timestamps: false, prefix: true }));
    follower.addAll([web, db]);
    expect(out.toString()).toBe('db-1  | db up\nweb-1  | web up\n'.replace('db-1  |', 'db-1   |'));
    out.clear();
    const worker = container('shop-worker-1', { phase: 'Running' }, composeLabels('worker', 1));
    write(worker, record('2024-05-01T12:00:01Z', 'working\n'));
    follower.addNew([web, db, worker]);
    write(web, record('2024-05-01T12:00:02Z', 'request\n'));
    follower.pollOnce();
    expect(out.toString()).toBe('web-1     | request\nworker-1  | working\n');
  });
});

// ------------------------------------------------------------------------------ run

describe('run flags', () => {
  it('turn into a Container spec in namespace default, with an Image and the named volumes', () => {
    const objects = buildRunObjects(
      {
        image: 'busybox:1.36',
        command: ['sh', '-c', 'echo hi'],
        env: ['A=1', 'B=x=y', 'FROM_ENV', 'UNSET'],
        volume: ['/srv/data:/data:ro', './conf:/etc/app', 'cache:/cache:nocopy', '/scratch'],
        publish: ['127.0.0.1:8080:80', '53:53/udp', '9000'],
        workdir: '/app',
        user: '1000:1000',
        entrypoint: '/bin/sh',
        restart: 'on-failure:3',
        init: true,
      },
      { cwd: '/home/me/proj', env: { FROM_ENV: 'here' }, name: 'happy_turing' },
    );
    expect(objects.container.metadata).toMatchObject({ name: 'happy_turing', namespace: 'default', labels: { 'd2p.dev/run': 'true' } });
    // Created with the Container controller's finalizer, so it has no write to make first.
    expect(objects.container.metadata.finalizers).toEqual([CONTAINER_FINALIZER]);
    expect(objects.container.spec).toEqual({
      image: 'busybox:1.36',
      entrypoint: ['/bin/sh'],
      command: ['sh', '-c', 'echo hi'],
      env: [
        { name: 'A', value: '1' },
        { name: 'B', value: 'x=y' },
        { name: 'FROM_ENV', value: 'here' },
      ],
      mounts: [
        { type: 'bind', source: '/srv/data', target: '/data', readOnly: true },
        { type: 'bind', source: '/home/me/proj/conf', target: '/etc/app' },
        { type: 'volume', source: 'cache', target: '/cache', volume: { nocopy: true } },
        { type: 'volume', target: '/scratch' },
      ],
      ports: [
        { containerPort: 80, hostPort: 8080, hostIP: '127.0.0.1', protocol: 'tcp' },
        { containerPort: 53, hostPort: 53, protocol: 'udp' },
        { containerPort: 9000, protocol: 'tcp' },
      ],
      workingDir: '/app',
      user: '1000:1000',
      init: true,
      restartPolicy: 'on-failure',
      maxRetries: 3,
    });
    expect(objects.image).toMatchObject({ kind: 'Image', metadata: { name: 'busybox-1.36', namespace: 'default' }, spec: { ref: 'busybox:1.36' } });
    expect(objects.volumes.map((v) => v.metadata.name)).toEqual(['cache']);
    expect(buildRunObjects({ image: 'x', entrypoint: '' }, { cwd: '/', name: 'n' }).container.spec).toEqual({ image: 'x', entrypoint: [], restartPolicy: 'no' });
    // -d --rm is the daemon's to carry out (docker's AutoRemove); attached, run removes it after reading its output.
    expect(buildRunObjects({ image: 'x', rm: true, detach: true }, { cwd: '/', name: 'n' }).container.spec).toEqual({ image: 'x', restartPolicy: 'no', autoRemove: true });
    expect(buildRunObjects({ image: 'x', rm: true }, { cwd: '/', name: 'n' }).container.spec).toEqual({ image: 'x', restartPolicy: 'no' });
  });

  it('refuses malformed flags with the flag named', () => {
    expect(() => parsePublish('80:90-91')).toThrow(/-p "80:90-91": the host and container port ranges have different lengths/);
    expect(() => parsePublish('1.2.3:80:80')).toThrow(/invalid IP address/);
    expect(() => parsePublish('80/sctp')).toThrow(/unsupported protocol/);
    expect(parsePublish('[::1]:8000-8001:80-81')).toEqual([
      { containerPort: 80, hostPort: 8000, hostIP: '::1', protocol: 'tcp' },
      { containerPort: 81, hostPort: 8001, hostIP: '::1', protocol: 'tcp' },
    ]);
    expect(() => parseVolumeFlag('data:relative', '/')).toThrow(/-v "data:relative": the target "relative" must be an absolute path/);
    expect(() => parseVolumeFlag('/a:/b:bogus', '/')).toThrow(/unknown option "bogus"/);
    expect(() => parseRestart('sometimes')).toThrow(/--restart "sometimes"/);
    expect(() => parseRestart('always:3')).toThrow(/--restart "always:3"/);
    expect(() => buildRunObjects({ image: 'x', rm: true, restart: 'always' }, { cwd: '/', name: 'n' })).toThrow(/cannot specify both --restart and --rm/);
    expect(() => buildRunObjects({ image: 'x', workdir: 'rel' }, { cwd: '/', name: 'n' })).toThrow(/-w "rel"/);
    expect(() => parseEnvFlags(['=x'])).toThrow(/-e "=x"/);
  });

  it('generates docker-style names from its lists', () => {
    const seq = [0, 0, 0.999, 0.999];
    let i = 0;
    const random = () => seq[i++ % seq.length];
    expect(generateName(random)).toBe('admiring_agnesi');
    expect(generateName(random)).toBe('zen_yonath');
    expect(generateName()).toMatch(/^[a-z]+_[a-z]+$/);
  });
});

// ------------------------------------------------------------------------------ stats, top

describe('stats and top', () => {
  const sample = (cpuNs: number, atNs: bigint, mem = 3 * 1024 * 1024, limit: number | null = 64 * 1024 * 1024): Sample => ({
    stats: { cpuUsageNs: cpuNs, memoryUsage: mem, memoryLimit: limit, pids: 4 },
    atNs,
    net: { rx: 1500, tx: 648 },
  });

  it('computes CPU % over wall time and prints docker stats columns', () => {
    expect(cpuPercent(undefined, sample(5e8, 0n))).toBe(0);
    expect(cpuPercent(sample(0, 0n), sample(5e8, 1_000_000_000n))).toBeCloseTo(50);
    expect(bytesSize(3 * 1024 * 1024)).toBe('3MiB');
    expect(bytesSize(1_589_000)).toBe('1.515MiB');
    expect(bytesSize(512)).toBe('512B');
    expect(statsRow('web', sample(0, 0n), sample(2e9, 1_000_000_000n))).toEqual(['web', '200.00%', '3MiB / 64MiB', '4.69%', '1.5kB / 648B', '--', '4']);
    expect(statsRow('nolimit', undefined, sample(0, 0n, 1024, null), 2048)[2]).toBe('1KiB / 2KiB');
    expect(statsRow('gone', undefined, undefined)).toEqual(['gone', '--', '-- / --', '--', '--', '--', '--']);
    const netDev = 'Inter-|   Receive\n face |bytes packets\n    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  eth0: 2000 10 0 0 0 0 0 0 700 5 0 0 0 0 0 0\n';
    expect(parseNetDev(netDev)).toEqual({ rx: 2000, tx: 700 });
  });

  it('finds the cgroup of a process on v1 and v2 and reads /proc/<pid>/stat like ps', () => {
    const v1 = '12:pids:/d2p/shop_web-1\n5:cpu,cpuacct:/d2p/shop_web-1\n0::/\n';
    expect(cgroupProcsDir(v1, new Map([['pids', '/sys/fs/cgroup/pids']]))).toBe('/sys/fs/cgroup/pids/d2p/shop_web-1');
    expect(cgroupProcsDir('0::/d2p/shop_web-1\n', new Map(), '/sys/fs/cgroup')).toBe('/sys/fs/cgroup/d2p/shop_web-1');
    expect(parseStat('42 (my (odd) cmd) S 7 42 42 0 -1 4194560 0 0 0 0 250 130 0 0 20 0 1 0')).toEqual({ comm: 'my (odd) cmd', ppid: 7, ticks: 380 });
    expect(formatCpuTime(380)).toBe('00:00:03');
    expect(formatCpuTime(100 * (2 * 86_400 + 3_661))).toBe('2-01:01:01');
    expect(runtimeCgroupParent({})).toBe('d2p');
    expect(runtimeCgroupParent({ D2P_CGROUP_PARENT: 'd2p-test' })).toBe('d2p-test');
  });
});

// ------------------------------------------------------------------------------ up, down

describe('up --wait verdicts and down', () => {
  const service = (available: 'True' | 'False', replicas = 1, extra: Partial<Service['status']> = {}): Service => ({
    apiVersion: 'd2p.dev/v1alpha1',
    kind: 'Service',
    metadata: { name: 'web', namespace: 'shop' },
    spec: { replicas, template: { spec: { image: 'x' } } },
    status: { readyReplicas: 0, conditions: [{ type: 'Available', status: available, reason: 'MinimumReplicasUnavailable', message: `0/${replicas} replicas ready` }], ...extra },
  });

  it('is done when Available, or when every replica of a one-shot exited 0', () => {
    expect(serviceVerdict(service('True'), [])).toEqual({ done: true });
    expect(serviceVerdict(service('False'), [container('a', { phase: 'Exited', exitCode: 0, finishedAt: ago(1) })])).toEqual({ done: true });
    expect(serviceVerdict(undefined, [])).toMatchObject({ done: false, waiting: expect.stringMatching(/does not exist/) });
    expect(serviceVerdict(service('False', 2), [container('a', { phase: 'Running' })])).toEqual({
      done: false,
      waiting: 'Available=False (MinimumReplicasUnavailable: 0/2 replicas ready); container a is Running',
    });
  });

  it('names the container holding a service back and why', () => {
    const pending = container('shop-web-1', { phase: 'Pending', message: 'image x is not present yet' });
    expect(serviceVerdict(service('False'), [pending]).waiting).toBe(
      'Available=False (MinimumReplicasUnavailable: 0/1 replicas ready); container shop-web-1 is Pending: image x is not present yet',
    );
  });

  it('fails on an exit that no restart policy will undo, and waits on one that will', () => {
    const crashed = container('shop-web-1', { phase: 'Exited', exitCode: 3, finishedAt: ago(1) });
    expect(serviceVerdict(service('False'), [crashed])).toEqual({ done: false, failure: 'container shop-web-1 exited (3)' });
    const restarting = container('shop-web-1', { phase: 'Exited', exitCode: 3, finishedAt: ago(1) }, {}, { restartPolicy: 'always' });
    expect(serviceVerdict(service('False'), [restarting]).failure).toBeUndefined();
  });

  it('removes in compose order and keeps volumes and images unless asked', () => {
    expect(downPlan({}).map((s) => s.kind)).toEqual(['Service', 'Container', 'Network']);
    expect(downPlan({ volumes: true, rmi: 'all' }).map((s) => s.kind)).toEqual(['Service', 'Container', 'Network', 'Volume', 'Build', 'Image']);
  });
});

// ------------------------------------------------------------------------------ CLI parsing

describe('argument parsing of the workload commands', () => {
  async function parse(...argv: string[]): Promise<{ name: string; opts: Record<string, unknown>; status: number; err: string }> {
    let seen: { name: string; opts: Record<string, unknown> } = { name: '', opts: {} };
    const load: CommandLoader = (name) =>
      (async (opts: Record<string, unknown>) => {
        seen = { name, opts };
        return 0;
      }) as never;
    const err = new StringWriter();
    const status = await main(argv, { stdout: new StringWriter(), stderr: err }, { load, context: { startDaemon: false } });
    return { ...seen, status, err: err.toString() };
  }

  it('builds only the command the line names, and the whole program for anything else', async () => {
    expect(commandWord(['run', '--rm', 'x'])).toBe('run');
    expect(commandWord(['--root', '/r', '--socket', '/s', 'ps', '-a'])).toBe('ps');
    expect(commandWord(['--root=/r', '--debug', 'get', 'ctr'])).toBe('get');
    expect(commandWord(['--help'])).toBeUndefined();
    expect(commandWord([])).toBeUndefined();
    const io = { stdout: new StringWriter(), stderr: new StringWriter() };
    const runner = async (): Promise<void> => undefined;
    expect(buildProgram(io, runner, 'run').commands.map((c) => c.name())).toEqual(['run']);
    expect(buildProgram(io, runner, 'stop').commands.map((c) => c.name())).toEqual(['stop']);
    const all = buildProgram(io, runner).commands.map((c) => c.name());
    for (const name of COMMAND_NAMES.filter((n) => n !== 'lifecycle')) expect(all).toContain(name);
    // Global options before the word, and a typo, which gets commander's suggestion from the whole program.
    expect(await parse('--root', '/tmp/nowhere', 'run', 'busybox')).toMatchObject({ name: 'run', status: 0, opts: { image: 'busybox' } });
    const typo = await parse('rnu', 'busybox');
    expect(typo.status).not.toBe(0);
    expect(typo.err).toContain("unknown command 'rnu'");
    expect(typo.err).toContain('(Did you mean run?)');
  });

  it('keeps the options after IMAGE or TARGET for the command run in the container', async () => {
    const run = await parse('run', '--rm', '-e', 'A=1', '-p', '8080:80', 'busybox', 'sh', '-c', 'echo -e hi', '-p');
    expect(run).toMatchObject({ name: 'run', status: 0, opts: { image: 'busybox', command: ['sh', '-c', 'echo -e hi', '-p'], rm: true, env: ['A=1'], publish: ['8080:80'] } });
    const exec = await parse('exec', '-T', '-p', 'shop', '--index', '2', 'web', 'ls', '-l');
    expect(exec).toMatchObject({ name: 'exec', opts: { target: 'web', command: ['ls', '-l'], projectName: 'shop', index: '2', tty: false } });
    expect((await parse('exec', 'web', 'true')).opts.tty).toBe(false);
    expect((await parse('exec', '-t', 'web', 'sh')).opts.tty).toBe(true);
  });

  it('gives -f the meaning docker gives it per command', async () => {
    expect((await parse('logs', '-f', '--tail', '5', '-t', 'web', 'db')).opts).toMatchObject({ follow: true, tail: '5', timestamps: true, services: ['web', 'db'] });
    expect((await parse('rm', '-f', 'a', 'b')).opts).toMatchObject({ action: 'rm', force: true, targets: ['a', 'b'] });
    expect((await parse('stop', '-t', '3', '-f', 'compose.yml', 'web')).opts).toMatchObject({ action: 'stop', timeout: '3', files: ['compose.yml'], targets: ['web'] });
    expect((await parse('kill', 'x')).opts).toMatchObject({ action: 'kill', signal: 'SIGKILL' });
    expect((await parse('up', '-d', '--wait', '--wait-timeout', '30', '-p', 'shop')).opts).toMatchObject({ detach: true, wait: true, waitTimeout: '30', projectName: 'shop' });
    expect((await parse('down', '-v', '--rmi', 'all')).opts).toMatchObject({ volumes: true, rmi: 'all' });
    expect((await parse('ps', '-a', '--format', 'json')).opts).toMatchObject({ all: true, format: 'json' });
    expect((await parse('stats', '--no-stream')).opts).toMatchObject({ noStream: true });
  });

  it('refuses -t when its own input is not a terminal, as docker does', async () => {
    const err = new StringWriter();
    const status = await main(['exec', '-it', 'web', 'sh'], { stdout: new StringWriter(), stderr: err }, { load: () => execCommand as never, context: { startDaemon: false } });
    expect(status).toBe(1);
    expect(err.toString()).toBe(`error: ${NOT_A_TTY}\n`);
  });
});
