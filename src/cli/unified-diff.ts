// Unified diff of two texts, the format `diff -u` prints and `kubectl diff` shows
// (GNU diffutils manual, "Detailed Description of Unified Format"). Lines are matched with
// Myers' O(ND) algorithm (E. Myers, "An O(ND) Difference Algorithm and Its Variations",
// Algorithmica 1986), which finds a shortest edit script, so hunks are as small as diff's.

export type Edit = { op: ' ' | '-' | '+'; line: string };

/** Shortest edit script turning `a` into `b`, as a sequence of kept, removed and added lines. */
export function diffLines(a: readonly string[], b: readonly string[]): Edit[] {
  const trace = forwardPass(a, b);
  return backtrack(a, b, trace);
}

/** For each edit distance d, the furthest-reaching x on every diagonal k (V arrays, offset by max). */
function forwardPass(a: readonly string[], b: readonly string[]): Int32Array[] {
  const n = a.length;
  const m = b.length;
  const max = n + m;
  const offset = max + 1;
  const v = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  for (let d = 0; d <= max; d++) {
    trace.push(v.slice());
    for (let k = -d; k <= d; k += 2) {
      const down = k === -d || (k !== d && v[offset + k - 1] < v[offset + k + 1]);
      let x = down ? v[offset + k + 1] : v[offset + k - 1] + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[offset + k] = x;
      if (x >= n && y >= m) return trace;
    }
  }
  return trace;
}

function backtrack(a: readonly string[], b: readonly string[], trace: Int32Array[]): Edit[] {
  const offset = a.length + b.length + 1;
  const edits: Edit[] = [];
  let x = a.length;
  let y = b.length;
  for (let d = trace.length - 1; d >= 0; d--) {
    const v = trace[d];
    const k = x - y;
    const down = k === -d || (k !== d && v[offset + k - 1] < v[offset + k + 1]);
    const prevK = down ? k + 1 : k - 1;
    const prevX = d === 0 ? 0 : v[offset + prevK];
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) {
      edits.push({ op: ' ', line: a[--x] });
      y--;
    }
    if (d === 0) break;
    if (down) edits.push({ op: '+', line: b[--y] });
    else edits.push({ op: '-', line: a[--x] });
  }
  while (x > 0 && y > 0) {
    edits.push({ op: ' ', line: a[--x] });
    y--;
  }
  return edits.reverse();
}

function splitLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** "-3,4": the start line and length of one side of a hunk, as GNU diff abbreviates them. */
function range(start: number, length: number): string {
  if (length === 1) return `${start}`;
  // An empty range names the line before it (0 for the start of the file).
  return length === 0 ? `${start - 1},0` : `${start},${length}`;
}

/**
 * `diff -u` of two texts with `context` lines around each change; "" when they are equal.
 * Headers are `--- fromLabel` and `+++ toLabel`.
 */
export function unifiedDiff(from: string, to: string, labels: { from: string; to: string }, context = 3): string {
  const edits = diffLines(splitLines(from), splitLines(to));
  if (edits.every((e) => e.op === ' ')) return '';
  let out = `--- ${labels.from}\n+++ ${labels.to}\n`;
  for (const hunk of hunks(edits, context)) out += hunk;
  return out;
}

function hunks(edits: readonly Edit[], context: number): string[] {
  const out: string[] = [];
  // Line numbers (1-based) in a and b of each edit.
  const aLine: number[] = [];
  const bLine: number[] = [];
  let ai = 1;
  let bi = 1;
  for (const e of edits) {
    aLine.push(ai);
    bLine.push(bi);
    if (e.op !== '+') ai++;
    if (e.op !== '-') bi++;
  }
  let i = 0;
  while (i < edits.length) {
    if (edits[i].op === ' ') {
      i++;
      continue;
    }
    const start = Math.max(0, i - context);
    let end = i;
    // Extend the hunk while the next change is within 2*context kept lines.
    for (;;) {
      while (end < edits.length && edits[end].op !== ' ') end++;
      let next = end;
      while (next < edits.length && edits[next].op === ' ') next++;
      if (next < edits.length && next - end <= 2 * context) end = next;
      else break;
    }
    const stop = Math.min(edits.length, end + context);
    out.push(renderHunk(edits, start, stop, aLine[start], bLine[start]));
    i = stop;
  }
  return out;
}

function renderHunk(edits: readonly Edit[], start: number, stop: number, aStart: number, bStart: number): string {
  let aCount = 0;
  let bCount = 0;
  let body = '';
  for (let j = start; j < stop; j++) {
    const e = edits[j];
    if (e.op !== '+') aCount++;
    if (e.op !== '-') bCount++;
    body += `${e.op}${e.line}\n`;
  }
  return `@@ -${range(aStart, aCount)} +${range(bStart, bCount)} @@\n${body}`;
}
