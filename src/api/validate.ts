// Validation of API objects against crd-schemas/*.json, the API contract. The API server
// calls it on every create/update (as Kubernetes validates against a CRD's OpenAPI schema),
// and so does `d2p apply` before sending anything, so a typo fails with the field's path.
//
// Compiling the schemas with ajv costs ~200 ms per process (and requiring ajv ~50 ms), too
// much for the CLI's budgets (DESIGN.md §9). So the build turns them into plain JavaScript
// once (ajv's standalone code, https://ajv.js.org/standalone.html, written by
// hack/build-validators.js to validators.generated.js next to this file in dist/), and at
// run time that module is used when it exists and was made from the schemas on disk now.
// Otherwise (vitest runs the sources; a schema edited since the build) the same ajv
// instance compiles them lazily, each on first use: both paths run the same generated code.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ErrorObject, ValidateFunction } from 'ajv';
import type Ajv2020 from 'ajv/dist/2020';
import { durationProblem } from './duration';
import { invalid, type StatusCause } from './errors';
import { formats } from './formats';
import { API_VERSION, KINDS, type ApiObject } from './meta';
import type { KindMap, KindName } from './types';

const SCHEMA_ID_BASE = 'https://d2p.dev/schemas/v1alpha1/';
const SCHEMA_DIR_NAME = 'crd-schemas';
/** Written by hack/build-validators.js after tsc; exists only in dist/. */
export const GENERATED_VALIDATORS_FILE = path.join(__dirname, 'validators.generated.js');

/** part '' = the whole object; 'spec' / 'status' = that property's subschema. */
type Part = '' | 'spec' | 'status';

// ------------------------------------------------------------------ public API

/**
 * Checks apiVersion and kind, validates the whole object (status too, when present) and
 * returns a copy with schema defaults applied. The argument is never modified.
 * Throws ApiError Invalid (422) with one cause per problem.
 */
export function validateObject(obj: unknown): ApiObject {
  return defaultValidator().validateObject(obj);
}

/** validateObject, plus a check that the object is of the expected kind; typed accordingly. */
export function validateKind<K extends KindName>(kind: K, obj: unknown): KindMap[K] {
  const { kind: actual, name } = identify(obj);
  if (actual !== kind) {
    throw invalid(kind, name, [{ field: 'kind', reason: 'FieldValueInvalid', message: `must be "${kind}", not "${actual}"` }]);
  }
  return validateObject(obj) as KindMap[K];
}

/** Validates a spec on its own (e.g. a patch result) and returns a defaulted copy; fields are reported as "spec.…". */
export function validateSpecOnly<K extends KindName>(kind: K, spec: unknown, name = ''): NonNullable<KindMap[K]['spec']> {
  return defaultValidator().validatePart(kind, 'spec', spec, name) as NonNullable<KindMap[K]['spec']>;
}

/** Validates a status on its own (the /status subresource); fields are reported as "status.…". */
export function validateStatusOnly<K extends KindName>(kind: K, status: unknown, name = ''): NonNullable<KindMap[K]['status']> {
  return defaultValidator().validatePart(kind, 'status', status, name) as NonNullable<KindMap[K]['status']>;
}

/** The parsed JSON Schema of one kind, e.g. for `d2p explain`. */
export function readKindSchema(kind: KindName): Record<string, unknown> {
  return readSchemaFile(schemaFileName(kind));
}

/** What validators.generated.js exports: one function per `Kind#part` key, and the digest of the schemas it was made from. */
export type GeneratedValidators = { readonly schemaDigest?: unknown } & Readonly<Record<string, unknown>>;

/** Validation against one source of validator functions; the module-level functions use the default one. */
export interface ObjectValidator {
  validateObject(obj: unknown): ApiObject;
  validatePart(kind: KindName, part: 'spec' | 'status', value: unknown, name: string): unknown;
}

/**
 * A validator that takes its functions from `generated` (a loaded validators.generated.js)
 * where it has them, and compiles the rest with ajv at run time. Without `generated`,
 * everything is compiled at run time. Tests use it to compare the two paths.
 */
