// d2p apply -f FILE|DIR…: all or nothing. Everything is read, converted and validated
// locally, then every object goes through a server-side dry run (Kubernetes dryRun=All),
// and only when all of them pass is anything written — so a typo in the last file of a
// directory never leaves half an application applied.
import type { ApiObject } from '../../api/meta';
import { commitApply, planOf } from '../../client/apply';
import { settleAll, REQUEST_CONCURRENCY } from '../concurrency';
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
  const objects = await loadObjects(opts, ctx.io, { validate: true });
  if (dryRun === 'client') {
    // Without asking the server there is no knowing created from configured: say what was checked.
    for (const m of objects) ctx.io.stdout.write(`${nameOf(m.object)} valid (client dry run)\n`);
    return 0;
  }
  const client = await ctx.client();
  const resourceClient = (m: ManifestObject) => client.for(m.object.kind);

  const previews = await settleAll(objects, REQUEST_CONCURRENCY, (m) => resourceClient(m).apply(m.object, { dryRun: true }));
  const refused = reportFailures(objects, previews, ctx);
  if (refused > 0) {
    throw new ReportedError(`the server refused ${refused} of ${objects.length} objects; nothing was applied`);
  }
  if (dryRun === 'server') {
    previews.forEach((p, i) => {
      if (p.ok) ctx.io.stdout.write(`${nameOf(objects[i].object)} ${p.value.action} (server dry run)\n`);
    });
    return 0;
  }
  // Each dry run already read the object and had the server check the write: commit
  // those plans rather than apply from scratch (src/client/apply.ts, ApplyPlan).
  const results = await settleAll(objects, REQUEST_CONCURRENCY, (m, i) => {
    const preview = previews[i];
    const plan = preview.ok ? planOf(preview.value) : undefined;
    return plan ? commitApply(resourceClient(m), m.object, plan) : resourceClient(m).apply(m.object);
  });
  results.forEach((r, i) => {
    if (r.ok) ctx.io.stdout.write(`${nameOf(objects[i].object)} ${r.value.action}\n`);
  });
  // Only a race (someone else writing the same objects between dry run and write) gets here.
  const failed = reportFailures(objects, results, ctx);
  if (failed > 0) throw new ReportedError(`${failed} of ${objects.length} objects could not be applied`);
  return 0;
}

function nameOf(obj: ApiObject): string {
  return qualifiedName(obj.kind, obj.metadata.name);
}

function reportFailures(objects: readonly ManifestObject[], results: readonly { ok: boolean; error?: unknown }[], ctx: CommandContext): number {
  let failures = 0;
  results.forEach((r, i) => {
    if (r.ok) return;
    const code = (r.error as { code?: unknown }).code;
    // Without a daemon every object fails the same way: say it once.
    if (code === 'D2P_DAEMON_UNREACHABLE') throw r.error;
    failures++;
    ctx.io.stderr.write(formatError(r.error, { context: describeObject(objects[i]), debug: ctx.debug }));
  });
  return failures;
}
