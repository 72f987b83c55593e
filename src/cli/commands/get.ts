// d2p get KIND [NAME…] | kind/name… | all — kubectl get: tables per kind, -o wide|name|json|yaml,
// -w to keep printing changes. Names that do not exist are reported on stderr and make
// the exit status 1, while the rest is still printed (as kubectl does).
import { isApiError } from '../../api/errors';
import type { ApiObject, KindInfo, WatchEvent } from '../../api/meta';
import { DEFAULT_NAMESPACE } from '../../api/meta';
import type { Client } from '../../client';
import { settleAll, REQUEST_CONCURRENCY } from '../concurrency';
import type { CommandContext } from '../context';
import { formatError } from '../format-error';
import { CliError, ReportedError } from '../io';
import { parseTargets, type KindTarget } from '../kinds';
import {
  formatNames,
  formatStructured,
  OUTPUT_FORMATS,
  printTable,
  sortForDisplay,
  StreamingTable,
  toJson,
  toYaml,
  type OutputFormat,
  type TableOptions,
} from '../printers';

export interface GetOptions {
  /** KIND [NAME…], kind/name…, "all", "svc,ctr". */
  args: string[];
  namespace?: string;
  allNamespaces?: boolean;
  selector?: string;
  output?: string;
  watch?: boolean;
  showLabels?: boolean;
  /** Ends a watch (SIGINT in the CLI, the end of a test). */
  signal?: AbortSignal;
}

interface Found {
  info: KindInfo;
  objects: ApiObject[];
  resourceVersion?: string;
}

export async function getCommand(opts: GetOptions, ctx: CommandContext): Promise<number> {
  const output = parseOutput(opts.output);
  const targets = parseTargets(opts.args);
  if (opts.allNamespaces && targets.some((t) => t.names.length > 0)) {
    throw new CliError('a resource cannot be retrieved by name across all namespaces (drop -A or the names)', { code: 'D2P_USAGE' });
  }
  if (opts.watch && (targets.length !== 1 || targets[0].names.length > 1)) {
    throw new CliError('watch is only supported on a single resource type, or a single object by name', { code: 'D2P_USAGE' });
  }
  const namespace = opts.allNamespaces ? undefined : (opts.namespace ?? DEFAULT_NAMESPACE);
  const client = await ctx.client();
  let missing = 0;
  const found: Found[] = [];
  // All kinds at once (`get all` asks for eight): one round trip's wait instead of eight
  // in a row. Reported in the order asked, so the output does not depend on timing.
  const results = await Promise.all(targets.map((target) => fetchTarget(client, target, namespace, opts.selector)));
  for (const result of results) {
    for (const err of result.errors) {
      missing++;
      ctx.io.stderr.write(formatError(err, { debug: ctx.debug }));
    }
    found.push(result.found);
  }
  printFound(found, output, opts, ctx, namespace, targets);
  if (opts.watch && missing === 0) await watchTarget(client, found[0], targets[0], output, opts, ctx, namespace);
  if (missing > 0) throw new ReportedError();
  return 0;
}

function parseOutput(output: string | undefined): OutputFormat {
  const format = (output ?? 'table') as OutputFormat;
  if (!OUTPUT_FORMATS.includes(format)) {
    throw new CliError(`unable to match a printer suitable for the output format "${output}", allowed formats are: ${OUTPUT_FORMATS.filter((f) => f !== 'table').join(', ')}`, {
      code: 'D2P_USAGE',
    });
  }
  return format;
}

async function fetchTarget(
  client: Client,
  target: KindTarget,
  namespace: string | undefined,
  selector: string | undefined,
): Promise<{ found: Found; errors: unknown[] }> {
  const rc = client.for(target.info.kind);
  if (target.names.length === 0) {
    const list = await rc.list({ namespace, labelSelector: selector });
    return { found: { info: target.info, objects: list.items, resourceVersion: list.metadata.resourceVersion }, errors: [] };
  }
  const results = await settleAll(target.names, REQUEST_CONCURRENCY, (name) => rc.get(namespace, name));
  const objects: ApiObject[] = [];
  const errors: unknown[] = [];
  for (const r of results) {
    if (r.ok) objects.push(r.value);
    else if (isApiError(r.error, 'NotFound')) errors.push(r.error);
    else throw r.error;
  }
  return { found: { info: target.info, objects }, errors };
}