export function createObjectValidator(generated?: GeneratedValidators): ObjectValidator {
  const functions = new ValidatorFunctions(generated);
  return {
    validateObject(obj) {
      const { kind, name } = identify(obj);
      const copy = structuredClone(obj);
      runValidator(functions.get(kind, ''), copy, kind, name, '');
      return copy as ApiObject;
    },
    validatePart(kind, part, value, name) {
      checkPartKind(kind, part, name);
      const copy = structuredClone(value);
      runValidator(functions.get(kind, part), copy, kind, name, part);
      return copy;
    },
  };
}

// ------------------------------------------------------------------ kind and name

function identify(obj: unknown): { kind: KindName; name: string } {
  if (!isPlainObject(obj)) {
    throw invalid('Object', '', [{ reason: 'FieldValueTypeInvalid', message: `must be an object, not ${describeType(obj)}` }]);
  }
  const name = isPlainObject(obj.metadata) && typeof obj.metadata.name === 'string' ? obj.metadata.name : '';
  const kind = obj.kind;
  if (kind === undefined) throw invalid('Object', name, [{ field: 'kind', reason: 'FieldValueRequired', message: 'is required' }]);
  if (typeof kind !== 'string' || !isKnownKind(kind)) {
    const known = KINDS.map((k) => k.kind).join(', ');
    throw invalid(typeof kind === 'string' ? kind : 'Object', name, [
      { field: 'kind', reason: 'FieldValueNotSupported', message: `unknown kind ${JSON.stringify(kind)} in ${API_VERSION}; known kinds: ${known}` },
    ]);
  }
  return { kind, name };
}

function isKnownKind(kind: string): kind is KindName {
  return KINDS.some((k) => k.kind === kind);
}

function checkPartKind(kind: KindName, part: 'spec' | 'status', name: string): void {
  if (!isKnownKind(kind)) {
    throw invalid(String(kind), name, [{ field: 'kind', reason: 'FieldValueNotSupported', message: `unknown kind ${JSON.stringify(kind)}` }]);
  }
  if (kind === 'Event') {
    throw invalid(kind, name, [{ field: part, reason: 'FieldValueForbidden', message: `an Event has no ${part}` }]);
  }
}

// ------------------------------------------------------------------ validator functions

let defaultInstance: ObjectValidator | undefined;

function defaultValidator(): ObjectValidator {
  defaultInstance ??= createObjectValidator(loadGeneratedValidators());
  return defaultInstance;
}

/** "Container#spec": the export name of a validator in the generated module. */
function validatorKey(kind: KindName, part: Part): string {
  return `${kind}#${part}`;
}

/**
 * The generated module at `file` when it exists and was built from the schemas on disk
 * now; undefined otherwise (running from source, or a schema edited since the build,
 * where compiling at run time gives what the schemas say now).
 */
export function loadGeneratedValidators(file = GENERATED_VALIDATORS_FILE): GeneratedValidators | undefined {
  if (!fs.existsSync(file)) return undefined;
  const generated = require(file) as GeneratedValidators;
  return generated.schemaDigest === schemaDigest() ? generated : undefined;
}

/** The functions of one validator, generated or compiled, each looked up once. */
class ValidatorFunctions {
  private readonly cache = new Map<string, ValidateFunction>();
  private compiler: SchemaCompiler | undefined;

  constructor(private readonly generated: GeneratedValidators | undefined) {}

  get(kind: KindName, part: Part): ValidateFunction {
    const key = validatorKey(kind, part);
    let validate = this.cache.get(key);
    if (!validate) {
      validate = this.fromGenerated(key) ?? this.compile(kind, part);
      this.cache.set(key, validate);
    }
    return validate;
  }

  private fromGenerated(key: string): ValidateFunction | undefined {
    const candidate = this.generated?.[key];
    return typeof candidate === 'function' ? (candidate as ValidateFunction) : undefined;
  }

