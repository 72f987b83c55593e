// A deleted container's directory leaves its path at once and its files later (trash.ts).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { RuntimeError } from '../../src/runtime/errors';
import { DirectoryTrash, TRASH_DIR_NAME } from '../../src/runtime/trash';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-trash-unit-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A container-like directory: files, and a nested directory as overlay's work/work is. */
function containerDir(name: string): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(path.join(dir, 'work', 'work'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'upper', 'etc'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'upper', 'etc', 'written'), 'x'.repeat(10_000));
  fs.writeFileSync(path.join(dir, 'config.json'), '{}');
  return dir;
}

describe('DirectoryTrash', () => {
  it('moves the directory away before returning, and removes it in the background', async () => {
    const errors: RuntimeError[] = [];
    const trash = new DirectoryTrash(tmp, (e) => errors.push(e));
    const dir = containerDir('c1');
    expect(trash.discard(dir)).toBe(true);
    expect(fs.existsSync(dir)).toBe(false);
    // The same name is free again at once: a container made again under its id.
    fs.mkdirSync(dir);
    await trash.settled();
    expect(fs.readdirSync(path.join(tmp, TRASH_DIR_NAME))).toEqual([]);
    expect(fs.existsSync(dir)).toBe(true);
    expect(errors).toEqual([]);
  });

  it('says false for a directory that is not there', async () => {
    const trash = new DirectoryTrash(tmp, (e) => {
      throw e;
    });
    expect(trash.discard(path.join(tmp, 'absent'))).toBe(false);
    await trash.settled();
  });

  it('keeps two discards of the same name apart', async () => {
    let finish: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (finish = resolve));
    const held: string[] = [];
    // A removal that waits, so both trashed copies exist at once.
    const slow = new DirectoryTrash(tmp, (e) => {
      throw e;
    }, async (d) => {
      held.push(d);
      await gate;
      fs.rmSync(d, { recursive: true, force: true });
    });
    expect(slow.discard(containerDir('same'))).toBe(true);
    expect(slow.discard(containerDir('same'))).toBe(true);
    expect(new Set(held).size).toBe(2);
    expect(fs.readdirSync(slow.dir).sort()).toEqual(held.map((h) => path.basename(h)).sort());
    finish();
    await slow.settled();
    expect(fs.readdirSync(slow.dir)).toEqual([]);
  });

  it('removes what an earlier process left in the trash at its first discard', async () => {
    const left = path.join(tmp, TRASH_DIR_NAME, 'old.123.1');
    fs.mkdirSync(path.join(left, 'upper'), { recursive: true });
    fs.writeFileSync(path.join(left, 'upper', 'f'), 'x');
    const trash = new DirectoryTrash(tmp, (e) => {
      throw e;
    });
    // Constructing it alone touches nothing: a CLI that never deletes never cleans.
    expect(fs.existsSync(left)).toBe(true);
    trash.discard(containerDir('c2'));
    await trash.settled();
    expect(fs.readdirSync(trash.dir)).toEqual([]);
  });

  it('reports a failed removal with the directory it concerns, and settles anyway', async () => {
    const errors: RuntimeError[] = [];
    const trash = new DirectoryTrash(tmp, (e) => errors.push(e), async () => {
      throw Object.assign(new Error('EBUSY: resource busy'), { code: 'EBUSY' });
    });
    trash.discard(containerDir('busy'));
    await trash.settled();
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(RuntimeError);
    expect(errors[0]?.message).toMatch(new RegExp(`cannot remove .*${TRASH_DIR_NAME}/busy\\.\\d+\\.\\d+ .*EBUSY`));
  });
});
