// Variable substitution as Docker applies it, ARG scoping across global scope and stages,
// and which stages a target needs, in which order.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  parseDockerfile,
  processWord,
  processWords,
  resolveStages,
  type ResolveOptions,
  type ResolvedBuild,
  type ResolvedInstruction,
} from '../../src/build/dockerfile';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-dockerfile-subst-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Writes the Dockerfile to this test's temp dir, reads it back, parses and resolves it. */
function build(text: string, opts: ResolveOptions = {}): ResolvedBuild {
  const file = path.join(tmp, 'Dockerfile');
  fs.writeFileSync(file, text);
  return resolveStages(parseDockerfile(fs.readFileSync(file, 'utf8'), { file: 'Dockerfile' }), { buildPlatform: 'linux/amd64', ...opts });
}

function instr(result: ResolvedBuild, kind: ResolvedInstruction['kind'], nth = 0, stage = result.target): ResolvedInstruction {
  const found = stage.instructions.filter((i) => i.kind === kind)[nth];
  if (!found) throw new Error(`no ${kind} #${nth} in stage ${stage.index}`);
  return found;
}

function labels(result: ResolvedBuild): Record<string, string> {
  const out: Record<string, string> = {};
  for (const i of result.target.instructions) if (i.kind === 'LABEL') for (const p of i.pairs) out[p.key] = p.value;
  return out;
}

