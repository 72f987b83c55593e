// d2p delete -f FILE|DIR | KIND NAME… | kind/name… — kubectl delete. With --wait (the
// default, as kubectl) the command returns only when the objects are really gone: a
// Container leaves the store after its finalizer has removed processes, mounts and veths.
import { parseDuration } from '../../api/duration';
import { isApiError } from '../../api/errors';
import { DEFAULT_NAMESPACE } from '../../api/meta';
import type { Client } from '../../client';
import { settleAll, REQUEST_CONCURRENCY } from '../concurrency';
import type { CommandContext } from '../context';
import { formatError } from '../format-error';
import { CliError, ReportedError } from '../io';
import { kindWord, parseTargets, qualifiedName } from '../kinds';
import { loadObjects, type SourceOptions } from '../load-objects';
import { describeSource } from '../manifests';

export interface DeleteOptions extends Partial<SourceOptions> {
  args: string[];
  selector?: string;
  /** --all: every object of the given kinds in the namespace. */
  all?: boolean;
  ignoreNotFound?: boolean;
  /** Wait until the objects are gone (default true). */
  wait?: boolean;
  /** Go duration; how long --wait waits. */
  timeout?: string;
}

/** One object to delete, and where it was named (for -f). */
interface Victim {
  kind: string;
  namespace: string;
  name: string;
  from?: string;
}

export const DEFAULT_DELETE_TIMEOUT = '60s';

export async function deleteCommand(opts: DeleteOptions, ctx: CommandContext): Promise<number> {
  const fromFiles = (opts.files ?? []).length > 0;
  if (fromFiles && opts.args.length > 0) {
    throw new CliError('cannot give both -f and resource names: the files already say what to delete', { code: 'D2P_USAGE' });
  }
  const timeoutMs = parseTimeout(opts.timeout ?? DEFAULT_DELETE_TIMEOUT);
  const client = fromFiles ? undefined : await ctx.client();
  const victims = fromFiles ? await victimsFromFiles(opts, ctx) : await victimsFromArgs(opts, ctx, client!);
  const api = client ?? (await ctx.client());
  const results = await settleAll(victims, REQUEST_CONCURRENCY, (v) => api.for(v.kind).delete(v.namespace, v.name));
  const gone: { victim: Victim; uid?: string }[] = [];
  let failed = 0;
  results.forEach((r, i) => {
    const v = victims[i];
    if (r.ok) {
      ctx.io.stdout.write(`${kindWord(v.kind)} "${v.name}" deleted\n`);
      gone.push({ victim: v, uid: r.value.metadata?.uid });
      return;
    }
    if (isApiError(r.error, 'NotFound')) {
      // kubectl delete -f reports each missing object and carries on; by name it is an
      // error unless --ignore-not-found.
      if (opts.ignoreNotFound) return;
      if (fromFiles) return void ctx.io.stderr.write(`${v.from ? `${v.from}: ` : ''}${r.error.message}\n`);
    }
    failed++;
    ctx.io.stderr.write(formatError(r.error, { debug: ctx.debug, context: v.from }));
  });
  if (opts.wait ?? true) failed += await waitUntilGone(api, gone, timeoutMs, ctx);
  if (failed > 0) throw new ReportedError();
  return 0;
}

function parseTimeout(text: string): number {
  try {
    return parseDuration(text);
  } catch (err) {
    throw new CliError(`--timeout: ${(err as Error).message}`, { code: 'D2P_USAGE', cause: err });
  }
}

async function victimsFromFiles(opts: DeleteOptions, ctx: CommandContext): Promise<Victim[]> {
  const objects = await loadObjects({ ...opts, files: opts.files ?? [] }, ctx.io, { validate: false });
  // Dependents before what they depend on, as `docker compose down` removes containers
  // before networks: files list networks and volumes first, so the reverse order is right.
  return [...objects].reverse().map((m) => ({
    kind: m.object.kind,
    namespace: m.object.metadata.namespace ?? DEFAULT_NAMESPACE,
    name: m.object.metadata.name,
    from: describeSource(m.source),
  }));
}

async function victimsFromArgs(opts: DeleteOptions, ctx: CommandContext, client: Client): Promise<Victim[]> {
  const targets = parseTargets(opts.args, 'delete');
  const namespace = opts.namespace ?? DEFAULT_NAMESPACE;
  const victims: Victim[] = [];
  for (const target of targets) {
    const kind = target.info.kind;
    if (target.names.length > 0) {
      if (opts.all || opts.selector) throw new CliError('names cannot be combined with --all or -l', { code: 'D2P_USAGE' });
      victims.push(...target.names.map((name) => ({ kind, namespace, name })));
      continue;
    }
    if (!opts.all && !opts.selector) {
      throw new CliError(`resource(s) were provided, but no name was specified: name the ${target.info.plural} to delete, or pass --all or -l`, {
        code: 'D2P_USAGE',
      });
    }
    const list = await client.for(kind).list({ namespace, labelSelector: opts.selector });
    victims.push(...list.items.map((o) => ({ kind, namespace, name: o.metadata.name })));
  }
  if (victims.length === 0) ctx.io.stderr.write(`No resources found in ${namespace} namespace.\n`);
  return victims;
}

/**
 * Polls until every object is gone, or replaced by a namesake with another uid (kubectl
 * waits on the uid too). Polling uses only GET, which every object supports; the interval
 * grows from 50 ms to 1 s so a quick delete returns quickly and a slow one costs little.
 * Returns how many were still there at the deadline (each reported).
 */
async function waitUntilGone(client: Client, pending: { victim: Victim; uid?: string }[], timeoutMs: number, ctx: CommandContext): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let remaining = pending;
  let interval = 50;
  while (remaining.length > 0) {
    const checks = await settleAll(remaining, REQUEST_CONCURRENCY, async ({ victim, uid }) => {
      try {
        const live = await client.for(victim.kind).get(victim.namespace, victim.name);
        return uid !== undefined && live.metadata.uid !== uid;
      } catch (err) {
        if (isApiError(err, 'NotFound')) return true;
        throw err;
      }
    });
    const stillThere: typeof remaining = [];
    checks.forEach((c, i) => {
      if (!c.ok) throw c.error;
      if (!c.value) stillThere.push(remaining[i]);
    });
    remaining = stillThere;
    if (remaining.length === 0) break;
    if (Date.now() >= deadline) {
      for (const { victim } of remaining) {
        ctx.io.stderr.write(
          `error: timed out after ${timeoutMs / 1000}s waiting for ${qualifiedName(victim.kind, victim.name)} to be deleted (finalizers still running? see "d2p describe ${qualifiedName(victim.kind, victim.name)} -n ${victim.namespace}")\n`,
        );
      }
      return remaining.length;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(interval, Math.max(0, deadline - Date.now()))));
    interval = Math.min(interval * 2, 1000);
  }
  return 0;
}
