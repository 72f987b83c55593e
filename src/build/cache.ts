// The build cache: content-addressed step results, as BuildKit's cache keys (solver
// "cache key = digest of (parent keys, op definition, content checksums of inputs)").
//  key(step) = sha256(parent key, the instruction after substitution, the build args it
//              depends on, the content hash of what it reads)
// The parent key chains the whole history in: changing one step changes the keys of all
// that follow, and nothing before. ARG declarations are left out of the chain: an ARG's
// value reaches a step only through that step's own effectiveArgs, so a changed ARG
// invalidates exactly the steps that use it (and everything after them), as in Docker.
// Values live as small JSON files under <stateRoot>/build-cache/steps/; the layers they
// name live in the image store, so a hit is only a hit while those layers are still there.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ResolvedInstruction } from './dockerfile/index';
import type { LayerInfo } from '../images/index';
import { writeFileAtomic } from '../images/blobs';
import { errnoOf } from './builder-errors';

/** What one step did to the image: the layer it added (if any), the config after it, its history entry. */
export interface StepResult {
  layer?: LayerInfo;
  config: ImageRuntimeConfig;
  history: HistoryEntry;
}

/** The `config` object of an OCI image config (image-spec config.md), as Docker writes it. */
export interface ImageRuntimeConfig {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  Healthcheck?: { Test: string[]; Interval?: number; Timeout?: number; StartPeriod?: number; StartInterval?: number; Retries?: number };
  Shell?: string[];
  OnBuild?: string[];
  [other: string]: unknown;
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  comment?: string;
  empty_layer?: boolean;
}

export interface KeyParts {
  parent: string;
  instruction: ResolvedInstruction | { kind: 'FROM'; [field: string]: unknown };
  /** Content hash of the inputs a COPY/ADD reads (context files, another stage's key, an image digest). */
  inputs?: string;
  platform: string;
}

/** Fields of an instruction that say where it is in the file, not what it does. */
const POSITION_FIELDS = new Set(['line', 'endLine', 'original', 'effectiveArgs']);

/** The instruction as cache-relevant JSON: substituted fields only, positions left out (a new comment line must not invalidate). */
export function instructionFingerprint(instr: object): unknown {
  if (Array.isArray(instr)) return instr.map((v: unknown) => (typeof v === 'object' && v !== null ? instructionFingerprint(v) : v));
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(instr).sort()) {
    if (POSITION_FIELDS.has(key)) continue;
    const value = (instr as Record<string, unknown>)[key];
    out[key] = typeof value === 'object' && value !== null ? instructionFingerprint(value) : value;
  }
  return out;
}

export function stepKey(parts: KeyParts): string {
  const args = 'effectiveArgs' in parts.instruction ? sortedObject((parts.instruction as ResolvedInstruction).effectiveArgs) : {};
  const material = JSON.stringify({
    v: 1,
    parent: parts.parent,
    instruction: instructionFingerprint(parts.instruction),
    args,
    inputs: parts.inputs ?? null,
    platform: parts.platform,
  });
  return `sha256:${createHash('sha256').update(material).digest('hex')}`;
}

const sortedObject = (o: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

export class BuildCache {
  private readonly stepsDir: string;
  private readonly tmpDir: string;

  constructor(readonly root: string) {
    this.stepsDir = path.join(root, 'steps');
    this.tmpDir = path.join(root, 'tmp');
    fs.mkdirSync(this.stepsDir, { recursive: true, mode: 0o700 });
    fs.mkdirSync(this.tmpDir, { recursive: true, mode: 0o700 });
  }

  /**
   * The stored result of a step, if any and still usable: `layerPresent` checks that the
   * layer it names has not been pruned from the image store since.
   */
  get(key: string, layerPresent: (layer: LayerInfo) => boolean): StepResult | undefined {
    let text: string;
    try {
      text = fs.readFileSync(this.file(key), 'utf8');
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return undefined;
      throw e;
    }
    let result: StepResult;
    try {
      result = JSON.parse(text) as StepResult;
    } catch (e) {
      // A torn entry cannot happen (atomic writes), but a hand-edited one can: treat it as a miss and say so.
      process.emitWarning(`build cache entry ${this.file(key)} is not valid JSON (${(e as Error).message}); rebuilding that step`);
      return undefined;
    }
    if (result.layer && !layerPresent(result.layer)) return undefined;
    return result;
  }

  put(key: string, result: StepResult): void {
    writeFileAtomic(this.file(key), JSON.stringify(result), this.tmpDir);
  }

  private file(key: string): string {
    return path.join(this.stepsDir, `${key.replace(/^sha256:/, '')}.json`);
  }
}
