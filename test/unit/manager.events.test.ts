import { beforeEach, describe, expect, it } from 'vitest';
import { ApiError } from '../../src/api/errors';
import type { BaseStatus, EventObject } from '../../src/api/meta';
import { getCondition, isTrue, removeCondition, setCondition } from '../../controllers/conditions';
import { EventRecorder, eventName, pruneEvents } from '../../controllers/events';
import { createJsonLogger } from '../../controllers/logger';
import { FakeApi } from '../helpers/fake-client';

const vol = (name: string, uid = `uid-${name}`) => ({ kind: 'Volume', metadata: { name, namespace: 'shop', uid } });

describe('EventRecorder', () => {
  let api: FakeApi;
  let logLines: string[];
  let clock: Date;
  let recorder: EventRecorder;

  beforeEach(() => {
    api = new FakeApi();
    logLines = [];
    clock = new Date('2024-05-01T10:00:00.000Z');
    recorder = new EventRecorder(api.for('Event'), {
      component: 'volume-controller',
      logger: createJsonLogger({ write: (l) => logLines.push(l) }),
      now: () => clock,
    });
  });

  it('writes an Event about the object in its namespace, named <object>.<hash>', async () => {
    await recorder.record(vol('data'), 'Normal', 'Created', 'created volume directory /v/shop/data');
    const [ev] = api.all('Event') as EventObject[];
    expect(ev.metadata.namespace).toBe('shop');
    expect(ev.metadata.name).toMatch(/^data\.[0-9a-f]{10}$/);
    expect(ev).toMatchObject({
      kind: 'Event',
      involvedObject: { kind: 'Volume', namespace: 'shop', name: 'data', uid: 'uid-data' },
      type: 'Normal',
      reason: 'Created',
      message: 'created volume directory /v/shop/data',
      count: 1,
      firstTimestamp: '2024-05-01T10:00:00.000Z',
      lastTimestamp: '2024-05-01T10:00:00.000Z',
      source: { component: 'volume-controller' },
    });
  });

  it('aggregates repeats of the same reason and message into one Event with a count', async () => {
    await recorder.record(vol('data'), 'Warning', 'ReconcileError', 'disk full');
    clock = new Date('2024-05-01T10:05:00.000Z');
    // Concurrent repeats must not race into a lost increment.
    await Promise.all([
      recorder.record(vol('data'), 'Warning', 'ReconcileError', 'disk full'),
      recorder.record(vol('data'), 'Warning', 'ReconcileError', 'disk full'),
    ]);
    await recorder.record(vol('data'), 'Warning', 'ReconcileError', 'permission denied');
    const events = api.all('Event') as EventObject[];
    expect(events).toHaveLength(2);
    const full = events.find((e) => e.message === 'disk full')!;
    expect(full).toMatchObject({ count: 3, firstTimestamp: '2024-05-01T10:00:00.000Z', lastTimestamp: '2024-05-01T10:05:00.000Z' });
    expect(events.find((e) => e.message === 'permission denied')!.count).toBe(1);
    expect(recorder.failedWrites).toBe(0);
  });

  it('keeps Events of different kinds with the same name apart', async () => {
    await recorder.record(vol('data'), 'Normal', 'Created', 'created');
    await recorder.record({ kind: 'Network', metadata: { name: 'data', namespace: 'shop', uid: 'n1' } }, 'Normal', 'Created', 'created');
    expect(api.all('Event')).toHaveLength(2);
  });

  it('starts a fresh count for a re-created object with a new uid', async () => {
    await recorder.record(vol('data', 'old'), 'Normal', 'Created', 'created');
    await recorder.record(vol('data', 'old'), 'Normal', 'Created', 'created');
    await recorder.record(vol('data', 'new'), 'Normal', 'Created', 'created');
    const [ev] = api.all('Event') as EventObject[];
    expect(ev).toMatchObject({ count: 1, involvedObject: { uid: 'new' } });
  });

  it('never throws into the caller: a failed write is logged and counted', async () => {
    api.failNext('Event', 'create', new ApiError('ServiceUnavailable', 'store closed'));
    await expect(recorder.record(vol('data'), 'Warning', 'ReconcileError', 'x')).resolves.toBeUndefined();
    expect(recorder.failedWrites).toBe(1);
    expect(logLines).toHaveLength(1);
    expect(JSON.parse(logLines[0])).toMatchObject({ level: 'warn', msg: 'could not record event', reason: 'ReconcileError', error: 'store closed' });
    // The next record works again.
    await recorder.record(vol('data'), 'Warning', 'ReconcileError', 'x');
    expect(api.all('Event')).toHaveLength(1);
  });

  it('retries once when another writer got there first', async () => {
    await recorder.record(vol('data'), 'Normal', 'Created', 'created');
    api.failNext('Event', 'update', new ApiError('Conflict', 'modified meanwhile'));
    await recorder.record(vol('data'), 'Normal', 'Created', 'created');
    expect((api.all('Event') as EventObject[])[0].count).toBe(2);
    expect(recorder.failedWrites).toBe(0);
  });

  it('shortens names so that an Event name stays a valid object name', () => {
    const long = 'a'.repeat(253);
    const name = eventName({ kind: 'Volume', metadata: { name: long } }, 'Created', 'm');
    expect(name.length).toBeLessThanOrEqual(253);
    expect(name).toMatch(/^a+\.[0-9a-f]{10}$/);
    expect(eventName(vol('x'), 'A', 'm')).not.toBe(eventName(vol('x'), 'B', 'm'));
  });

  it('pruneEvents deletes Events last seen before the TTL', async () => {
    await recorder.record(vol('old'), 'Normal', 'Created', 'old');
    clock = new Date('2024-05-01T11:30:00.000Z');
    await recorder.record(vol('new'), 'Normal', 'Created', 'new');
    const deleted = await pruneEvents(api.for('Event'), 3600_000, new Date('2024-05-01T11:45:00.000Z'));
    expect(deleted).toBe(1);
    expect((api.all('Event') as EventObject[]).map((e) => e.message)).toEqual(['new']);
  });
});

