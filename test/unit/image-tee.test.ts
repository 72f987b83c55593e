// The tee that sends a layer's downloaded bytes both to extraction and to the blob file.
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { TeeTransform } from '../../src/images/store';

/** A blob file that takes its time: each write completes 5 ms later. */
function slowSink(received: Buffer[]): Writable {
  return new Writable({
    highWaterMark: 16,
    write(chunk: Buffer, _enc, cb) {
      received.push(chunk);
      setTimeout(cb, 5);
    },
  });
}

describe('TeeTransform', () => {
  it('the side (blob file) receives every byte even when the main path finishes first', async () => {
    const chunks = Array.from({ length: 20 }, (_, i) => Buffer.alloc(1000, i));
    const side = new PassThrough({ highWaterMark: 64 * 1024 });
    const received: Buffer[] = [];
    const sideDone = pipeline(side, slowSink(received));
    const main: Buffer[] = [];
    await pipeline(
      async function* () {
        yield* chunks;
      },
      new TeeTransform(side),
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          main.push(chunk);
          cb();
        },
      }),
    );
    // The main path is done and the tee destroyed (autoDestroy); the side drains on its own.
    await sideDone;
    expect(Buffer.concat(received).equals(Buffer.concat(chunks))).toBe(true);
    expect(Buffer.concat(main).equals(Buffer.concat(chunks))).toBe(true);
  });

  it('a failure of the main path stops the side with the same error', async () => {
    const side = new PassThrough();
    const sideDone = pipeline(side, new Writable({ write: (_c, _e, cb) => cb() }));
    const boom = new Error('download failed');
    await expect(
      pipeline(
        async function* () {
          yield Buffer.from('partial');
          throw boom;
        },
        new TeeTransform(side),
        new Writable({ write: (_c, _e, cb) => cb() }),
      ),
    ).rejects.toBe(boom);
    await expect(sideDone).rejects.toBe(boom);
  });
});
