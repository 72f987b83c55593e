// The typed shape of a Dockerfile, instruction by instruction, following the Dockerfile
// reference (https://docs.docker.com/reference/dockerfile/) and BuildKit's dockerfile
// frontend (moby/buildkit frontend/dockerfile/instructions/commands.go), so a builder can
// run a step from these fields alone. Fields hold the text as written (quotes kept where
// Docker keeps them until substitution); resolveStages() returns the same shapes with
// variables substituted.

/** Parser directives: `# syntax=`, `# escape=`, `# check=` at the very top of the file. */
export interface Directives {
  syntax?: string;
  /** The escape and line-continuation character. */
  escape: '\\' | '`';
  check?: string;
}

/** A here-document attached to RUN, COPY or ADD (`<<EOF`, `<<-EOF`, `<<"EOF"`). */
export interface Heredoc {
  /** The delimiter word without quotes; for COPY/ADD also the file name written. */
  name: string;
  /** The body, each line with its newline; leading tabs already removed for `<<-`. */
  content: string;
  /** False when the delimiter was quoted: then the body is not expanded (sh(1) rules). */
  expand: boolean;
  /** True for `<<-`. */
  chomp: boolean;
  /** `3<<EOF` redirects file descriptor 3; absent for the default (stdin). */
  fileDescriptor?: number;
}

export interface KeyValue {
  key: string;
  value: string;
}

interface Common {
  /** 1-based first line of the instruction. */
  line: number;
  /** 1-based last line (continuations and heredoc bodies included). */
  endLine: number;
  /** The instruction as written after joining continuation lines. */
  original: string;
}

export interface FromInstr extends Common {
  kind: 'FROM';
  image: string;
  /** The `AS name`, lower-cased as BuildKit does. */
  name?: string;
  platform?: string;
}

export type RunMountType = 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';

/** One `--mount=type=…,target=…` of RUN (BuildKit commands_runmount.go). */
export interface RunMount {
  type: RunMountType;
  target?: string;
  source?: string;
  /** Stage name or image the mount reads from (`from=`). */
  from?: string;
  /** Set by resolveStages when `from` names an earlier stage. */
  fromStage?: number;
  readonly: boolean;
  /** Every key=value as written (id, sharing, mode, uid, gid, size, required, …). */
  options: Record<string, string>;
}

/** Shell form keeps the command line as one string; exec form is a JSON array. */
export type CommandForm = 'shell' | 'exec';

export interface RunInstr extends Common {
  kind: 'RUN';
  form: CommandForm;
  /** Exec form: the JSON array. Shell form: one element, the command line. */
  args: string[];
  /** The argv to execute: exec form as is, shell form prefixed by the SHELL in effect. */
  command: string[];
  mounts: RunMount[];
  network?: 'default' | 'none' | 'host';
  security?: 'sandbox' | 'insecure';
  heredocs: Heredoc[];
}

/** A COPY/ADD source given inline as a here-document. */
export interface HeredocFile {
  name: string;
  content: string;
  expand: boolean;
}

interface CopyCommon extends Common {
  /** Paths, glob patterns or (ADD) URLs, as written; heredoc sources are in `files`. */
  sources: string[];
  dest: string;
  /** True when written in the JSON array form. */
  json: boolean;
  chown?: string;
  chmod?: string;
  link: boolean;
  exclude: string[];
  files: HeredocFile[];
}

export interface CopyInstr extends CopyCommon {
  kind: 'COPY';
  from?: string;
  /** Set by resolveStages when `from` names an earlier stage (by name or index). */
  fromStage?: number;
  parents: boolean;
}

export interface AddInstr extends CopyCommon {
  kind: 'ADD';
  checksum?: string;
  keepGitDir: boolean;
  /** `--unpack`: undefined means Docker's default (unpack local tars, not URLs). */
  unpack?: boolean;
}

export interface EnvInstr extends Common {
  kind: 'ENV';
  pairs: KeyValue[];
}

export interface ArgDecl {
  name: string;
  /** Absent for `ARG NAME` (no default); `ARG NAME=` is the empty string. */
  default?: string;
}

export interface ArgInstr extends Common {
  kind: 'ARG';
  args: ArgDecl[];
}

export interface WorkdirInstr extends Common {
  kind: 'WORKDIR';
  path: string;
}

