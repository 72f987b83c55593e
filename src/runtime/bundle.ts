// The on-disk layout of one container under the runtime's state dir, and atomic writes.
//   <stateDir>/<id>/config.json   OCI config for the shim       record.json  what TS needs later
//   rootfs/ upper/ work/          overlay mountpoint and layers  hosts resolv.conf hostname
//   state.json                    written by the shim           <id>-json.log  Docker json-file log
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { BundlePaths } from './oci';

export interface ContainerDir extends BundlePaths {
  dir: string;
  config: string;
  record: string;
  state: string;
  log: string;
}

export function containerDir(stateDir: string, id: string): ContainerDir {
  const dir = path.join(stateDir, id);
  // `dir` is normalized and the names are single components: joining them is appending
  // (path.join normalizes again each time, and the runtime asks for these on every state()).
  const inDir = (name: string): string => `${dir}${path.sep}${name}`;
  return {
    dir,
    config: inDir('config.json'),
    record: inDir('record.json'),
    state: inDir('state.json'),
    log: inDir(`${id}-json.log`),
    rootfs: inDir('rootfs'),
    upper: inDir('upper'),
    work: inDir('work'),
    hosts: inDir('hosts'),
    resolvConf: inDir('resolv.conf'),
    hostname: inDir('hostname'),
  };
}

/** Temp file, fsync, rename, fsync of the folder: a crash leaves the old or the new file. */
export function writeFileAtomic(file: string, data: string, mode = 0o600): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  const dirFd = fs.openSync(path.dirname(file), 'r');
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
}

export function readJsonIfExists<T>(file: string): T | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(`${file}: invalid JSON: ${(e as Error).message}`, { cause: e });
  }
}

export function removeIfExists(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}
