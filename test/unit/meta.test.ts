import { describe, expect, it } from 'vitest';
import { kindByName, objectKey } from '../../src/api/meta';
import { ApiError, notFound } from '../../src/api/errors';

describe('kinds', () => {
  it('resolves kinds by name, plural and kubectl-style short name', () => {
    expect(kindByName('ctr')?.kind).toBe('Container');
    expect(kindByName('Services')?.kind).toBe('Service');
    expect(kindByName('services')?.kind).toBe('Service');
    expect(kindByName('VOL')?.kind).toBe('Volume');
    expect(kindByName('nope')).toBeUndefined();
  });
  it('keys objects by namespace/name', () => {
    expect(objectKey({ metadata: { name: 'a' } })).toBe('default/a');
    expect(objectKey({ metadata: { namespace: 'shop', name: 'a' } })).toBe('shop/a');
  });
});

describe('ApiError', () => {
  it('round-trips through a Kubernetes Status', () => {
    const e = notFound('Container', 'shop', 'web-1');
    const s = e.toStatus();
    expect(s).toMatchObject({ kind: 'Status', reason: 'NotFound', code: 404 });
    const back = ApiError.fromStatus(s);
    expect(back.code).toBe('D2P_NOT_FOUND');
    expect(back.message).toBe('container "shop/web-1" not found');
  });
});