export interface UserInstr extends Common {
  kind: 'USER';
  /** user, uid, user:group or uid:gid. */
  user: string;
}

export interface ExposeInstr extends Common {
  kind: 'EXPOSE';
  /** As written; after resolveStages normalised to "port/proto" or "start-end/proto". */
  ports: string[];
}

export interface VolumeInstr extends Common {
  kind: 'VOLUME';
  paths: string[];
}

export interface LabelInstr extends Common {
  kind: 'LABEL';
  pairs: KeyValue[];
}

export interface CommandInstr<K extends 'CMD' | 'ENTRYPOINT'> extends Common {
  kind: K;
  form: CommandForm;
  args: string[];
  command: string[];
}

export type CmdInstr = CommandInstr<'CMD'>;
export type EntrypointInstr = CommandInstr<'ENTRYPOINT'>;

export interface HealthcheckInstr extends Common {
  kind: 'HEALTHCHECK';
  /** Docker image-config form: ["NONE"], ["CMD", argv…] or ["CMD-SHELL", command line]. */
  test: string[];
  /** Milliseconds; absent means the runtime default. */
  interval?: number;
  timeout?: number;
  startPeriod?: number;
  startInterval?: number;
  retries?: number;
}

export interface ShellInstr extends Common {
  kind: 'SHELL';
  shell: string[];
}

export interface StopsignalInstr extends Common {
  kind: 'STOPSIGNAL';
  signal: string;
}

export interface OnbuildInstr extends Common {
  kind: 'ONBUILD';
  /** The trigger as written after ONBUILD, stored in the image config verbatim. */
  expression: string;
  /** The trigger parsed, so a bad trigger is reported now rather than in a child build. */
  trigger: Instruction;
}

/** Deprecated; a builder writes it as the label `maintainer`, as Docker does. */
export interface MaintainerInstr extends Common {
  kind: 'MAINTAINER';
  maintainer: string;
}

/** Everything a stage may contain (FROM starts a stage and is not among them). */
export type Instruction =
  | RunInstr
  | CopyInstr
  | AddInstr
  | EnvInstr
  | ArgInstr
  | WorkdirInstr
  | UserInstr
  | ExposeInstr
  | VolumeInstr
  | LabelInstr
  | CmdInstr
  | EntrypointInstr
  | HealthcheckInstr
  | ShellInstr
  | StopsignalInstr
  | OnbuildInstr
  | MaintainerInstr;

export type InstructionKind = Instruction['kind'] | 'FROM';

export interface StageFrom {
  /** Image reference, or the name of an earlier stage. */
  image: string;
  platform?: string;
  isScratch: boolean;
  /** Index of the earlier stage this one starts from. */
  stageRef?: number;
}

export interface Stage {
  name?: string;
  index: number;
  /** Line of the FROM. */
  line: number;
  fromInstr: FromInstr;
  from: StageFrom;
  instructions: Instruction[];
}

export interface ParsedDockerfile {
  file: string;
  directives: Directives;
  stages: Stage[];
  /** ARGs before the first FROM: usable in FROM lines, and in stages that re-declare them. */
  args: ArgInstr[];
  warnings: string[];
  /** What parseDockerfile was given; resolveStages uses these unless it is given its own. */
  requested: { target?: string; buildArgs: Record<string, string> };
}

/** An instruction after substitution, with the build args it depends on. */
export type ResolvedInstruction = Instruction & {
  /**
   * The ARG values this step depends on, for cache keys: for RUN every ARG in scope (they
   * are in its environment, as in Docker); for the others the ARGs its substitution read.
   */
  effectiveArgs: Record<string, string>;
};

export interface ResolvedStage {
  name?: string;
  index: number;
  line: number;
  from: StageFrom;
  instructions: ResolvedInstruction[];
  /** ENV at the end of the stage (inherited from the parent stage when built on one). */
  env: Record<string, string>;
  /** SHELL at the end of the stage. */
  shell: string[];
}

export interface ResolvedBuild {
  /** The stages the target needs, parents before children; the target is last. */
  stages: ResolvedStage[];
  target: ResolvedStage;
  /** Global ARG values (defaults overridden by build args) and the automatic platform ARGs. */
  globalArgs: Record<string, string>;
  /** Proxy build args (HTTP_PROXY…): in RUN's environment without an ARG, never in cache keys. */
  proxyArgs: Record<string, string>;
  warnings: string[];
}
