// d2p run sends the Image, the volumes and the Container at once; a refusal of the first
// two must not leave the Container behind.
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCommand } from '../../src/cli/commands/run';
import type { CommandContext } from '../../src/cli/context';
import { StringWriter } from '../../src/cli/io';
import type { Client } from '../../src/client/types';
import { resolvePaths } from '../../src/config';
import { CONTAINER_FINALIZER } from '../../controllers/finalizers';
import { FakeApi } from '../helpers/fake-client';

let api: FakeApi;
let stdout: StringWriter;

beforeEach(() => {
  // The Container controller, which would run the finalizer, is not part of this test.
  api = new FakeApi({ releasedFinalizers: [CONTAINER_FINALIZER] });
  stdout = new StringWriter();
});
afterEach(() => api.endWatches());

function context(): CommandContext {
  const client = {
    for: (kind: string) => api.for(kind),
    images: api.for('Image'),
    volumes: api.for('Volume'),
    containers: api.for('Container'),
    close: async () => undefined,
  } as unknown as Client;
  return {
    io: { stdout, stderr: new StringWriter() },
    paths: resolvePaths({ root: path.join('/nonexistent', 'root') }),
    debug: false,
    now: () => Date.now(),
    client: async () => client,
    close: async () => undefined,
  };
}

describe('d2p run -d', () => {
  it('creates the Image, the named volume and the Container', async () => {
    expect(await runCommand({ image: 'busybox:1', volume: ['cache:/cache'], detach: true, name: 'job' }, context())).toBe(0);
    expect(stdout.toString()).toBe('job\n');
    expect(api.peek('Container', 'default', 'job')).toBeDefined();
    expect(api.peek('Volume', 'default', 'cache')).toBeDefined();
    expect(api.peek('Image', 'default', 'busybox-1')).toBeDefined();
  });

  it('takes the Container back when a volume it needs is refused, and reports that refusal', async () => {
    api.failNext('Volume', 'create', new Error('volume refused by the test'));
    await expect(runCommand({ image: 'busybox:1', volume: ['cache:/cache'], detach: true, name: 'job' }, context())).rejects.toThrow('volume refused by the test');
    expect(api.peek('Container', 'default', 'job')).toBeUndefined();
    expect(stdout.toString()).toBe('');
  });
});
