// kill -9 a process in the middle of a write storm, many times over, and check after each
// crash that the store opens, every object is whole and is either its last acknowledged
// version or the one write after it, and resourceVersion never goes backwards.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { randomInt } from 'node:crypto';
import { buildSync } from 'esbuild';
import { openStore } from '../../src/store';
import { checksum, DELETE_EVERY, NAMES, NAMESPACE, type Line } from './fixtures/store-crash-shared';

const ROUNDS = 40;

let work: string;
let childScript: string;

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-store-crash-'));
  childScript = path.join(work, 'child.js');
  buildSync({
    entryPoints: [path.join(__dirname, 'fixtures', 'store-crash-child.ts')],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    outfile: childScript,
    logLevel: 'error',
  });
});

afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true });
});

interface State {
  exists: boolean;
  seq: number;
}

/** The child's deterministic next operation on an object (see store-crash-child.ts). */
function nextState(s: State): State {
  return s.exists && s.seq % DELETE_EVERY === 0 ? { exists: false, seq: s.seq } : { exists: true, seq: s.seq + 1 };
}

interface Round {
  lines: Line[];
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Runs the child until it is killed: soon after it is ready, or (early) during its start. */
function crashRound(storeDir: string, known: Record<string, number>, duringStart: boolean): Promise<Round> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [childScript, storeDir, JSON.stringify(known)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: Line[] = [];
    let stderr = '';
    const kill = () => child.kill('SIGKILL');
    if (duringStart) setTimeout(kill, randomInt(0, 120));
    // A child that never gets ready (say, stuck on the lock) must not outlive the test.
    const backstop = setTimeout(kill, 10_000);
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    createInterface({ input: child.stdout }).on('line', (text) => {
      const line = JSON.parse(text) as Line;
      lines.push(line);
      if (line.t === 'ready' && !duringStart) setTimeout(kill, randomInt(0, 120));
    });
    child.on('error', reject);
    // 'close' comes after the exit and after stdout is drained, so every line is in.
    child.on('close', (_code, signal) => {
      clearTimeout(backstop);
      resolve({ lines, signal, stderr });
    });
  });
}

function tempFilesUnder(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((p) => path.basename(p).startsWith('.tmp-'));
}

describe('store crash safety', () => {
  it(`survives kill -9 at random moments of a write storm (${ROUNDS} rounds)`, { timeout: 120_000 }, async () => {
    const storeDir = path.join(work, 'store');
    let states = new Map<string, State>(NAMES.map((n) => [n, { exists: false, seq: 0 }]));
    let lastResourceVersion = 0;
    let acknowledged = 0;

    for (let round = 0; round < ROUNDS; round++) {
      const known = Object.fromEntries([...states].map(([name, s]) => [name, s.seq]));
      const { lines, signal, stderr } = await crashRound(storeDir, known, round % 4 === 3);
      expect(signal, `round ${round}: the child died on its own: ${stderr}`).toBe('SIGKILL');

      // Replay the acknowledged operations over the state found after the previous crash.
      const expected = new Map(states);
      let newestAcknowledged = lastResourceVersion;
      for (const line of lines) {
        if (line.t === 'ready') {
          expect(Number(line.rv), `round ${round}: rv after reopen`).toBeGreaterThanOrEqual(lastResourceVersion);
          continue;
        }
        expect(Number(line.rv), `round ${round}: a write got a version from before the restart`).toBeGreaterThan(lastResourceVersion);
        acknowledged++;
        const before = expected.get(line.name)!;
        const after = line.t === 'delete' ? { exists: false, seq: line.seq } : { exists: true, seq: line.seq };
        expect(after, `round ${round}: ${line.name} took an unexpected step`).toEqual(nextState(before));
        expected.set(line.name, after);
        newestAcknowledged = Math.max(newestAcknowledged, Number(line.rv));
      }

      const store = await openStore({ dir: storeDir });
      try {
        const resourceVersion = Number(store.resourceVersion);
        expect(resourceVersion, `round ${round}: resourceVersion went backwards`).toBeGreaterThanOrEqual(newestAcknowledged);
        expect(resourceVersion).toBeGreaterThanOrEqual(lastResourceVersion);
        lastResourceVersion = resourceVersion;
        expect(tempFilesUnder(storeDir), `round ${round}: temporary files survived open`).toEqual([]);

        const found = new Map<string, State>(NAMES.map((n) => [n, { exists: false, seq: expected.get(n)!.seq }]));
        for (const o of (await store.list('Container', { namespace: NAMESPACE })).items) {
          const spec = o.spec as { seq: number; payload: string; checksum: string };
          expect(spec.checksum, `round ${round}: ${o.metadata.name} is not self-consistent`).toBe(checksum(o.metadata.name, spec.seq, spec.payload));
          expect(Number(o.metadata.resourceVersion)).toBeLessThanOrEqual(resourceVersion);
          found.set(o.metadata.name, { exists: true, seq: spec.seq });
        }
        for (const name of NAMES) {
          const acked = expected.get(name)!;
          const actual = found.get(name)!;
          // At most one operation per object is in flight, so the disk holds the last
          // acknowledged state or the one after it; anything else is a lost or torn write.
          expect([acked, nextState(acked)], `round ${round}: ${name} is ${JSON.stringify(actual)}`).toContainEqual(actual);
        }
        states = found;
      } finally {
        await store.close();
      }
    }
    // The storm must have actually written, or the checks above prove nothing.
    expect(acknowledged).toBeGreaterThan(ROUNDS * 5);
  });
});
