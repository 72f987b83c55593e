// d2p apply -f FILE|DIR…: all or nothing. Everything is read, converted and validated
// locally, then every object goes to the server in one batch (POST …/apply, see
// src/server/apply-batch.ts), which checks them all before it writes any and writes them
// atomically — so a typo in the last file of a directory never leaves half an application
// applied, and neither does a crash of the daemon in the middle of the write.
import type { ApiObject } from '../../api/meta';
import { composeSourceError } from '../../compose';
import type { ApplyAllItem } from '../../client/types';
import type { CommandContext } from '../context';
import { formatError } from '../format-error';
import { CliError, ReportedError } from '../io';
import { qualifiedName } from '../kinds';
import { loadObjects, type SourceOptions } from '../load-objects';
import { describeObject, type ManifestObject } from '../manifests';

export type DryRunStrategy = 'none' | 'client' | 'server';

export interface ApplyOptions extends SourceOptions {
  /** kubectl's --dry-run: client = local checks only, server = the daemon's dry run too; nothing is written. */
  dryRun?: DryRunStrategy;
}

export async function applyCommand(opts: ApplyOptions, ctx: CommandContext): Promise<number> {
  const dryRun = opts.dryRun ?? 'none';
  if (!['none', 'client', 'server'].includes(dryRun)) {
    throw new CliError(`--dry-run must be "none", "server" or "client", not "${dryRun}"`, { code: 'D2P_USAGE' });
  }
  // Without a server to ask (client dry run), Compose objects are validated here too.
  const objects = await loadObjects(opts, ctx.io, { validate: true, serverValidatesCompose: dryRun !== 'client' });
  return applyObjects(objects, dryRun, ctx);
}

/** The second half of apply, for objects already read (up reads its project once for both). */
export async function applyObjects(objects: readonly ManifestObject[], dryRun: DryRunStrategy, ctx: CommandContext): Promise<number> {
  if (dryRun === 'client') {
    // Without asking the server there is no knowing created from configured: say what was checked.
    for (const m of objects) ctx.io.stdout.write(`${nameOf(m.object)} valid (client dry run)\n`);
    return 0;
  }
  const client = await ctx.client();
  const result = await client.applyAll(
    objects.map((m) => m.object),
    { dryRun: dryRun === 'server' },
  );
  const refused = reportRefusals(objects, result.items, ctx);
  if (refused > 0) {
    throw new ReportedError(`the server refused ${refused} of ${objects.length} objects; nothing was applied`);
  }
  const suffix = dryRun === 'server' ? ' (server dry run)' : '';
  let lines = '';
  result.items.forEach((item, i) => {
    if (item.ok) lines += `${nameOf(objects[i].object)} ${item.action}${suffix}\n`;
  });
  ctx.io.stdout.write(lines);
  return 0;
}

function nameOf(obj: ApiObject): string {
  return qualifiedName(obj.kind, obj.metadata.name);
}

function reportRefusals(objects: readonly ManifestObject[], items: readonly ApplyAllItem[], ctx: CommandContext): number {
  let refused = 0;
  items.forEach((item, i) => {
    if (item.ok) return;
    refused++;
    // A Compose object's refusal is told at its Compose file, line and key.
    const atSource = composeSourceError(objects[i].object, item.error);
    ctx.io.stderr.write(atSource ? formatError(atSource, { debug: ctx.debug }) : formatError(item.error, { context: describeObject(objects[i]), debug: ctx.debug }));
  });
  return refused;
}
