import { afterEach, describe, expect, it, vi } from 'vitest';
import { WorkQueue } from '../../controllers/queue';

/** A promise the test resolves by hand, to hold a handler mid-flight. */
function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

const queues: WorkQueue[] = [];
function makeQueue(handler: (key: string) => Promise<void>, opts: ConstructorParameters<typeof WorkQueue>[1] = {}): WorkQueue {
  const q = new WorkQueue(handler, opts);
  queues.push(q);
  return q;
}

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(queues.splice(0).map((q) => q.shutdown()));
});

describe('WorkQueue', () => {
  it('processes a key queued several times before a worker takes it once', async () => {
    const seen: string[] = [];
    const q = makeQueue(async (key) => {
      seen.push(key);
    });
    q.add('ns/a');
    q.add('ns/a');
    q.add('ns/b');
    q.add('ns/a');
    expect(q.length).toBe(2);
    q.start();
    await vi.waitFor(() => expect(q.idle).toBe(true));
    expect(seen).toEqual(['ns/a', 'ns/b']);
  });

  it('processes a key added while it is being processed again afterwards, never concurrently', async () => {
    const hold = gate();
    let active = 0;
    let maxActive = 0;
    let calls = 0;
    const q = makeQueue(
      async () => {
        calls++;
        active++;
        maxActive = Math.max(maxActive, active);
        if (calls === 1) await hold.promise;
        active--;
      },
      { workers: 4 },
    );
    q.start();
    q.add('ns/a');
    await vi.waitFor(() => expect(calls).toBe(1));
    // Re-added three times while in flight: one more run, after the first finishes.
    q.add('ns/a');
    q.add('ns/a');
    q.add('ns/a');
    await new Promise((r) => setTimeout(r, 20));
    expect(calls).toBe(1);
    hold.open();
    await vi.waitFor(() => expect(q.idle).toBe(true));
    expect(calls).toBe(2);
    expect(maxActive).toBe(1);
  });

  it('runs distinct keys on several workers at once', async () => {
    const hold = gate();
    let active = 0;
    let maxActive = 0;
    const q = makeQueue(
      async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await hold.promise;
        active--;
      },
      { workers: 3 },
    );
    q.start();
    for (const k of ['a', 'b', 'c', 'd']) q.add(k);
    await vi.waitFor(() => expect(active).toBe(3));
    hold.open();
    await vi.waitFor(() => expect(q.idle).toBe(true));
    expect(maxActive).toBe(3);
  });

  it('backs off exponentially per key, capped, and forget() resets it', async () => {
    vi.useFakeTimers();
    const runs: string[] = [];
    const q = makeQueue(
      async (key) => {
        runs.push(key);
      },
      { baseDelayMs: 100, maxDelayMs: 400 },
    );
    q.start();
    const expectRunAfter = async (delay: number) => {
      const before = runs.length;
      q.addRateLimited('k');
      await vi.advanceTimersByTimeAsync(delay - 1);
      expect(runs.length).toBe(before);
      await vi.advanceTimersByTimeAsync(1);
      expect(runs.length).toBe(before + 1);
    };
    await expectRunAfter(100);
    await expectRunAfter(200);
    await expectRunAfter(400);
    await expectRunAfter(400); // capped
    expect(q.numRequeues('k')).toBe(4);
    // Another key has its own back-off.
    expect(q.numRequeues('other')).toBe(0);
    q.forget('k');
    expect(q.numRequeues('k')).toBe(0);
    await expectRunAfter(100);
  });

  it('addAfter delays a key; the earlier of two pending delays wins and the key runs once', async () => {
    vi.useFakeTimers();
    const runs: number[] = [];
    const q = makeQueue(async () => {
      runs.push(Date.now());
    });
    q.start();
    const t0 = Date.now();
    q.addAfter('k', 50);
    await vi.advanceTimersByTimeAsync(49);
    expect(runs).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(runs).toEqual([t0 + 50]);

    q.addAfter('k', 100);
    q.addAfter('k', 10);
    q.addAfter('k', 300);
    await vi.advanceTimersByTimeAsync(500);
    expect(runs).toEqual([t0 + 50, t0 + 60]);
  });

  it('requeues with back-off and reports a handler that rejects', async () => {
    const reported: Array<[string, unknown]> = [];
    let calls = 0;
    const q = makeQueue(
      async () => {
        calls++;
        if (calls === 1) throw new Error('handler bug');
      },
      { baseDelayMs: 5, onHandlerError: (key, error) => reported.push([key, error]) },
    );
    q.start();
    q.add('k');
    await vi.waitFor(() => expect(calls).toBe(2));
    expect(reported).toHaveLength(1);
    expect(reported[0][0]).toBe('k');
    expect((reported[0][1] as Error).message).toBe('handler bug');
  });

  it('shutdown waits for handlers in flight and drops queued keys', async () => {
    const hold = gate();
    const seen: string[] = [];
    const q = makeQueue(async (key) => {
      seen.push(key);
      await hold.promise;
    });
    q.start();
    q.add('first');
    q.add('second');
    await vi.waitFor(() => expect(seen).toEqual(['first']));
    let finished = false;
    const done = q.shutdown().then(() => (finished = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(finished).toBe(false);
    hold.open();
    await done;
    expect(seen).toEqual(['first']);
    q.add('late');
    expect(q.length).toBe(0);
  });

  it('rejects a worker count that is not a positive integer', () => {
    expect(() => new WorkQueue(async () => undefined, { workers: 0 })).toThrow(/workers must be a positive integer/);
  });
});
