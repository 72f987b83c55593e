// `d2p watch DIR`, and `get sources` / `describe source` showing what a sync did, driven
// programmatically against an in-process daemon (API server and store, no controllers).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Source } from '../../src/api/types';
import { createClient, type Client } from '../../src/client';
import { describeCommand } from '../../src/cli/commands/describe';
import { getCommand } from '../../src/cli/commands/get';
import { watchCommand } from '../../src/cli/commands/watch';
import { connect } from '../../src/cli/connect';
import { createContext, type CommandContext } from '../../src/cli/context';
import { StringWriter } from '../../src/cli/io';
import { main, type CommandLoader } from '../../src/cli/main';
import { printTable } from '../../src/cli/printers';
import { withGitOps } from '../../src/gitops';
import { runDaemon, type Daemon } from '../../src/server/daemon';
import { poller } from '../helpers/wait';

let root: string;
let manifests: string;
let daemon: Daemon | undefined;
let client: Client;
const contexts: CommandContext[] = [];
const cleanups: Array<() => Promise<unknown> | unknown> = [];

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-gitops-cli-'));
  manifests = path.join(root, 'site');
  fs.mkdirSync(manifests);
});

afterEach(async () => {
  try {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    for (const ctx of contexts.splice(0)) await ctx.close();
    await client?.close();
    await daemon?.stop();
  } finally {
    daemon = undefined;
    fs.rmSync(root, { recursive: true, force: true });
  }
});

async function serve(opts: { manifests?: string } = {}): Promise<void> {
  const socket = path.join(root, 'd2p.sock');
  daemon = await runDaemon({
    root,
    socket,
    handleSignals: false,
    log: () => undefined,
    startControllers: opts.manifests ? withGitOps(undefined, { dir: opts.manifests, log: () => undefined }) : undefined,
  });
  client = createClient({ socketPath: socket });
}

function cli(): { ctx: CommandContext; out: StringWriter; err: StringWriter } {
  const out = new StringWriter();
  const err = new StringWriter();
  const ctx = createContext({ root, socket: path.join(root, 'd2p.sock') }, { stdout: out, stderr: err }, { connect, startDaemon: false });
  contexts.push(ctx);
  return { ctx, out, err };
}

function volume(name: string): string {
  return `apiVersion: d2p.dev/v1alpha1\nkind: Volume\nmetadata:\n  name: ${name}\n`;
}

// The watch loop and the daemon share this process: poll no faster than they need to make progress.
const until = poller({ intervalMs: 50 });

describe('d2p watch', () => {
  it('prints one line per sync and stops on the signal', async () => {
    await serve();
    fs.writeFileSync(path.join(manifests, 'ok.yaml'), volume('data'));
    fs.writeFileSync(path.join(manifests, 'bad.yaml'), 'kind: [\n');
    const { ctx, out, err } = cli();
    const abort = new AbortController();
    const running = watchCommand({ dir: manifests, interval: '1h', signal: abort.signal }, ctx);
    await until('a sync line', () => (out.toString().includes('synced rev') ? true : undefined));
    abort.abort();
    expect(await running).toBe(0);
    expect(out.toString()).toMatch(/^synced rev [0-9a-f]{7}: 1 applied, 0 pruned, 1 error \(bad\.yaml:2:1\b/);
    expect(err.toString()).toContain(`watching ${manifests} as source d2p-system/site`);
    const vol = await client.volumes.get('default', 'data');
    expect(vol.metadata.labels).toEqual({ 'd2p.dev/source': 'site' });
  });

  it('fails with a clear error for a missing directory', async () => {
    await serve();
    const { ctx } = cli();
    await expect(watchCommand({ dir: path.join(root, 'nope'), interval: '1h' }, ctx)).rejects.toThrow(/cannot watch .*nope: ENOENT/);
  });
});

describe('d2p watch through main', () => {
  it('parses its flags and reports a bad interval as an error naming it', async () => {
    await serve();
    const out = new StringWriter();
    const err = new StringWriter();
    const load = ((name: string) => (name === 'watch' ? watchCommand : undefined)) as unknown as CommandLoader;
    const status = await main(['watch', manifests, '--interval', 'soon', '--no-prune', '--root', root], { stdout: out, stderr: err }, {
      load,
      context: { connect, startDaemon: false },
    });
    expect(status).toBe(1);
    expect(err.toString()).toMatch(/^error: invalid interval "soon"/);
  });
});

describe('d2p daemon --manifests', () => {
  it('keeps the directory applied, and get/describe show the Source and its events', async () => {
    fs.writeFileSync(path.join(manifests, 'a.yaml'), volume('alpha'));
    await serve({ manifests });
    const src = await until('the Source synced', async () => {
      const list = await client.for('Source').list({ namespace: 'd2p-system' });
      const s = list.items[0] as Source | undefined;
      return s?.status?.phase === 'Synced' ? s : undefined;
    });
    expect(src.metadata.name).toBe('site');

    fs.writeFileSync(path.join(manifests, 'a.yaml'), volume('beta'));
    await until('alpha pruned, beta applied', async () => {
      const names = (await client.volumes.list({ namespace: 'default' })).items.map((v) => v.metadata.name);
      return names.join(',') === 'beta' ? true : undefined;
    });
    // Events and then the status are written after the objects: wait for the sync to finish.
    await until('the new revision in the status', async () => {
      const s = (await client.for('Source').get('d2p-system', 'site')) as Source;
      return s.status?.lastAppliedRevision !== src.status?.lastAppliedRevision ? true : undefined;
    });

    const get = cli();
    expect(await getCommand({ args: ['sources'], namespace: 'd2p-system' }, get.ctx)).toBe(0);
    const [header, row] = get.out.toString().split('\n');
    expect(header.split(/\s{2,}/)).toEqual(['NAME', 'PATH', 'REVISION', 'COMMIT', 'READY', 'AGE']);
    const live = (await client.for('Source').get('d2p-system', 'site')) as Source;
    const rev = live.status!.lastAppliedRevision!.slice('sha256:'.length, 'sha256:'.length + 7);
    expect(row.split(/\s{2,}/).slice(0, 5)).toEqual(['site', manifests, rev, '<none>', 'True']);

    const described = cli();
    expect(await describeCommand({ args: ['source', 'site'], namespace: 'd2p-system' }, described.ctx)).toBe(0);
    const text = described.out.toString();
    expect(text).toMatch(/Last Applied Revision:\s+sha256:/);
    expect(text).toMatch(/Pruned\s+.*volume\/alpha -n default/);
  });
});

describe('the Source table', () => {
  it('abbreviates revision and commit and reads READY from the condition', () => {
    const source: Source = {
      apiVersion: 'd2p.dev/v1alpha1',
      kind: 'Source',
      metadata: { name: 'apps', namespace: 'd2p-system', creationTimestamp: '2024-05-01T12:00:00Z' },
      spec: { path: '/srv/apps' },
      status: {
        lastAppliedRevision: `sha256:${'ab12cd3'}${'0'.repeat(57)}`,
        gitCommit: `9f8e7d6${'1'.repeat(33)}`,
        conditions: [{ type: 'Ready', status: 'False', reason: 'FileErrors' }],
      },
    };
    const text = printTable('Source', [source], { now: Date.parse('2024-05-01T12:01:00Z') });
    expect(text.split('\n')[1].split(/\s{2,}/)).toEqual(['apps', '/srv/apps', 'ab12cd3', '9f8e7d6', 'False', '60s']);
  });
});
