// The instructions that change only the image config (Dockerfile reference: ENV, LABEL,
// USER, EXPOSE, VOLUME, CMD, ENTRYPOINT, HEALTHCHECK, SHELL, STOPSIGNAL, ONBUILD, WORKDIR's
// config half), applied the way Docker applies them to the image config's `config` object
// (moby image spec v1.2 field names). Pure functions: no file system, no cache.
import * as path from 'node:path';
import type { ResolvedInstruction } from './dockerfile/index';
import type { ImageRuntimeConfig } from './cache';

/** A per-stage fact Docker tracks besides the config: whether CMD was set in this stage. */
export interface StageFlags {
  cmdSet: boolean;
}

const NS_PER_MS = 1_000_000;

export function setEnv(env: readonly string[], key: string, value: string): string[] {
  const entry = `${key}=${value}`;
  const at = env.findIndex((e) => e.slice(0, e.indexOf('=')) === key);
  if (at < 0) return [...env, entry];
  const out = [...env];
  out[at] = entry;
  return out;
}

/** WORKDIR: a relative path continues from the previous WORKDIR (Dockerfile reference, WORKDIR). */
export function workdirOf(config: ImageRuntimeConfig, dir: string): string {
  return path.posix.resolve(config.WorkingDir || '/', dir);
}

/**
 * The config after a metadata instruction; undefined for the instructions that are not
 * metadata (RUN, COPY, ADD) or change nothing in it (ARG).
 */
export function applyMetadata(config: ImageRuntimeConfig, instr: ResolvedInstruction, flags: StageFlags): ImageRuntimeConfig | undefined {
  const c: ImageRuntimeConfig = structuredClone(config);
  switch (instr.kind) {
    case 'ENV':
      for (const p of instr.pairs) c.Env = setEnv(c.Env ?? [], p.key, p.value);
      return c;
    case 'LABEL':
      c.Labels = { ...(c.Labels ?? {}), ...Object.fromEntries(instr.pairs.map((p) => [p.key, p.value])) };
      return c;
    case 'MAINTAINER':
      c.Labels = { ...(c.Labels ?? {}), maintainer: instr.maintainer };
      return c;
    case 'WORKDIR':
      c.WorkingDir = workdirOf(c, instr.path);
      return c;
    case 'USER':
      c.User = instr.user;
      return c;
    case 'EXPOSE':
      c.ExposedPorts = { ...(c.ExposedPorts ?? {}), ...Object.fromEntries(instr.ports.map((p) => [p, {}])) };
      return c;
    case 'VOLUME':
      c.Volumes = { ...(c.Volumes ?? {}), ...Object.fromEntries(instr.paths.map((p) => [p, {}])) };
      return c;
    case 'CMD':
      c.Cmd = instr.command;
      flags.cmdSet = true;
      return c;
    case 'ENTRYPOINT':
      c.Entrypoint = instr.command;
      // "If CMD is defined from the base image, setting ENTRYPOINT will reset CMD to an
      // empty value" (Dockerfile reference, "Understand how CMD and ENTRYPOINT interact").
      if (!flags.cmdSet) c.Cmd = null;
      return c;
    case 'HEALTHCHECK':
      c.Healthcheck = healthcheck(instr);
      return c;
    case 'SHELL':
      c.Shell = instr.shell;
      return c;
    case 'STOPSIGNAL':
      c.StopSignal = instr.signal;
      return c;
    case 'ONBUILD':
      c.OnBuild = [...(c.OnBuild ?? []), instr.expression];
      return c;
    case 'ARG':
    case 'RUN':
    case 'COPY':
    case 'ADD':
      return undefined;
  }
}

function healthcheck(instr: Extract<ResolvedInstruction, { kind: 'HEALTHCHECK' }>): NonNullable<ImageRuntimeConfig['Healthcheck']> {
  const out: NonNullable<ImageRuntimeConfig['Healthcheck']> = { Test: instr.test };
  // The image config keeps durations in nanoseconds (moby container.HealthConfig).
  if (instr.interval !== undefined) out.Interval = instr.interval * NS_PER_MS;
  if (instr.timeout !== undefined) out.Timeout = instr.timeout * NS_PER_MS;
  if (instr.startPeriod !== undefined) out.StartPeriod = instr.startPeriod * NS_PER_MS;
  if (instr.startInterval !== undefined) out.StartInterval = instr.startInterval * NS_PER_MS;
  if (instr.retries !== undefined) out.Retries = instr.retries;
  return out;
}

/** The history line `docker history` shows for a step, BuildKit's wording. */
export function createdBy(instr: ResolvedInstruction): string {
  switch (instr.kind) {
    case 'RUN':
      return `RUN ${instr.command.join(' ')} # buildkit`;
    case 'COPY':
    case 'ADD':
      return `${instr.kind} ${[...instr.sources, ...instr.files.map((f) => `<<${f.name}`)].join(' ')} ${instr.dest} # buildkit`;
    case 'WORKDIR':
      return `WORKDIR ${instr.path}`;
    case 'CMD':
    case 'ENTRYPOINT':
      return `${instr.kind} ${JSON.stringify(instr.command)}`;
    case 'ENV':
    case 'LABEL':
      return `${instr.kind} ${instr.pairs.map((p) => `${p.key}=${p.value}`).join(' ')}`;
    case 'ARG':
      return `ARG ${instr.args.map((a) => (a.default !== undefined ? `${a.name}=${a.default}` : a.name)).join(' ')}`;
    default:
      return instr.original;
  }
}
