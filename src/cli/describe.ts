// `d2p describe`: one object as kubectl describe prints it — identity, then spec and status
// as indented "Key:  value" blocks, a Conditions table, what the object owns, and the
// Events about it. Pure rendering from fetched objects, so tests use fixtures.
import type { ApiObject, Condition, EventObject } from '../api/meta';
import { ageOf, formatPorts, renderTable } from './printers';

export interface DescribeInput {
  object: ApiObject;
  /** Events whose involvedObject is this object (any order). */
  events: readonly EventObject[];
  /** Objects whose ownerReferences point at this object's uid. */
  owned: readonly ApiObject[];
  now: number;
}

// ------------------------------------------------------------------------------ aligned lines

type Line = { text: string } | { key: string; value: string };

/**
 * Collects lines and aligns "Key:\tvalue" pairs the way kubectl's describe output does: it
 * writes through a tabwriter (padding 2), so consecutive key/value lines share one value
 * column and a line without a value ("Spec:") starts a new block.
 */
class DescribeWriter {
  private readonly lines: Line[] = [];

  text(level: number, text: string): void {
    this.lines.push({ text: `${indent(level)}${text}` });
  }

  field(level: number, key: string, value: string): void {
    const [first, ...rest] = value.split('\n');
    this.lines.push({ key: `${indent(level)}${key}:`, value: first });
    // Continuation lines (more labels, a multi-line message) sit under the value column.
    for (const more of rest) this.lines.push({ key: '', value: more });
  }

  toString(): string {
    let out = '';
    let block: { key: string; value: string }[] = [];
    const flush = (): void => {
      const width = Math.max(0, ...block.map((l) => l.key.length)) + 2;
      for (const l of block) out += `${l.key.padEnd(width)}${l.value}`.trimEnd() + '\n';
      block = [];
    };
    for (const line of this.lines) {
      if ('key' in line) {
        block.push(line);
        continue;
      }
      flush();
      out += `${line.text}\n`;
    }
    flush();
    return out;
  }
}

const indent = (level: number): string => '  '.repeat(level);

// ------------------------------------------------------------------------------ values

/**
 * "containerPort" → "Container Port", as kubectl's generic describer labels CRD fields
 * (smartLabelFor). Keys that are not identifiers (labels, env names, sysctls) stay as
 * written: "com.docker.compose.project" must not become "Com.docker…".
 */
export function smartLabel(key: string): string {
  if (!/^[a-z][a-zA-Z0-9]*$/.test(key)) return key;
  const words = key.replace(/([a-z0-9])([A-Z])/g, '$1 $2').split(' ');
  return words.map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join(' ');
}

