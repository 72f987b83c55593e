// `d2p build` through the CLI command, and the Build controller in a daemon: real RUN
// containers, a base image imported from a local OCI layout into the state root's store.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventObject } from '../../src/api/meta';
import type { Build } from '../../src/api/types';
import { buildCommand, type BuildCommandOptions } from '../../src/cli/commands/build';
import { createContext } from '../../src/cli/context';
import { StringWriter } from '../../src/cli/io';
import { createClient, type Client } from '../../src/client/index';
import { ImageStore, importOciLayout } from '../../src/images/index';
import { CgroupManager } from '../../src/runtime/index';
import { runDaemon, type Daemon } from '../../src/server/daemon';
import { buildController } from '../../controllers/build';
import { createJsonLogger } from '../../controllers/logger';
import { Manager } from '../../controllers/manager';
import { requireSandbox } from '../helpers/sandbox-guard';
import { fixtures } from '../helpers/test-image';

const BASE = 'localhost/d2p-test/busybox:1';
const cgroupParent = `d2p-build-cli-test-${process.pid}`;
let work: string;
let root: string;
let daemon: Daemon;
let client: Client;

beforeAll(async () => {
  requireSandbox('build CLI and controller integration tests');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-build-cli-it-'));
  root = path.join(work, 'root');
  const built = fixtures.buildTestImages(path.join(work, 'all'));
  const layout = path.join(work, 'layout');
  fs.cpSync(path.join(work, 'all', 'blobs'), path.join(layout, 'blobs'), { recursive: true });
  fixtures.writeLayoutIndex(layout, { [BASE]: built.base });
  await importOciLayout(await ImageStore.open(path.join(root, 'images')), layout);
  daemon = await runDaemon({
    root,
    handleSignals: false,
    log: () => undefined,
    startControllers: async ({ client: daemonClient, paths }) => {
      const manager = new Manager({ client: daemonClient, paths, logger: createJsonLogger({ write: () => undefined }), backoff: { baseDelayMs: 50, maxDelayMs: 500 } });
      manager.register(buildController({ cgroupParent }));
      await manager.start();
      return { stop: () => manager.stop() };
    },
  });
  client = createClient({ socketPath: daemon.paths.socket });
});

afterAll(async () => {
  try {
    await client?.close();
    await daemon?.stop();
    new CgroupManager({ parent: cgroupParent }).removeParent();
  } finally {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  }
});

function contextDir(dockerfile: string, files: Record<string, string> = {}): string {
  const dir = fs.mkdtempSync(path.join(work, 'ctx-'));
  fs.writeFileSync(path.join(dir, 'Dockerfile'), dockerfile);
  for (const [rel, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, rel), content);
  return dir;
}

async function d2pBuild(opts: Omit<BuildCommandOptions, 'path'> & { path: string }): Promise<{ code: number; out: string; err: string }> {
  const stdout = new StringWriter();
  const stderr = new StringWriter();
  const ctx = createContext({ root }, { stdout, stderr }, { startDaemon: false });
  try {
    const code = await buildCommand(opts, ctx);
    return { code, out: stdout.toString(), err: stderr.toString() };
  } finally {
    await ctx.close();
  }
}

