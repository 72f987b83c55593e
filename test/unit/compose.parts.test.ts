// The pieces of the Compose loader on their own: interpolation, .env syntax, shell
// splitting, project naming, .env precedence, profiles from the environment, and the
// detection of Compose files among manifests.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { validateObject } from '../../src/api/validate';
import { ComposeError, imageObjectName, isComposeFile, loadCompose, normalizeProjectName } from '../../src/compose';
import { parseDotenv } from '../../src/compose/dotenv';
import { substitute, TemplateError } from '../../src/compose/interpolate';
import { shellSplit, ShellSplitError } from '../../src/compose/shellwords';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-compose-parts-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Writes files under a project directory in the temp dir; returns the directory. */
function project(dirName: string, files: Record<string, string>): string {
  const dir = path.join(tmp, dirName);
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

describe('interpolation', () => {
  const env: Record<string, string> = { SET: 'value', EMPTY: '', NAME: 'web', PORT: '8080' };
  const lookup = (k: string) => env[k];
  const table: [string, string][] = [
    ['$SET', 'value'],
    ['${SET}', 'value'],
    ['pre-${SET}-post', 'pre-value-post'],
    ['$NAME.txt', 'web.txt'],
    ['$NAME-1', 'web-1'],
    ['${UNSET:-default}', 'default'],
    ['${EMPTY:-default}', 'default'],
    ['${SET:-default}', 'value'],
    ['${UNSET-default}', 'default'],
    ['${EMPTY-default}', ''],
    ['${SET:+alt}', 'alt'],
    ['${EMPTY:+alt}', ''],
    ['${EMPTY+alt}', 'alt'],
    ['${UNSET+alt}', ''],
    ['${EMPTY?unused}', ''],
    ['${SET:?unused}', 'value'],
    ['$$', '$'],
    ['$${SET}', '${SET}'],
    ['cost: $$5', 'cost: $5'],
    ['${UNSET:-${NAME}:${PORT}}', 'web:8080'],
    ['${UNSET:-${ALSO_UNSET:-deep}}', 'deep'],
    ['${UNSET:-$SET}', 'value'],
    ['${SET:+${NAME}-alt}', 'web-alt'],
    ['no variables', 'no variables'],
  ];
  for (const [template, expected] of table) {
    it(`${template} → ${JSON.stringify(expected)}`, () => {
      expect(substitute(template, { lookup })).toBe(expected);
    });
  }

  const errors: [string, string][] = [
    ['${UNSET:?must be set}', 'required variable UNSET is missing a value: must be set'],
    ['${EMPTY:?needs a value}', 'required variable EMPTY is missing a value: needs a value'],
    ['${UNSET?missing ${NAME}}', 'required variable UNSET is missing a value: missing web'],
    ['costs $ 5', 'invalid interpolation format "costs $ 5": you may need to escape any $ with another $'],
    ['ends with $', 'invalid interpolation format "ends with $": you may need to escape any $ with another $'],
    ['${}', 'invalid interpolation format "${}": you may need to escape any $ with another $'],
    ['${1A}', 'invalid interpolation format "${1A}": you may need to escape any $ with another $'],
    ['${SET/a/b}', 'invalid interpolation format "${SET/a/b}": you may need to escape any $ with another $'],
    ['${SET', 'invalid interpolation format "${SET": you may need to escape any $ with another $'],
  ];
  for (const [template, message] of errors) {
    it(`${template} fails`, () => {
      expect(() => substitute(template, { lookup })).toThrow(new TemplateError(message));
    });
  }

  it('reports each unset variable it blanks', () => {
    const unset: string[] = [];
    expect(substitute('${A}-$B-${C:-c}', { lookup, onUnset: (n) => unset.push(n) })).toBe('--c');
    expect(unset).toEqual(['A', 'B']);
  });
});

describe('.env syntax', () => {
  const shell: Record<string, string> = { FROM_SHELL: 'shell' };
  const parse = (text: string) => Object.fromEntries(parseDotenv(text, '.env', (k) => shell[k]).map((e) => [e.key, e.value]));

  it('reads the forms Compose documents', () => {
    const text = [
      '# comment',
      '',
      'PLAIN=value',
      'SPACED = spaced value  ',
      'export EXPORTED=yes',
      'COLON: yaml-style',
      'INLINE=a #comment',
      'HASH=a#b',
      "SINGLE='$PLAIN stays \\n raw'",
      'DOUBLE="tab\\there ${PLAIN}"',
      'MULTILINE="one',
      'two"',
      'ESCAPED_QUOTE="say \\"hi\\""',
      'DOLLAR="\\$PLAIN"',
      'REF=${PLAIN}-ref',
      'DEFAULT=${NOPE:-fallback}',
      'SHELL_REF=$FROM_SHELL',
      'FROM_SHELL',
      'NOT_IN_SHELL',
      'EMPTY=',
    ].join('\n');
    expect(parse(text)).toEqual({
      PLAIN: 'value',
      SPACED: 'spaced value',
      EXPORTED: 'yes',
      COLON: 'yaml-style',
      INLINE: 'a',
      HASH: 'a#b',
      SINGLE: '$PLAIN stays \\n raw',
      DOUBLE: 'tab\there value',
      MULTILINE: 'one\ntwo',
      ESCAPED_QUOTE: 'say "hi"',
      DOLLAR: '$PLAIN',
      REF: 'value-ref',
      DEFAULT: 'fallback',
      SHELL_REF: 'shell',
      FROM_SHELL: 'shell',
      EMPTY: '',
    });
  });

  it('lets a later line win', () => {
    expect(parse('A=1\nB=2\nA=3')).toEqual({ A: '3', B: '2' });
  });

  it('names the line of a mistake', () => {
    expect(() => parse('A=1\n\nBAD!KEY=2')).toThrow(/^\.env:3:1: unexpected character "!" in variable name$/);
    expect(() => parse('A="open\nB=2')).toThrow(/^\.env:1:1: unterminated quoted value$/);
  });
});

describe('shell splitting of command strings', () => {
  const table: [string, string[]][] = [
    ['echo hello world', ['echo', 'hello', 'world']],
    ['  spaced   out  ', ['spaced', 'out']],
    ['sh -c "echo $HOME && ls"', ['sh', '-c', 'echo $HOME && ls']],
    ["echo 'single \"quoted\"'", ['echo', 'single "quoted"']],
    ['echo "a \\"b\\" c"', ['echo', 'a "b" c']],
    ['echo a\\ b', ['echo', 'a b']],
    ['echo ""', ['echo', '']],
    ["'a b'c\" d\"", ['a bc d']],
    ['', []],
  ];
  for (const [line, words] of table) {
    it(JSON.stringify(line), () => {
      expect(shellSplit(line)).toEqual({ words });
    });
  }

  it('stops at an unquoted shell operator and says what it dropped', () => {
    expect(shellSplit('echo a && echo b')).toEqual({ words: ['echo', 'a'], dropped: '&& echo b' });
    expect(shellSplit('cat file|wc')).toEqual({ words: ['cat', 'file'], dropped: '|wc' });
  });

  it('rejects unterminated quotes', () => {
    expect(() => shellSplit('echo "open')).toThrow(ShellSplitError);
    expect(() => shellSplit("echo 'open")).toThrow(ShellSplitError);
  });
});

describe('project name', () => {
  const minimal = 'services:\n  web:\n    image: nginx\n';

  it('is the directory name, normalised as Compose does', async () => {
    const dir = project('My_App.v2', { 'compose.yml': minimal });
    const r = await loadCompose({ files: [path.join(dir, 'compose.yml')], env: {} });
    expect(r.project).toBe('my_appv2');
    expect(r.objects.every((o) => o.metadata.namespace === 'my_appv2')).toBe(true);
    expect(normalizeProjectName('-_Hello World!')).toBe('helloworld');
  });

  it('follows the precedence -p > COMPOSE_PROJECT_NAME > name: > directory', async () => {
    const dir = project('dir', { 'compose.yml': `name: from-file\n${minimal}` });
    const files = [path.join(dir, 'compose.yml')];
    expect((await loadCompose({ files, env: {} })).project).toBe('from-file');
    expect((await loadCompose({ files, env: { COMPOSE_PROJECT_NAME: 'from-env' } })).project).toBe('from-env');
    expect((await loadCompose({ files, env: { COMPOSE_PROJECT_NAME: 'from-env' }, projectName: 'explicit' })).project).toBe('explicit');
  });

  it('takes COMPOSE_PROJECT_NAME from .env, and makes the name available to interpolation', async () => {
    const dir = project('dir', {
      '.env': 'COMPOSE_PROJECT_NAME=dotenv-name\n',
      'compose.yml': 'services:\n  web:\n    image: nginx\n    hostname: ${COMPOSE_PROJECT_NAME}-web\n',
    });
    const r = await loadCompose({ files: [path.join(dir, 'compose.yml')], env: {} });
    expect(r.project).toBe('dotenv-name');
    const web = r.objects.find((o) => o.kind === 'Service') as { spec: { template: { spec: { hostname: string } } } };
    expect(web.spec.template.spec.hostname).toBe('dotenv-name-web');
  });

  it('interpolates name: and refuses an invalid explicit name', async () => {
    const dir = project('dir', { 'compose.yml': `name: shop-\${STAGE}\n${minimal}` });
    const files = [path.join(dir, 'compose.yml')];
    expect((await loadCompose({ files, env: { STAGE: 'prod' } })).project).toBe('shop-prod');
    await expect(loadCompose({ files, env: {}, projectName: 'Bad Name' })).rejects.toThrow(
      /^invalid project name "Bad Name" \(from the project name option\)/,
    );
  });
});

describe('environment precedence', () => {
  it('lets the shell environment win over .env, and .env refer to the shell', async () => {
    const dir = project('prec', {
      '.env': 'TAG=from-dotenv\nONLY_DOTENV=${SHELL_ONLY}-seen\n',
      'compose.yml': 'services:\n  web:\n    image: app:${TAG}\n    environment:\n      A: ${ONLY_DOTENV}\n',
    });
    const r = await loadCompose({ files: [path.join(dir, 'compose.yml')], env: { TAG: 'from-shell', SHELL_ONLY: 'shell' } });
    const web = r.objects.find((o) => o.kind === 'Service') as { spec: { template: { spec: { image: string; env: unknown } } } };
    expect(web.spec.template.spec.image).toBe('app:from-shell');
    expect(web.spec.template.spec.env).toEqual([{ name: 'A', value: 'shell-seen' }]);
  });

  it('reads process.env when no environment is given, and only then', async () => {
    const dir = project('penv', { 'compose.yml': 'services:\n  web:\n    image: app:${D2P_TEST_COMPOSE_TAG:-none}\n' });
    const files = [path.join(dir, 'compose.yml')];
    process.env.D2P_TEST_COMPOSE_TAG = 'from-process';
    try {
      const images = async (env?: Record<string, string>) => (await loadCompose({ files, env })).objects.filter((o) => o.kind === 'Image').map((o) => o.metadata.name);
      expect(await images()).toEqual(['app-from-process']);
      expect(await images({})).toEqual(['app-none']);
    } finally {
      delete process.env.D2P_TEST_COMPOSE_TAG;
    }
  });
});

describe('profiles', () => {
  const file = [
    'services:',
    '  app:',
    '    image: app',
    '  debug:',
    '    image: debug',
    '    profiles: [debug]',
    '  tools:',
    '    image: tools',
    '    profiles: [tools, ops]',
  ].join('\n');
  const services = async (opts: { env?: Record<string, string>; profiles?: string[] }) => {
    const dir = project('prof', { 'compose.yml': file });
    const r = await loadCompose({ files: [path.join(dir, 'compose.yml')], env: opts.env ?? {}, profiles: opts.profiles });
    return r.objects.filter((o) => o.kind === 'Service').map((o) => o.metadata.name);
  };

  it('leaves out services whose profiles are not active', async () => {
    expect(await services({})).toEqual(['app']);
  });
  it('takes active profiles from COMPOSE_PROFILES', async () => {
    expect(await services({ env: { COMPOSE_PROFILES: 'ops, debug' } })).toEqual(['app', 'debug', 'tools']);
  });
  it('enables every profile with "*"', async () => {
    expect(await services({ profiles: ['*'] })).toEqual(['app', 'debug', 'tools']);
  });
});

describe('loading', () => {
  it('merges the documents of a multi-document file in order', async () => {
    const dir = project('multi', {
      'compose.yml': 'services:\n  web:\n    image: a\n---\nservices:\n  web:\n    image: b\n',
    });
    const r = await loadCompose({ files: [path.join(dir, 'compose.yml')], env: {} });
    expect(r.objects.filter((o) => o.kind === 'Image').map((o) => o.metadata.name)).toEqual(['b']);
  });

  it('names a missing file', async () => {
    const err = await loadCompose({ files: [path.join(tmp, 'nope', 'compose.yml')], env: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComposeError);
    expect((err as ComposeError).errno).toBe('ENOENT');
    expect((err as ComposeError).message).toBe('compose.yml: cannot read compose file: no such file (ENOENT)');
  });

  it('refuses an empty file', async () => {
    const dir = project('empty', { 'compose.yml': '# nothing\n' });
    await expect(loadCompose({ files: [path.join(dir, 'compose.yml')], env: {} })).rejects.toThrow('compose.yml: empty compose file');
  });

  it('converts the shop example of manifests/examples without a warning', async () => {
    const dir = path.join(tmp, 'shop');
    fs.cpSync(path.join(__dirname, '..', '..', 'manifests', 'examples', 'shop'), dir, { recursive: true });
    const r = await loadCompose({ files: [path.join(dir, 'compose.yml')], env: {} });
    expect(r.warnings).toEqual([]);
    expect(r.project).toBe('shop');
    expect(r.objects.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      'Network/shop_front',
      'Network/shop_back',
      'Volume/shop_orders',
      'Image/127.0.0.1-5000-d2p-busybox-stable',
      'Build/web',
      'Service/web',
      'Service/api',
      'Service/worker',
    ]);
    for (const o of r.objects) expect(() => validateObject(o)).not.toThrow();
  });
});

describe('names', () => {
  it('derives Image object names from references', () => {
    expect(imageObjectName('docker.io/library/busybox:1.36')).toBe('docker.io-library-busybox-1.36');
    expect(imageObjectName('localhost:5000/app@sha256:abc')).toBe('localhost-5000-app-sha256-abc');
  });

  it('recognises Compose files by name or by content', () => {
    expect(isComposeFile('/x/compose.yaml')).toBe(true);
    expect(isComposeFile('docker-compose.yml')).toBe(true);
    expect(isComposeFile('docker-compose.override.yml')).toBe(true);
    expect(isComposeFile('stack.yml', { services: { web: { image: 'nginx' } } })).toBe(true);
    expect(isComposeFile('stack.yml', { apiVersion: 'd2p.dev/v1alpha1', kind: 'Service', services: {} })).toBe(false);
    expect(isComposeFile('stack.yml', { kind: 'List' })).toBe(false);
    expect(isComposeFile('stack.yml', ['services'])).toBe(false);
    expect(isComposeFile('stack.yml')).toBe(false);
  });
});
