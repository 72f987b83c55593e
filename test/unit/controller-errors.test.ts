// describeError: the text a failed reconcile leaves in a condition and an event.
import { describe, expect, it } from 'vitest';

import { describeError } from '../../controllers/errors';

describe('describeError', () => {
  it('adds the errno name the message lacks and follows the cause chain', () => {
    const root = Object.assign(new Error('mount failed'), { code: 'EBUSY' });
    expect(describeError(new Error('starting web-1', { cause: root }))).toBe('starting web-1: mount failed (EBUSY)');
  });

  it('says a cause that only repeats its wrapper\'s message once', () => {
    const network = new Error('subnet 10.0.0.0/24 overlaps front');
    expect(describeError(new Error('subnet 10.0.0.0/24 overlaps front', { cause: network }))).toBe('subnet 10.0.0.0/24 overlaps front');
    expect(describeError(new Error('network back: subnet 10.0.0.0/24 overlaps front', { cause: network }))).toBe('network back: subnet 10.0.0.0/24 overlaps front');
  });
});
