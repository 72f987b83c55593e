// The Image controller for real, inside hack/sandbox: a daemon in-process (API server with
// schema validation of every status write) runs the controller, which pulls from Debian's
// docker-registry on loopback into the root's image store.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { EventObject } from '../../src/api/meta';
import type { Image } from '../../src/api/types';
import { createClient } from '../../src/client/index';
import type { Client } from '../../src/client/types';
import { ImageStore, pushOciLayout } from '../../src/images/index';
import { runDaemon, type Daemon } from '../../src/server/daemon';
import { imageController } from '../../controllers/image';
import { createJsonLogger } from '../../controllers/logger';
import { Manager } from '../../controllers/manager';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { requireSandbox } from '../helpers/sandbox-guard';
import { fixtures } from '../helpers/test-image';

describe('Image controller in a daemon, against a loopback registry', () => {
  let work: string;
  let registry: TestRegistry;
  let images: ReturnType<typeof fixtures.buildTestImages>;
  let daemon: Daemon;
  let client: Client;

  beforeAll(async () => {
    requireSandbox('Image controller integration tests');
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-image-ctl-it-'));
    const layout = path.join(work, 'layout');
    images = fixtures.buildTestImages(layout);
    registry = await startRegistry();
    await pushOciLayout(layout, `${registry.host}/test/full:v1`, { refName: 'full' });
    daemon = await runDaemon({
      root: path.join(work, 'root'),
      handleSignals: false,
      log: () => undefined,
      startControllers: async ({ client: daemonClient, paths }) => {
        const manager = new Manager({ client: daemonClient, paths, logger: createJsonLogger({ write: () => undefined }), backoff: { baseDelayMs: 50, maxDelayMs: 500 } });
        manager.register(imageController());
        await manager.start();
        return { stop: () => manager.stop() };
      },
    });
    client = createClient({ socketPath: daemon.paths.socket });
  });

  afterAll(async () => {
    await client?.close();
    await daemon?.stop();
    await registry?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  const create = (name: string, spec: Image['spec']) =>
    client.images.create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Image', metadata: { name, namespace: 'shop' }, spec } as Image);

  async function waitForPhase(name: string, phase: string): Promise<Image> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const image = (await client.images.get('shop', name)) as Image;
      if (image.status?.phase === phase) return image;
      if (Date.now() > deadline) throw new Error(`image shop/${name} did not reach ${phase}: ${JSON.stringify(image.status)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function eventsOf(name: string): Promise<EventObject[]> {
    return (await client.events.list({ namespace: 'shop', fieldSelector: `involvedObject.name=${name}` })).items as EventObject[];
  }

  it('pulls an IfNotPresent image into the store and reports it in status', async () => {
    await create('full', { ref: `${registry.host}/test/full:v1` });
    const ready = await waitForPhase('full', 'Ready');
    expect(ready.status).toMatchObject({
      digest: images.full.digest,
      layers: images.full.layers.map((l) => ({ digest: l.digest, diffID: l.diffID })),
      config: { cmd: ['sh'], workingDir: '/' },
    });
    const store = await ImageStore.open(daemon.paths.images);
    expect((await store.get(`${registry.host}/test/full:v1`))?.digest).toBe(images.full.digest);
    // The Pulled event is recorded right after the status write that says Ready.
    await vi.waitFor(async () => expect((await eventsOf('full')).map((e) => e.reason)).toEqual(expect.arrayContaining(['Pulling', 'Pulled'])), {
      timeout: 10_000,
      interval: 50,
    });
  });

  it('a repository the registry does not have fails with the registry’s answer, and keeps retrying', async () => {
    await create('missing', { ref: `${registry.host}/test/nothing:v1` });
    const failed = await waitForPhase('missing', 'Failed');
    const pulled = failed.status?.conditions?.find((c) => c.type === 'Pulled');
    expect(pulled).toMatchObject({ status: 'False', reason: 'ErrImagePull' });
    expect(pulled?.message).toContain('test/nothing');
    const failedEvent = (await eventsOf('missing')).find((e) => e.reason === 'Failed');
    expect(failedEvent?.type).toBe('Warning');
    // Back-off retries: the Pulling event's count grows.
    const deadline = Date.now() + 10_000;
    while (((await eventsOf('missing')).find((e) => e.reason === 'Pulling')?.count ?? 0) < 2) {
      if (Date.now() > deadline) throw new Error('the failed pull was not retried');
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  it('Never does not pull', async () => {
    await create('never', { ref: `${registry.host}/test/full:v2`, pullPolicy: 'Never' });
    const failed = await waitForPhase('never', 'Failed');
    expect(failed.status?.conditions?.find((c) => c.type === 'Pulled')?.reason).toBe('ErrImageNeverPull');
  });
});
