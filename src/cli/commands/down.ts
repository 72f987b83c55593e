// d2p down [-f …] [-p P] [-v] [--rmi all|local] [--remove-orphans] — docker compose down:
// removes the project's containers (through their Services, which own them), then its
// networks; volumes only with -v and images only with --rmi, as compose keeps both by
// default. Each kind is waited on until its objects are really gone (finalizers done:
// no process, mount or veth left) before the next, because a network cannot go while a
// container still uses it. Progress lines read as compose's: " ✔ Container shop-web-1  Removed".
import { isApiError } from '../../api/errors';
import type { ApiObject } from '../../api/meta';
import type { Client } from '../../client';
import { settleAll, REQUEST_CONCURRENCY } from '../concurrency';
import type { CommandContext } from '../context';
import { formatError } from '../format-error';
import { CliError, ReportedError } from '../io';
import { ObjectChanges } from '../changes';
import { requireProject, type ProjectFlags } from './ps';

export interface DownOptions extends ProjectFlags {
  volumes?: boolean;
  /** "all" removes the project's Image objects (and Builds); "local" only Builds' images. */
  rmi?: string;
  /** Accepted for compose compatibility: down removes every container of the project namespace anyway. */
  removeOrphans?: boolean;
  /** Seconds to wait for each kind to be gone. */
  timeout?: string;
  cwd?: string;
}

const DEFAULT_TIMEOUT_MS = 120_000;

/** The steps of down, in order; what a step removes must be gone before the next starts. */
export function downPlan(opts: Pick<DownOptions, 'volumes' | 'rmi'>): { kind: string; label: string }[] {
  const steps = [
    { kind: 'Service', label: 'Service' },
    { kind: 'Container', label: 'Container' },
    { kind: 'Network', label: 'Network' },
  ];
  if (opts.volumes) steps.push({ kind: 'Volume', label: 'Volume' });
  if (opts.rmi === 'all' || opts.rmi === 'local') steps.push({ kind: 'Build', label: 'Build' });
  if (opts.rmi === 'all') steps.push({ kind: 'Image', label: 'Image' });
  return steps;
}

export async function downCommand(opts: DownOptions, ctx: CommandContext): Promise<number> {
  if (opts.rmi !== undefined && opts.rmi !== 'all' && opts.rmi !== 'local') {
    throw new CliError(`--rmi must be "all" or "local", not ${JSON.stringify(opts.rmi)}`, { code: 'D2P_USAGE' });
  }
  const timeoutMs = opts.timeout === undefined ? DEFAULT_TIMEOUT_MS : parseSeconds(opts.timeout);
  const project = await requireProject(opts, { cwd: opts.cwd });
  const client = await ctx.client();
  let failed = 0;
  for (const step of downPlan(opts)) failed += await removeKind(client, project, step, timeoutMs, ctx);
  if (failed > 0) throw new ReportedError(`${failed} objects of project ${project} could not be removed`);
  return 0;
}

function parseSeconds(text: string): number {
  if (!/^\d+$/.test(text)) throw new CliError(`--timeout ${JSON.stringify(text)}: expected whole seconds`, { code: 'D2P_USAGE' });
  return Number(text) * 1000;
}

/** Deletes every object of one kind in the project, and waits until they are gone. Returns the failures. */
async function removeKind(client: Client, project: string, step: { kind: string; label: string }, timeoutMs: number, ctx: CommandContext): Promise<number> {
  const rc = client.for(step.kind);
  const items = (await rc.list({ namespace: project })).items;
  const deletions = await settleAll(items, REQUEST_CONCURRENCY, async (obj) => {
    try {
      await rc.delete(project, obj.metadata.name);
    } catch (err) {
      if (!isApiError(err, 'NotFound')) throw err;
    }
  });
  let failed = 0;
  const pending: ApiObject[] = [];
  deletions.forEach((d, i) => {
    if (d.ok) return void pending.push(items[i]);
    failed++;
    ctx.io.stderr.write(formatError(d.error, { context: `${step.label} ${items[i].metadata.name}`, debug: ctx.debug }));
  });
  // Services are not a compose resource of their own: their lines would repeat the containers'.
  const report = step.kind !== 'Service';
  return failed + (await waitGone(client, project, step, pending, timeoutMs, report, ctx));
}

async function waitGone(
  client: Client,
  project: string,
  step: { kind: string; label: string },
  pending: ApiObject[],
  timeoutMs: number,
  report: boolean,
  ctx: CommandContext,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let remaining = pending;
  let interval = 50;
  // A deletion wakes the wait at once; the backed-off interval only bounds it (polling
  // alone saw containers gone up to 500 ms late, most of a second of every down).
  const changes = new ObjectChanges(client, step.kind, { namespace: project });
  try {
    while (remaining.length > 0) {
      const live = new Map((await client.for(step.kind).list({ namespace: project })).items.map((o) => [o.metadata.name, o.metadata.uid]));
      const gone = remaining.filter((o) => live.get(o.metadata.name) !== o.metadata.uid);
      if (report) for (const o of gone) ctx.io.stdout.write(` ✔ ${step.label} ${o.metadata.name}  Removed\n`);
      remaining = remaining.filter((o) => !gone.includes(o));
      if (remaining.length === 0) break;
      if (Date.now() >= deadline) {
        for (const o of remaining) {
          ctx.io.stderr.write(` ✘ ${step.label} ${o.metadata.name}  still there after ${Math.round(timeoutMs / 1000)}s (see "d2p describe ${step.kind.toLowerCase()} ${o.metadata.name} -n ${project}")\n`);
        }
        return remaining.length;
      }
      await changes.next(Math.min(interval, Math.max(0, deadline - Date.now())));
      interval = Math.min(interval * 2, 500);
    }
    return 0;
  } finally {
    changes.stop();
  }
}
