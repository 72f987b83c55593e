// The Dockerfile parser against real-world-shaped Dockerfiles, each with its expected
// instruction list (test/fixtures/dockerfiles/<name>/expected.json, hand-checked against
// the Dockerfile reference; `original` is left out of the JSON and checked here), and
// malformed Dockerfiles with the file:line message each must give.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DockerfileError, parseDockerfile, resolveStages } from '../../src/build/dockerfile';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'dockerfiles');
const cases = fs.readdirSync(FIXTURES).filter((n) => fs.statSync(path.join(FIXTURES, n)).isDirectory()).sort();

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-dockerfile-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The parse result as expected.json spells it: no `original`, stage name null when absent. */
function comparable(parsed: ReturnType<typeof parseDockerfile>): unknown {
  const json = JSON.parse(JSON.stringify(parsed, (k, v) => (k === 'original' ? undefined : v)));
  return {
    directives: json.directives,
    args: json.args,
    warnings: json.warnings,
    stages: json.stages.map((s: Record<string, unknown>) => ({
      name: s.name ?? null,
      index: s.index,
      line: s.line,
      from: s.from,
      instructions: s.instructions,
    })),
  };
}

describe('real-world Dockerfiles', () => {
  it('has the fixture set the issue asks for', () => {
    expect(cases).toEqual(['arg-scoping', 'go-multistage', 'node-app', 'onbuild-healthcheck-forms', 'python-heredoc', 'windows-escape']);
  });

  for (const name of cases) {
    it(`${name}: parses to expected.json`, () => {
      const copy = path.join(tmp, 'Dockerfile');
      fs.copyFileSync(path.join(FIXTURES, name, 'Dockerfile'), copy);
      const text = fs.readFileSync(copy, 'utf8');
      const parsed = parseDockerfile(text, { file: 'Dockerfile' });
      const expected = JSON.parse(fs.readFileSync(path.join(FIXTURES, name, 'expected.json'), 'utf8'));
      expect(comparable(parsed)).toEqual(expected);
      // Each instruction's `original` is its own text: it starts with its instruction name.
      for (const stage of parsed.stages) {
        expect(stage.fromInstr.original.toUpperCase().startsWith('FROM')).toBe(true);
        for (const instr of stage.instructions) expect(instr.original.toUpperCase().startsWith(instr.kind)).toBe(true);
      }
    });
  }

  it('keeps the joined continuation line as original', () => {
    const parsed = parseDockerfile(fs.readFileSync(path.join(FIXTURES, 'node-app', 'Dockerfile'), 'utf8'), { file: 'Dockerfile' });
    const run = parsed.stages[0]?.instructions.find((i) => i.kind === 'RUN');
    expect(run?.original).toBe('RUN npm ci --omit=dev &&     npm cache clean --force');
  });

  it('go-multistage: FROM --platform=$BUILDPLATFORM, TARGETARCH in RUN, COPY --from=build', () => {
    const parsed = parseDockerfile(fs.readFileSync(path.join(FIXTURES, 'go-multistage', 'Dockerfile'), 'utf8'), { file: 'Dockerfile' });
    const build = resolveStages(parsed, { platform: 'linux/arm64', buildPlatform: 'linux/amd64' });
    expect(build.stages.map((s) => s.index)).toEqual([0, 1]);
    expect(build.stages[0]?.from).toEqual({ image: 'golang:1.22', platform: 'linux/amd64', isScratch: false });
    const run = build.stages[0]?.instructions[5];
    expect(run?.kind).toBe('RUN');
    expect(run?.effectiveArgs).toEqual({ TARGETOS: 'linux', TARGETARCH: 'arm64' });
    const copy = build.target.instructions[0];
    expect(copy?.kind === 'COPY' && copy.fromStage).toBe(0);
    expect(build.target.from.isScratch).toBe(true);
  });

  it('python-heredoc: a COPY heredoc body is expanded, quotes kept', () => {
    const parsed = parseDockerfile(fs.readFileSync(path.join(FIXTURES, 'python-heredoc', 'Dockerfile'), 'utf8'), { file: 'Dockerfile' });
    const [stage] = resolveStages(parsed).stages;
    const copy = stage?.instructions.find((i) => i.kind === 'COPY');
    expect(copy?.kind === 'COPY' && copy.files).toEqual([{ name: 'EOF', content: '[server]\nport = 8000\n', expand: true }]);
  });

  it('windows-escape: the SHELL in effect shapes shell-form RUN and CMD', () => {
    const parsed = parseDockerfile(fs.readFileSync(path.join(FIXTURES, 'windows-escape', 'Dockerfile'), 'utf8'), { file: 'Dockerfile' });
    const { target } = resolveStages(parsed);
    expect(target.shell).toEqual(['powershell', '-Command', "$ErrorActionPreference = 'Stop';"]);
    const workdir = target.instructions.find((i) => i.kind === 'WORKDIR');
    // With the backtick as escape character a backslash is an ordinary character.
    expect(workdir?.kind === 'WORKDIR' && workdir.path).toBe('C:\\app');
  });
});

