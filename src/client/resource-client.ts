// One kind's REST endpoints as a ResourceClient (src/client/types.ts).
import { API_VERSION, DEFAULT_NAMESPACE, type ApiObject, type KindInfo, type ObjectList } from '../api/meta';
import type { ListOptions } from '../store/types';
import { applyObject } from './apply';
import type { ApiTransport, Query } from './transport';
import type { ClientWatchOptions, DeleteOptions, PatchType, ResourceClient, WriteOptions } from './types';
import { openWatch, type ClientWatch } from './watch';

const PATCH_CONTENT_TYPES: Record<PatchType, string> = {
  json: 'application/json-patch+json',
  merge: 'application/merge-patch+json',
};

export class HttpResourceClient<T extends ApiObject = ApiObject> implements ResourceClient<T> {
  constructor(
    private readonly transport: ApiTransport,
    private readonly info: KindInfo,
    private readonly watches: Set<{ stop(): void }>,
  ) {}

  get kind(): string {
    return this.info.kind;
  }

  list(opts: ListOptions = {}): Promise<ObjectList<T>> {
    return this.transport.call('GET', this.collectionPath(opts.namespace, true), {
      query: { labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector },
    });
  }

  get(namespace: string | undefined, name: string): Promise<T> {
    return this.transport.call('GET', this.objectPath(namespace, name));
  }

  create(obj: T, opts: WriteOptions = {}): Promise<T> {
    return this.transport.call('POST', this.collectionPath(obj.metadata.namespace, false), {
      query: dryRunQuery(opts),
      body: this.withTypeMeta(obj),
    });
  }

  update(obj: T, opts: WriteOptions = {}): Promise<T> {
    return this.transport.call('PUT', this.objectPath(obj.metadata.namespace, obj.metadata.name), {
      query: dryRunQuery(opts),
      body: this.withTypeMeta(obj),
    });
  }

  updateStatus(obj: T, opts: WriteOptions = {}): Promise<T> {
    return this.transport.call('PUT', `${this.objectPath(obj.metadata.namespace, obj.metadata.name)}/status`, {
      query: dryRunQuery(opts),
      body: this.withTypeMeta(obj),
    });
  }

  patch(
    namespace: string | undefined,
    name: string,
    type: PatchType,
    body: unknown,
    opts: { subresource?: 'status' } & WriteOptions = {},
  ): Promise<T> {
    const suffix = opts.subresource ? `/${opts.subresource}` : '';
    return this.transport.call('PATCH', this.objectPath(namespace, name) + suffix, {
      query: dryRunQuery(opts),
      body,
      contentType: PATCH_CONTENT_TYPES[type],
    });
  }

  delete(namespace: string | undefined, name: string, opts: DeleteOptions = {}): Promise<T> {
    const preconditions =
      opts.preconditionUid || opts.preconditionResourceVersion
        ? { uid: opts.preconditionUid, resourceVersion: opts.preconditionResourceVersion }
        : undefined;
    return this.transport.call('DELETE', this.objectPath(namespace, name), {
      query: { ...dryRunQuery(opts), propagationPolicy: opts.propagationPolicy },
      // kubectl sends DeleteOptions as the body; only needed here for preconditions.
      body: preconditions ? { kind: 'DeleteOptions', apiVersion: 'v1', preconditions } : undefined,
    });
  }

  apply(obj: T, opts: WriteOptions = {}): Promise<{ object: T; action: 'created' | 'configured' | 'unchanged' }> {
    return applyObject<T>(this, this.withTypeMeta(obj), opts);
  }

  watch(opts: ClientWatchOptions = {}): ClientWatch<T> {
    const query: Query = {
      labelSelector: opts.labelSelector,
      fieldSelector: opts.fieldSelector,
      resourceVersion: opts.resourceVersion,
      timeoutSeconds: opts.timeoutSeconds === undefined ? undefined : String(opts.timeoutSeconds),
    };
    return openWatch<T>(this.transport, this.collectionPath(opts.namespace, true), query, this.watches);
  }

  /** Namespaced kinds: omitting the namespace lists across all of them when `allNamespaces` allows it. */
  private collectionPath(namespace: string | undefined, allNamespaces: boolean): string {
    const base = `/apis/${API_VERSION}`;
    if (!this.info.namespaced || (namespace === undefined && allNamespaces)) return `${base}/${this.info.plural}`;
    return `${base}/namespaces/${encodeURIComponent(namespace ?? DEFAULT_NAMESPACE)}/${this.info.plural}`;
  }

  /** An object without a namespace is in "default", as kubectl assumes. */
  private objectPath(namespace: string | undefined, name: string): string {
    return `${this.collectionPath(namespace ?? DEFAULT_NAMESPACE, false)}/${encodeURIComponent(name)}`;
  }

  private withTypeMeta(obj: T): T {
    return { ...obj, apiVersion: obj.apiVersion ?? API_VERSION, kind: obj.kind ?? this.info.kind };
  }
}

function dryRunQuery(opts: WriteOptions): Query {
  return opts.dryRun ? { dryRun: 'All' } : {};
}
