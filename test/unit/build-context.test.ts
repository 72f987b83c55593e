// The build context after .dockerignore, COPY source matching, and content hashes.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BuildError } from '../../src/build/builder-errors';
import { ContentHasher, contextPath, matchSources, walkContext } from '../../src/build/context';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-context-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function files(map: Record<string, string>): void {
  for (const [rel, content] of Object.entries(map)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), content);
  }
}

const kept = (opts = {}) => [...walkContext(dir, opts).entries.keys()].filter((k) => k !== '.');

describe('walkContext', () => {
  it('applies .dockerignore with exceptions, and always keeps the Dockerfile and .dockerignore', () => {
    files({
      Dockerfile: 'FROM scratch\n',
      '.dockerignore': '*.log\nDockerfile\nbuild/\n!build/keep.txt\nnode_modules\n',
      'app.js': '',
      'debug.log': '',
      'keep.log': '',
      'build/out.o': '',
      'build/keep.txt': '',
      'node_modules/x/index.js': '',
      'src/a.ts': '',
    });
    expect(kept({ dockerfile: path.join(dir, 'Dockerfile') }).sort()).toEqual(['.dockerignore', 'Dockerfile', 'app.js', 'build', 'build/keep.txt', 'src', 'src/a.ts']);
  });

  it('lists parents before children', () => {
    files({ 'a/b/c.txt': '', 'a/d.txt': '' });
    const keys = kept();
    expect(keys.indexOf('a')).toBeLessThan(keys.indexOf('a/b'));
    expect(keys.indexOf('a/b')).toBeLessThan(keys.indexOf('a/b/c.txt'));
  });

  it('prefers <Dockerfile>.dockerignore beside the Dockerfile', () => {
    files({ 'web.Dockerfile': '', 'web.Dockerfile.dockerignore': 'secret\n', '.dockerignore': '', secret: '', other: '' });
    expect(kept({ dockerfile: path.join(dir, 'web.Dockerfile') })).not.toContain('secret');
    expect(kept()).toContain('secret');
  });

  it('refuses a context that is not a directory', () => {
    expect(() => walkContext(path.join(dir, 'missing'))).toThrow(BuildError);
  });
});

describe('matchSources', () => {
  it('matches globs per path segment and refuses what is missing or outside', () => {
    files({ 'a.txt': '', 'b.txt': '', 'sub/c.txt': '', 'x.md': '' });
    const ctx = walkContext(dir);
    expect(matchSources(ctx, '*.txt')).toEqual(['a.txt', 'b.txt']);
    expect(matchSources(ctx, 'sub/*.txt')).toEqual(['sub/c.txt']);
    expect(matchSources(ctx, './x.md')).toEqual(['x.md']);
    expect(matchSources(ctx, '/')).toEqual(['.']);
    expect(() => matchSources(ctx, 'nope.txt')).toThrow(/not found in the build context/);
    expect(() => matchSources(ctx, '*.go')).toThrow(/no source files were specified/);
    expect(() => contextPath('../etc/passwd')).toThrow(/outside the build context/);
  });

  it('an ignored file cannot be copied, even by name', () => {
    files({ '.dockerignore': 'secret.txt\n', 'secret.txt': '' });
    expect(() => matchSources(walkContext(dir), 'secret.txt')).toThrow(/excluded by \.dockerignore/);
  });
});

describe('ContentHasher', () => {
  it('changes with content and mode, not with mtime', () => {
    files({ 'src/a.txt': 'one', 'src/b.txt': 'two' });
    const hash = () => new ContentHasher(walkContext(dir)).hashSelection(['src']);
    const first = hash();
    fs.utimesSync(path.join(dir, 'src/a.txt'), new Date(0), new Date(0));
    expect(hash()).toBe(first);
    fs.chmodSync(path.join(dir, 'src/a.txt'), 0o600);
    const moded = hash();
    expect(moded).not.toBe(first);
    fs.writeFileSync(path.join(dir, 'src/b.txt'), 'three');
    expect(hash()).not.toBe(moded);
  });

  it('ignored files do not take part', () => {
    files({ 'src/a.txt': 'one', 'src/debug.log': 'x' });
    fs.writeFileSync(path.join(dir, '.dockerignore'), '**/*.log\n');
    const before = new ContentHasher(walkContext(dir)).hashSelection(['src']);
    fs.writeFileSync(path.join(dir, 'src/debug.log'), 'changed');
    expect(new ContentHasher(walkContext(dir)).hashSelection(['src'])).toBe(before);
  });
});