describe('substitution', () => {
  const vars: Record<string, string> = { SET: 'value', EMPTY: '', SPACE: 'a b', P: '/a/b/c.tar.gz' };
  const lookup = (name: string) => vars[name];
  const table: [string, string][] = [
    ['$SET', 'value'],
    ['${SET}', 'value'],
    ['pre${SET}post', 'prevaluepost'],
    ['$SET.txt', 'value.txt'],
    ['$SET-1', 'value-1'],
    ['$UNSET', ''],
    ['${UNSET}', ''],
    ['${UNSET:-def}', 'def'],
    ['${EMPTY:-def}', 'def'],
    ['${SET:-def}', 'value'],
    ['${UNSET-def}', 'def'],
    ['${EMPTY-def}', ''],
    ['${SET:+alt}', 'alt'],
    ['${EMPTY:+alt}', ''],
    ['${UNSET:+alt}', ''],
    ['${EMPTY+alt}', 'alt'],
    ['${UNSET+alt}', ''],
    ['${UNSET:-${SET}}', 'value'],
    ['${UNSET:-$SET-x}', 'value-x'],
    ['${SET:+[$SET]}', '[value]'],
    ['${P#*/}', 'a/b/c.tar.gz'],
    ['${P##*/}', 'c.tar.gz'],
    ['${P%.*}', '/a/b/c.tar'],
    ['${P%%.*}', '/a/b/c'],
    ['\\$SET', '$SET'],
    ['\\${SET}', '${SET}'],
    ["'$SET'", '$SET'],
    ['"$SET"', 'value'],
    ['"\\$SET"', '$SET'],
    ['"a \\"q\\" b"', 'a "q" b'],
    ['"back\\slash"', 'back\\slash'],
    ['"$SPACE"', 'a b'],
    ['a\\ b', 'a b'],
    ['$', '$'],
    ['cost: 5$', 'cost: 5$'],
    ['$1', ''],
    ['no variables', 'no variables'],
  ];
  for (const [input, output] of table) {
    it(`${input} → ${JSON.stringify(output)}`, () => {
      expect(processWord(input, lookup, { escape: '\\' })).toBe(output);
    });
  }

  it('uses the backtick as escape under # escape=`', () => {
    expect(processWord('`$SET C:\\dir', lookup, { escape: '`' })).toBe('$SET C:\\dir');
  });

  it('splits words after expansion, not inside quotes', () => {
    expect(processWords('$SPACE c', lookup, { escape: '\\' })).toEqual(['a', 'b', 'c']);
    expect(processWords('"$SPACE" c', lookup, { escape: '\\' })).toEqual(['a b', 'c']);
  });

  it('fails on ${VAR:?} and ${VAR?} with the message', () => {
    expect(() => processWord('${EMPTY:?needed}', lookup, { escape: '\\' })).toThrow('EMPTY: needed');
    expect(() => processWord('${UNSET?}', lookup, { escape: '\\' })).toThrow('UNSET: is not allowed to be unset');
    expect(processWord('${EMPTY?}', lookup, { escape: '\\' })).toBe('');
  });

  it('substitutes only where Docker does: not in RUN, CMD, ENTRYPOINT or ONBUILD', () => {
    const result = build('FROM a\nENV X=1\nRUN echo $X\nCMD echo $X\nENTRYPOINT ["echo", "$X"]\nONBUILD WORKDIR $X\nWORKDIR /w$X\nUSER u$X\nSTOPSIGNAL SIG$X\nVOLUME /v$X\nEXPOSE 8$X\nLABEL l=$X\nCOPY s$X d$X\n');
    const t = result.target.instructions;
    expect(t.map((i) => i.kind)).toEqual(['ENV', 'RUN', 'CMD', 'ENTRYPOINT', 'ONBUILD', 'WORKDIR', 'USER', 'STOPSIGNAL', 'VOLUME', 'EXPOSE', 'LABEL', 'COPY']);
    expect(instr(result, 'RUN')).toMatchObject({ command: ['/bin/sh', '-c', 'echo $X'] });
    expect(instr(result, 'CMD')).toMatchObject({ command: ['/bin/sh', '-c', 'echo $X'] });
    expect(instr(result, 'ENTRYPOINT')).toMatchObject({ command: ['echo', '$X'] });
    expect(instr(result, 'ONBUILD')).toMatchObject({ expression: 'WORKDIR $X' });
    expect(instr(result, 'WORKDIR')).toMatchObject({ path: '/w1' });
    expect(instr(result, 'USER')).toMatchObject({ user: 'u1' });
    expect(instr(result, 'STOPSIGNAL')).toMatchObject({ signal: 'SIG1' });
    expect(instr(result, 'VOLUME')).toMatchObject({ paths: ['/v1'] });
    expect(instr(result, 'EXPOSE')).toMatchObject({ ports: ['81/tcp'] });
    expect(labels(result)).toEqual({ l: '1' });
    expect(instr(result, 'COPY')).toMatchObject({ sources: ['s1'], dest: 'd1' });
  });

  it('lets one instruction see the variables as they were before it', () => {
    const result = build('FROM a\nENV A=1\nENV A=2 B=$A\nLABEL a=$A b=$B\n');
    expect(labels(result)).toEqual({ a: '2', b: '1' });
  });

  it('removes quotes in ENV and LABEL values, keeps them in RUN', () => {
    const result = build('FROM a\nENV G="hello world" H=\'$G\'\nLABEL "my key"="x y"\nRUN echo "$G"\n');
    expect(instr(result, 'ENV')).toMatchObject({ pairs: [{ key: 'G', value: 'hello world' }, { key: 'H', value: '$G' }] });
    expect(labels(result)).toEqual({ 'my key': 'x y' });
    expect(instr(result, 'RUN')).toMatchObject({ args: ['echo "$G"'] });
  });

  it('splits EXPOSE after substitution and normalises ports', () => {
    const result = build('FROM a\nARG PORTS="80 53/UDP"\nEXPOSE $PORTS 9000-9002/tcp\n');
    expect(instr(result, 'EXPOSE')).toMatchObject({ ports: ['80/tcp', '53/udp', '9000-9002/tcp'] });
  });

  it('substitutes base image ENV given by imageEnv', () => {
    const result = build('FROM golang:1.22\nWORKDIR $GOPATH/src\n', {
      imageEnv: (image, platform) => (image === 'golang:1.22' && platform === 'linux/amd64' ? { GOPATH: '/go' } : undefined),
    });
    expect(instr(result, 'WORKDIR')).toMatchObject({ path: '/go/src' });
    expect(result.target.env).toEqual({ GOPATH: '/go' });
  });
});

