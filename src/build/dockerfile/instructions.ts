// Raw instructions to typed ones: flags checked against what each instruction accepts,
// arguments split the way BuildKit splits them (moby/buildkit
// frontend/dockerfile/instructions/parse.go), errors phrased like Docker's. No variable
// is substituted here; that is resolveStages()'s job, because it depends on the stage.
import { parseDuration, InvalidDurationError } from '../../api/duration';
import { LocalSyntaxError } from './errors';
import type { RawInstruction } from './lines';
import { processWords } from './shell-lex';
import type {
  AddInstr,
  ArgDecl,
  CommandForm,
  CopyInstr,
  HealthcheckInstr,
  Heredoc,
  HeredocFile,
  Instruction,
  KeyValue,
  RunInstr,
  RunMount,
  RunMountType,
} from './types';
import { parseFlags, parseWords, splitCommand, splitWhitespace, tryJsonArray, type FlagValues } from './words';

export const DEFAULT_SHELL: readonly string[] = ['/bin/sh', '-c'];

/** What parsing one instruction needs besides the instruction itself. */
export interface InstructionContext {
  escape: '\\' | '`';
  /** The SHELL in effect, for shell-form RUN/CMD/ENTRYPOINT. */
  shell: readonly string[];
  warn: (message: string) => void;
}

type Common = Pick<Instruction, 'line' | 'endLine' | 'original'>;

const HEREDOC_WORD = /^(\d*)<<(-?)([^<]*)$/;

export function parseInstruction(raw: RawInstruction, ctx: InstructionContext): Instruction {
  const common: Common = { line: raw.line, endLine: raw.endLine, original: raw.original };
  const cmd = raw.cmd.toUpperCase();
  switch (cmd) {
    case 'RUN':
      return parseRun(raw, common, ctx);
    case 'COPY':
      return parseCopy(raw, common);
    case 'ADD':
      return parseAdd(raw, common);
    case 'ENV':
      noFlags(cmd, raw);
      return { kind: 'ENV', ...common, pairs: parseKeyValues(cmd, raw.rest, ctx.escape) };
    case 'LABEL':
      noFlags(cmd, raw);
      return { kind: 'LABEL', ...common, pairs: parseKeyValues(cmd, raw.rest, ctx.escape) };
    case 'ARG':
      noFlags(cmd, raw);
      return { kind: 'ARG', ...common, args: parseArgDecls(raw.rest, ctx.escape) };
    case 'WORKDIR':
      noFlags(cmd, raw);
      return { kind: 'WORKDIR', ...common, path: exactlyOne(cmd, raw.rest) };
    case 'USER':
      noFlags(cmd, raw);
      return { kind: 'USER', ...common, user: exactlyOne(cmd, raw.rest) };
    case 'STOPSIGNAL':
      noFlags(cmd, raw);
      return { kind: 'STOPSIGNAL', ...common, signal: exactlyOne(cmd, raw.rest) };
    case 'EXPOSE':
      noFlags(cmd, raw);
      return { kind: 'EXPOSE', ...common, ports: atLeastOne(cmd, splitWhitespace(raw.rest)) };
    case 'VOLUME':
      noFlags(cmd, raw);
      return { kind: 'VOLUME', ...common, paths: parseVolumePaths(raw.rest) };
    case 'CMD':
    case 'ENTRYPOINT': {
      noFlags(cmd, raw);
      const form = parseCommandForm(raw.rest);
      return { kind: cmd, ...common, ...form, command: commandLine(form, ctx.shell) };
    }
    case 'HEALTHCHECK':
      return parseHealthcheck(raw, common);
    case 'SHELL':
      noFlags(cmd, raw);
      return { kind: 'SHELL', ...common, shell: parseShell(raw.rest) };
    case 'ONBUILD':
      noFlags(cmd, raw);
      return parseOnbuild(raw, common, ctx);
    case 'MAINTAINER':
      noFlags(cmd, raw);
      ctx.warn(`line ${raw.line}: MAINTAINER is deprecated; use LABEL maintainer=… instead (it is stored as that label)`);
      return { kind: 'MAINTAINER', ...common, maintainer: exactlyOne(cmd, raw.rest) };
    case 'FROM':
      throw new LocalSyntaxError('FROM is handled by the stage parser');
    default:
      throw new LocalSyntaxError(`unknown instruction: ${raw.cmd}`);
  }
}