  private compile(kind: KindName, part: Part): ValidateFunction {
    this.compiler ??= new SchemaCompiler({ forCodegen: false });
    return this.compiler.validator(kind, part);
  }
}

/** One ajv instance holding common.json, the kinds' schemas and their spec/status parts. */
class SchemaCompiler {
  readonly ajv: Ajv2020;
  private readonly added = new Set<string>();

  constructor(opts: { forCodegen: boolean }) {
    this.ajv = createAjv(opts.forCodegen);
  }

  /** Adds what `kind`/`part` needs (without compiling) and returns the key ajv knows it by. */
  register(kind: KindName, part: Part): string {
    const id = SCHEMA_ID_BASE + schemaFileName(kind);
    if (!this.added.has(id)) {
      this.ajv.addSchema(readKindSchema(kind));
      this.added.add(id);
    }
    if (part === '') return id;
    const partId = `${SCHEMA_ID_BASE}parts/${kind.toLowerCase()}/${part}`;
    if (!this.added.has(partId)) {
      this.ajv.addSchema({ $ref: `${id}#/properties/${part}` }, partId);
      this.added.add(partId);
    }
    return partId;
  }

  validator(kind: KindName, part: Part): ValidateFunction {
    const key = this.register(kind, part);
    const validate = this.ajv.getSchema(key);
    if (!validate) throw new Error(`schema ${key} was added but ajv cannot find it`);
    return validate;
  }
}

/**
 * The same instance serves run-time compilation and code generation: `code.formats` is how
 * generated code reaches the format functions (formats.ts, next to the generated file in
 * dist/); ajv ignores it when compiling in memory, so both paths run the same checks.
 */
function createAjv(forCodegen: boolean): Ajv2020 {
  // Required here, not imported at the top, so that loading this module stays cheap.
  const ajvModule = require('ajv/dist/2020') as typeof import('ajv/dist/2020');
  const Ajv = ajvModule.default;
  // allErrors: report every problem at once, as kubectl does. coerceTypes stays off:
  // "8080" is not a port here; the Compose converter does Compose's coercions.
  // strictTuples is off because a healthcheck test is an open tuple by design: a fixed
  // first word ("CMD", "CMD-SHELL", "NONE") followed by any number of arguments.
  // validateSchema is off because checking our own schemas against the draft 2020-12
  // meta-schema costs ~100 ms per process; test/unit/schemas.test.ts does it instead.
  const ajv = new Ajv({
    allErrors: true,
    useDefaults: true,
    strict: true,
    strictTuples: false,
    verbose: true,
    validateSchema: false,
    code: { source: forCodegen, formats: ajvModule._`require("./formats").formats` },
  });
  for (const [name, format] of Object.entries(formats)) ajv.addFormat(name, format);
  ajv.addSchema(commonSchema());
  return ajv;
}

/**
 * The source of validators.generated.js (hack/build-validators.js writes it): one export
 * per kind for whole objects, plus the digest of the schemas, so a stale module is not used.
 * The spec/status validators are left to run-time compilation: nothing on a hot path uses
 * them, and ajv refuses to compile some of them (a "default" at a subschema's root is
 * ignored, which strict mode reports) — they behave exactly as before.
 */
export function generateValidatorModule(): string {
  const standaloneCode = (require('ajv/dist/standalone') as typeof import('ajv/dist/standalone')).default;
  const compiler = new SchemaCompiler({ forCodegen: true });
  const exportsByKey: Record<string, string> = {};
  for (const { kind } of KINDS) {
    if (isKnownKind(kind)) exportsByKey[validatorKey(kind, '')] = compiler.register(kind, '');
  }
  const code = standaloneCode(compiler.ajv, exportsByKey);
  return `${code}\nexports.schemaDigest = ${JSON.stringify(schemaDigest())};\n`;
}