describe('ARG scoping', () => {
  it('keeps a global ARG out of a stage that does not re-declare it', () => {
    const result = build('ARG V=1\nFROM a:$V\nLABEL v=$V\n');
    expect(result.target.from.image).toBe('a:1');
    expect(labels(result)).toEqual({ v: '' });
    expect(instr(result, 'LABEL').effectiveArgs).toEqual({});
  });

  it('gives a re-declared global ARG its global value', () => {
    const result = build('ARG V=1\nFROM a\nARG V\nLABEL v=$V\n');
    expect(labels(result)).toEqual({ v: '1' });
    expect(instr(result, 'LABEL').effectiveArgs).toEqual({ V: '1' });
  });

  it('lets --build-arg override global and stage defaults', () => {
    const result = build('ARG V=1\nFROM a:$V\nARG V\nARG W=default\nLABEL v=$V w=$W\n', { buildArgs: { V: '2', W: 'given' } });
    expect(result.target.from.image).toBe('a:2');
    expect(labels(result)).toEqual({ v: '2', w: 'given' });
    expect(result.globalArgs.V).toBe('2');
  });

  it('leaves an ARG without default or build arg unset (not empty)', () => {
    const result = build('FROM a\nARG V\nLABEL v=${V-unset} w=${V:-empty-or-unset}\n');
    expect(labels(result)).toEqual({ v: 'unset', w: 'empty-or-unset' });
  });

  it('makes ENV beat an ARG of the same name', () => {
    const result = build('FROM a\nARG V=arg\nENV V=env\nLABEL v=$V\nRUN true\n', { buildArgs: { V: 'cli' } });
    expect(labels(result)).toEqual({ v: 'env' });
    expect(instr(result, 'LABEL').effectiveArgs).toEqual({});
    expect(instr(result, 'RUN').effectiveArgs).toEqual({});
  });

  it('expands ARG defaults with earlier ARGs, several per line', () => {
    const result = build('FROM a\nARG A=x B=b\nARG C=${A}-${B}\nLABEL c=$C\n');
    expect(labels(result)).toEqual({ c: 'x-b' });
    expect(instr(result, 'ARG', 1)).toMatchObject({ args: [{ name: 'C', default: 'x-b' }] });
  });

  it('ends an ARG with its stage, while ENV is inherited by a stage built on it', () => {
    const result = build('FROM a AS one\nARG LOCAL=l\nENV E=e-$LOCAL\nFROM one\nLABEL local=$LOCAL e=$E\n');
    expect(labels(result)).toEqual({ local: '', e: 'e-l' });
    expect(result.target.env).toEqual({ E: 'e-l' });
  });

  it('puts every ARG in scope in RUN’s effective args, used or not', () => {
    const result = build('FROM a\nARG A=1\nRUN true\nARG B=2\nRUN true\n');
    expect(instr(result, 'RUN', 0).effectiveArgs).toEqual({ A: '1' });
    expect(instr(result, 'RUN', 1).effectiveArgs).toEqual({ A: '1', B: '2' });
  });

  it('changes effective args when a build arg changes (the cache key input)', () => {
    const text = 'FROM a\nARG VERSION=1\nRUN make\nCOPY app /app\nCOPY v$VERSION /v\n';
    const one = build(text);
    const two = build(text, { buildArgs: { VERSION: '2' } });
    expect(instr(one, 'RUN').effectiveArgs).toEqual({ VERSION: '1' });
    expect(instr(two, 'RUN').effectiveArgs).toEqual({ VERSION: '2' });
    expect(instr(two, 'COPY', 0).effectiveArgs).toEqual({});
    expect(instr(two, 'COPY', 1).effectiveArgs).toEqual({ VERSION: '2' });
  });

  it('offers the automatic platform ARGs in FROM, and in a stage only when declared', () => {
    const result = build('FROM --platform=$BUILDPLATFORM a AS b\nARG TARGETARCH\nLABEL arch=$TARGETARCH os=$TARGETOS\n', { platform: 'linux/arm/v7' });
    expect(result.target.from.platform).toBe('linux/amd64');
    expect(labels(result)).toEqual({ arch: 'arm', os: '' });
    expect(result.globalArgs).toMatchObject({ TARGETPLATFORM: 'linux/arm/v7', TARGETVARIANT: 'v7', BUILDARCH: 'amd64' });
  });

  it('keeps proxy build args out of cache keys and warns about unused build args', () => {
    const result = build('FROM a\nARG USED\nRUN true\n', { buildArgs: { USED: 'u', HTTP_PROXY: 'http://proxy:3128', UNUSED: 'x' } });
    expect(result.proxyArgs).toEqual({ HTTP_PROXY: 'http://proxy:3128' });
    expect(instr(result, 'RUN').effectiveArgs).toEqual({ USED: 'u' });
    expect(result.warnings).toEqual(['Dockerfile: one or more build-args [UNUSED] were not consumed']);
  });
});