function noFlags(cmd: string, raw: RawInstruction): void {
  parseFlags(cmd, raw.flags, {});
}

function exactlyOne(cmd: string, rest: string): string {
  if (rest === '') throw new LocalSyntaxError(`${cmd} requires exactly one argument`);
  return rest;
}

function atLeastOne(cmd: string, values: string[]): string[] {
  if (values.length === 0) throw new LocalSyntaxError(`${cmd} requires at least one argument`);
  return values;
}

// --- RUN ---------------------------------------------------------------------------

function parseRun(raw: RawInstruction, common: Common, ctx: InstructionContext): RunInstr {
  const flags = parseFlags('RUN', raw.flags, { mount: 'strings', network: 'string', security: 'string' });
  const form = parseCommandForm(raw.rest);
  if (form.args.length === 0 || (form.form === 'shell' && form.args[0] === '')) {
    throw new LocalSyntaxError('RUN requires at least one argument');
  }
  const run: RunInstr = {
    kind: 'RUN',
    ...common,
    ...form,
    command: runCommandLine(form, raw.heredocs, ctx.shell),
    mounts: ((flags.mount as string[] | undefined) ?? []).map(parseMount),
    heredocs: raw.heredocs,
  };
  const network = flags.network as string | undefined;
  if (network !== undefined) {
    if (network !== 'default' && network !== 'none' && network !== 'host') {
      throw new LocalSyntaxError(`unsupported network mode "${network}" for RUN --network (default, none or host)`);
    }
    run.network = network;
  }
  const security = flags.security as string | undefined;
  if (security !== undefined) {
    if (security !== 'sandbox' && security !== 'insecure') {
      throw new LocalSyntaxError(`unsupported security mode "${security}" for RUN --security (sandbox or insecure)`);
    }
    run.security = security;
  }
  return run;
}

/**
 * The argv of a RUN. With heredocs, BuildKit runs a lone `<<EOF` as the shell script
 * itself (so shells without heredoc support work), and otherwise hands the shell the
 * command line followed by the bodies and delimiters, rebuilt as one script.
 */
export function runCommandLine(form: { form: CommandForm; args: string[] }, heredocs: readonly Heredoc[], shell: readonly string[]): string[] {
  if (form.form === 'exec') return [...form.args];
  const line = form.args[0] ?? '';
  const first = heredocs[0];
  if (first === undefined) return [...shell, line];
  if (heredocs.length === 1 && isLoneHeredoc(line)) return [...shell, first.content];
  let script = line;
  for (const doc of heredocs) script += `\n${doc.content}${doc.name}`;
  return [...shell, script];
}

/** `<<EOF` alone (BuildKit's MustParseHeredoc on the whole line): the delimiter is one word. */
function isLoneHeredoc(line: string): boolean {
  const match = HEREDOC_WORD.exec(line.trim());
  if (!match || match[3] === '') return false;
  try {
    return processWords(match[3] as string, () => undefined, { escape: '\\', skipUnset: true }).length === 1;
  } catch (err) {
    if (err instanceof LocalSyntaxError) return false;
    throw err;
  }
}

const MOUNT_TYPES: readonly RunMountType[] = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'];
const MOUNT_KEYS = new Set([
  'type', 'from', 'source', 'src', 'target', 'dst', 'destination', 'readonly', 'ro', 'readwrite', 'rw',
  'id', 'sharing', 'mode', 'uid', 'gid', 'size', 'required', 'env',
]);