describe('parser details', () => {
  const parse = (text: string) => parseDockerfile(text, { file: 'Dockerfile' });
  const only = (text: string) => {
    const instr = parse(text).stages[0]?.instructions[0];
    if (!instr) throw new Error('no instruction');
    return instr;
  };

  it('takes directives only at the very top', () => {
    expect(parse('# syntax=docker/dockerfile:1.7\n# check=skip=all\nFROM a\n').directives).toEqual({ syntax: 'docker/dockerfile:1.7', check: 'skip=all', escape: '\\' });
    // After a blank line or another comment, "# escape=`" is only a comment.
    expect(parse('\n# escape=`\nFROM a\n').directives.escape).toBe('\\');
    expect(parse('# hello\n# escape=`\nFROM a\n').directives.escape).toBe('\\');
  });

  it('treats # inside a line as literal, and indented comments as comments', () => {
    expect(only('FROM a\n   # indented comment\nRUN echo a#b # c\n')).toMatchObject({ kind: 'RUN', args: ['echo a#b # c'], line: 3 });
  });

  it('skips empty continuation lines with a warning', () => {
    const parsed = parse('FROM a\nRUN echo a \\\n\n  b\n');
    expect(parsed.stages[0]?.instructions[0]).toMatchObject({ args: ['echo a   b'], line: 2, endLine: 4 });
    expect(parsed.warnings).toEqual(['Dockerfile:2: empty continuation line found in: RUN echo a   b']);
  });

  it('does not continue a line ending in an escaped escape character', () => {
    const parsed = parse('FROM a\nRUN echo \\\\\nRUN echo b\n');
    expect(parsed.stages[0]?.instructions.map((i) => i.kind === 'RUN' && i.args[0])).toEqual(['echo \\\\', 'echo b']);
  });

  it('reads CRLF (Windows) line endings, continuations included', () => {
    expect(only('FROM a\r\nRUN echo a \\\r\n  b\r\n')).toMatchObject({ kind: 'RUN', args: ['echo a   b'], line: 2, endLine: 3 });
  });

  it('names instructions case-insensitively and strips a BOM', () => {
    expect(only('\ufefffrom a\nwOrKdIr /x\n')).toMatchObject({ kind: 'WORKDIR', path: '/x' });
  });

  it('parses several heredocs on one COPY, and <<- strips leading tabs', () => {
    const copy = only('FROM a\nCOPY <<one <<-two /dst/\n1\none\n\t2\n\ttwo\n');
    expect(copy).toMatchObject({
      kind: 'COPY', dest: '/dst/', sources: [], endLine: 6,
      files: [{ name: 'one', content: '1\n', expand: true }, { name: 'two', content: '2\n', expand: true }],
    });
  });

  it('does not look for heredocs in the JSON form', () => {
    expect(only('FROM a\nRUN ["cat", "<<EOF"]\n')).toMatchObject({ form: 'exec', args: ['cat', '<<EOF'], heredocs: [] });
  });

  it('parses RUN flags: several --mount, --network, --security', () => {
    const run = only('FROM a\nRUN --mount=type=bind,from=build,source=/out,target=/in --mount=type=secret,id=tok --network=none --security=insecure make\n');
    expect(run).toMatchObject({
      kind: 'RUN', args: ['make'], network: 'none', security: 'insecure',
      mounts: [
        { type: 'bind', from: 'build', source: '/out', target: '/in', readonly: true },
        { type: 'secret', readonly: true, options: { type: 'secret', id: 'tok' } },
      ],
    });
  });

  it('parses COPY flags and keeps globs as patterns', () => {
    expect(only('FROM a\nCOPY --from=img:1 --chown=1:2 --chmod=0755 --link --parents --exclude=*.md src/*.go ./x/\n')).toMatchObject({
      kind: 'COPY', from: 'img:1', chown: '1:2', chmod: '0755', link: true, parents: true, exclude: ['*.md'], sources: ['src/*.go'], dest: './x/',
    });
  });

  it('stores ONBUILD with its trigger parsed, heredocs included', () => {
    expect(only('FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n')).toMatchObject({
      kind: 'ONBUILD', expression: 'RUN <<EOF', endLine: 4, trigger: { kind: 'RUN', command: ['/bin/sh', '-c', 'echo hi\n'] },
    });
  });

  it('checks the requested target at parse time', () => {
    expect(() => parseDockerfile('FROM a AS one\n', { file: 'df', target: 'two' })).toThrow('df: target stage "two" could not be found (stages: one)');
  });
});