function tableOptions(opts: GetOptions, output: OutputFormat, kindPrefix: boolean, ctx: CommandContext): TableOptions {
  return { wide: output === 'wide', showLabels: opts.showLabels, allNamespaces: opts.allNamespaces, kindPrefix, now: ctx.now() };
}

function printFound(
  found: readonly Found[],
  output: OutputFormat,
  opts: GetOptions,
  ctx: CommandContext,
  namespace: string | undefined,
  targets: readonly KindTarget[],
): void {
  const sorted = found.map((f) => ({ info: f.info, objects: sortForDisplay(f.info.kind, f.objects) }));
  const all = sorted.flatMap((f) => f.objects);
  if (output === 'name') return void ctx.io.stdout.write(formatNames(all));
  if (output === 'json' || output === 'yaml') {
    const single = targets.length === 1 && targets[0].names.length === 1;
    // kubectl -w -o json prints each change as it comes, without the List around the first batch.
    if (opts.watch) return void all.forEach((o) => ctx.io.stdout.write(structuredOne(o, output)));
    if (all.length === 0 && !single) reportEmpty(ctx, namespace);
    return void ctx.io.stdout.write(formatStructured(all, output, single));
  }
  const named = targets.some((t) => t.names.length > 0);
  if (all.length === 0) {
    if (!named) reportEmpty(ctx, namespace);
    return;
  }
  if (opts.watch) return; // watchTarget prints the first table through its StreamingTable
  const kindPrefix = found.length > 1;
  const tables = sorted
    .filter((f) => f.objects.length > 0)
    .map((f) => printTable(f.info.kind, f.objects, tableOptions(opts, output, kindPrefix, ctx)));
  ctx.io.stdout.write(tables.join('\n'));
}

function reportEmpty(ctx: CommandContext, namespace: string | undefined): void {
  ctx.io.stderr.write(namespace === undefined ? 'No resources found\n' : `No resources found in ${namespace} namespace.\n`);
}

function structuredOne(obj: ApiObject, output: 'json' | 'yaml'): string {
  return output === 'json' ? toJson(obj) : `---\n${toYaml(obj)}`;
}

/**
 * Prints the first table, then one line per change from the list's resourceVersion on
 * (list-then-watch, so no change between the two is lost), until the signal aborts.
 */
async function watchTarget(
  client: Client,
  found: Found,
  target: KindTarget,
  output: OutputFormat,
  opts: GetOptions,
  ctx: CommandContext,
  namespace: string | undefined,
): Promise<void> {
  const kind = found.info.kind;
  const name = target.names[0];
  const table = new StreamingTable(kind, tableOptions(opts, output, false, ctx), ctx.now);
  const initial = sortForDisplay(kind, found.objects);
  let headerPrinted = initial.length > 0;
  if (output === 'table' || output === 'wide') ctx.io.stdout.write(table.start(initial, headerPrinted));
  if (opts.signal?.aborted) return;
  const watch = client.for(kind).watch({
    namespace,
    labelSelector: opts.selector,
    fieldSelector: name === undefined ? undefined : `metadata.name=${name}`,
    resourceVersion: found.resourceVersion ?? found.objects[0]?.metadata.resourceVersion,
  });
  const stop = (): void => watch.stop();
  opts.signal?.addEventListener('abort', stop, { once: true });
  try {
    for await (const event of watch) {
      const line = watchLine(event, output, table, ctx, headerPrinted);
      if (line === undefined) continue;
      headerPrinted = true;
      ctx.io.stdout.write(line);
    }
  } finally {
    opts.signal?.removeEventListener('abort', stop);
    watch.stop();
  }
}

function watchLine(event: WatchEvent, output: OutputFormat, table: StreamingTable, ctx: CommandContext, headerPrinted: boolean): string | undefined {
  if (event.type === 'BOOKMARK') return undefined;
  if (event.type === 'ERROR') {
    const status = event.object as unknown as { message?: string; reason?: string };
    throw new CliError(`watch ended by the server: ${status.reason ?? 'Error'}: ${status.message ?? JSON.stringify(status)}`, {
      code: 'D2P_WATCH_ERROR',
    });
  }
  const obj = event.object;
  if (output === 'name') return formatNames([obj]);
  if (output === 'json' || output === 'yaml') return structuredOne(obj, output);
  // A watch that started on an empty list prints the header with its first row.
  return headerPrinted ? table.row(obj) : table.start([obj], true);
}