/** `--mount=type=cache,target=/root/.cache,sharing=locked` (BuildKit commands_runmount.go). */
export function parseMount(value: string): RunMount {
  const options: Record<string, string> = {};
  for (const field of splitCsv(value)) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    if (!MOUNT_KEYS.has(key)) throw new LocalSyntaxError(`--mount=${value}: unexpected key '${key}'`);
    options[key] = eq < 0 ? 'true' : field.slice(eq + 1);
  }
  const type = (options.type ?? 'bind') as RunMountType;
  if (!MOUNT_TYPES.includes(type)) throw new LocalSyntaxError(`--mount=${value}: unsupported mount type "${type}" (${MOUNT_TYPES.join(', ')})`);
  const mount: RunMount = { type, readonly: mountReadonly(type, options, value), options };
  const target = options.target ?? options.dst ?? options.destination;
  const source = options.source ?? options.src;
  if (target !== undefined) mount.target = target;
  if (source !== undefined) mount.source = source;
  if (options.from !== undefined) mount.from = options.from;
  // Secrets and ssh sockets have default paths (/run/secrets/<id>, /run/buildkit/ssh_agent.N).
  if (mount.target === undefined && (type === 'bind' || type === 'cache' || type === 'tmpfs')) {
    throw new LocalSyntaxError(`--mount=${value}: a ${type} mount needs target=`);
  }
  return mount;
}

function mountReadonly(type: RunMountType, options: Record<string, string>, value: string): boolean {
  const flag = (key: string): boolean | undefined => {
    const v = options[key];
    if (v === undefined) return undefined;
    if (v === 'true' || v === '') return true;
    if (v === 'false') return false;
    throw new LocalSyntaxError(`--mount=${value}: invalid value for ${key}: ${v}`);
  };
  const ro = flag('readonly') ?? flag('ro');
  const rw = flag('readwrite') ?? flag('rw');
  if (ro !== undefined) return ro;
  if (rw !== undefined) return !rw;
  // BuildKit: bind mounts are read-only unless rw is asked; cache and tmpfs are writable.
  return type === 'bind' || type === 'secret' || type === 'ssh';
}

/** encoding/csv-style fields: commas separate, double quotes protect commas, "" is a quote. */
function splitCsv(text: string): string[] {
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      fields.push(field);
      field = '';
    } else field += ch;
  }
  if (quoted) throw new LocalSyntaxError(`--mount=${text}: unterminated quote`);
  fields.push(field);
  return fields.filter((f) => f !== '');
}

// --- COPY / ADD ----------------------------------------------------------------------

function parseCopy(raw: RawInstruction, common: Common): CopyInstr {
  const flags = parseFlags('COPY', raw.flags, { from: 'string', chown: 'string', chmod: 'string', link: 'bool', parents: 'bool', exclude: 'strings' });
  const paths = parseSourcesAndDest('COPY', raw);
  for (const source of paths.sources) {
    if (isUrl(source)) throw new LocalSyntaxError(`source can't be a URL for COPY: ${source} (use ADD to download)`);
  }
  const copy: CopyInstr = { kind: 'COPY', ...common, ...paths, ...copyFlags(flags), parents: flags.parents === true };
  if (flags.from !== undefined) copy.from = flags.from as string;
  return copy;
}

function parseAdd(raw: RawInstruction, common: Common): AddInstr {
  if (raw.flags.some((f) => f === '--from' || f.startsWith('--from='))) {
    throw new LocalSyntaxError('unknown flag: --from (ADD cannot copy from a stage or image; use COPY --from)');
  }
  const flags = parseFlags('ADD', raw.flags, {
    chown: 'string', chmod: 'string', link: 'bool', exclude: 'strings', checksum: 'string', 'keep-git-dir': 'bool', unpack: 'bool',
  });
  const paths = parseSourcesAndDest('ADD', raw);
  if (flags.checksum !== undefined && !paths.sources.every(isUrl)) {
    throw new LocalSyntaxError('ADD --checksum is only supported for HTTP(S) and Git sources');
  }
  const add: AddInstr = { kind: 'ADD', ...common, ...paths, ...copyFlags(flags), keepGitDir: flags['keep-git-dir'] === true };
  if (flags.checksum !== undefined) add.checksum = flags.checksum as string;
  if (flags.unpack !== undefined) add.unpack = flags.unpack as boolean;
  return add;
}

function copyFlags(flags: FlagValues): Pick<CopyInstr, 'link' | 'exclude' | 'chown' | 'chmod'> {
  const out: Pick<CopyInstr, 'link' | 'exclude' | 'chown' | 'chmod'> = {
    link: flags.link === true,
    exclude: (flags.exclude as string[] | undefined) ?? [],
  };
  if (flags.chown !== undefined) out.chown = flags.chown as string;
  if (flags.chmod !== undefined) out.chmod = flags.chmod as string;
  return out;
}

