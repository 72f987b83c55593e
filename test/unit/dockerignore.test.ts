// .dockerignore against the examples of the Docker reference
// (https://docs.docker.com/build/concepts/context/#dockerignore-files) and the rules of
// moby/patternmatcher: cleaning, globs, `**`, parent-directory matches, `!` exceptions with
// the last match winning, and which ignored directories must still be walked.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compileDockerignore, DockerignoreError, readPatterns } from '../../src/build/dockerignore';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-dockerignore-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Compiles a .dockerignore written to this test's temp context, as a builder reads it. */
function compile(lines: string[]) {
  const file = path.join(tmp, '.dockerignore');
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return compileDockerignore(fs.readFileSync(file, 'utf8'));
}

type Row = [path: string, isDir: boolean, ignored: boolean];

const referenceCases: { name: string; patterns: string[]; rows: Row[] }[] = [
  {
    name: 'the reference example: */temp*, */*/temp*, temp?',
    patterns: ['# comment', '*/temp*', '*/*/temp*', 'temp?'],
    rows: [
      ['somedir/temporary.txt', false, true],
      ['somedir/temp', true, true],
      ['somedir/temp/inside.txt', false, true],
      ['somedir/subdir/temporary.txt', false, true],
      ['temporary.txt', false, false],
      ['a/b/c/temporary.txt', false, false],
      ['tempa', false, true],
      ['tempb', true, true],
      ['temp', false, false],
      ['tempab', false, false],
      ['# comment', false, false],
    ],
  },
  {
    name: '**/*.go matches at any depth, the root included',
    patterns: ['**/*.go'],
    rows: [
      ['main.go', false, true],
      ['cmd/server/main.go', false, true],
      ['go.mod', false, false],
      ['docs/go', true, false],
    ],
  },
  {
    name: '*.md with !README.md',
    patterns: ['*.md', '!README.md'],
    rows: [
      ['CHANGELOG.md', false, true],
      ['README.md', false, false],
      ['docs/guide.md', false, false],
    ],
  },
  {
    name: '*.md, !README*.md, README-secret.md: the last match wins',
    patterns: ['*.md', '!README*.md', 'README-secret.md'],
    rows: [
      ['CONTRIBUTING.md', false, true],
      ['README.md', false, false],
      ['README-dev.md', false, false],
      ['README-secret.md', false, true],
    ],
  },
  {
    name: '*.md, README-secret.md, !README*.md: the exception comes last and keeps every README',
    patterns: ['*.md', 'README-secret.md', '!README*.md'],
    rows: [
      ['CONTRIBUTING.md', false, true],
      ['README-secret.md', false, false],
      ['README.md', false, false],
    ],
  },
];

describe('Docker reference examples', () => {
  for (const c of referenceCases) {
    for (const [relPath, isDir, ignored] of c.rows) {
      it(`${c.name}: ${relPath} ${ignored ? 'ignored' : 'kept'}`, () => {
        expect(compile(c.patterns).ignores(relPath, isDir)).toBe(ignored);
      });
    }
  }
});

describe('pattern rules', () => {
  const rows: [string[], string, boolean][] = [
    // Cleaning: "./", leading and trailing slashes, "..", surrounding blanks.
    [['./build/'], 'build', true],
    [['/build'], 'build/out/app.o', true],
    [['a//b/../c'], 'a/c', true],
    [['  *.log  '], 'server.log', true],
    [['build'], './build/x', true],
    // A pattern matching a directory covers everything below it.
    [['node_modules'], 'node_modules/left-pad/index.js', true],
    [['node_modules'], 'src/node_modules', false],
    [['**/node_modules'], 'src/node_modules/x/y.js', true],
    // `*` and `?` stop at "/"; `**` crosses any number of directories, none included.
    [['*.txt'], 'dir/a.txt', false],
    [['dir/*'], 'dir/sub/a.txt', true],
    [['a/**/z'], 'a/z', true],
    [['a/**/z'], 'a/b/c/z', true],
    [['a/**'], 'a/b/c', true],
    [['a/**'], 'ab', false],
    // filepath.Match classes and escapes.
    [['file[0-9].txt'], 'file7.txt', true],
    [['file[0-9].txt'], 'filex.txt', false],
    [['file[^0-9].txt'], 'filex.txt', true],
    [['[ab]c'], 'bc', true],
    [['\\*.txt'], '*.txt', true],
    [['\\*.txt'], 'a.txt', false],
    // Regular-expression characters are literal.
    [['a+b.(c)'], 'a+b.(c)', true],
    [['a.b'], 'axb', false],
    // Only a line starting with "#" is a comment.
    [[' # kept'], '# kept', true],
    // An exception can re-include below an ignored directory.
    [['vendor', '!vendor/keep.txt'], 'vendor/keep.txt', false],
    [['vendor', '!vendor/keep.txt'], 'vendor/drop.txt', true],
    // But an ignored parent is not undone by re-including a child pattern that does not match.
    [['logs', '!logs/*.keep'], 'logs/sub/a.keep', true],
  ];
  for (const [patterns, relPath, ignored] of rows) {
    it(`${JSON.stringify(patterns)}: ${relPath} ${ignored ? 'ignored' : 'kept'}`, () => {
      expect(compile(patterns).ignores(relPath, false)).toBe(ignored);
    });
  }

  it('reads patterns with their line numbers, cleaned, exceptions flagged', () => {
    expect(readPatterns('# c\n\n./a/\n! /b/c/ \n**/*.go\n')).toEqual([
      { pattern: 'a', exclusion: false, line: 3 },
      { pattern: 'b/c', exclusion: true, line: 4 },
      { pattern: '**/*.go', exclusion: false, line: 5 },
    ]);
  });

  it('rejects an exclusion without a pattern and an unterminated class, naming the line', () => {
    expect(() => compileDockerignore('a\n!\n')).toThrow(new DockerignoreError(2, '!', 'an exclusion needs a pattern after "!"'));
    expect(() => compileDockerignore('file[0-9\n')).toThrow('.dockerignore:1: invalid pattern "file[0-9": unterminated character class "["');
  });

  it('ignores nothing without patterns', () => {
    const none = compile(['# only a comment']);
    expect(none.ignores('Dockerfile', false)).toBe(false);
    expect(none.patterns).toEqual([]);
  });
});

describe('walking ignored directories', () => {
  it('skips an ignored directory when no exception exists', () => {
    const ig = compile(['build']);
    expect(ig.ignores('build', true)).toBe(true);
    expect(ig.mustTraverse('build')).toBe(false);
  });

  it('enters an ignored directory an exception reaches into', () => {
    const ig = compile(['vendor', '!vendor/keep/*.txt', '!docs/*/README.md']);
    expect(ig.mustTraverse('vendor')).toBe(true);
    expect(ig.mustTraverse('vendor/keep')).toBe(true);
    expect(ig.mustTraverse('vendor/other')).toBe(false);
    expect(ig.mustTraverse('docs/api')).toBe(true);
    expect(ig.mustTraverse('src')).toBe(false);
  });

  it('enters every directory when an exception starts with **, and keeps what it matches', () => {
    const ig = compile(['*', '!**/*.keep']);
    expect(ig.ignores('any', true)).toBe(true);
    expect(ig.mustTraverse('any/where')).toBe(true);
    expect(ig.ignores('any/where/x.keep', false)).toBe(false);
    expect(ig.ignores('any/where/x.txt', false)).toBe(true);
  });
});
