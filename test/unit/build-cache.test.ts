// Cache keys: what changes a step's key and what must not.
import { describe, expect, it } from 'vitest';
import { stepKey, type KeyParts } from '../../src/build/cache';
import { parseDockerfile, resolveStages, type ResolvedInstruction } from '../../src/build/dockerfile/index';

/** The resolved instructions of a one-stage Dockerfile. */
function instructions(text: string, buildArgs: Record<string, string> = {}): ResolvedInstruction[] {
  const parsed = parseDockerfile(text, { file: 'Dockerfile', buildArgs });
  return resolveStages(parsed, { platform: 'linux/amd64', buildPlatform: 'linux/amd64' }).target.instructions;
}

const last = (text: string, buildArgs?: Record<string, string>): ResolvedInstruction => instructions(text, buildArgs).at(-1) as ResolvedInstruction;

const key = (instruction: ResolvedInstruction, over: Partial<KeyParts> = {}): string =>
  stepKey({ parent: 'image:sha256:base', instruction, platform: 'linux/amd64', ...over });

describe('build cache keys', () => {
  const base = key(last('FROM busybox\nRUN make\n'));

  it.each([
    ['another command', () => key(last('FROM busybox\nRUN make all\n'))],
    ['another parent', () => key(last('FROM busybox\nRUN make\n'), { parent: 'image:sha256:other' })],
    ['another platform', () => key(last('FROM busybox\nRUN make\n'), { platform: 'linux/arm64' })],
    ['an ARG in scope of the RUN with another value', () => key(last('FROM busybox\nARG V=1\nRUN make\n', { V: '2' }))],
    ['RUN --network=host', () => key(last('FROM busybox\nRUN --network=host make\n'))],
    ['exec form instead of shell form', () => key(last('FROM busybox\nRUN ["make"]\n'))],
  ])('changes with %s', (_what, other) => {
    expect(other()).not.toBe(base);
  });

  it.each([
    ['a comment line above', () => key(last('FROM busybox\n# build it\nRUN make\n'))],
    ['the instruction keyword in lower case', () => key(last('FROM busybox\nrun make\n'))],
    ['blank lines', () => key(last('\n\nFROM busybox\n\nRUN make\n'))],
  ])('does not change with %s', (_what, same) => {
    expect(same()).toBe(base);
  });

  it('a COPY key follows the content hash of its inputs, not the build args it does not read', () => {
    const copy = last('FROM busybox\nARG V=1\nCOPY a /a\n');
    const copyOtherArg = last('FROM busybox\nARG V=1\nCOPY a /a\n', { V: '2' });
    expect(key(copy, { inputs: 'sha256:aaa' })).toBe(key(copyOtherArg, { inputs: 'sha256:aaa' }));
    expect(key(copy, { inputs: 'sha256:aaa' })).not.toBe(key(copy, { inputs: 'sha256:bbb' }));
  });

  it('an ARG read by a COPY through substitution is part of its key', () => {
    const one = last('FROM busybox\nARG DIR=/one\nCOPY a $DIR/\n');
    const two = last('FROM busybox\nARG DIR=/one\nCOPY a $DIR/\n', { DIR: '/two' });
    expect(key(one, { inputs: 'sha256:aaa' })).not.toBe(key(two, { inputs: 'sha256:aaa' }));
  });

  it('ENV beats an ARG of the same name, so the ARG value no longer matters to RUN', () => {
    const one = last('FROM busybox\nARG V=1\nENV V=fixed\nRUN echo $V\n');
    const two = last('FROM busybox\nARG V=1\nENV V=fixed\nRUN echo $V\n', { V: '2' });
    expect(key(one)).toBe(key(two));
  });

  it('keys are sha256 digests', () => {
    expect(base).toMatch(/^sha256:[a-f0-9]{64}$/);
  });
});
