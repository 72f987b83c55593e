import { describe, expect, it } from 'vitest';
import { parseTargets, qualifiedName, resolveKind, resolveKindList } from '../../src/cli/kinds';

const kinds = (args: string[]) => parseTargets(args).map((t) => `${t.info.kind}:${t.names.join(',')}`);

describe('kind words', () => {
  it.each([
    ['ctr', 'Container'],
    ['containers', 'Container'],
    ['Container', 'Container'],
    ['svc', 'Service'],
    ['net', 'Network'],
    ['vol', 'Volume'],
    ['img', 'Image'],
    ['ev', 'Event'],
    ['events', 'Event'],
    ['BUILD', 'Build'],
  ])('%s → %s', (word, kind) => {
    expect(resolveKind(word).kind).toBe(kind);
  });

  it('refuses an unknown word with kubectl wording and the known list', () => {
    expect(() => resolveKind('pods')).toThrow(/the server doesn't have a resource type "pods" \(known: .*containers\|ctr/);
  });

  it('expands "all" to the workload kinds (no events) and accepts comma lists', () => {
    expect(resolveKindList('all').map((k) => k.kind)).toEqual(['Service', 'Container', 'Image', 'Build', 'Network', 'Volume']);
    expect(resolveKindList('svc,ctr,svc').map((k) => k.kind)).toEqual(['Service', 'Container']);
    expect(() => resolveKindList('svc,')).toThrow(/empty resource type/);
  });
});

describe('parseTargets', () => {
  it('takes KIND NAME… and kind/name… forms', () => {
    expect(kinds(['svc', 'web', 'api'])).toEqual(['Service:web,api']);
    expect(kinds(['svc/web', 'ctr/web-1', 'service/api'])).toEqual(['Service:web,api', 'Container:web-1']);
    expect(kinds(['vol'])).toEqual(['Volume:']);
  });

  it('refuses mixing the two forms, names with several kinds, and malformed kind/name', () => {
    expect(() => parseTargets(['svc', 'svc/web'])).toThrow(/no need to specify a resource type/);
    expect(() => parseTargets(['svc,ctr', 'web'])).toThrow(/single resource type/);
    expect(() => parseTargets(['svc/'])).toThrow(/single resource and name/);
    expect(() => parseTargets(['svc/a/b'])).toThrow(/single resource and name/);
    expect(() => parseTargets([])).toThrow(/must specify the type of resource to get/);
    expect(() => parseTargets([], 'describe')).toThrow(/resource to describe/);
  });

  it('names objects as kubectl does', () => {
    expect(qualifiedName('Service', 'web')).toBe('service/web');
    expect(qualifiedName('Container', 'shop-web-1')).toBe('container/shop-web-1');
  });
});
