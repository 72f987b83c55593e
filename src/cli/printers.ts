// kubectl-style output of objects: aligned tables per kind (`get`, `get -o wide`), and
// `-o name|json|yaml`. Everything here is a pure function of the objects and "now", so
// tests render fixtures without a server. The yaml module is loaded only when YAML is
// asked for: `d2p get` prints tables and its start-up time is budgeted (DESIGN.md §9).
import type { ApiObject, EventObject } from '../api/meta';
import type {
  BuildSpec,
  ContainerSpec,
  ContainerStatus,
  ImageSpec,
  ImageStatus,
  NetworkSpec,
  NetworkStatus,
  ServiceSpec,
  ServiceStatus,
  SourceSpec,
  SourceStatus,
  VolumeSpec,
  VolumeStatus,
} from '../api/types';
import { qualifiedName } from './kinds';

export type OutputFormat = 'table' | 'wide' | 'yaml' | 'json' | 'name';

export const OUTPUT_FORMATS: readonly OutputFormat[] = ['table', 'wide', 'yaml', 'json', 'name'];

export interface TableOptions {
  wide?: boolean;
  showLabels?: boolean;
  /** -A: a NAMESPACE column first. */
  allNamespaces?: boolean;
  /** `get all` and mixed kinds: NAME reads "service/web". */
  kindPrefix?: boolean;
  /** Milliseconds since the epoch; AGE columns count from it. */
  now: number;
}

// ------------------------------------------------------------------------------ formatting

/**
 * Human duration exactly as kubectl prints AGE (k8s.io/apimachinery/pkg/util/duration
 * HumanDuration): seconds up to 2 minutes, then minutes(+seconds) up to 10 minutes, then
 * coarser units. A clock up to 1 s ahead reads "0s"; further ahead reads "<invalid>".
 */
export function formatAge(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.trunc(seconds / 60);
  if (minutes < 10) return withRest(minutes, 'm', seconds % 60, 's');
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.trunc(minutes / 60);
  if (hours < 8) return withRest(hours, 'h', minutes % 60, 'm');
  if (hours < 48) return `${hours}h`;
  const days = Math.trunc(hours / 24);
  if (hours < 24 * 8) return withRest(days, 'd', hours % 24, 'h');
  if (hours < 24 * 365 * 2) return `${days}d`;
  const years = Math.trunc(days / 365);
  if (hours < 24 * 365 * 8) return withRest(years, 'y', days % 365, 'd');
  return `${years}y`;
}

function withRest(major: number, majorUnit: string, minor: number, minorUnit: string): string {
  return minor === 0 ? `${major}${majorUnit}` : `${major}${majorUnit}${minor}${minorUnit}`;
}

/** AGE of an RFC 3339 timestamp; "<unknown>" as kubectl prints for a missing one. */
export function ageOf(timestamp: string | undefined, now: number): string {
  if (!timestamp) return '<unknown>';
  const t = Date.parse(timestamp);
  if (Number.isNaN(t)) return '<unknown>';
  return formatAge(now - t);
}

const SIZE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB'];

/**
 * Decimal units with 3 significant digits, as `docker images` prints SIZE
 * (github.com/docker/go-units HumanSizeWithPrecision(size, 3)): 4194304 → "4.19MB".
 */