/** sha256 over every schema file's name and content, in name order. */
function schemaDigest(): string {
  const dir = findSchemaDir();
  const hash = createHash('sha256');
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    hash.update(`${file}\u0000`);
    hash.update(fs.readFileSync(path.join(dir, file)));
    hash.update('\u0000');
  }
  return hash.digest('hex');
}

let commonSchemaCache: Record<string, unknown> | undefined;

function commonSchema(): Record<string, unknown> {
  commonSchemaCache ??= readSchemaFile('common.json');
  return commonSchemaCache;
}

function schemaFileName(kind: KindName): string {
  return `${kind.toLowerCase()}.json`;
}

let schemaDir: string | undefined;

/**
 * crd-schemas/ sits at the package root: two levels above src/api when running from
 * source (vitest), three above dist/src/api when running compiled code.
 */
function findSchemaDir(): string {
  if (schemaDir) return schemaDir;
  const tried: string[] = [];
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, SCHEMA_DIR_NAME);
    tried.push(candidate);
    if (fs.existsSync(path.join(candidate, 'common.json'))) {
      schemaDir = candidate;
      return candidate;
    }
    if (path.dirname(dir) === dir) break;
  }
  throw new Error(`cannot find the ${SCHEMA_DIR_NAME} directory with common.json; looked in: ${tried.join(', ')}`);
}