function parseSourcesAndDest(cmd: string, raw: RawInstruction): Pick<CopyInstr, 'sources' | 'dest' | 'json' | 'files'> {
  const attempt = tryJsonArray(raw.rest);
  const words = attempt.json ? attempt.values : splitWhitespace(raw.rest);
  if (words.length < 2) {
    throw new LocalSyntaxError(`${cmd} requires at least two arguments, but only ${words.length === 0 ? 'none were' : 'one was'} provided. Destination could not be determined.`);
  }
  const dest = words[words.length - 1] as string;
  const sources: string[] = [];
  const files: HeredocFile[] = [];
  const pending = [...raw.heredocs];
  for (const word of words.slice(0, -1)) {
    const doc = !attempt.json && HEREDOC_WORD.test(word) ? pending.shift() : undefined;
    if (doc) files.push({ name: doc.name, content: doc.content, expand: doc.expand });
    else sources.push(word);
  }
  return { sources, dest, json: attempt.json, files };
}

export function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source) || /^git@/.test(source) || /^git:\/\//i.test(source);
}

// --- ENV / LABEL / ARG -----------------------------------------------------------------

/** `K=V K2="V 2"` or the legacy `K V with spaces` (the first word has no `=`). */
function parseKeyValues(cmd: string, rest: string, escape: string): KeyValue[] {
  const words = parseWords(rest, escape);
  const first = words[0];
  if (first === undefined) throw new LocalSyntaxError(`${cmd} requires at least one argument`);
  if (!first.includes('=')) {
    const parts = rest.split(/[\t\v\f\r ]+/);
    if (parts.length < 2) throw new LocalSyntaxError(`${cmd} must have two arguments (${cmd} key value, or ${cmd} key=value …)`);
    const key = parts[0] as string;
    return [{ key, value: rest.slice(rest.indexOf(key) + key.length).replace(/^[\t\v\f\r ]+/, '') }];
  }
  return words.map((word) => {
    const eq = word.indexOf('=');
    if (eq < 0) throw new LocalSyntaxError(`syntax error - can't find = in "${word}". Must be of the form: name=value`);
    const key = word.slice(0, eq);
    if (key === '') throw new LocalSyntaxError(`${cmd} names can not be blank`);
    return { key, value: word.slice(eq + 1) };
  });
}

function parseArgDecls(rest: string, escape: string): ArgDecl[] {
  const words = parseWords(rest, escape);
  if (words.length === 0) throw new LocalSyntaxError('ARG requires at least one argument');
  return words.map((word) => {
    const eq = word.indexOf('=');
    const name = eq < 0 ? word : word.slice(0, eq);
    if (name === '') throw new LocalSyntaxError(`ARG names can not be blank (in "${word}")`);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new LocalSyntaxError(`invalid ARG name "${name}": use letters, digits and _, not starting with a digit`);
    return eq < 0 ? { name } : { name, default: word.slice(eq + 1) };
  });
}

// --- VOLUME / CMD / ENTRYPOINT / SHELL ---------------------------------------------------

function parseVolumePaths(rest: string): string[] {
  const attempt = tryJsonArray(rest);
  const paths = atLeastOne('VOLUME', attempt.json ? attempt.values : splitWhitespace(rest));
  if (paths.some((p) => p.trim() === '')) throw new LocalSyntaxError('VOLUME specified can not be an empty string');
  return paths;
}

export function parseCommandForm(rest: string): { form: CommandForm; args: string[] } {
  const attempt = tryJsonArray(rest);
  if (attempt.json) return { form: 'exec', args: attempt.values };
  return { form: 'shell', args: rest === '' ? [] : [rest] };
}

export function commandLine(form: { form: CommandForm; args: string[] }, shell: readonly string[]): string[] {
  if (form.form === 'exec') return [...form.args];
  // An empty CMD/ENTRYPOINT clears the inherited one, as Docker's builder does.
  return form.args.length === 0 ? [] : [...shell, ...form.args];
}

