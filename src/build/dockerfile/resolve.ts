// resolveStages: the stages a target needs, in build order, with variables substituted
// the way Docker does it (Dockerfile reference, "Environment replacement", "ARG",
// "Understand how ARG and FROM interact", "Automatic platform ARGs in the global scope"):
// - ARGs before the first FROM are in scope only in FROM lines, unless a stage re-declares
//   them (`ARG NAME` without a value takes the global value);
// - `--build-arg` overrides a default; an ARG without default and without build arg is unset;
// - ENV beats an ARG of the same name; an ARG's scope ends with its stage, ENV is inherited
//   by stages built FROM it;
// - substitution happens in ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR
//   (and ARG defaults, RUN --mount fields), never in RUN/CMD/ENTRYPOINT, whose shell does it,
//   nor in ONBUILD triggers, which run in the child build;
// - one instruction sees the variables as they were before it (`ENV a=1 b=$a` reads the old a).
import { normalizePlatform, parsePlatform, formatPlatform } from '../../images/platform';
import type { Platform } from '../../images/types';
import { ImageError } from '../../images/errors';
import { DockerfileError, LocalSyntaxError, atLine } from './errors';
import { DEFAULT_SHELL, commandLine, runCommandLine } from './instructions';
import { findTargetStage, stageFrom } from './parse';
import { processWord, processWords, type LexOptions, type Lookup } from './shell-lex';
import type {
  ArgDecl,
  CopyInstr,
  AddInstr,
  Instruction,
  ParsedDockerfile,
  ResolvedBuild,
  ResolvedInstruction,
  ResolvedStage,
  RunMount,
  Stage,
  StageFrom,
} from './types';

export interface ResolveOptions {
  /** Stage name to build; default: the last stage. */
  target?: string;
  buildArgs?: Record<string, string>;
  /** Platform of the image built, "os/arch[/variant]"; default: the build platform. */
  platform?: string;
  /** Platform of the machine building; default: this one. */
  buildPlatform?: string;
  /**
   * The Env of a base image's config, so `FROM golang` + `WORKDIR $GOPATH` substitutes as
   * Docker does. Synchronous: a builder resolves once, fetches the configs of the
   * `from.image`s it gets, and resolves again with them.
   */
  imageEnv?: (image: string, platform: string) => Record<string, string> | undefined;
}

/** Docker's predefined proxy ARGs: usable without an ARG, kept out of the cache key. */
export const PROXY_ARGS: readonly string[] = [
  'HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy',
  'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy',
];

const NODE_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

export function hostPlatform(): string {
  return formatPlatform(normalizePlatform({ os: 'linux', architecture: NODE_ARCH[process.arch] ?? process.arch }));
}

/** BUILDPLATFORM, BUILDOS, …, TARGETVARIANT, as BuildKit defines them. */
export function platformArgs(target: Platform, build: Platform): Record<string, string> {
  return {
    BUILDPLATFORM: formatPlatform(build),
    BUILDOS: build.os,
    BUILDARCH: build.architecture,
    BUILDVARIANT: build.variant ?? '',
    TARGETPLATFORM: formatPlatform(target),
    TARGETOS: target.os,
    TARGETARCH: target.architecture,
    TARGETVARIANT: target.variant ?? '',
  };
}

export function resolveStages(parsed: ParsedDockerfile, opts: ResolveOptions = {}): ResolvedBuild {
  return new Resolver(parsed, opts).run(opts.target ?? parsed.requested.target);
}

interface StageState {
  index: number;
  env: Map<string, string>;
  args: Map<string, string | undefined>;
  shell: readonly string[];
  deps: Set<number>;
}

class Resolver {
  private readonly file: string;
  private readonly lex: LexOptions;
  private readonly buildArgs: Record<string, string>;
  private readonly targetPlatform: string;
  private readonly globals = new Map<string, string | undefined>();
  private readonly froms: StageFrom[] = [];
  private readonly resolved = new Map<number, ResolvedStage>();
  private readonly declared = new Set<string>();

