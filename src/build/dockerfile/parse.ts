// parseDockerfile: text → directives, global ARGs and stages of typed instructions.
// Stage rules follow the Dockerfile reference ("FROM", "Understand how ARG and FROM
// interact") and BuildKit's instructions.Parse: only ARG may precede the first FROM, stage
// names are case-insensitive and unique, `FROM <earlier stage>` builds on that stage.
// FROM errors are LocalSyntaxErrors: atLine() adds the file and line.
import { DockerfileError, LocalSyntaxError as LocalFromError, atLine } from './errors';
import { DEFAULT_SHELL, parseInstruction, type InstructionContext } from './instructions';
import { scanDockerfile, type RawInstruction } from './lines';
import type { ArgInstr, FromInstr, ParsedDockerfile, Stage } from './types';
import { parseFlags, splitWhitespace } from './words';

export interface ParseOptions {
  /** Shown in errors ("Dockerfile:3: …"): the path as the user gave it. */
  file: string;
  buildArgs?: Record<string, string>;
  /** Checked to name a stage, so a typo fails before anything is built. */
  target?: string;
}

/** BuildKit's stage-name rule (instructions/parse.go, validStageName). */
const STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;

export function parseDockerfile(text: string, opts: ParseOptions): ParsedDockerfile {
  const { file } = opts;
  const scan = scanDockerfile(text, file);
  if (scan.instructions.length === 0) throw new DockerfileError(file, undefined, 'file with no instructions');
  const warnings = [...scan.warnings];
  const stages: Stage[] = [];
  const args: ArgInstr[] = [];
  const shells: string[][] = [];
  let current: Stage | undefined;
  let shell: readonly string[] = DEFAULT_SHELL;
  const ctx = (): InstructionContext => ({
    escape: scan.directives.escape,
    shell,
    warn: (message) => warnings.push(`${file}: ${message}`),
  });

  for (const raw of scan.instructions) {
    if (raw.cmd.toUpperCase() === 'FROM') {
      if (current) shells[current.index] = [...shell];
      current = atLine(file, raw.line, () => newStage(raw, stages));
      stages.push(current);
      shell = current.from.stageRef !== undefined ? (shells[current.from.stageRef] as string[]) : DEFAULT_SHELL;
      continue;
    }
    const instruction = atLine(file, raw.line, () => parseInstruction(raw, ctx()));
    if (!current) {
      if (instruction.kind !== 'ARG') {
        throw new DockerfileError(file, raw.line, `no build stage in current context: ${raw.cmd.toUpperCase()} before the first FROM (only ARG may come before FROM)`);
      }
      args.push(instruction);
      continue;
    }
    if (instruction.kind === 'SHELL') shell = instruction.shell;
    current.instructions.push(instruction);
  }
  if (stages.length === 0) {
    const last = scan.instructions[scan.instructions.length - 1] as RawInstruction;
    throw new DockerfileError(file, last.line, 'FROM missing: a Dockerfile needs at least one FROM instruction');
  }
  const requested: ParsedDockerfile['requested'] = { buildArgs: { ...(opts.buildArgs ?? {}) } };
  if (opts.target !== undefined) {
    findTargetStage(stages, opts.target, file);
    requested.target = opts.target;
  }
  return { file, directives: scan.directives, stages, args, warnings, requested };
}

function newStage(raw: RawInstruction, stages: readonly Stage[]): Stage {
  const fromInstr = parseFrom(raw);
  const index = stages.length;
  if (fromInstr.name !== undefined) {
    const clash = stages.find((s) => s.name === fromInstr.name);
    if (clash) throw new LocalFromError(`duplicate stage name "${fromInstr.name}" (already used by the FROM at line ${clash.line})`);
  }
  const stage: Stage = {
    index,
    line: raw.line,
    fromInstr,
    from: stageFrom(fromInstr.image, fromInstr.platform, stages),
    instructions: [],
  };
  if (fromInstr.name !== undefined) stage.name = fromInstr.name;
  return stage;
}

/** `FROM [--platform=p] image [AS name]`. */
export function parseFrom(raw: RawInstruction): FromInstr {
  const flags = parseFlags('FROM', raw.flags, { platform: 'string' });
  const words = splitWhitespace(raw.rest);
  if (words.length !== 1 && words.length !== 3) {
    throw new LocalFromError('FROM requires either one or three arguments: FROM [--platform=<platform>] <image> [AS <name>]');
  }
  const from: FromInstr = { kind: 'FROM', line: raw.line, endLine: raw.endLine, original: raw.original, image: words[0] as string };
  if (words.length === 3) {
    if ((words[1] as string).toLowerCase() !== 'as') throw new LocalFromError(`FROM: second argument should be AS, not "${words[1]}"`);
    const name = (words[2] as string).toLowerCase();
    if (!STAGE_NAME.test(name)) {
      throw new LocalFromError(`invalid name for build stage: "${words[2]}", name can't start with a number or contain symbols`);
    }
    from.name = name;
  }
  if (flags.platform !== undefined) from.platform = flags.platform as string;
  return from;
}

/** The base of a stage: an earlier stage when the (substituted) image names one. */
export function stageFrom(image: string, platform: string | undefined, earlier: readonly Stage[]): Stage['from'] {
  const ref = earlier.find((s) => s.name !== undefined && s.name === image.toLowerCase());
  const from: Stage['from'] = { image, isScratch: image.toLowerCase() === 'scratch' };
  if (platform !== undefined) from.platform = platform;
  if (ref) from.stageRef = ref.index;
  return from;
}

export function findTargetStage(stages: readonly Stage[], target: string, file: string): Stage {
  const stage = stages.find((s) => s.name === target.toLowerCase());
  if (!stage) {
    const names = stages.map((s) => s.name).filter((n): n is string => n !== undefined);
    throw new DockerfileError(file, undefined, `target stage "${target}" could not be found${names.length > 0 ? ` (stages: ${names.join(', ')})` : ' (no stage has a name: use FROM … AS <name>)'}`);
  }
  return stage;
}
