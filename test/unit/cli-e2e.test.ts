// The CLI's commands driven programmatically against a real daemon running in this
// process (API server + store on a temporary root), with and without controllers.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startControllers } from '../../controllers';
import { invalid } from '../../src/api/errors';
import type { ApiObject, EventObject } from '../../src/api/meta';
import { createClient, type Client } from '../../src/client';
import { applyCommand } from '../../src/cli/commands/apply';
import { convertCommand } from '../../src/cli/commands/convert';
import { daemonCommand } from '../../src/cli/commands/daemon';
import { deleteCommand } from '../../src/cli/commands/delete';
import { describeCommand } from '../../src/cli/commands/describe';
import { diffCommand } from '../../src/cli/commands/diff';
import { getCommand } from '../../src/cli/commands/get';
import { versionCommand } from '../../src/cli/commands/version';
import { connect } from '../../src/cli/connect';
import { createContext, type CommandContext } from '../../src/cli/context';
import { ReportedError, StringWriter } from '../../src/cli/io';
import { main, type CommandLoader } from '../../src/cli/main';
import { runDaemon, type Daemon } from '../../src/server/daemon';
import { until as waitFor } from '../helpers/wait';

interface Harness {
  root: string;
  socket: string;
  daemon: Daemon;
  client: Client;
  contexts: CommandContext[];
}

let h: Harness | undefined;

async function startHarness(withControllers: boolean): Promise<Harness> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-cli-e2e-'));
  const socket = path.join(root, 'd2p.sock');
  const daemon = await runDaemon({
    root,
    socket,
    handleSignals: false,
    log: () => undefined,
    startControllers: withControllers ? ({ client, paths }) => startControllers({ client, paths }) : undefined,
  });
  return { root, socket, daemon, client: createClient({ socketPath: socket }), contexts: [] };
}

afterEach(async () => {
  if (!h) return;
  const current = h;
  h = undefined;
  try {
    for (const ctx of current.contexts) await ctx.close();
    await current.client.close();
    await current.daemon.stop();
  } finally {
    fs.rmSync(current.root, { recursive: true, force: true });
  }
});

/** A command context on the harness's daemon, with captured output. */
function cli(): { ctx: CommandContext; out: StringWriter; err: StringWriter } {
  const out = new StringWriter();
  const err = new StringWriter();
  const ctx = createContext({ root: h!.root, socket: h!.socket }, { stdout: out, stderr: err }, { connect, startDaemon: false });
  h!.contexts.push(ctx);
  return { ctx, out, err };
}

