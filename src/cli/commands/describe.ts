// d2p describe KIND [NAME…] | kind/name…: the object, what it owns and the Events about
// it, as kubectl describe. Without names, every object of the kind in the namespace.
import { isApiError } from '../../api/errors';
import { DEFAULT_NAMESPACE, KINDS, type ApiObject, type EventObject } from '../../api/meta';
import type { Client } from '../../client';
import { settleAll, REQUEST_CONCURRENCY } from '../concurrency';
import type { CommandContext } from '../context';
import { isEventFor, isOwnedBy, renderDescribe } from '../describe';
import { formatError } from '../format-error';
import { ReportedError } from '../io';
import { parseTargets } from '../kinds';
import { sortForDisplay } from '../printers';

export interface DescribeOptions {
  args: string[];
  namespace?: string;
  selector?: string;
}

export async function describeCommand(opts: DescribeOptions, ctx: CommandContext): Promise<number> {
  const targets = parseTargets(opts.args, 'describe');
  const namespace = opts.namespace ?? DEFAULT_NAMESPACE;
  const client = await ctx.client();
  const objects: ApiObject[] = [];
  let missing = 0;
  for (const target of targets) {
    const rc = client.for(target.info.kind);
    if (target.names.length === 0) {
      const list = await rc.list({ namespace, labelSelector: opts.selector });
      objects.push(...sortForDisplay(target.info.kind, list.items));
      continue;
    }
    for (const r of await settleAll(target.names, REQUEST_CONCURRENCY, (name) => rc.get(namespace, name))) {
      if (r.ok) objects.push(r.value);
      else if (isApiError(r.error, 'NotFound')) {
        missing++;
        ctx.io.stderr.write(formatError(r.error, { debug: ctx.debug }));
      } else throw r.error;
    }
  }
  if (objects.length === 0 && missing === 0) ctx.io.stderr.write(`No resources found in ${namespace} namespace.\n`);
  if (objects.length > 0) {
    const related = await fetchRelated(client, namespace);
    const now = ctx.now();
    const texts = objects.map((object) =>
      renderDescribe({
        object,
        now,
        events: related.events.filter((e) => isEventFor(e, object)),
        owned: related.all.filter((o) => isOwnedBy(o, object)),
      }),
    );
    ctx.io.stdout.write(texts.join('\n\n'));
  }
  if (missing > 0) throw new ReportedError();
  return 0;
}

/** Everything in the namespace once, so describing N objects costs N gets plus one list per kind. */
async function fetchRelated(client: Client, namespace: string): Promise<{ events: EventObject[]; all: ApiObject[] }> {
  const lists = await Promise.all(
    KINDS.map(async (k) => {
      const list = await client.for(k.kind).list({ namespace });
      // Kubernetes may leave kind out of list items; the list says what they are.
      return list.items.map((o) => (o.kind ? o : { ...o, kind: k.kind }));
    }),
  );
  const all = lists.flat();
  const events = all.filter((o): o is EventObject => o.kind === 'Event');
  return { events, all: all.filter((o) => o.kind !== 'Event') };
}