  constructor(
    private readonly parsed: ParsedDockerfile,
    private readonly opts: ResolveOptions,
  ) {
    this.file = parsed.file;
    this.lex = { escape: parsed.directives.escape };
    this.buildArgs = opts.buildArgs ?? parsed.requested.buildArgs;
    const build = this.platform(opts.buildPlatform ?? hostPlatform(), 'build platform');
    const target = opts.platform !== undefined ? this.platform(opts.platform, 'platform') : build;
    this.targetPlatform = formatPlatform(target);
    for (const [name, value] of Object.entries(platformArgs(target, build))) this.globals.set(name, value);
  }

  run(target: string | undefined): ResolvedBuild {
    this.resolveGlobalArgs();
    this.resolveFroms();
    const stages = this.parsed.stages;
    const targetStage = target !== undefined ? findTargetStage(stages, target, this.file) : (stages[stages.length - 1] as Stage);
    this.resolveStage(targetStage.index);
    const ordered = [...this.resolved.values()].sort((a, b) => a.index - b.index);
    return {
      stages: ordered,
      target: this.resolved.get(targetStage.index) as ResolvedStage,
      globalArgs: Object.fromEntries([...this.globals].filter((e): e is [string, string] => e[1] !== undefined)),
      proxyArgs: Object.fromEntries(PROXY_ARGS.filter((n) => this.buildArgs[n] !== undefined).map((n) => [n, this.buildArgs[n] as string])),
      warnings: [...this.parsed.warnings, ...this.unusedBuildArgWarnings()],
    };
  }

  private platform(text: string, what: string): Platform {
    try {
      return parsePlatform(text);
    } catch (err) {
      if (err instanceof ImageError) throw new DockerfileError(this.file, undefined, `${what}: ${err.message}`, { cause: err });
      throw err;
    }
  }

  private resolveGlobalArgs(): void {
    const lookup: Lookup = (name) => this.globals.get(name);
    for (const instr of this.parsed.args) {
      const values = atLine(this.file, instr.line, () => instr.args.map((decl) => this.argValue(decl, lookup, undefined)));
      instr.args.forEach((decl, i) => this.globals.set(decl.name, values[i]?.value));
    }
  }

  /** The value of a declared ARG: --build-arg, else the default, else the global value. */
  private argValue(decl: ArgDecl, lookup: Lookup, global: Map<string, string | undefined> | undefined): { value: string | undefined; default?: string } {
    this.declared.add(decl.name);
    const expandedDefault = decl.default !== undefined ? processWord(decl.default, lookup, this.lex) : undefined;
    const fromBuildArg = Object.prototype.hasOwnProperty.call(this.buildArgs, decl.name) ? this.buildArgs[decl.name] : undefined;
    const value = fromBuildArg ?? expandedDefault ?? global?.get(decl.name);
    return expandedDefault !== undefined ? { value, default: expandedDefault } : { value };
  }

  private resolveFroms(): void {
    const lookup: Lookup = (name) => this.globals.get(name);
    for (const stage of this.parsed.stages) {
      const from = atLine(this.file, stage.line, () => {
        const image = processWord(stage.fromInstr.image, lookup, this.lex);
        if (image === '') throw new LocalSyntaxError(`base name (${stage.fromInstr.image}) should not be blank`);
        const platform = stage.fromInstr.platform !== undefined ? processWord(stage.fromInstr.platform, lookup, this.lex) : undefined;
        return stageFrom(image, platform === '' ? undefined : platform, this.parsed.stages.slice(0, stage.index));
      });
      this.froms.push(from);
    }
  }