export function humanSize(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < SIZE_UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${Number(value.toPrecision(3))}${SIZE_UNITS[unit]}`;
}

/** "app=web,tier=front", keys sorted as kubectl's --show-labels does. */
export function formatLabels(labels: Record<string, string> | undefined): string {
  const keys = Object.keys(labels ?? {}).sort();
  return keys.length === 0 ? '<none>' : keys.map((k) => `${k}=${labels![k]}`).join(',');
}

/** First 12 hex digits of a digest, as `docker images` shows IMAGE ID. */
export function shortDigest(digest: string | undefined): string {
  if (!digest) return '';
  const colon = digest.indexOf(':');
  return digest.slice(colon + 1, colon + 13);
}

// ------------------------------------------------------------------------------ tables

/** Renders rows as kubectl's tabwriter does (min width 6, padding 3, last column unpadded). */
export function renderTable(rows: readonly (readonly string[])[], padding = 3): string {
  const widths = columnWidths(rows, padding);
  return rows.map((row) => formatRow(row, widths)).join('');
}

const MIN_CELL_WIDTH = 6;

export function columnWidths(rows: readonly (readonly string[])[], padding = 3): number[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      if (i === row.length - 1) return;
      widths[i] = Math.max(widths[i] ?? 0, MIN_CELL_WIDTH, cell.length + padding);
    });
  }
  return widths;
}

export function formatRow(row: readonly string[], widths: readonly number[]): string {
  const cells = row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? cell.length + 3)));
  return `${cells.join('')}\n`;
}

interface Column {
  header: string;
  cell(obj: ApiObject, now: number): string;
  wideOnly?: boolean;
}

const age: Column = { header: 'AGE', cell: (o, now) => ageOf(o.metadata.creationTimestamp, now) };
const phaseOf = (o: ApiObject): string => {
  if (o.metadata.deletionTimestamp) return 'Terminating';
  return (o.status as { phase?: string } | undefined)?.phase ?? 'Pending';
};
const status: Column = { header: 'STATUS', cell: phaseOf };

function specOf<T>(o: ApiObject): Partial<T> {
  return (o.spec ?? {}) as Partial<T>;
}
function statusOf<T>(o: ApiObject): Partial<T> {
  return (o.status ?? {}) as Partial<T>;
}

/**
 * docker ps's PORTS: "127.0.0.1:8080->80/tcp", or "80/tcp" when not published. A running
 * container's status has the ports as really published (a random host port included);
 * before that, the spec's are shown.
 */
export function formatPorts(c: { spec?: unknown; status?: unknown }): string {
  const published = (c.status as ContainerStatus | undefined)?.ports;
  const ports = published && published.length > 0 ? published : ((c.spec as ContainerSpec | undefined)?.ports ?? []);
  return ports
    .map((p) => {
      const proto = p.protocol ?? 'tcp';
      if (p.hostPort === undefined) return `${p.containerPort}/${proto}`;
      return `${p.hostIP ?? '0.0.0.0'}:${p.hostPort}->${p.containerPort}/${proto}`;
    })
    .join(', ');
}

const COLUMNS: Record<string, Column[]> = {
  Container: [
    { header: 'IMAGE', cell: (o) => specOf<ContainerSpec>(o).image ?? '' },
    { header: 'STATUS', cell: phaseOf },
    { header: 'RESTARTS', cell: (o) => String(statusOf<ContainerStatus>(o).restartCount ?? 0) },
    age,
    { header: 'PID', wideOnly: true, cell: (o) => String(statusOf<ContainerStatus>(o).pid ?? '') },
    { header: 'IP', wideOnly: true, cell: (o) => Object.values(statusOf<ContainerStatus>(o).ipAddresses ?? {}).join(',') },
    { header: 'PORTS', wideOnly: true, cell: (o) => formatPorts(o) },
    { header: 'HEALTH', wideOnly: true, cell: (o) => statusOf<ContainerStatus>(o).health ?? '' },
  ],
  Service: [
    {
      header: 'READY',
      cell: (o) => `${statusOf<ServiceStatus>(o).readyReplicas ?? 0}/${specOf<ServiceSpec>(o).replicas ?? 1}`,
    },
    { header: 'UP-TO-DATE', cell: (o) => String(statusOf<ServiceStatus>(o).updatedReplicas ?? 0) },
    { header: 'IMAGE', cell: (o) => specOf<ServiceSpec>(o).template?.spec?.image ?? '' },
    age,
  ],
  Image: [
    { header: 'REF', cell: (o) => specOf<ImageSpec>(o).ref ?? '' },
    { header: 'DIGEST', cell: (o) => shortDigest(statusOf<ImageStatus>(o).digest) },
    {
      header: 'SIZE',
      cell: (o) => {
        const size = statusOf<ImageStatus>(o).size;
        return size === undefined ? '' : humanSize(size);
      },
    },
    status,
    age,
  ],
  Build: [status, { header: 'TAGS', cell: (o) => (specOf<BuildSpec>(o).tags ?? []).join(',') }, age],
  Network: [
    { header: 'DRIVER', cell: (o) => specOf<NetworkSpec>(o).driver ?? 'bridge' },
    { header: 'SUBNET', cell: (o) => statusOf<NetworkStatus>(o).subnet ?? specOf<NetworkSpec>(o).subnet ?? '' },
    {
      header: 'GATEWAY',
      cell: (o) => statusOf<NetworkStatus>(o).gateway ?? specOf<NetworkSpec>(o).gateway ?? '',
    },
    age,
    { header: 'BRIDGE', wideOnly: true, cell: (o) => statusOf<NetworkStatus>(o).bridge ?? '' },
    { header: 'INTERNAL', wideOnly: true, cell: (o) => String(specOf<NetworkSpec>(o).internal ?? false) },
  ],
  Volume: [
    { header: 'DRIVER', cell: (o) => specOf<VolumeSpec>(o).driver ?? 'local' },
    status,
    age,
    { header: 'MOUNTPOINT', wideOnly: true, cell: (o) => statusOf<VolumeStatus>(o).mountpoint ?? '' },
  ],
  Source: [
    { header: 'PATH', cell: (o) => specOf<SourceSpec>(o).path ?? '' },
    // Abbreviated to 7 hex digits, as `git log --oneline` shows commits.
    { header: 'REVISION', cell: (o) => shortDigest(statusOf<SourceStatus>(o).lastAppliedRevision).slice(0, 7) },
    { header: 'COMMIT', cell: (o) => (statusOf<SourceStatus>(o).gitCommit ?? '').slice(0, 7) },
    { header: 'READY', cell: (o) => statusOf<SourceStatus>(o).conditions?.find((c) => c.type === 'Ready')?.status ?? 'Unknown' },
    age,
    { header: 'PHASE', wideOnly: true, cell: (o) => statusOf<SourceStatus>(o).phase ?? 'Pending' },
  ],
};

/**
 * kubectl's LAST SEEN: the age of the last occurrence, and for a repeated Event how often
 * and since when ("2m (x4 over 10m)").
 */
export function eventLastSeen(e: EventObject, now: number): string {
  const last = ageOf(e.lastTimestamp || e.firstTimestamp || e.metadata.creationTimestamp, now);
  if ((e.count ?? 1) <= 1) return last;
  return `${last} (x${e.count} over ${ageOf(e.firstTimestamp || e.metadata.creationTimestamp, now)})`;
}

const oneLine = (s: string | undefined): string => (s ?? '').replace(/\s*\n\s*/g, ' ');

const EVENT_COLUMNS: Column[] = [
  { header: 'LAST SEEN', cell: (o, now) => eventLastSeen(o as EventObject, now) },
  { header: 'TYPE', cell: (o) => (o as EventObject).type ?? '' },
  { header: 'REASON', cell: (o) => (o as EventObject).reason ?? '' },
  {
    header: 'OBJECT',
    cell: (o) => {
      const inv = (o as EventObject).involvedObject;
      return inv ? qualifiedName(inv.kind, inv.name) : '';
    },
  },
  { header: 'MESSAGE', cell: (o) => oneLine((o as EventObject).message) },
];

function columnsFor(kind: string, opts: TableOptions): Column[] {
  const ns: Column[] = opts.allNamespaces ? [{ header: 'NAMESPACE', cell: (o) => o.metadata.namespace ?? '' }] : [];
  const labels: Column[] = opts.showLabels ? [{ header: 'LABELS', cell: (o) => formatLabels(o.metadata.labels) }] : [];
  // kubectl's event table has no NAME column: the OBJECT column says what it is about.
  if (kind === 'Event') return [...ns, ...EVENT_COLUMNS, ...labels];
  const name: Column = {
    header: 'NAME',
    cell: (o) => (opts.kindPrefix ? qualifiedName(o.kind || kind, o.metadata.name) : o.metadata.name),
  };
  const own = (COLUMNS[kind] ?? [age]).filter((c) => opts.wide || !c.wideOnly);
  return [...ns, name, ...own, ...labels];
}

export function tableHeader(kind: string, opts: TableOptions): string[] {
  return columnsFor(kind, opts).map((c) => c.header);
}

/** One row's cells; an empty value reads "<none>" as in kubectl. */
export function tableRow(kind: string, obj: ApiObject, opts: TableOptions): string[] {
  return cellsOf(columnsFor(kind, opts), obj, opts.now);
}

function cellsOf(columns: readonly Column[], obj: ApiObject, now: number): string[] {
  return columns.map((c) => c.cell(obj, now) || '<none>');
}

/** Header and rows of `objects` (all of `kind`), aligned. */
export function printTable(kind: string, objects: readonly ApiObject[], opts: TableOptions): string {
  // The columns once for the table, not once per row: `get` of 1,000 objects is budgeted.
  const columns = columnsFor(kind, opts);
  return renderTable([columns.map((c) => c.header), ...objects.map((o) => cellsOf(columns, o, opts.now))]);
}

/**
 * A table that keeps growing (`get -w`): the first print fixes column widths from the
 * objects known then; later rows are padded to them so columns stay aligned, and a longer
 * cell widens its column for the rows after it.
 */
export class StreamingTable {
  private readonly widths: number[];

  constructor(
    private readonly kind: string,
    private readonly opts: TableOptions,
    /** Rows printed later count AGE from when they are printed. */
    private readonly clock: () => number = () => opts.now,
  ) {
    this.widths = columnWidths([tableHeader(kind, opts)]);
  }

  /** The header and the initial rows. */
  start(objects: readonly ApiObject[], withHeader: boolean): string {
    const opts = { ...this.opts, now: this.clock() };
    const rows = objects.map((o) => tableRow(this.kind, o, opts));
    this.widen([tableHeader(this.kind, this.opts), ...rows]);
    const lines = withHeader ? [tableHeader(this.kind, this.opts), ...rows] : rows;
    return lines.map((r) => formatRow(r, this.widths)).join('');
  }

  row(obj: ApiObject): string {
    const cells = tableRow(this.kind, obj, { ...this.opts, now: this.clock() });
    this.widen([cells]);
    return formatRow(cells, this.widths);
  }

  private widen(rows: readonly (readonly string[])[]): void {
    columnWidths(rows).forEach((w, i) => {
      this.widths[i] = Math.max(this.widths[i] ?? 0, w);
    });
  }
}

/** Order of display: Events by when they last happened (as `kubectl events`), others by namespace and name. */
export function sortForDisplay(kind: string, objects: readonly ApiObject[]): ApiObject[] {
  const byKey = (a: ApiObject, b: ApiObject): number =>
    compare(a.metadata.namespace ?? '', b.metadata.namespace ?? '') || compare(a.metadata.name, b.metadata.name);
  if (kind !== 'Event') return [...objects].sort(byKey);
  const when = (e: ApiObject): number => {
    const ev = e as EventObject;
    const t = Date.parse(ev.lastTimestamp || ev.firstTimestamp || e.metadata.creationTimestamp || '');
    return Number.isNaN(t) ? 0 : t;
  };
  return [...objects].sort((a, b) => when(a) - when(b) || byKey(a, b));
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// ------------------------------------------------------------------------------ -o name|json|yaml

export function formatNames(objects: readonly ApiObject[]): string {
  return objects.map((o) => `${qualifiedName(o.kind, o.metadata.name)}\n`).join('');
}

/** kubectl's wrapper for several objects of -o json|yaml. */
export function listOf(objects: readonly ApiObject[]): { apiVersion: 'v1'; kind: 'List'; items: ApiObject[]; metadata: { resourceVersion: string } } {
  return { apiVersion: 'v1', kind: 'List', items: [...objects], metadata: { resourceVersion: '' } };
}

/** kubectl's -o json indents by 4. */
export function toJson(value: unknown): string {
  return `${JSON.stringify(value, null, 4)}\n`;
}

export function toYaml(value: unknown): string {
  const YAML = require('yaml') as typeof import('yaml');
  return YAML.stringify(value, { lineWidth: 0 });
}

/**
 * -o json|yaml of what a `get` found: the object itself when one object was asked for by
 * name, otherwise a List (even of one item), as kubectl does.
 */
export function formatStructured(objects: readonly ApiObject[], format: 'json' | 'yaml', single: boolean): string {
  const value = single && objects.length === 1 ? objects[0] : listOf(objects);
  return format === 'json' ? toJson(value) : toYaml(value);
}
