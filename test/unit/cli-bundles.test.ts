// bin/d2p runs a command from its bundle (dist/cli/<word>.js, hack/build-cli-bundles.js)
// and everything else from dist/src/cli/main.js. A bundle must hold every module of ours
// its command loads: one loaded from dist beside it would be a second copy of that module.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMAND_NAMES, LIFECYCLE_ACTIONS } from '../../src/cli/main';

const repo = path.resolve(__dirname, '../..');
const bin = path.join(repo, 'bin', 'd2p');
const bundles = path.join(repo, 'dist', 'cli');
let work: string;
let recorder: string;

beforeAll(() => {
  if (!fs.existsSync(path.join(repo, 'dist', 'src', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-cli-bundles-'));
  // Preloaded into bin/d2p: writes the file of every module node loaded, at exit.
  recorder = path.join(work, 'record-modules.js');
  fs.writeFileSync(
    recorder,
    `const out = process.env.D2P_TEST_MODULES;
process.on('exit', () => require('node:fs').writeFileSync(out, Object.keys(require.cache).join('\\n')));
`,
  );
});

afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true });
});

/** Runs `node bin/d2p ARGS` and returns its output and the files of the modules it loaded. */
function d2p(args: string[]): { status: number | null; stdout: string; stderr: string; modules: string[] } {
  const list = path.join(work, `modules-${args.join('-').replace(/[^a-z-]/g, '')}.txt`);
  const r = spawnSync(process.execPath, ['-r', recorder, bin, ...args], {
    encoding: 'utf8',
    env: { ...process.env, D2P_TEST_MODULES: list, D2P_ROOT: path.join(work, 'root'), D2P_SOCKET: path.join(work, 'none.sock') },
  });
  const modules = fs.existsSync(list) ? fs.readFileSync(list, 'utf8').split('\n').filter(Boolean) : [];
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, modules };
}

const ours = (modules: string[]) => modules.filter((m) => m.startsWith(path.join(repo, 'dist') + path.sep));

/** The words bin/d2p finds a bundle for: dist/cli/<word>.js. */
const bundledWords = fs.existsSync(bundles) ? fs.readdirSync(bundles).filter((f) => /^[a-z]+\.js$/.test(f)).map((f) => f.slice(0, -3)) : [];

describe('command bundles', () => {
  it('exist for the commands people run most, and each lifecycle verb', () => {
    for (const word of ['run', 'exec', 'ps', 'logs', 'get', 'describe', 'down', 'stats', 'version', ...LIFECYCLE_ACTIONS]) expect(bundledWords).toContain(word);
    // Every bundle is a command of the CLI: none is left from a command since removed.
    const words = new Set<string>([...COMMAND_NAMES, ...LIFECYCLE_ACTIONS]);
    expect(bundledWords.filter((w) => !words.has(w))).toEqual([]);
  });

  it.each(bundledWords.map((w) => [w]))('%s runs from its bundle alone, without a module of dist/src', (word) => {
    const r = d2p([word, '--help']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`Usage: d2p ${word} `);
    const realBundle = fs.realpathSync(path.join(bundles, `${word}.js`));
    expect(ours(r.modules)).toEqual([realBundle]);
  });

  it('converts a Compose file from its bundle, with the validators generated in dist', () => {
    const file = path.join(work, 'compose.yml');
    fs.writeFileSync(file, 'name: shop\nservices:\n  web:\n    image: busybox\n    deploy:\n      replicas: 2\n');
    const r = d2p(['convert', '-f', file, '-o', 'json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).items.find((o: { kind: string }) => o.kind === 'Service')).toMatchObject({ metadata: { name: 'web', namespace: 'shop' }, spec: { replicas: 2 } });
    // The generated validators come from dist/src/api through the bundle's link, with the
    // format checks they require beside them (stateless functions; the bundle's own copies
    // serve the rest of the command).
    const api = path.join(repo, 'dist', 'src', 'api');
    expect(ours(r.modules).sort()).toEqual([path.join(bundles, 'convert.js'), ...['duration.js', 'formats.js', 'validators.generated.js'].map((f) => path.join(api, f))].sort());
  });

  it("keeps V8's code cache of a bundle, named after its file: made by one run, used by the next", () => {
    const file = path.join(bundles, 'port.js');
    const stat = fs.statSync(file);
    const cache = path.join(bundles, '.v8-cache', `port-${stat.ino}-${stat.size}-${Math.trunc(stat.mtimeMs)}`);
    fs.rmSync(cache, { force: true });
    expect(d2p(['port', '--help']).status).toBe(0);
    const made = fs.statSync(cache);
    expect(made.size).toBeGreaterThan(1000);
    // Accepted by the next run, which would write it again had V8 refused it.
    expect(d2p(['port', '--help']).status).toBe(0);
    expect(fs.statSync(cache).mtimeMs).toBe(made.mtimeMs);
  });

  it('runs a line that starts with an option, and the daemon, from dist/src/cli/main.js', () => {
    const r = d2p(['--debug', 'version']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^d2p version /);
    expect(ours(r.modules)).toContain(path.join(repo, 'dist', 'src', 'cli', 'main.js'));
    expect(bundledWords).not.toContain('daemon');
  });
});
