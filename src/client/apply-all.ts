// Client.applyAll: one POST of a List to the server's batch apply (src/server/apply-batch.ts),
// its answer turned into ApiError values per refused object.
import { ApiError, type StatusObject } from '../api/errors';
import { API_VERSION, type ApiObject } from '../api/meta';
import type { ApiTransport } from './transport';
import type { ApplyAllItem, ApplyAllResult, WriteOptions } from './types';

export const APPLY_PATH = `/apis/${API_VERSION}/apply`;

/** The server's answer (ApplyResultBody); read defensively, since it crossed a socket. */
interface ApplyResultWire {
  kind?: unknown;
  written?: unknown;
  items?: unknown;
}

type WireItem = { action?: unknown; object?: unknown; status?: StatusObject };

export async function applyAll(transport: ApiTransport, objects: readonly ApiObject[], opts: WriteOptions = {}): Promise<ApplyAllResult> {
  const answer = await transport.call<ApplyResultWire>('POST', APPLY_PATH, {
    query: opts.dryRun ? { dryRun: 'All' } : {},
    body: { apiVersion: 'v1', kind: 'List', items: objects },
  });
  if (answer?.kind !== 'ApplyResult' || !Array.isArray(answer.items) || answer.items.length !== objects.length) {
    throw Object.assign(new Error(`POST ${APPLY_PATH}: expected an ApplyResult with ${objects.length} items, got ${JSON.stringify(answer).slice(0, 200)}`), {
      code: 'D2P_UNEXPECTED_RESPONSE',
    });
  }
  return { written: answer.written === true, items: (answer.items as WireItem[]).map(toItem) };
}

function toItem(item: WireItem): ApplyAllItem {
  if (item.status) return { ok: false, error: ApiError.fromStatus(item.status) };
  return { ok: true, action: item.action as 'created' | 'configured' | 'unchanged', object: item.object as ApiObject };
}