describe('conditions', () => {
  it('adds a condition with a transition time', () => {
    const status: BaseStatus = {};
    const t1 = new Date('2024-01-01T00:00:00Z');
    expect(setCondition(status, { type: 'Ready', status: 'False', reason: 'Pending', message: 'waiting' }, t1)).toBe(true);
    expect(getCondition(status, 'Ready')).toEqual({ type: 'Ready', status: 'False', reason: 'Pending', message: 'waiting', lastTransitionTime: t1.toISOString() });
    expect(isTrue(status, 'Ready')).toBe(false);
  });

  it('keeps lastTransitionTime when only reason or message change, moves it when status changes', () => {
    const status: BaseStatus = {};
    const t1 = new Date('2024-01-01T00:00:00Z');
    const t2 = new Date('2024-01-01T00:01:00Z');
    const t3 = new Date('2024-01-01T00:02:00Z');
    setCondition(status, { type: 'Ready', status: 'False', reason: 'Pending' }, t1);
    expect(setCondition(status, { type: 'Ready', status: 'False', reason: 'Pulling', message: 'layer 2/4' }, t2)).toBe(true);
    expect(getCondition(status, 'Ready')).toMatchObject({ reason: 'Pulling', message: 'layer 2/4', lastTransitionTime: t1.toISOString() });
    expect(setCondition(status, { type: 'Ready', status: 'True', reason: 'Pulled' }, t3)).toBe(true);
    expect(getCondition(status, 'Ready')).toEqual({ type: 'Ready', status: 'True', reason: 'Pulled', lastTransitionTime: t3.toISOString() });
    expect(isTrue(status, 'Ready')).toBe(true);
  });

  it('reports no change when the condition is already as asked', () => {
    const status: BaseStatus = {};
    setCondition(status, { type: 'Ready', status: 'True', reason: 'Ok', observedGeneration: 2 });
    const before = structuredClone(status);
    expect(setCondition(status, { type: 'Ready', status: 'True', reason: 'Ok', observedGeneration: 2 })).toBe(false);
    expect(status).toEqual(before);
  });

  it('keeps conditions of other types and removes by type', () => {
    const status: BaseStatus = {};
    setCondition(status, { type: 'Ready', status: 'True' });
    setCondition(status, { type: 'Healthy', status: 'Unknown' });
    expect(status.conditions!.map((c) => c.type)).toEqual(['Ready', 'Healthy']);
    expect(removeCondition(status, 'Ready')).toBe(true);
    expect(removeCondition(status, 'Ready')).toBe(false);
    expect(getCondition(status, 'Ready')).toBeUndefined();
    expect(isTrue(undefined, 'Ready')).toBe(false);
  });
});
