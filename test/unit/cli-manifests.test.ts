import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { assignNamespaces, checkDuplicates, expandPaths, readSources } from '../../src/cli/manifests';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-cli-manifests-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function write(rel: string, text: string): string {
  const file = path.join(dir, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

const volume = (name: string, ns?: string) =>
  `apiVersion: d2p.dev/v1alpha1\nkind: Volume\nmetadata:\n  name: ${name}\n${ns ? `  namespace: ${ns}\n` : ''}spec: {}\n`;

const names = (objects: { object: { kind: string; metadata: { name: string } } }[]) => objects.map((m) => `${m.object.kind}/${m.object.metadata.name}`);

describe('reading manifests', () => {
  it('reads multi-document YAML, skipping empty documents, and records document numbers (a leading --- opens the first)', async () => {
    const file = write('app.yaml', `---\n${volume('a')}---\n---\n${volume('b')}`);
    const { objects } = await readSources([file]);
    expect(names(objects)).toEqual(['Volume/a', 'Volume/b']);
    expect(objects.map((o) => o.source)).toEqual([
      { file, document: 1 },
      { file, document: 3 },
    ]);
  });

  it('reads JSON objects and expands kind: List', async () => {
    const list = { apiVersion: 'v1', kind: 'List', items: [{ apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name: 'x' } }, { apiVersion: 'd2p.dev/v1alpha1', kind: 'Network', metadata: { name: 'y' } }] };
    const file = write('list.json', JSON.stringify(list));
    const { objects } = await readSources([file]);
    expect(names(objects)).toEqual(['Volume/x', 'Network/y']);
    expect(objects[1].source).toEqual({ file, item: 2 });
  });

  it('walks a directory depth-first in lexical order, only .yaml/.yml/.json, skipping hidden entries', async () => {
    write('b.yaml', volume('b'));
    write('a/z.yml', volume('az'));
    write('a.yaml', volume('a-dot'));
    write('c/d/e.json', JSON.stringify({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name: 'cde' } }));
    write('README.md', '# not a manifest');
    write('.git/config.yaml', volume('hidden'));
    write('notes.txt', volume('txt'));
    expect(expandPaths([dir]).map((f) => path.relative(dir, f))).toEqual(['a/z.yml', 'a.yaml', 'b.yaml', 'c/d/e.json']);
    expect(names((await readSources([dir])).objects)).toEqual(['Volume/az', 'Volume/a-dot', 'Volume/b', 'Volume/cde']);
  });

  it('names the file and document of a YAML error or a non-object', async () => {
    const bad = write('bad.yaml', `${volume('ok')}---\nkind: [unclosed\n`);
    await expect(readSources([bad])).rejects.toThrow(`${bad} (document 2): invalid YAML`);
    const scalar = write('scalar.yaml', `${volume('ok')}---\njust a string\n`);
    await expect(readSources([scalar])).rejects.toThrow(`${scalar} (document 2): not an object`);
    const noKind = write('nokind.yaml', 'apiVersion: d2p.dev/v1alpha1\nmetadata: {name: x}\n');
    await expect(readSources([noKind])).rejects.toThrow(`${noKind}: kind not set`);
    const noName = write('noname.yaml', 'apiVersion: d2p.dev/v1alpha1\nkind: Volume\nmetadata: {}\n');
    await expect(readSources([noName])).rejects.toThrow(`${noName}: Volume: metadata.name not set`);
    const json = write('bad.json', '{"kind": ');
    await expect(readSources([json])).rejects.toThrow(`${json}: invalid JSON`);
    await expect(readSources([path.join(dir, 'missing.yaml')])).rejects.toThrow(/the path ".*missing.yaml" does not exist/);
  });

  it('reads stdin for "-"', async () => {
    const { objects } = await readSources(['-'], { readStdin: () => volume('from-stdin') });
    expect(names(objects)).toEqual(['Volume/from-stdin']);
    const json = JSON.stringify({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Network', metadata: { name: 'json-stdin' } });
    expect(names((await readSources(['-'], { readStdin: () => json })).objects)).toEqual(['Network/json-stdin']);
  });
});

describe('Compose detection', () => {
  const compose = 'services:\n  web:\n    image: busybox:1\n';

  it('converts a file named compose.yml and one whose content is Compose, keeping manifests beside them', async () => {
    write('app/compose.yml', `name: shop\n${compose}`);
    write('app/extra.yaml', volume('cache', 'shop'));
    const { objects } = await readSources([path.join(dir, 'app')], { env: {} });
    const kinds = objects.map((m) => m.object.kind);
    expect(kinds).toContain('Service');
    expect(kinds).toContain('Volume');
    const svc = objects.find((m) => m.object.kind === 'Service')!;
    expect(svc.object.metadata.namespace).toBe('shop');
    expect(svc.source.compose).toBe(true);

    const byContent = write('other/my-app.yaml', compose);
    const second = await readSources([byContent], { env: {}, projectName: 'other' });
    expect(second.objects.some((m) => m.object.kind === 'Service' && m.object.metadata.namespace === 'other')).toBe(true);
  });

  it('merges Compose files given with several -f, as docker compose does', async () => {
    const base = write('compose.yml', `name: shop\n${compose}`);
    const override = write('compose.override.yml', 'services:\n  web:\n    command: ["echo", "hi"]\n');
    const { objects } = await readSources([base, override], { env: {} });
    const svc = objects.find((m) => m.object.kind === 'Service')!;
    expect((svc.object.spec as { template: { spec: { command: string[] } } }).template.spec.command).toEqual(['echo', 'hi']);
  });

  it('reports Compose errors with the file and key', async () => {
    const bad = write('compose.yaml', 'services:\n  web:\n    image: busybox\n    ports: ["80:abc"]\n');
    await expect(readSources([bad], { env: {}, projectName: 'x' })).rejects.toThrow(/compose\.yaml.*services\.web\.ports/);
  });
});

describe('namespaces and duplicates', () => {
  const m = (name: string, ns?: string) => ({
    object: { apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name, ...(ns ? { namespace: ns } : {}) } },
    source: { file: `${name}.yaml` },
  });

  it('fills -n (or default) where a manifest names none and refuses a mismatch', () => {
    expect(assignNamespaces([m('a')], undefined)[0].object.metadata.namespace).toBe('default');
    expect(assignNamespaces([m('a')], 'shop')[0].object.metadata.namespace).toBe('shop');
    expect(assignNamespaces([m('a', 'x')], undefined)[0].object.metadata.namespace).toBe('x');
    expect(() => assignNamespaces([m('a', 'x')], 'shop')).toThrow(/a.yaml: the namespace from the provided object "x" does not match the namespace "shop"/);
  });

  it('refuses the same object defined twice, naming both files', () => {
    expect(() => checkDuplicates([m('a', 'x'), { ...m('a', 'x'), source: { file: 'other.yaml' } }])).toThrow(
      'other.yaml: volume/a in namespace "x" is already defined by a.yaml',
    );
    expect(() => checkDuplicates([m('a', 'x'), m('a', 'y')])).not.toThrow();
  });
});