describe('target stage selection', () => {
  const multi = [
    'FROM alpine AS base',
    'RUN echo base',
    'FROM base AS deps',
    'RUN echo deps',
    'FROM golang AS tools',
    'RUN echo tools',
    'FROM alpine AS unused',
    'ENV X=${NOPE:?never-evaluated}',
    'FROM scratch AS final',
    'COPY --from=deps /a /a',
    'COPY --from=tools /t /t',
    'COPY --from=busybox:1.36 /bin/busybox /bin/',
    'FROM final AS test',
    'RUN --mount=type=bind,from=0,target=/base true',
    '',
  ].join('\n');

  const order = (target?: string) => build(multi, { target }).stages.map((s) => s.name);

  it('builds the last stage by default, with only the stages it needs, parents first', () => {
    expect(order()).toEqual(['base', 'deps', 'tools', 'final', 'test']);
  });

  it('builds a named target and what it needs', () => {
    expect(order('final')).toEqual(['base', 'deps', 'tools', 'final']);
    expect(order('deps')).toEqual(['base', 'deps']);
    expect(order('TOOLS')).toEqual(['tools']);
  });

  it('fails in an unneeded stage only when it is the target', () => {
    expect(() => order('unused')).toThrow('Dockerfile:8: NOPE: never-evaluated');
  });

  it('tells stage references from image references', () => {
    const result = build(multi, { target: 'final' });
    const copies = result.target.instructions.filter((i) => i.kind === 'COPY');
    expect(copies.map((c) => (c.kind === 'COPY' ? [c.from, c.fromStage] : []))).toEqual([
      ['deps', 1],
      ['tools', 2],
      ['busybox:1.36', undefined],
    ]);
    expect(result.stages.find((s) => s.name === 'deps')?.from).toEqual({ image: 'base', isScratch: false, stageRef: 0 });
    const test = build(multi).target;
    expect(test.instructions[0]).toMatchObject({ kind: 'RUN', mounts: [{ from: '0', fromStage: 0 }] });
  });

  it('resolves a stage reference that comes from a variable', () => {
    const result = build('ARG SRC=one\nFROM a AS one\nFROM scratch\nARG SRC\nCOPY --from=$SRC /x /x\n');
    expect(result.stages.map((s) => s.index)).toEqual([0, 1]);
    expect(instr(result, 'COPY')).toMatchObject({ from: 'one', fromStage: 0 });
  });

  it('uses the target given to parseDockerfile when resolveStages gets none', () => {
    const parsed = parseDockerfile(multi, { file: 'Dockerfile', target: 'deps', buildArgs: { X: '1' } });
    const result = resolveStages(parsed, { buildPlatform: 'linux/amd64' });
    expect(result.target.name).toBe('deps');
    expect(result.warnings).toEqual(['Dockerfile: one or more build-args [X] were not consumed']);
  });
});