describe('d2p build', () => {
  it('prints BuildKit plain progress, then every step CACHED on a rebuild; -q prints the image ID', async () => {
    const dir = contextDir(`FROM ${BASE}\nARG WHO=world\nCOPY hello.txt /hello.txt\nRUN echo "hello $WHO" >> /hello.txt && cat /hello.txt\n`, { 'hello.txt': 'from the context\n' });
    const first = await d2pBuild({ path: dir, tags: ['localhost/cli/app:1'], progress: 'plain' });
    expect(first.code).toBe(0);
    expect(first.err).toMatch(/^#\d+ \[2\/3\] COPY hello\.txt \/hello\.txt$/m);
    expect(first.err).toMatch(/^#(\d+) \[3\/3\] RUN echo "hello \$WHO" >> \/hello\.txt && cat \/hello\.txt\n(#\1 [\d.]+ .*\n)*#\1 [\d.]+ hello world\n#\1 DONE [\d.]+s$/m);
    const second = await d2pBuild({ path: dir, tags: ['localhost/cli/app:1'], progress: 'plain' });
    const stepIds = [...second.err.matchAll(/^#(\d+) \[\d\/3\]/gm)].map((m) => m[1]);
    expect(stepIds).toHaveLength(3);
    for (const id of stepIds) expect(second.err).toContain(`#${id} CACHED\n`);
    const quiet = await d2pBuild({ path: dir, tags: ['localhost/cli/app:1'], quiet: true });
    const stored = await (await ImageStore.open(path.join(root, 'images'))).get('localhost/cli/app:1');
    expect(quiet.out).toBe(`${stored?.id}\n`);
    expect(quiet.err).toBe('');
  });

  it('a bad Dockerfile is an error naming file and line', async () => {
    const dir = contextDir(`FROM ${BASE}\nRUNN make\n`);
    await expect(d2pBuild({ path: dir, progress: 'plain' })).rejects.toThrow(/Dockerfile:2: unknown instruction: RUNN/i);
  });

  it('--target builds only the stages the target needs', async () => {
    const dir = contextDir(`FROM ${BASE} AS one\nRUN echo one > /one\nFROM ${BASE} AS two\nRUN exit 1\nFROM one AS three\nRUN cat /one\n`);
    const r = await d2pBuild({ path: dir, target: 'three', tags: ['localhost/cli/target:1'], progress: 'plain' });
    expect(r.code).toBe(0);
    expect(r.err).not.toContain('exit 1');
  });
});

describe('Build controller in a daemon', () => {
  const create = (name: string, spec: Build['spec']) =>
    client.builds.create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Build', metadata: { name, namespace: 'proj' }, spec } as Build);

  async function waitForPhase(name: string, phase: string): Promise<Build> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const b = (await client.builds.get('proj', name)) as Build;
      if (b.status?.phase === phase && b.status.observedGeneration === b.metadata.generation) return b;
      if (Date.now() > deadline) throw new Error(`build proj/${name} did not reach ${phase}: ${JSON.stringify(b.status)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it('builds a Build object into the store and reports digest, steps and events', async () => {
    const dir = contextDir(`FROM ${BASE}\nCOPY a.txt /a.txt\nRUN cp /a.txt /b.txt\n`, { 'a.txt': 'a\n' });
    await create('app', { context: dir, tags: ['localhost/proj/app:latest'] });
    const done = await waitForPhase('app', 'Succeeded');
    const stored = await (await ImageStore.open(path.join(root, 'images'))).get('localhost/proj/app:latest');
    expect(done.status?.imageDigest).toBe(stored?.digest);
    expect(done.status?.steps).toBe(3);
    // The event follows the status write, so it may arrive a moment after the phase.
    const deadline = Date.now() + 10_000;
    let reasons: string[] = [];
    while (!reasons.includes('Built') && Date.now() < deadline) {
      reasons = ((await client.events.list({ namespace: 'proj', fieldSelector: 'involvedObject.name=app' })).items as EventObject[]).map((e) => e.reason);
      if (!reasons.includes('Built')) await new Promise((r) => setTimeout(r, 50));
    }
    expect(reasons).toEqual(expect.arrayContaining(['Building', 'Built']));
  });

  it('a failing RUN leaves the Build Failed with the step in its Ready condition', async () => {
    const dir = contextDir(`FROM ${BASE}\nRUN echo no && exit 7\n`);
    await create('broken', { context: dir, tags: ['localhost/proj/broken:latest'] });
    const failed = await waitForPhase('broken', 'Failed');
    const ready = failed.status?.conditions?.find((c) => c.type === 'Ready');
    expect(ready).toMatchObject({ status: 'False', reason: 'BuildFailed' });
    expect(ready?.message).toMatch(/\[2\/2\] RUN echo no && exit 7: .*exit code: 7/);
  });
});