function scalarText(v: unknown): string {
  if (v === null || v === undefined) return '<none>';
  if (typeof v === 'string') return v === '' ? '""' : v;
  return String(v);
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Maps of strings to strings (labels, args, sysctls, driverOpts) keep their keys verbatim. */
function isStringMap(v: Record<string, unknown>): boolean {
  return Object.values(v).every((x) => typeof x === 'string');
}

/** [{name, value}] lists (env) read better as "NAME:  value", as kubectl shows Environment. */
function isNameValueList(v: unknown[]): v is { name: string; value?: unknown }[] {
  return (
    v.length > 0 &&
    v.every((x) => isPlainObject(x) && typeof x.name === 'string' && Object.keys(x).every((k) => k === 'name' || k === 'value'))
  );
}

function writeValue(w: DescribeWriter, level: number, key: string, value: unknown, verbatimKeys = false): void {
  const label = verbatimKeys ? key : smartLabel(key);
  if (Array.isArray(value)) return writeArray(w, level, label, value);
  if (isPlainObject(value)) {
    if (Object.keys(value).length === 0) return w.field(level, label, '{}');
    w.text(level, `${label}:`);
    writeMap(w, level + 1, value, isStringMap(value));
    return;
  }
  w.field(level, label, scalarText(value));
}

function writeMap(w: DescribeWriter, level: number, map: Record<string, unknown>, verbatimKeys = false): void {
  for (const [k, v] of Object.entries(map)) writeValue(w, level, k, v, verbatimKeys);
}

function writeArray(w: DescribeWriter, level: number, label: string, list: unknown[]): void {
  // An empty list is meaningful (entrypoint: [] clears the image's), so it is shown.
  if (list.length === 0) return w.field(level, label, '[]');
  if (list.every((x) => !Array.isArray(x) && !isPlainObject(x))) {
    // Short scalar lists (command, tags) on one line; kubectl prints them one per line,
    // which loses the argv boundaries users need to see.
    return w.field(level, label, list.map((x) => JSON.stringify(x)).join(' '));
  }
  w.text(level, `${label}:`);
  if (isNameValueList(list)) {
    for (const { name, value } of list) w.field(level + 1, name, scalarText(value));
    return;
  }
  // One "- " per item keeps items apart (kubectl runs them together, which is ambiguous).
  for (const item of list) writeListItem(w, level + 1, item);
}

function writeListItem(w: DescribeWriter, level: number, item: unknown): void {
  if (!isPlainObject(item)) return w.text(level, `- ${scalarText(Array.isArray(item) ? JSON.stringify(item) : item)}`);
  const entries = Object.entries(item);
  if (entries.length === 0) return w.text(level, '- {}');
  const inner = new DescribeWriter();
  writeMap(inner, 0, item);
  const lines = inner.toString().trimEnd().split('\n');
  lines.forEach((line, i) => w.text(level, `${i === 0 ? '- ' : '  '}${line}`));
}

// ------------------------------------------------------------------------------ sections

function labelsText(map: Record<string, string> | undefined): string {
  const keys = Object.keys(map ?? {}).sort();
  return keys.length === 0 ? '<none>' : keys.map((k) => `${k}=${map![k]}`).join('\n');
}

function writeIdentity(w: DescribeWriter, obj: ApiObject, now: number): void {
  const m = obj.metadata;
  w.field(0, 'Name', m.name);
  w.field(0, 'Namespace', m.namespace ?? '<none>');
  w.field(0, 'Kind', obj.kind);
  w.field(0, 'API Version', obj.apiVersion);
  w.field(0, 'Labels', labelsText(m.labels));
  w.field(0, 'Annotations', labelsText(m.annotations));
  w.field(0, 'Created', m.creationTimestamp ? `${m.creationTimestamp} (${ageOf(m.creationTimestamp, now)} ago)` : '<unknown>');
  const controller = (m.ownerReferences ?? []).find((r) => r.controller) ?? m.ownerReferences?.[0];
  // kubectl's "Controlled By:  ReplicaSet/web-5d4f…".
  w.field(0, 'Controlled By', controller ? `${controller.kind}/${controller.name}` : '<none>');
  if (m.finalizers?.length) w.field(0, 'Finalizers', m.finalizers.join(', '));
  if (m.deletionTimestamp) w.field(0, 'Terminating Since', `${m.deletionTimestamp} (${ageOf(m.deletionTimestamp, now)} ago)`);
  if (m.generation !== undefined) w.field(0, 'Generation', String(m.generation));
  if (m.uid) w.field(0, 'UID', m.uid);
}

function writeSpec(w: DescribeWriter, obj: ApiObject): void {
  const spec = obj.spec as Record<string, unknown> | undefined;
  if (spec === undefined) return;
  if (!isPlainObject(spec) || Object.keys(spec).length === 0) return w.field(0, 'Spec', '<none>');
  w.text(0, 'Spec:');
  writeMap(w, 1, withReadablePorts(spec));
}

/** Ports are shown as docker ps shows them ("127.0.0.1:8080->80/tcp"), wherever they sit in the spec. */
function withReadablePorts(spec: Record<string, unknown>): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(spec)) {
    if (k === 'ports' && Array.isArray(v) && v.every((p) => isPlainObject(p) && typeof p.containerPort === 'number')) {
      copy[k] = formatPorts({ spec: { ports: v } });
    } else copy[k] = isPlainObject(v) ? withReadablePorts(v) : v;
  }
  return copy;
}

function writeStatus(w: DescribeWriter, obj: ApiObject): void {
  if (obj.status === undefined) return;
  const { conditions: _shownAsTable, ...rest } = obj.status as Record<string, unknown>;
  if (Object.keys(rest).length === 0) return w.field(0, 'Status', '<none>');
  w.text(0, 'Status:');
  writeMap(w, 1, rest);
}

