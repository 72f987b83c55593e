// d2p diff -f FILE…: what apply would change, as kubectl diff shows it — for each object
// the live version against the server's dry-run answer to applying the new one, as a
// unified diff of their YAML. Exit 0: no differences; 1: differences; 2: an error
// (kubectl diff's convention, since 1 already means "differences").
import { isApiError } from '../../api/errors';
import { API_VERSION, type ApiObject } from '../../api/meta';
import type { Client } from '../../client';
import { settleAll, REQUEST_CONCURRENCY } from '../concurrency';
import type { CommandContext } from '../context';
import { formatError } from '../format-error';
import { ReportedError } from '../io';
import { loadObjects, type SourceOptions } from '../load-objects';
import { describeObject, type ManifestObject } from '../manifests';
import { toYaml } from '../printers';
import { unifiedDiff } from '../unified-diff';

export type DiffOptions = SourceOptions;

const ERROR_EXIT = 2;

export async function diffCommand(opts: DiffOptions, ctx: CommandContext): Promise<number> {
  try {
    return await diffAll(opts, ctx);
  } catch (err) {
    if (err instanceof ReportedError) throw err;
    // Any failure, ours or the server's, must not exit 1: that would read as "differences".
    ctx.io.stderr.write(formatError(err, { debug: ctx.debug }));
    throw new ReportedError('', ERROR_EXIT);
  }
}

async function diffAll(opts: DiffOptions, ctx: CommandContext): Promise<number> {
  const objects = await loadObjects(opts, ctx.io, { validate: true, errorExitCode: ERROR_EXIT });
  const client = await ctx.client();
  const results = await settleAll(objects, REQUEST_CONCURRENCY, (m) => diffOne(client, m));
  let errors = 0;
  let differences = 0;
  results.forEach((r, i) => {
    if (!r.ok) {
      errors++;
      return void ctx.io.stderr.write(formatError(r.error, { context: describeObject(objects[i]), debug: ctx.debug }));
    }
    if (r.value === '') return;
    differences++;
    ctx.io.stdout.write(r.value);
  });
  if (errors > 0) throw new ReportedError('', ERROR_EXIT);
  return differences > 0 ? 1 : 0;
}

async function diffOne(client: Client, m: ManifestObject): Promise<string> {
  const rc = client.for(m.object.kind);
  const { namespace, name } = m.object.metadata;
  let live: ApiObject | undefined;
  try {
    live = await rc.get(namespace, name);
  } catch (err) {
    if (!isApiError(err, 'NotFound')) throw err;
  }
  const merged = (await rc.apply(m.object, { dryRun: true })).object;
  return renderObjectDiff(live, merged);
}

/**
 * Fields the server or controllers own, which a diff of intent must not show: identity
 * and bookkeeping (uid, resourceVersion, generation, creation time) and status.
 */
export function comparable(obj: ApiObject): ApiObject {
  const { uid: _u, resourceVersion: _rv, generation: _g, creationTimestamp: _c, ...metadata } = obj.metadata as ApiObject['metadata'] & {
    managedFields?: unknown;
  };
  delete (metadata as { managedFields?: unknown }).managedFields;
  const { status: _s, ...rest } = obj;
  return sortKeys({ ...rest, metadata }) as ApiObject;
}

/**
 * Keys in lexical order at every level, as kubectl prints YAML (Go maps marshal sorted):
 * the live object and the server's answer may list the same fields in another order.
 */
function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value !== 'object' || value === null) return value;
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) sorted[key] = sortKeys((value as Record<string, unknown>)[key]);
  return sorted;
}

/** kubectl diff's file names: LIVE and MERGED directories, one file per object named group.version.Kind.namespace.name. */
export function diffLabels(obj: ApiObject): { from: string; to: string } {
  const file = `${(obj.apiVersion || API_VERSION).replace('/', '.')}.${obj.kind}.${obj.metadata.namespace ?? ''}.${obj.metadata.name}`;
  return { from: `LIVE/${file}`, to: `MERGED/${file}` };
}

/** The diff of one object; "" when applying it would change nothing; a new object is all added. */
export function renderObjectDiff(live: ApiObject | undefined, merged: ApiObject): string {
  const before = live === undefined ? '' : toYaml(comparable(live));
  const after = toYaml(comparable(merged));
  const labels = diffLabels(merged);
  const body = unifiedDiff(before, after, labels);
  return body === '' ? '' : `diff -u -N ${labels.from} ${labels.to}\n${body}`;
}