function write(rel: string, text: string): string {
  const file = path.join(h!.root, 'src', rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

const volume = (name: string, extra = '') =>
  `apiVersion: d2p.dev/v1alpha1\nkind: Volume\nmetadata:\n  name: ${name}\n  namespace: shop\n  labels: {tier: data}\nspec:\n  driver: local\n${extra}`;
const network = (name: string, internal = false) =>
  `apiVersion: d2p.dev/v1alpha1\nkind: Network\nmetadata:\n  name: ${name}\n  namespace: shop\nspec:\n  internal: ${internal}\n`;

async function names(kind: string, namespace = 'shop'): Promise<string[]> {
  return (await h!.client.for(kind).list({ namespace })).items.map((o) => o.metadata.name).sort();
}

describe('apply, get, describe, diff, delete against an API-only daemon', () => {
  beforeEach(async () => {
    h = await startHarness(false);
  });

  it('applies a directory in order, then reports unchanged and configured like kubectl', async () => {
    const dir = path.dirname(write('m/10-net.yaml', network('shop_back')));
    write('m/20-vols.yaml', `${volume('data')}---\n${volume('cache')}`);
    const first = cli();
    expect(await applyCommand({ files: [dir] }, first.ctx)).toBe(0);
    expect(first.out.toString()).toBe('network/shop_back created\nvolume/data created\nvolume/cache created\n');
    expect(await names('Volume')).toEqual(['cache', 'data']);

    const again = cli();
    await applyCommand({ files: [dir] }, again.ctx);
    expect(again.out.toString()).toBe('network/shop_back unchanged\nvolume/data unchanged\nvolume/cache unchanged\n');

    write('m/10-net.yaml', network('shop_back', true));
    const changed = cli();
    await applyCommand({ files: [dir] }, changed.ctx);
    expect(changed.out.toString()).toBe('network/shop_back configured\nvolume/data unchanged\nvolume/cache unchanged\n');
    expect((await h!.client.for('Network').get('shop', 'shop_back')).spec).toMatchObject({ internal: true });
  });

  it('applies nothing when one object of a directory is invalid, naming its file and document', async () => {
    const dir = path.dirname(write('m/a.yaml', volume('a')));
    const bad = write('m/b.yaml', `${volume('b')}---\n${volume('c', '  driverOpts: {size: 12}\n').replace('driver: local', 'driver: nfs')}`);
    const run = cli();
    await expect(applyCommand({ files: [dir] }, run.ctx)).rejects.toBeInstanceOf(ReportedError);
    expect(run.err.toString()).toContain(`error: ${bad} (document 2): volume/c: Volume "c" is invalid:`);
    expect(run.err.toString()).toMatch(/\* spec\.driver: /);
    expect(run.out.toString()).toBe('');
    expect(await names('Volume')).toEqual([]);
  });

  it('applies nothing when the server refuses one object in its dry run', async () => {
    // What only the server can refuse (a conflict, a rule outside the schemas) is stood in
    // for by a client whose batch apply refuses one object and records every batch.
    const calls: string[] = [];
    const refusing = {
      applyAll: async (objects: readonly ApiObject[], opts: { dryRun?: boolean } = {}) => {
        calls.push(`${opts.dryRun ? 'dry' : 'real'} ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(' ')}`);
        const items = objects.map((obj) =>
          obj.metadata.name === 'refused'
            ? { ok: false as const, error: invalid('Volume', 'refused', [{ field: 'metadata.ownerReferences', message: 'only one reference can have controller set to true' }]) }
            : { ok: true as const, action: 'created' as const, object: obj },
        );
        return { written: false, items };
      },
      close: async () => undefined,
    } as unknown as Client;
    const file = write('refused.yaml', `${volume('fresh')}---\n${volume('refused')}---\n${volume('later')}`);
    const out = new StringWriter();
    const err = new StringWriter();
    const ctx = createContext({ root: h!.root, socket: h!.socket }, { stdout: out, stderr: err }, { connect: async () => refusing });
    await expect(applyCommand({ files: [file] }, ctx)).rejects.toThrow(/the server refused 1 of 3 objects; nothing was applied/);
    expect(err.toString()).toContain(`error: ${file} (document 2): volume/refused: Volume "refused" is invalid:\n  * metadata.ownerReferences: only one`);
    expect(out.toString()).toBe('');
    expect(calls).toEqual(['real Volume/fresh Volume/refused Volume/later']);
  });

  it('applies a Compose file into the project namespace and converts it to manifests', async () => {
    const compose = write('app/compose.yml', 'name: demo\nservices:\n  web:\n    image: busybox:1\n    ports: ["8080:80"]\nvolumes:\n  data: {}\n');
    const conv = cli();
    expect(await convertCommand({ files: [compose] }, conv.ctx)).toBe(0);
    const YAML = require('yaml') as typeof import('yaml');
    const docs = YAML.parseAllDocuments(conv.out.toString()).map((d) => d.toJS() as ApiObject);
    expect(docs.map((d) => d.kind)).toContain('Service');
    expect(docs.every((d) => d.metadata.namespace === 'demo')).toBe(true);

    const run = cli();
    expect(await applyCommand({ files: [compose] }, run.ctx)).toBe(0);
    expect(run.out.toString()).toMatch(/^service\/web created$/m);
    expect(await names('Service', 'demo')).toEqual(['web']);
    expect(await names('Volume', 'demo')).toEqual(['demo_data']);
  });

  it('leaves Compose objects to the server to validate, and tells a refusal at its Compose line; nothing is applied', async () => {
    const compose = write('bad/compose.yml', 'name: bad\nservices:\n  web:\n    image: nginx\n    cap_add: ["NET ADMIN"]\n  db:\n    image: busybox:1\n');
    const run = cli();
    await expect(applyCommand({ files: [compose] }, run.ctx)).rejects.toThrow(/the server refused 1 of \d+ objects; nothing was applied/);
    expect(run.err.toString()).toContain(`error: compose.yml:3:3: services.web: Service "web" is invalid: spec.template.spec.capAdd[0]: must be a capability name`);
    expect(await names('Service', 'bad')).toEqual([]);
    // The client dry run has no server: it validates the Compose objects itself.
    const local = cli();
    await expect(applyCommand({ files: [compose], dryRun: 'client' }, local.ctx)).rejects.toThrow(/services\.web: Service "web" is invalid/);
  });

  it('gets tables, names, JSON, YAML, all kinds, selectors, and reports what is missing', async () => {
    await applyCommand({ files: [write('m.yaml', `${volume('data')}---\n${volume('cache').replace('tier: data', 'tier: tmp')}---\n${network('shop_back')}`)] }, cli().ctx);

    const table = cli();
    await getCommand({ args: ['vol'], namespace: 'shop' }, table.ctx);
    const lines = table.out.toString().trimEnd().split('\n');
    expect(lines[0].split(/\s{3,}/)).toEqual(['NAME', 'DRIVER', 'STATUS', 'AGE']);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(['cache', 'data']);

    const byName = cli();
    await getCommand({ args: ['volumes', 'data'], namespace: 'shop', output: 'name' }, byName.ctx);
    expect(byName.out.toString()).toBe('volume/data\n');

    const json = cli();
    await getCommand({ args: ['vol/data'], namespace: 'shop', output: 'json' }, json.ctx);
    expect(JSON.parse(json.out.toString())).toMatchObject({ kind: 'Volume', metadata: { name: 'data', namespace: 'shop' } });

    const yamlList = cli();
    await getCommand({ args: ['vol'], namespace: 'shop', output: 'yaml', selector: 'tier=tmp' }, yamlList.ctx);
    const YAML = require('yaml') as typeof import('yaml');
    const list = YAML.parse(yamlList.out.toString());
    expect(list.kind).toBe('List');
    expect(list.items.map((o: ApiObject) => o.metadata.name)).toEqual(['cache']);

    const all = cli();
    await getCommand({ args: ['all'], namespace: 'shop' }, all.ctx);
    expect(all.out.toString()).toMatch(/^network\/shop_back\s+bridge/m);
    expect(all.out.toString()).toMatch(/^volume\/cache\s+local/m);
    expect(all.out.toString()).toContain('\n\nNAME');

    const everywhere = cli();
    await getCommand({ args: ['net'], allNamespaces: true, showLabels: true }, everywhere.ctx);
    expect(everywhere.out.toString().split('\n')[0].split(/\s{3,}/)).toEqual(['NAMESPACE', 'NAME', 'DRIVER', 'SUBNET', 'GATEWAY', 'AGE', 'LABELS']);

    const empty = cli();
    expect(await getCommand({ args: ['ctr'], namespace: 'shop' }, empty.ctx)).toBe(0);
    expect(empty.err.toString()).toBe('No resources found in shop namespace.\n');

    const missing = cli();
    await expect(getCommand({ args: ['vol', 'data', 'nope'], namespace: 'shop' }, missing.ctx)).rejects.toBeInstanceOf(ReportedError);
    expect(missing.out.toString()).toMatch(/^data\s+local/m);
    expect(missing.err.toString()).toMatch(/^error: volume "shop\/nope" not found$/m);

    await expect(getCommand({ args: ['pods'] }, cli().ctx)).rejects.toThrow(/doesn't have a resource type "pods"/);
  });

  it('watches: the table, then one line per change, until aborted', async () => {
    await applyCommand({ files: [write('v.yaml', volume('first'))] }, cli().ctx);
    const watch = cli();
    const abort = new AbortController();
    const running = getCommand({ args: ['vol'], namespace: 'shop', watch: true, signal: abort.signal }, watch.ctx);
    await waitFor('the first table', async () => (watch.out.toString().includes('first') ? true : undefined));
    await h!.client.for('Volume').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name: 'later', namespace: 'shop' }, spec: {} });
    await waitFor('the watch line', async () => (watch.out.toString().includes('later') ? true : undefined));
    abort.abort();
    expect(await running).toBe(0);
    const lines = watch.out.toString().trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+DRIVER/);
    expect(lines[1]).toMatch(/^first\s+local/);
    expect(lines[lines.length - 1]).toMatch(/^later\s+local/);
    expect(lines[lines.length - 1].indexOf('local')).toBe(lines[0].indexOf('DRIVER'));
  });

  it('describes an object with what it owns and its events', async () => {
    const svc = await h!.client.for('Service').create({
      apiVersion: 'd2p.dev/v1alpha1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'shop' },
      spec: { replicas: 1, template: { spec: { image: 'busybox:1' } } },
    });
    await h!.client.for('Container').create({
      apiVersion: 'd2p.dev/v1alpha1',
      kind: 'Container',
      metadata: { name: 'shop-web-1', namespace: 'shop', ownerReferences: [{ apiVersion: 'd2p.dev/v1alpha1', kind: 'Service', name: 'web', uid: svc.metadata.uid!, controller: true }] },
      spec: { image: 'busybox:1' },
    });
    const now = new Date().toISOString();
    await h!.client.for('Event').create({
      apiVersion: 'd2p.dev/v1alpha1',
      kind: 'Event',
      metadata: { name: 'web.1', namespace: 'shop' },
      involvedObject: { kind: 'Service', namespace: 'shop', name: 'web', uid: svc.metadata.uid },
      type: 'Normal',
      reason: 'Scaled',
      message: 'created container shop-web-1',
      count: 1,
      firstTimestamp: now,
      lastTimestamp: now,
      source: { component: 'service-controller' },
    } as EventObject);
    const run = cli();
    expect(await describeCommand({ args: ['svc', 'web'], namespace: 'shop' }, run.ctx)).toBe(0);
    const text = run.out.toString();
    expect(text).toMatch(/^Name:\s+web$/m);
    expect(text).toMatch(/^Owns:\n.*\n.*\n\s+Container\s+shop-web-1\s/m);
    expect(text).toMatch(/^Events:\n.*\n.*\n\s+Normal\s+Scaled\s+\d+s\s+service-controller\s+created container shop-web-1$/m);

    const ctr = cli();
    await describeCommand({ args: ['ctr/shop-web-1'], namespace: 'shop' }, ctr.ctx);
    expect(ctr.out.toString()).toMatch(/^Controlled By:\s+Service\/web$/m);
    expect(ctr.out.toString()).toMatch(/^Events: {2}<none>$/m);

    const missing = cli();
    await expect(describeCommand({ args: ['svc', 'nope'], namespace: 'shop' }, missing.ctx)).rejects.toBeInstanceOf(ReportedError);
    expect(missing.err.toString()).toMatch(/not found/);
  });

  it('diffs: new objects all added (exit 1), nothing after apply (exit 0), changes as -/+ (exit 1)', async () => {
    const file = write('d.yaml', network('shop_front'));
    const fresh = cli();
    expect(await diffCommand({ files: [file] }, fresh.ctx)).toBe(1);
    expect(fresh.out.toString()).toMatch(/^diff -u -N LIVE\/d2p\.dev\.v1alpha1\.Network\.shop\.shop_front MERGED\//);
    expect(fresh.out.toString()).toMatch(/^@@ -0,0 \+1,\d+ @@$/m);
    expect(await names('Network')).toEqual([]);

    await applyCommand({ files: [file] }, cli().ctx);
    const same = cli();
    expect(await diffCommand({ files: [file] }, same.ctx)).toBe(0);
    expect(same.out.toString()).toBe('');

    write('d.yaml', network('shop_front', true));
    const changed = cli();
    expect(await diffCommand({ files: [file] }, changed.ctx)).toBe(1);
    expect(changed.out.toString()).toContain('-  internal: false\n+  internal: true\n');
    expect((await h!.client.for('Network').get('shop', 'shop_front')).spec).toMatchObject({ internal: false });

    const broken = cli();
    await expect(diffCommand({ files: [path.join(h!.root, 'nope.yaml')] }, broken.ctx)).rejects.toMatchObject({ exitCode: 2 });
    expect(broken.err.toString()).toMatch(/does not exist/);
  });

  it('deletes by name and by file; missing objects are reported, fatal only by name', async () => {
    const file = write('del.yaml', `${volume('a')}---\n${volume('b')}`);
    await applyCommand({ files: [file] }, cli().ctx);

    const byName = cli();
    expect(await deleteCommand({ args: ['vol', 'a'], namespace: 'shop' }, byName.ctx)).toBe(0);
    expect(byName.out.toString()).toBe('volume "a" deleted\n');
    expect(await names('Volume')).toEqual(['b']);

    const byFile = cli();
    expect(await deleteCommand({ args: [], files: [file] }, byFile.ctx)).toBe(0);
    expect(byFile.out.toString()).toBe('volume "b" deleted\n');
    expect(byFile.err.toString()).toBe(`${file} (document 1): volume "shop/a" not found\n`);
    expect(await names('Volume')).toEqual([]);

    const missing = cli();
    await expect(deleteCommand({ args: ['vol', 'a'], namespace: 'shop' }, missing.ctx)).rejects.toBeInstanceOf(ReportedError);
    expect(missing.err.toString()).toMatch(/^error: volume "shop\/a" not found$/m);
    expect(await deleteCommand({ args: ['vol', 'a'], namespace: 'shop', ignoreNotFound: true }, cli().ctx)).toBe(0);
    await expect(deleteCommand({ args: ['vol'], namespace: 'shop' }, cli().ctx)).rejects.toThrow(/no name was specified/);
  });

  it('waits for finalizers on delete, and gives up after --timeout', async () => {
    await h!.client.for('Volume').create({
      apiVersion: 'd2p.dev/v1alpha1',
      kind: 'Volume',
      metadata: { name: 'held', namespace: 'shop', finalizers: ['test.d2p.dev/hold'] },
      spec: {},
    });
    const timedOut = cli();
    await expect(deleteCommand({ args: ['vol/held'], namespace: 'shop', timeout: '200ms' }, timedOut.ctx)).rejects.toBeInstanceOf(ReportedError);
    expect(timedOut.out.toString()).toBe('volume "held" deleted\n');
    expect(timedOut.err.toString()).toMatch(/timed out after 0.2s waiting for volume\/held/);

    const waiting = cli();
    const done = deleteCommand({ args: ['vol/held'], namespace: 'shop', timeout: '10s' }, waiting.ctx);
    let finished = false;
    void done.then(() => (finished = true), () => (finished = true));
    await new Promise((r) => setTimeout(r, 150));
    expect(finished).toBe(false);
    const live = await h!.client.for('Volume').get('shop', 'held');
    await h!.client.for('Volume').update({ ...live, metadata: { ...live.metadata, finalizers: [] } });
    expect(await done).toBe(0);
    expect(await names('Volume')).toEqual([]);
  });

  it('runs through main(): global options after the command, exit statuses, errors on stderr', async () => {
    const load: CommandLoader = (name) =>
      ({ apply: applyCommand, get: getCommand, describe: describeCommand, delete: deleteCommand, diff: diffCommand, convert: convertCommand, daemon: daemonCommand, version: versionCommand } as Record<string, unknown>)[name] as never;
    const run = async (...argv: string[]) => {
      const out = new StringWriter();
      const err = new StringWriter();
      const status = await main(argv, { stdout: out, stderr: err }, { load, context: { connect, startDaemon: false } });
      return { status, out: out.toString(), err: err.toString() };
    };
    const file = write('main.yaml', volume('m'));
    expect(await run('apply', '-f', file, '--root', h!.root, '--socket', h!.socket)).toMatchObject({ status: 0, out: 'volume/m created\n' });
    expect(await run('--socket', h!.socket, 'get', 'vol', '-n', 'shop', '-o', 'name')).toMatchObject({ status: 0, out: 'volume/m\n' });
    expect(await run('get', 'vol', 'zzz', '-n', 'shop', '--socket', h!.socket)).toMatchObject({ status: 1, err: 'error: volume "shop/zzz" not found\n' });
    expect(await run('get', 'vol', '-o', 'xml', '--socket', h!.socket)).toMatchObject({ status: 1, err: expect.stringMatching(/^error: unable to match a printer/) });
    expect(await run('get', '--nope')).toMatchObject({ status: 1, err: expect.stringMatching(/unknown option '--nope'/) });
    expect(await run('version')).toMatchObject({ status: 0, out: expect.stringMatching(/^d2p version \d+\.\d+\.\d+ \(API d2p\.dev\/v1alpha1, node v\d+/) });
    expect(await run('delete', 'vol', 'm', '-n', 'shop', '--wait=false', '--socket', h!.socket)).toMatchObject({ status: 0, out: 'volume "m" deleted\n' });
    // --no-wait returns while a finalizer still holds the object (kubectl --wait=false).
    await h!.client.for('Volume').create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name: 'held', namespace: 'shop', finalizers: ['test.d2p.dev/hold'] }, spec: {} });
    expect(await run('delete', 'vol', 'held', '-n', 'shop', '--no-wait', '--socket', h!.socket)).toMatchObject({ status: 0, out: 'volume "held" deleted\n' });
    expect((await h!.client.for('Volume').get('shop', 'held')).metadata.deletionTimestamp).toBeDefined();
    const timedOut = await run('delete', 'vol', 'held', '-n', 'shop', '--timeout', '100ms', '--socket', h!.socket);
    expect(timedOut.status).toBe(1);
    expect(timedOut.err).toMatch(/timed out after 0.1s waiting for volume\/held/);
    const held = await h!.client.for('Volume').get('shop', 'held');
    await h!.client.for('Volume').update({ ...held, metadata: { ...held.metadata, finalizers: [] } });
    const unreachable = await run('get', 'vol', '--socket', path.join(h!.root, 'none.sock'));
    expect(unreachable.status).toBe(1);
    expect(unreachable.err).toMatch(/^error: cannot reach the d2p daemon on .*none\.sock/);
    expect(unreachable.err).not.toMatch(/\n\s+at /);
  });
});

describe('with controllers', () => {
  beforeEach(async () => {
    h = await startHarness(true);
  });

  it('applies a Volume, sees it become Ready with a mountpoint, and deletes it through its finalizer', async () => {
    await applyCommand({ files: [write('v.yaml', volume('data'))] }, cli().ctx);
    await waitFor('the volume to be Ready', async () => {
      const v = await h!.client.for('Volume').get('shop', 'data');
      return (v.status as { phase?: string } | undefined)?.phase === 'Ready' ? v : undefined;
    });
    const wide = cli();
    await getCommand({ args: ['vol'], namespace: 'shop', output: 'wide' }, wide.ctx);
    const row = wide.out.toString().split('\n')[1].split(/\s{3,}/);
    expect(row[2]).toBe('Ready');
    expect(row[4].startsWith(h!.root)).toBe(true);
    const mountpoint = row[4];
    expect(fs.existsSync(mountpoint)).toBe(true);

    const del = cli();
    expect(await deleteCommand({ args: ['vol', 'data'], namespace: 'shop', timeout: '10s' }, del.ctx)).toBe(0);
    expect(await names('Volume')).toEqual([]);
    expect(fs.existsSync(mountpoint)).toBe(false);
  });
});
