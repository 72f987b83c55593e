// Discovery documents in Kubernetes' shapes (k8s.io/apimachinery/pkg/apis/meta/v1
// APIGroupList and APIResourceList), so that `kubectl api-resources`-style listings and
// the CLI's kind resolution can be driven by the server.
import { API_VERSION, GROUP, KINDS, VERSION } from '../api/meta';
import type { ApiResource, ApiResourceList } from '../client/types';

const OBJECT_VERBS = ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];
const STATUS_VERBS = ['get', 'patch', 'update'];

export function apiResourceList(): ApiResourceList {
  const resources: ApiResource[] = [];
  for (const k of KINDS) {
    resources.push({ name: k.plural, singularName: k.singular, namespaced: k.namespaced, kind: k.kind, verbs: OBJECT_VERBS, shortNames: k.shortNames });
    if (k.hasStatus) {
      // Subresources are listed as "<plural>/<sub>" with an empty singularName, as Kubernetes does.
      resources.push({ name: `${k.plural}/status`, singularName: '', namespaced: k.namespaced, kind: k.kind, verbs: STATUS_VERBS });
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: API_VERSION, resources };
}

export function apiGroupList(): unknown {
  const version = { groupVersion: API_VERSION, version: VERSION };
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: [{ name: GROUP, versions: [version], preferredVersion: version }] };
}
