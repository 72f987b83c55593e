// The in-memory copy of every committed object, with the indexes reads and garbage
// collection need. Reads never touch the disk. Stored objects are replaced, never mutated.
import type { ApiObject } from '../api/meta';

export interface ObjectRef {
  kind: string;
  namespace: string;
  name: string;
}

/** "Kind/namespace/name": unambiguous because no part can contain "/". */
export function refKey(ref: ObjectRef): string {
  return `${ref.kind}/${ref.namespace}/${ref.name}`;
}

function refOf(obj: ApiObject): ObjectRef {
  return { kind: obj.kind, namespace: obj.metadata.namespace!, name: obj.metadata.name };
}

export class ObjectTable {
  /** kind → namespace → name → object */
  private readonly objects = new Map<string, Map<string, Map<string, ApiObject>>>();
  private readonly byUid = new Map<string, ObjectRef>();
  /** owner uid → keys of objects that list it in ownerReferences */
  private readonly dependents = new Map<string, Map<string, ObjectRef>>();

  get(kind: string, namespace: string, name: string): ApiObject | undefined {
    return this.objects.get(kind)?.get(namespace)?.get(name);
  }

  /** Objects of a kind, in one namespace or all, sorted by namespace then name as etcd keys sort. */
  list(kind: string, namespace?: string): ApiObject[] {
    const byNamespace = this.objects.get(kind);
    if (!byNamespace) return [];
    const namespaces = namespace === undefined ? [...byNamespace.keys()].sort() : [namespace];
    const result: ApiObject[] = [];
    for (const ns of namespaces) {
      const names = byNamespace.get(ns);
      if (!names) continue;
      for (const name of [...names.keys()].sort()) result.push(names.get(name)!);
    }
    return result;
  }

  /** Every object of every kind. */
  all(): ApiObject[] {
    return [...this.objects.keys()].flatMap((kind) => this.list(kind));
  }

  /** Inserts or replaces; `obj.metadata.namespace` must be set. */
  put(obj: ApiObject): void {
    const ref = refOf(obj);
    const previous = this.get(ref.kind, ref.namespace, ref.name);
    if (previous) this.unindex(previous);
    let byNamespace = this.objects.get(ref.kind);
    if (!byNamespace) this.objects.set(ref.kind, (byNamespace = new Map()));
    let names = byNamespace.get(ref.namespace);
    if (!names) byNamespace.set(ref.namespace, (names = new Map()));
    names.set(ref.name, obj);
    this.index(obj);
  }

  remove(ref: ObjectRef): void {
    const names = this.objects.get(ref.kind)?.get(ref.namespace);
    const previous = names?.get(ref.name);
    if (!names || !previous) return;
    this.unindex(previous);
    names.delete(ref.name);
    if (names.size === 0) this.objects.get(ref.kind)!.delete(ref.namespace);
  }

  /**
   * Whether an owner reference points at a live object. Owners must share the dependent's
   * namespace: Kubernetes' garbage collector treats a cross-namespace owner as absent.
   */
  ownerExists(uid: string, namespace: string): boolean {
    return this.byUid.get(uid)?.namespace === namespace;
  }

  dependentsOf(uid: string): ObjectRef[] {
    return [...(this.dependents.get(uid)?.values() ?? [])];
  }

  get size(): number {
    return this.byUid.size;
  }

  private index(obj: ApiObject): void {
    const ref = refOf(obj);
    if (obj.metadata.uid) this.byUid.set(obj.metadata.uid, ref);
    for (const owner of obj.metadata.ownerReferences ?? []) {
      let set = this.dependents.get(owner.uid);
      if (!set) this.dependents.set(owner.uid, (set = new Map()));
      set.set(refKey(ref), ref);
    }
  }

  private unindex(obj: ApiObject): void {
    const ref = refOf(obj);
    const indexed = obj.metadata.uid ? this.byUid.get(obj.metadata.uid) : undefined;
    if (indexed && refKey(indexed) === refKey(ref)) this.byUid.delete(obj.metadata.uid!);
    for (const owner of obj.metadata.ownerReferences ?? []) {
      const set = this.dependents.get(owner.uid);
      set?.delete(refKey(ref));
      if (set?.size === 0) this.dependents.delete(owner.uid);
    }
  }
}
