import { describe, expect, it } from 'vitest';
import { compileSelectors, parseFieldSelector, parseLabelSelector } from '../../src/store/labels';
import { isApiError } from '../../src/api/errors';
import type { ApiObject } from '../../src/api/meta';

const web = { app: 'web', tier: 'front', env: 'prod' };
const db = { app: 'db', tier: 'back' };
const bare = {};
const numbered = { replicas: '3' };

// [selector, labels, expected]
const labelCases: [string, Record<string, string>, boolean][] = [
  ['', web, true],
  ['', bare, true],
  ['app=web', web, true],
  ['app=web', db, false],
  ['app==web', web, true],
  ['app = web', web, true],
  ['app!=web', web, false],
  ['app!=web', db, true],
  ['app!=web', bare, true], // missing label satisfies !=, as in Kubernetes
  ['app in (web,db)', web, true],
  ['app in (web, db)', db, true],
  ['app in (cache)', web, false],
  ['app in (web)', bare, false],
  ['app notin (web)', web, false],
  ['app notin (web)', db, true],
  ['app notin (web)', bare, true],
  ['env', web, true],
  ['env', db, false],
  ['!env', web, false],
  ['!env', db, true],
  ['app=web,tier=front', web, true],
  ['app=web,tier=back', web, false],
  ['app in (web,db),!env', db, true],
  ['app in (web,db),!env', web, false],
  ['env=', web, false],
  ['env=', { env: '' }, true],
  ['replicas>2', numbered, true],
  ['replicas<3', numbered, false],
  ['replicas>2', bare, false],
  ['example.com/role=edge', { 'example.com/role': 'edge' }, true],
];

describe('parseLabelSelector', () => {
  it.each(labelCases)('%j on %j → %s', (selector, labels, expected) => {
    expect(parseLabelSelector(selector)(labels)).toBe(expected);
  });

  it('treats an object without labels as having none', () => {
    expect(parseLabelSelector('app!=web')(undefined)).toBe(true);
    expect(parseLabelSelector('app')(undefined)).toBe(false);
  });

  it.each([
    'app=web,',
    'app in web',
    'app in (web',
    'app notin',
    '!app=web',
    '=web',
    'app=we b',
    'app===web',
    'replicas>x',
    'bad key=1',
    '-app=web',
    'app=web)',
  ])('rejects %j with a BadRequest naming the selector', (selector) => {
    let caught: unknown;
    try {
      parseLabelSelector(selector);
    } catch (err) {
      caught = err;
    }
    expect(isApiError(caught, 'BadRequest')).toBe(true);
    expect((caught as Error).message).toContain(JSON.stringify(selector));
  });
});

function event(name: string, namespace: string | undefined, involved: string): ApiObject {
  return {
    apiVersion: 'd2p.dev/v1alpha1',
    kind: 'Event',
    metadata: { name, ...(namespace ? { namespace } : {}) },
    involvedObject: { kind: 'Container', name: involved },
    status: { phase: 'Running', restarts: 2 },
  } as unknown as ApiObject;
}

describe('parseFieldSelector', () => {
  const a = event('a', 'shop', 'web-1');
  const b = event('b', undefined, 'db-1');

  it.each<[string, ApiObject, boolean]>([
    ['', a, true],
    ['metadata.name=a', a, true],
    ['metadata.name==a', b, false],
    ['metadata.name!=a', b, true],
    ['metadata.namespace=shop', a, true],
    ['metadata.namespace=default', b, true], // a missing namespace is "default"
    ['involvedObject.name=web-1', a, true],
    ['involvedObject.name=web-1,metadata.name=b', b, false],
    ['status.restarts=2', a, true],
    ['status.missing=', a, true],
    ['status.missing!=x', a, true],
  ])('%j on %s → %s', (selector, obj, expected) => {
    expect(parseFieldSelector(selector)(obj)).toBe(expected);
  });

  it('unescapes commas and equals signs in values', () => {
    const odd = event('a', 'shop', 'x,y=z');
    expect(parseFieldSelector('involvedObject.name=x\\,y\\=z')(odd)).toBe(true);
    expect(parseFieldSelector('involvedObject.name=x\\,y\\=z,metadata.name=a')(odd)).toBe(true);
  });

  it.each(['metadata.name', 'metadata..name=a', '=a', 'metadata.name=a\\b'])('rejects %j with a BadRequest', (selector) => {
    expect(() => parseFieldSelector(selector)).toThrowError(expect.objectContaining({ reason: 'BadRequest' }));
  });

  it('combines label and field selectors', () => {
    const labelled = { ...a, metadata: { ...a.metadata, labels: { app: 'web' } } };
    expect(compileSelectors({ labelSelector: 'app=web', fieldSelector: 'metadata.name=a' })(labelled)).toBe(true);
    expect(compileSelectors({ labelSelector: 'app=db', fieldSelector: 'metadata.name=a' })(labelled)).toBe(false);
    expect(compileSelectors({})(labelled)).toBe(true);
  });
});