function parseShell(rest: string): string[] {
  const attempt = tryJsonArray(rest);
  if (!attempt.json) throw new LocalSyntaxError('SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/bash", "-c"]');
  return atLeastOne('SHELL', attempt.values);
}

// --- HEALTHCHECK -------------------------------------------------------------------------

function parseHealthcheck(raw: RawInstruction, common: Common): HealthcheckInstr {
  const flags = parseFlags('HEALTHCHECK', raw.flags, {
    interval: 'string', timeout: 'string', 'start-period': 'string', 'start-interval': 'string', retries: 'string',
  });
  const match = /^(\S+)\s*([\s\S]*)$/.exec(raw.rest);
  if (!match) throw new LocalSyntaxError('HEALTHCHECK requires an argument: NONE or CMD <command>');
  const type = (match[1] as string).toUpperCase();
  const rest = match[2] as string;
  if (type === 'NONE') {
    if (rest !== '') throw new LocalSyntaxError('HEALTHCHECK NONE takes no arguments');
    if (raw.flags.length > 0) throw new LocalSyntaxError('HEALTHCHECK NONE takes no options');
    return { kind: 'HEALTHCHECK', ...common, test: ['NONE'] };
  }
  if (type !== 'CMD') throw new LocalSyntaxError(`unknown type "${match[1]}" in HEALTHCHECK (try CMD)`);
  const form = parseCommandForm(rest);
  if (form.args.length === 0) throw new LocalSyntaxError('missing command after HEALTHCHECK CMD');
  const check: HealthcheckInstr = {
    kind: 'HEALTHCHECK',
    ...common,
    test: form.form === 'exec' ? ['CMD', ...form.args] : ['CMD-SHELL', form.args[0] as string],
  };
  const durations: [keyof HealthcheckInstr & ('interval' | 'timeout' | 'startPeriod' | 'startInterval'), string][] = [
    ['interval', 'interval'], ['timeout', 'timeout'], ['startPeriod', 'start-period'], ['startInterval', 'start-interval'],
  ];
  for (const [field, flag] of durations) {
    const value = flags[flag] as string | undefined;
    if (value !== undefined) check[field] = healthDuration(flag, value);
  }
  if (flags.retries !== undefined) check.retries = healthRetries(flags.retries as string);
  return check;
}

/** Docker's rule: 0 means "the default", anything else must be at least 1 ms. */
function healthDuration(flag: string, value: string): number {
  let ms: number;
  try {
    ms = parseDuration(value);
  } catch (err) {
    if (err instanceof InvalidDurationError) throw new LocalSyntaxError(`HEALTHCHECK --${flag}: ${err.message}`);
    throw err;
  }
  if (ms !== 0 && ms < 1) throw new LocalSyntaxError(`HEALTHCHECK --${flag} cannot be less than 1ms`);
  if (ms < 0) throw new LocalSyntaxError(`HEALTHCHECK --${flag} cannot be negative`);
  return ms;
}

function healthRetries(value: string): number {
  if (!/^-?\d+$/.test(value)) throw new LocalSyntaxError(`HEALTHCHECK --retries: "${value}" is not an integer`);
  const n = Number(value);
  if (n < 0) throw new LocalSyntaxError('HEALTHCHECK --retries cannot be negative');
  return n;
}

// --- ONBUILD -----------------------------------------------------------------------------

function parseOnbuild(raw: RawInstruction, common: Common, ctx: InstructionContext): Instruction {
  if (raw.rest === '') throw new LocalSyntaxError('ONBUILD requires at least one argument');
  const inner = splitCommand(raw.rest);
  const innerCmd = inner.cmd.toUpperCase();
  if (innerCmd === 'ONBUILD') throw new LocalSyntaxError("chaining ONBUILD via 'ONBUILD ONBUILD' isn't allowed");
  if (innerCmd === 'FROM' || innerCmd === 'MAINTAINER') throw new LocalSyntaxError(`${innerCmd} isn't allowed as an ONBUILD trigger`);
  const trigger = parseInstruction({ ...inner, line: raw.line, endLine: raw.endLine, original: raw.rest, heredocs: raw.heredocs }, ctx);
  return { kind: 'ONBUILD', ...common, expression: raw.rest, trigger };
}