  private resolveStage(index: number): void {
    if (this.resolved.has(index)) return;
    const stage = this.parsed.stages[index] as Stage;
    const from = this.froms[index] as StageFrom;
    const state: StageState = { index, env: new Map(), args: new Map(), shell: DEFAULT_SHELL, deps: new Set() };
    if (from.stageRef !== undefined) {
      this.resolveStage(from.stageRef);
      const parent = this.resolved.get(from.stageRef) as ResolvedStage;
      state.env = new Map(Object.entries(parent.env));
      state.shell = parent.shell;
    } else if (!from.isScratch && this.opts.imageEnv) {
      state.env = new Map(Object.entries(this.opts.imageEnv(from.image, from.platform ?? this.targetPlatform) ?? {}));
    }
    const instructions = stage.instructions.map((instr) => atLine(this.file, instr.line, () => this.resolveInstruction(instr, state)));
    const resolved: ResolvedStage = { index, line: stage.line, from, instructions, env: Object.fromEntries(state.env), shell: [...state.shell] };
    if (stage.name !== undefined) resolved.name = stage.name;
    this.resolved.set(index, resolved);
    for (const dep of state.deps) this.resolveStage(dep);
  }

  private resolveInstruction(instr: Instruction, state: StageState): ResolvedInstruction {
    const used = new Map<string, string>();
    // ENV first: "Environment variables defined using the ENV instruction always override
    // an ARG instruction of the same name" (Dockerfile reference, ARG).
    const lookup: Lookup = (name) => {
      if (state.env.has(name)) return state.env.get(name);
      const value = state.args.get(name);
      if (value !== undefined) used.set(name, value);
      return value;
    };
    const word = (text: string): string => processWord(text, lookup, this.lex);
    const withArgs = <T extends Instruction>(out: T): ResolvedInstruction => ({ ...out, effectiveArgs: Object.fromEntries(used) }) as ResolvedInstruction;

    switch (instr.kind) {
      case 'ENV': {
        const pairs = instr.pairs.map((p) => ({ key: word(p.key), value: word(p.value) }));
        for (const p of pairs) {
          if (p.key === '') throw new LocalSyntaxError('ENV names can not be blank');
          state.env.set(p.key, p.value);
        }
        return withArgs({ ...instr, pairs });
      }
      case 'ARG': {
        const values = instr.args.map((decl) => this.argValue(decl, lookup, this.globals));
        const args = instr.args.map((decl, i) => {
          const v = values[i] as { value: string | undefined; default?: string };
          state.args.set(decl.name, v.value);
          if (v.value !== undefined) used.set(decl.name, v.value);
          return v.default !== undefined ? { name: decl.name, default: v.default } : { name: decl.name };
        });
        return withArgs({ ...instr, args });
      }
      case 'LABEL':
        return withArgs({ ...instr, pairs: instr.pairs.map((p) => ({ key: word(p.key), value: word(p.value) })) });
      case 'WORKDIR':
        return withArgs({ ...instr, path: word(instr.path) });
      case 'USER':
        return withArgs({ ...instr, user: word(instr.user) });
      case 'STOPSIGNAL':
        return withArgs({ ...instr, signal: word(instr.signal) });
      case 'VOLUME':
        return withArgs({ ...instr, paths: instr.paths.map(word) });
      case 'EXPOSE':
        return withArgs({ ...instr, ports: instr.ports.flatMap((p) => processWords(p, lookup, this.lex)).map(normalizeExposedPort) });
      case 'COPY':
      case 'ADD':
        return withArgs(this.resolveCopy(instr, state, word, lookup));
      case 'RUN': {
        const mounts = instr.mounts.map((m) => this.resolveMount(m, state, word));
        const run = { ...instr, mounts, command: runCommandLine(instr, instr.heredocs, state.shell) };
        // Every ARG in scope is in RUN's environment, so every one is part of its cache key.
        for (const [name, value] of state.args) if (value !== undefined && !state.env.has(name)) used.set(name, value);
        return withArgs(run);
      }
      case 'CMD':
      case 'ENTRYPOINT':
        return withArgs({ ...instr, command: commandLine(instr, state.shell) });
      case 'SHELL':
        state.shell = instr.shell;
        return withArgs(instr);
      case 'HEALTHCHECK':
      case 'ONBUILD':
      case 'MAINTAINER':
        return withArgs(instr);
    }
  }

