// commitLayer when the snapshotted directory cannot be renamed into the store (another file
// system, EXDEV): the layer is extracted from its blob, with its diff_id checked.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitLayer, snapshotDir } from '../../src/build/snapshot';
import { ImageStore } from '../../src/images';

let work: string;
let mounted: string | undefined;

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs: run it through hack/sandbox');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-commit-layer-'));
});

afterAll(() => {
  if (mounted) execFileSync('umount', [mounted]);
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('commitLayer across file systems', () => {
  it('extracts the layer from its blob when the directory is on another file system', async () => {
    const store = await ImageStore.open(path.join(work, 'store'));
    const tmpfs = path.join(work, 'tmpfs');
    fs.mkdirSync(tmpfs);
    execFileSync('mount', ['-t', 'tmpfs', 'd2p-test-upper', tmpfs]);
    mounted = tmpfs;
    // A directory inside the mount (a mount point itself would refuse rename with EBUSY).
    const upper = path.join(tmpfs, 'upper');
    fs.mkdirSync(upper);
    fs.mkdirSync(path.join(upper, 'app'), { mode: 0o755 });
    fs.writeFileSync(path.join(upper, 'app/hello.txt'), 'hello from a RUN step\n', { mode: 0o640 });
    fs.symlinkSync('hello.txt', path.join(upper, 'app/link'));

    const blob = await snapshotDir(upper, { overlay: false, outFile: path.join(store.tmpPath, 'layer.tar.gz') });
    expect(blob).toBeDefined();
    const layer = await commitLayer(store, blob as NonNullable<typeof blob>);

    const dir = store.layerDir(layer.diffID);
    expect(fs.readFileSync(path.join(dir, 'app/hello.txt'), 'utf8')).toBe('hello from a RUN step\n');
    expect(fs.statSync(path.join(dir, 'app/hello.txt')).mode & 0o777).toBe(0o640);
    expect(fs.readlinkSync(path.join(dir, 'app/link'))).toBe('hello.txt');
    // The snapshot stayed where it was: it was copied out of its blob, not moved.
    expect(fs.existsSync(path.join(upper, 'app/hello.txt'))).toBe(true);
    expect(fs.existsSync(store.blobPath(layer.digest))).toBe(true);
  });
});