describe('malformed Dockerfiles', () => {
  const table: [string, string, string][] = [
    ['unknown instruction', 'FROM alpine\nRUNN echo\n', 'Dockerfile:2: unknown instruction: RUNN'],
    ['instruction before FROM', '# c\nRUN echo\n', 'Dockerfile:2: no build stage in current context: RUN before the first FROM (only ARG may come before FROM)'],
    ['empty file', '# just a comment\n\n', 'Dockerfile: file with no instructions'],
    ['no FROM', 'ARG A=1\nARG B\n', 'Dockerfile:2: FROM missing: a Dockerfile needs at least one FROM instruction'],
    ['FROM arity', 'FROM a b\n', 'Dockerfile:1: FROM requires either one or three arguments: FROM [--platform=<platform>] <image> [AS <name>]'],
    ['FROM without AS', 'FROM a TO b\n', 'Dockerfile:1: FROM: second argument should be AS, not "TO"'],
    ['bad stage name', 'FROM a AS 1st\n', 'Dockerfile:1: invalid name for build stage: "1st", name can\'t start with a number or contain symbols'],
    ['duplicate stage', 'FROM a AS x\nFROM b AS X\n', 'Dockerfile:2: duplicate stage name "x" (already used by the FROM at line 1)'],
    ['SHELL not JSON', 'FROM a\nSHELL /bin/bash -c\n', 'Dockerfile:2: SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/bash", "-c"]'],
    ['JSON of non-strings', 'FROM a\nCMD ["a", 1]\n', 'Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only'],
    ['unterminated heredoc', 'FROM a\nRUN <<EOF\necho hi\n', 'Dockerfile:2: unterminated heredoc EOF (no line "EOF" before the end of the file)'],
    ['unknown flag', 'FROM a\nCOPY --frm=x a b\n', 'Dockerfile:2: unknown flag: --frm (COPY accepts --from, --chown, --chmod, --link, --parents, --exclude)'],
    ['ADD --from', 'FROM a\nADD --from=x https://example.com/f /f\n', 'Dockerfile:2: unknown flag: --from (ADD cannot copy from a stage or image; use COPY --from)'],
    ['COPY of a URL', 'FROM a\nCOPY https://example.com/f /f\n', "Dockerfile:2: source can't be a URL for COPY: https://example.com/f (use ADD to download)"],
    ['COPY without dest', 'FROM a\nCOPY onlyone\n', 'Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined.'],
    ['duplicate flag', 'FROM a\nCOPY --from=a --from=b x y\n', 'Dockerfile:2: duplicate flag specified: --from'],
    ['flag without value', 'FROM a\nCOPY --chown x y\n', 'Dockerfile:2: missing a value on flag: --chown'],
    ['flag on WORKDIR', 'FROM a\nWORKDIR --x=1 /a\n', 'Dockerfile:2: unknown flag: --x (WORKDIR accepts no flags)'],
    ['ENV without args', 'FROM a\nENV\n', 'Dockerfile:2: ENV requires at least one argument'],
    ['ENV missing =', 'FROM a\nENV A=1 B\n', 'Dockerfile:2: syntax error - can\'t find = in "B". Must be of the form: name=value'],
    ['LABEL legacy with one word', 'FROM a\nLABEL a\n', 'Dockerfile:2: LABEL must have two arguments (LABEL key value, or LABEL key=value …)'],
    ['ARG blank name', 'FROM a\nARG =x\n', 'Dockerfile:2: ARG names can not be blank (in "=x")'],
    ['ARG bad name', 'FROM a\nARG 9lives\n', 'Dockerfile:2: invalid ARG name "9lives": use letters, digits and _, not starting with a digit'],
    ['WORKDIR empty', 'FROM a\nWORKDIR\n', 'Dockerfile:2: WORKDIR requires exactly one argument'],
    ['HEALTHCHECK type', 'FROM a\nHEALTHCHECK WHAT\n', 'Dockerfile:2: unknown type "WHAT" in HEALTHCHECK (try CMD)'],
    ['HEALTHCHECK duration', 'FROM a\nHEALTHCHECK --interval=abc CMD true\n', 'Dockerfile:2: HEALTHCHECK --interval: invalid duration "abc": expected a number at "abc"'],
    ['HEALTHCHECK NONE args', 'FROM a\nHEALTHCHECK NONE now\n', 'Dockerfile:2: HEALTHCHECK NONE takes no arguments'],
    ['ONBUILD ONBUILD', 'FROM a\nONBUILD ONBUILD RUN x\n', "Dockerfile:2: chaining ONBUILD via 'ONBUILD ONBUILD' isn't allowed"],
    ['ONBUILD FROM', 'FROM a\nONBUILD FROM b\n', "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"],
    ['bad escape directive', '# escape=x\nFROM a\n', "Dockerfile:1: invalid escape token 'x' does not match ` or \\"],
    ['repeated directive', '# syntax=a\n# syntax=b\nFROM a\n', 'Dockerfile:2: only one syntax parser directive can be used'],
    ['RUN --network', 'FROM a\nRUN --network=bogus true\n', 'Dockerfile:2: unsupported network mode "bogus" for RUN --network (default, none or host)'],
    ['cache mount without target', 'FROM a\nRUN --mount=type=cache true\n', 'Dockerfile:2: --mount=type=cache: a cache mount needs target='],
    ['mount key', 'FROM a\nRUN --mount=type=bind,target=/x,colour=red true\n', "Dockerfile:2: --mount=type=bind,target=/x,colour=red: unexpected key 'colour'"],
    ['error after a continuation', 'FROM a\nRUN echo \\\n  hi\nBAD x\n', 'Dockerfile:4: unknown instruction: BAD'],
    ['error after a heredoc', 'FROM a\nRUN <<EOF\nBAD\nEOF\nNOPE\n', 'Dockerfile:5: unknown instruction: NOPE'],
  ];
  for (const [name, text, message] of table) {
    it(name, () => {
      let caught: unknown;
      try {
        parseDockerfile(text, { file: 'Dockerfile' });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(DockerfileError);
      expect((caught as DockerfileError).message).toBe(message);
      expect((caught as DockerfileError).code).toBe('D2P_DOCKERFILE_INVALID');
    });
  }

  const resolveTable: [string, string, string, string?][] = [
    ['required variable', 'FROM a\nENV X=${Y:?required}\n', 'Dockerfile:2: Y: required'],
    ['unclosed brace', 'FROM a\nWORKDIR ${X\n', "Dockerfile:2: syntax error: missing '}'"],
    ['bad substitution', 'FROM a\nUSER ${}\n', 'Dockerfile:2: syntax error: bad substitution'],
    ['later stage in --from', 'FROM a AS one\nCOPY --from=two x y\nFROM b AS two\n', 'Dockerfile:2: COPY --from=two: stage "two" (line 3) is not defined before this one; a stage can only use earlier stages', 'one'],
    ['stage index not earlier', 'FROM a\nCOPY --from=0 x y\n', 'Dockerfile:2: COPY --from=0: stage index 0 is not an earlier stage (this is stage 0)'],
    ['blank base', 'ARG IMG\nFROM $IMG\n', 'Dockerfile:2: base name ($IMG) should not be blank'],
    ['EXPOSE protocol', 'FROM a\nARG P=80/foo\nEXPOSE $P\n', 'Dockerfile:3: EXPOSE: invalid protocol "foo" in "80/foo" (tcp, udp or sctp)'],
    ['unknown target', 'FROM a AS one\n', 'Dockerfile: target stage "nope" could not be found (stages: one)', 'nope'],
  ];
  for (const [name, text, message, target] of resolveTable) {
    it(`resolve: ${name}`, () => {
      const parsed = parseDockerfile(text, { file: 'Dockerfile' });
      expect(() => resolveStages(parsed, { target })).toThrow(DockerfileError);
      expect(() => resolveStages(parsed, { target })).toThrow(message);
    });
  }
});
