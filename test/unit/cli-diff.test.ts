import { describe, expect, it } from 'vitest';
import type { ApiObject } from '../../src/api/meta';
import { comparable, renderObjectDiff } from '../../src/cli/commands/diff';
import { diffLines, unifiedDiff } from '../../src/cli/unified-diff';

const lines = (n: number, from = 1) => Array.from({ length: n }, (_, i) => `line ${i + from}`);
const text = (ls: string[]) => ls.map((l) => `${l}\n`).join('');

/** Applies a unified diff to `from`, hunk by hunk: what `patch` would do. */
function applyPatch(from: string, diff: string): string {
  const src = from === '' ? [] : from.replace(/\n$/, '').split('\n');
  const out: string[] = [];
  let pos = 0;
  const body = diff.split('\n').slice(2, -1);
  for (let i = 0; i < body.length; i++) {
    const m = /^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@$/.exec(body[i]);
    if (!m) throw new Error(`not a hunk header: ${body[i]}`);
    const start = Number(m[1]) - (m[2] === '0' ? 0 : 1);
    while (pos < start) out.push(src[pos++]);
    while (i + 1 < body.length && !body[i + 1].startsWith('@@')) {
      const line = body[++i];
      if (line.startsWith('+')) out.push(line.slice(1));
      else {
        expect(src[pos]).toBe(line.slice(1));
        if (line.startsWith(' ')) out.push(src[pos]);
        pos++;
      }
    }
  }
  while (pos < src.length) out.push(src[pos++]);
  return text(out);
}

describe('unifiedDiff', () => {
  it('is empty for equal texts', () => {
    expect(unifiedDiff('a\nb\n', 'a\nb\n', { from: 'x', to: 'y' })).toBe('');
  });

  it('prints GNU diff -u hunks with 3 lines of context', () => {
    const a = text(lines(10));
    const b = a.replace('line 5\n', 'line five\n');
    expect(unifiedDiff(a, b, { from: 'LIVE/x', to: 'MERGED/x' })).toBe(
      '--- LIVE/x\n+++ MERGED/x\n@@ -2,7 +2,7 @@\n line 2\n line 3\n line 4\n-line 5\n+line five\n line 6\n line 7\n line 8\n',
    );
  });

  it('shows a new file as all added from -0,0', () => {
    expect(unifiedDiff('', 'a\nb\n', { from: 'x', to: 'y' })).toBe('--- x\n+++ y\n@@ -0,0 +1,2 @@\n+a\n+b\n');
  });

  it('keeps changes far apart in separate hunks and joins close ones', () => {
    const a = lines(30);
    const far = [...a];
    far[2] = 'changed 3';
    far[25] = 'changed 26';
    expect(unifiedDiff(text(a), text(far), { from: 'x', to: 'y' }).match(/^@@/gm)).toHaveLength(2);
    const near = [...a];
    near[2] = 'changed 3';
    near[8] = 'changed 9';
    expect(unifiedDiff(text(a), text(near), { from: 'x', to: 'y' }).match(/^@@/gm)).toHaveLength(1);
  });

  it('produces a patch that turns one text into the other (random edits)', () => {
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let round = 0; round < 50; round++) {
      const a = Array.from({ length: rand(40) }, () => `w${rand(6)}`);
      const b = [...a];
      for (let k = rand(8); k > 0; k--) {
        const at = rand(b.length + 1);
        if (rand(2) === 0) b.splice(at, 1);
        else b.splice(at, 0, `n${rand(6)}`);
      }
      const d = unifiedDiff(text(a), text(b), { from: 'a', to: 'b' });
      if (text(a) === text(b)) expect(d).toBe('');
      else expect(applyPatch(text(a), d)).toBe(text(b));
    }
  });

  it('finds a shortest edit script', () => {
    const edits = diffLines(['a', 'b', 'c', 'a', 'b', 'b', 'a'], ['c', 'b', 'a', 'b', 'a', 'c']);
    // Myers' paper example: edit distance 5.
    expect(edits.filter((e) => e.op !== ' ')).toHaveLength(5);
  });
});

describe('object diff', () => {
  const live: ApiObject = {
    apiVersion: 'd2p.dev/v1alpha1',
    kind: 'Service',
    metadata: { name: 'web', namespace: 'shop', uid: 'u1', resourceVersion: '41', generation: 3, creationTimestamp: '2024-01-01T00:00:00Z' },
    spec: { replicas: 1 },
    status: { observedGeneration: 3 },
  };

  it('ignores server bookkeeping and status', () => {
    const merged = { ...live, metadata: { ...live.metadata, resourceVersion: '99', generation: 4 }, status: { observedGeneration: 1 } };
    expect(renderObjectDiff(live, merged)).toBe('');
    expect(comparable(live)).toEqual({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { replicas: 1 } });
  });

  it('shows a changed field with kubectl diff file names', () => {
    const out = renderObjectDiff(live, { ...live, spec: { replicas: 3 } });
    expect(out.split('\n').slice(0, 3)).toEqual([
      'diff -u -N LIVE/d2p.dev.v1alpha1.Service.shop.web MERGED/d2p.dev.v1alpha1.Service.shop.web',
      '--- LIVE/d2p.dev.v1alpha1.Service.shop.web',
      '+++ MERGED/d2p.dev.v1alpha1.Service.shop.web',
    ]);
    expect(out).toContain('-  replicas: 1\n+  replicas: 3\n');
  });

  it('shows a new object as all added', () => {
    const out = renderObjectDiff(undefined, live);
    const body = out.split('\n').slice(4, -1);
    expect(out).toMatch(/@@ -0,0 \+1,\d+ @@/);
    expect(body.every((l) => l.startsWith('+'))).toBe(true);
  });
});