function readSchemaFile(file: string): Record<string, unknown> {
  const full = path.join(findSchemaDir(), file);
  let text: string;
  try {
    text = fs.readFileSync(full, 'utf8');
  } catch (e) {
    throw new Error(`cannot read schema ${full}: ${(e as Error).message}`, { cause: e });
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`schema ${full} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}

// ------------------------------------------------------------------ errors → causes

function runValidator(validate: ValidateFunction, data: unknown, kind: string, name: string, prefix: string): void {
  if (validate(data)) return;
  const causes = dedupe((validate.errors ?? []).flatMap((e) => toCauses(e, data, prefix)));
  throw invalid(kind, name, causes);
}

function toCauses(error: ErrorObject, root: unknown, prefix: string): StatusCause[] {
  // "if" only says that some "then" failed; the "then" errors themselves are reported.
  // "propertyNames" is the summary of an invalid key, reported by the inner error.
  if (error.keyword === 'if' || error.keyword === 'propertyNames') return [];
  const segments = pointerSegments(error.instancePath);
  const at = (extra?: string) => renderPath(prefix, root, extra === undefined ? segments : [...segments, extra]);
  const badKey = (error as ErrorObject & { propertyName?: string }).propertyName;
  if (badKey !== undefined) {
    return [{ field: at(badKey), reason: 'FieldValueInvalid', message: `invalid key ${JSON.stringify(badKey)}: ${describe(error, root, segments)}` }];
  }
  switch (error.keyword) {
    case 'additionalProperties': {
      const field = String(error.params.additionalProperty);
      return [{ field: at(field), reason: 'FieldValueInvalid', message: `unknown field ${JSON.stringify(field)}` }];
    }
    case 'required':
      return [{ field: at(String(error.params.missingProperty)), reason: 'FieldValueRequired', message: 'is required' }];
    case 'enum':
    case 'const':
      return [{ field: at(), reason: 'FieldValueNotSupported', message: describe(error, root, segments) }];
    case 'type':
      return [{ field: at(), reason: 'FieldValueTypeInvalid', message: describe(error, root, segments) }];
    case 'false schema':
      return [{ field: at(), reason: 'FieldValueForbidden', message: describe(error, root, segments) }];
    default:
      return [{ field: at(), reason: 'FieldValueInvalid', message: describe(error, root, segments) }];
  }
}

function describe(error: ErrorObject, root: unknown, segments: string[]): string {
  switch (error.keyword) {
    case 'enum':
      return `must be one of: ${(error.params.allowedValues as unknown[]).map(String).join(', ')}`;
    case 'const':
      return `must be ${JSON.stringify(error.params.allowedValue)}`;
    case 'format':
      return describeFormat(String(error.params.format), error.data);
    case 'pattern':
      return patternMessages().get(String(error.params.pattern)) ?? `must match the pattern ${String(error.params.pattern)}`;
    case 'false schema':
      return describeForbidden(root, segments);
    default:
      return error.message ?? `fails the "${error.keyword}" rule`;
  }
}

function describeFormat(format: string, value: unknown): string {
  switch (format) {
    case 'go-duration': {
      const why = typeof value === 'string' ? durationProblem(value) : undefined;
      return `must be a duration such as "1m30s", "500ms" or "0"${why ? ` (${why})` : ''}`;
    }
    case 'ip':
      return 'must be an IPv4 or IPv6 address';
    case 'ipv4':
      return 'must be an IPv4 address';
    case 'ip-or-host-gateway':
      return 'must be an IP address or "host-gateway"';
    case 'cidr':
      return 'must be a network in CIDR notation with the host bits zero, such as "172.20.0.0/16"';
    case 'date-time':
      return 'must be an RFC 3339 timestamp such as "2024-05-01T12:00:00Z"';
    default:
      return `must be a valid ${format}`;
  }
}

/** A field the schema forbids only in context: say which context, when the parent names a type. */
function describeForbidden(root: unknown, segments: string[]): string {
  const parent = valueAt(root, segments.slice(0, -1));
  if (isPlainObject(parent) && typeof parent.type === 'string') return `is not allowed when type is "${parent.type}"`;
  return 'is not allowed here';
}

let patternMessageTable: Map<string, string> | undefined;

/** Readable messages for the patterns of common.json, looked up by the pattern text itself. */
function patternMessages(): Map<string, string> {
  if (patternMessageTable) return patternMessageTable;
  const defs = (commonSchema().$defs ?? {}) as Record<string, { pattern?: string }>;
  const byDefinition: Record<string, string> = {
    Name: 'must start with a letter or digit and contain only letters, digits, "_", "." or "-" (at most 253 characters)',
    ImageRef: 'must be an image reference such as "nginx:1.27" or "registry.local:5000/app@sha256:…" (lower-case repository)',
    Digest: 'must be a digest such as "sha256:…"',
    Platform: 'must be os/arch[/variant], such as "linux/amd64" or "linux/arm/v7"',
    NetworkMode: 'must be bridge, host, none, container:NAME or service:NAME',
    Signal: 'must be a signal name such as "SIGTERM" or a signal number',
    Capability: 'must be a capability name such as "NET_ADMIN" or "CAP_NET_ADMIN", or "ALL"',
  };
  patternMessageTable = new Map([
    ['^/', 'must be an absolute path'],
    ['^[^=]+$', 'must be non-empty and must not contain "="'],
  ]);
  for (const [definition, message] of Object.entries(byDefinition)) {
    const pattern = defs[definition]?.pattern;
    if (pattern !== undefined) patternMessageTable.set(pattern, message);
  }
  return patternMessageTable;
}

function dedupe(causes: StatusCause[]): StatusCause[] {
  const seen = new Set<string>();
  return causes.filter((c) => {
    const key = `${c.field ?? ''}\u0000${c.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

// ------------------------------------------------------------------ paths

/** JSON Pointer (RFC 6901) to its unescaped segments. */
function pointerSegments(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

const PLAIN_KEY = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** spec.template.spec.ports[0].containerPort; odd map keys quoted: metadata.labels["a.b/c"]. */
function renderPath(prefix: string, root: unknown, segments: string[]): string {
  let out = prefix;
  let current: unknown = root;
  for (const segment of segments) {
    if (Array.isArray(current)) out += `[${segment}]`;
    else if (PLAIN_KEY.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
    current = isPlainObject(current) || Array.isArray(current) ? (current as Record<string, unknown>)[segment] : undefined;
  }
  return out;
}

function valueAt(root: unknown, segments: string[]): unknown {
  let current = root;
  for (const segment of segments) {
    if (!isPlainObject(current) && !Array.isArray(current)) return undefined;
    current = (current as Record<string, unknown>)[segment];
  }
  return current;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v;
}
