// Status conditions, with the semantics of Kubernetes' apimachinery
// meta.SetStatusCondition (k8s.io/apimachinery/pkg/api/meta/conditions.go):
// lastTransitionTime moves only when `status` changes, so `describe` can say how long an
// object has been in its current state; reason, message and observedGeneration always
// follow the newest write.
import type { BaseStatus, Condition } from '../src/api/meta';

/**
 * Adds or updates `cond` in `status.conditions` (mutating `status`).
 * Returns true if anything changed, so callers can skip a status write that would be a no-op.
 */
export function setCondition(status: BaseStatus, cond: Condition, now: Date = new Date()): boolean {
  const conditions = (status.conditions ??= []);
  const existing = conditions.find((c) => c.type === cond.type);
  if (!existing) {
    conditions.push({ ...cond, lastTransitionTime: cond.lastTransitionTime ?? now.toISOString() });
    return true;
  }
  let changed = false;
  if (existing.status !== cond.status) {
    existing.status = cond.status;
    existing.lastTransitionTime = cond.lastTransitionTime ?? now.toISOString();
    changed = true;
  }
  for (const field of ['reason', 'message', 'observedGeneration'] as const) {
    if (existing[field] === cond[field]) continue;
    // Delete rather than store `undefined`, so that a deep comparison of two statuses
    // does not see a difference JSON would not.
    if (cond[field] === undefined) delete existing[field];
    else (existing as unknown as Record<string, unknown>)[field] = cond[field];
    changed = true;
  }
  return changed;
}

export function getCondition(status: BaseStatus | undefined, type: string): Condition | undefined {
  return status?.conditions?.find((c) => c.type === type);
}

export function isTrue(status: BaseStatus | undefined, type: string): boolean {
  return getCondition(status, type)?.status === 'True';
}

/** Removes the condition of `type`; returns true if there was one. */
export function removeCondition(status: BaseStatus, type: string): boolean {
  const before = status.conditions?.length ?? 0;
  status.conditions = status.conditions?.filter((c) => c.type !== type);
  return (status.conditions?.length ?? 0) !== before;
}