/** Top-level fields other than metadata/spec/status (an Event's involvedObject, reason…). */
function writeOtherFields(w: DescribeWriter, obj: ApiObject): void {
  const skip = new Set(['apiVersion', 'kind', 'metadata', 'spec', 'status']);
  for (const [k, v] of Object.entries(obj)) if (!skip.has(k)) writeValue(w, 0, k, v);
}

/** A table under a section heading, indented 2 and padded 2 as kubectl describe's tables. */
function section(title: string, header: string[], rows: string[][]): string {
  if (rows.length === 0) return `${title}:  <none>\n`;
  const dashes = header.map((h) => '-'.repeat(h.length));
  const table = renderTable([header, dashes, ...rows.map((r) => r.map((c) => c || '<none>'))], 2);
  return `${title}:\n${table.replace(/^/gm, '  ').replace(/ +$/gm, '')}`;
}

function conditionsSection(obj: ApiObject, now: number): string | undefined {
  if (obj.status === undefined) return undefined;
  const conditions: Condition[] = obj.status.conditions ?? [];
  const rows = conditions.map((c) => [
    c.type,
    c.status,
    c.reason ?? '',
    c.message ?? '',
    c.lastTransitionTime ? `${c.lastTransitionTime} (${ageOf(c.lastTransitionTime, now)} ago)` : '',
  ]);
  return section('Conditions', ['Type', 'Status', 'Reason', 'Message', 'LastTransitionTime'], rows);
}

function ownedSection(owned: readonly ApiObject[], now: number): string {
  const rows = [...owned]
    .sort((a, b) => (a.kind + '/' + a.metadata.name < b.kind + '/' + b.metadata.name ? -1 : 1))
    .map((o) => [
      o.kind,
      o.metadata.name,
      o.metadata.deletionTimestamp ? 'Terminating' : ((o.status as { phase?: string } | undefined)?.phase ?? ''),
      ageOf(o.metadata.creationTimestamp, now),
    ]);
  return section('Owns', ['Kind', 'Name', 'Status', 'Age'], rows);
}

/** kubectl's event Age: "5m", or "2m (x4 over 10m)" for a repeated Event. */
function eventAge(e: EventObject, now: number): string {
  const last = ageOf(e.lastTimestamp || e.firstTimestamp || e.metadata.creationTimestamp, now);
  if ((e.count ?? 1) <= 1) return last;
  return `${last} (x${e.count} over ${ageOf(e.firstTimestamp || e.metadata.creationTimestamp, now)})`;
}

function eventsSection(events: readonly EventObject[], now: number): string {
  const when = (e: EventObject): number => Date.parse(e.lastTimestamp || e.firstTimestamp || '') || 0;
  const rows = [...events]
    .sort((a, b) => when(a) - when(b))
    .map((e) => [e.type ?? '', e.reason ?? '', eventAge(e, now), e.source?.component ?? '', (e.message ?? '').replace(/\s*\n\s*/g, ' ')]);
  return section('Events', ['Type', 'Reason', 'Age', 'From', 'Message'], rows);
}

/** The whole describe text of one object. */
export function renderDescribe(input: DescribeInput): string {
  const { object, now } = input;
  const w = new DescribeWriter();
  writeIdentity(w, object, now);
  writeOtherFields(w, object);
  writeSpec(w, object);
  writeStatus(w, object);
  let out = w.toString();
  out += conditionsSection(object, now) ?? '';
  if (object.kind !== 'Event') {
    out += ownedSection(input.owned, now);
    out += eventsSection(input.events, now);
  }
  return out;
}

/** Whether an Event is about `obj`: same kind and name, and the same uid when both are known (not a former namesake). */
export function isEventFor(e: EventObject, obj: ApiObject): boolean {
  const inv = e.involvedObject;
  if (!inv || inv.kind !== obj.kind || inv.name !== obj.metadata.name) return false;
  if (inv.namespace && obj.metadata.namespace && inv.namespace !== obj.metadata.namespace) return false;
  return !inv.uid || !obj.metadata.uid || inv.uid === obj.metadata.uid;
}

export function isOwnedBy(candidate: ApiObject, owner: ApiObject): boolean {
  const uid = owner.metadata.uid;
  return uid !== undefined && (candidate.metadata.ownerReferences ?? []).some((r) => r.uid === uid);
}
