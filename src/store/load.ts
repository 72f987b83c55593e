// The on-disk layout and reading it back on open.
//
//   <dir>/store.json                             format and resourceVersion ceiling
//   <dir>/store.lock                             pid of the process that has the store open
//   <dir>/objects/<plural>/<namespace>/<name>    one JSON object per file (etcd's /registry layout)
//   <dir>/wal-<16 digits>.log                    writes not yet checkpointed into those files (wal.ts)
//
// A file name is the object's name itself: names are validated to be one safe path
// component (see NAME_PATTERN), and anything else found here is reported, not guessed at.
import * as path from 'node:path';
import { KINDS, type ApiObject, type KindInfo } from '../api/meta';
import { ApiError } from '../api/errors';
import { readDirectory, readFileIfPresent, readTextFile, removeTempFiles, TEMP_PREFIX } from './disk';
import { isValidName, RESOURCE_VERSION_PATTERN } from './validate';

export const META_FILE = 'store.json';
export const OBJECTS_DIR = 'objects';
const FORMAT = 1;
/** Files read at once while loading: enough to keep the disk busy, few enough for the fd limit. */
const READ_CONCURRENCY = 64;

function corrupt(file: string, why: string): ApiError {
  return new ApiError('InternalError', `store: ${file}: ${why}`);
}

export function encodeStoreMeta(ceiling: number): string {
  return JSON.stringify({ format: FORMAT, resourceVersionCeiling: String(ceiling) }) + '\n';
}

/** The persisted resourceVersion ceiling, 0 for a new store. */
export async function readStoreMeta(dir: string): Promise<number> {
  const file = path.join(dir, META_FILE);
  const text = await readFileIfPresent(file);
  if (text === undefined) return 0;
  let meta: unknown;
  try {
    meta = JSON.parse(text);
  } catch (err) {
    throw corrupt(file, `not valid JSON: ${(err as Error).message}`);
  }
  const { format, resourceVersionCeiling } = (meta ?? {}) as { format?: unknown; resourceVersionCeiling?: unknown };
  if (format !== FORMAT) throw corrupt(file, `unsupported store format ${JSON.stringify(format)} (this d2p reads format ${FORMAT})`);
  if (typeof resourceVersionCeiling !== 'string' || !RESOURCE_VERSION_PATTERN.test(resourceVersionCeiling)) {
    throw corrupt(file, `resourceVersionCeiling ${JSON.stringify(resourceVersionCeiling)} is not a decimal string`);
  }
  return Number(resourceVersionCeiling);
}

function parseObjectFile(file: string, text: string, info: KindInfo, namespace: string, name: string): ApiObject {
  let obj: ApiObject;
  try {
    obj = JSON.parse(text) as ApiObject;
  } catch (err) {
    throw corrupt(file, `not valid JSON: ${(err as Error).message}`);
  }
  const meta = obj?.metadata;
  if (obj?.kind !== info.kind) throw corrupt(file, `holds kind ${JSON.stringify(obj?.kind)}, expected ${info.kind}`);
  if (meta?.name !== name || meta.namespace !== namespace) {
    throw corrupt(file, `holds ${JSON.stringify(meta?.namespace)}/${JSON.stringify(meta?.name)}, expected ${namespace}/${name}`);
  }
  if (typeof meta.resourceVersion !== 'string' || !RESOURCE_VERSION_PATTERN.test(meta.resourceVersion)) {
    throw corrupt(file, `metadata.resourceVersion ${JSON.stringify(meta.resourceVersion)} is not a decimal string`);
  }
  if (typeof meta.uid !== 'string') throw corrupt(file, 'metadata.uid is missing');
  return obj;
}

async function loadNamespace(dir: string, info: KindInfo, namespace: string): Promise<ApiObject[]> {
  const entries = await readDirectory(dir);
  await removeTempFiles(dir, entries);
  const names = entries.filter((e) => !e.startsWith(TEMP_PREFIX));
  const bad = names.find((n) => !isValidName(n));
  if (bad !== undefined) throw corrupt(path.join(dir, bad), 'is not a valid object name; remove or rename it');
  const objects: ApiObject[] = [];
  for (let i = 0; i < names.length; i += READ_CONCURRENCY) {
    const batch = names.slice(i, i + READ_CONCURRENCY);
    const texts = await Promise.all(batch.map((n) => readTextFile(path.join(dir, n))));
    batch.forEach((name, j) => objects.push(parseObjectFile(path.join(dir, name), texts[j], info, namespace, name)));
  }
  return objects;
}

/** Every stored object; leftover temporary files of interrupted writes are removed. */
export async function loadObjects(objectsDir: string): Promise<ApiObject[]> {
  const entries = await readDirectory(objectsDir);
  await removeTempFiles(objectsDir, entries);
  const objects: ApiObject[] = [];
  for (const plural of entries.filter((e) => !e.startsWith(TEMP_PREFIX))) {
    const info = KINDS.find((k) => k.plural === plural);
    if (!info) throw corrupt(path.join(objectsDir, plural), 'is not a directory of a known kind');
    const kindDir = path.join(objectsDir, plural);
    const namespaces = await readDirectory(kindDir);
    await removeTempFiles(kindDir, namespaces);
    for (const namespace of namespaces.filter((e) => !e.startsWith(TEMP_PREFIX))) {
      if (!isValidName(namespace)) throw corrupt(path.join(kindDir, namespace), 'is not a valid namespace name');
      for (const obj of await loadNamespace(path.join(kindDir, namespace), info, namespace)) objects.push(obj);
    }
  }
  return objects;
}