  private resolveCopy(instr: CopyInstr | AddInstr, state: StageState, word: (t: string) => string, lookup: Lookup): CopyInstr | AddInstr {
    const out: CopyInstr | AddInstr = {
      ...instr,
      sources: instr.sources.map(word),
      dest: word(instr.dest),
      exclude: instr.exclude.map(word),
      // Heredoc bodies: variables expanded, quotes left alone (BuildKit's SkipProcessQuotes).
      files: instr.files.map((f) => (f.expand ? { ...f, content: processWord(f.content, lookup, { escape: '\\', literalQuotes: true }) } : f)),
    };
    if (instr.chown !== undefined) out.chown = word(instr.chown);
    if (instr.chmod !== undefined) out.chmod = word(instr.chmod);
    if (out.kind === 'COPY' && out.from !== undefined) {
      out.from = word(out.from);
      const ref = this.stageReference(out.from, state.index, 'COPY --from');
      if (ref !== undefined) {
        out.fromStage = ref;
        state.deps.add(ref);
      }
    }
    return out;
  }

  private resolveMount(mount: RunMount, state: StageState, word: (t: string) => string): RunMount {
    const out: RunMount = { ...mount, options: { ...mount.options } };
    for (const key of ['target', 'source', 'from'] as const) {
      const value = out[key];
      if (value !== undefined) out[key] = word(value);
    }
    if (out.from !== undefined) {
      const ref = this.stageReference(out.from, state.index, 'RUN --mount from=');
      if (ref !== undefined) {
        out.fromStage = ref;
        state.deps.add(ref);
      }
    }
    return out;
  }

  /**
   * A `--from` value naming a stage (by name or index) gives that stage; anything else is
   * an image reference. Only earlier stages can be named, so the build order is the file's.
   */
  private stageReference(value: string, current: number, what: string): number | undefined {
    const stages = this.parsed.stages;
    if (/^\d+$/.test(value)) {
      const index = Number(value);
      if (index >= current) throw new LocalSyntaxError(`${what}=${value}: stage index ${index} is not an earlier stage (this is stage ${current})`);
      return index;
    }
    const named = stages.find((s) => s.name !== undefined && s.name === value.toLowerCase());
    if (named === undefined) return undefined;
    if (named.index >= current) {
      throw new LocalSyntaxError(`${what}=${value}: stage "${named.name}" (line ${named.line}) is not defined before this one; a stage can only use earlier stages`);
    }
    return named.index;
  }

  private unusedBuildArgWarnings(): string[] {
    const unused = Object.keys(this.buildArgs).filter((n) => !this.declared.has(n) && !PROXY_ARGS.includes(n)).sort();
    return unused.length === 0 ? [] : [`${this.file}: one or more build-args [${unused.join(' ')}] were not consumed`];
  }
}

/** "80" → "80/tcp", "53/UDP" → "53/udp", "8000-8010/tcp" kept; Docker's nat.ParsePortSpec rules. */
export function normalizeExposedPort(spec: string): string {
  const match = /^(\d+)(?:-(\d+))?(?:\/([A-Za-z]+))?$/.exec(spec);
  if (!match) throw new LocalSyntaxError(`EXPOSE: invalid port "${spec}" (expected <port>[/<protocol>] or <start>-<end>[/<protocol>])`);
  const start = Number(match[1]);
  const end = match[2] !== undefined ? Number(match[2]) : undefined;
  const protocol = (match[3] ?? 'tcp').toLowerCase();
  if (start < 1 || start > 65535 || (end !== undefined && (end < start || end > 65535))) {
    throw new LocalSyntaxError(`EXPOSE: invalid port range "${spec}" (ports are 1-65535, start ≤ end)`);
  }
  if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'sctp') {
    throw new LocalSyntaxError(`EXPOSE: invalid protocol "${match[3]}" in "${spec}" (tcp, udp or sctp)`);
  }
  return `${end !== undefined ? `${start}-${end}` : start}/${protocol}`;
}
