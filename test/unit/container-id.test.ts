// The runtime id of a Container: what the controller names its runtime container, and
// where the CLI finds its log.
import { describe, expect, it } from 'vitest';
import { containerId } from '../../controllers/container-id';

const RUNTIME_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

describe('containerId', () => {
  it('is "<namespace>_<name>" when the runtime accepts that', () => {
    expect(containerId('shop', 'web-1')).toBe('shop_web-1');
  });

  it('shortens a name too long for the runtime with a hash that keeps it unique and stable', () => {
    const long = 'x'.repeat(140);
    const id = containerId('shop', long);
    expect(id).toMatch(RUNTIME_ID);
    expect(id).toHaveLength(128);
    expect(id).toMatch(/^shop_x+-[0-9a-f]{16}$/);
    expect(containerId('shop', long)).toBe(id);
    expect(containerId('shop', `${long}y`)).not.toBe(id);
    expect(containerId('shop2', long)).not.toBe(id);
  });
});
