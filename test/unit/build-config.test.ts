// Metadata instructions applied to an image config, the progress printers, and the
// `--build-arg` parsing of `d2p build`.
import { describe, expect, it } from 'vitest';
import { applyMetadata, createdBy, type StageFlags } from '../../src/build/builder-config';
import { buildPrinter } from '../../src/build/builder-progress';
import type { ImageRuntimeConfig } from '../../src/build/cache';
import { parseDockerfile, resolveStages } from '../../src/build/dockerfile/index';
import { StringWriter } from '../../src/cli/io';
import { parseBuildArgs } from '../../src/cli/commands/build';

function configAfter(lines: string[], start: ImageRuntimeConfig = { Env: ['PATH=/bin'], Cmd: ['sh'] }): ImageRuntimeConfig {
  const parsed = parseDockerfile(['FROM busybox', ...lines].join('\n'), { file: 'Dockerfile' });
  const flags: StageFlags = { cmdSet: false };
  let config = start;
  for (const instr of resolveStages(parsed, { platform: 'linux/amd64', buildPlatform: 'linux/amd64' }).target.instructions) {
    config = applyMetadata(config, instr, flags) ?? config;
  }
  return config;
}

describe('applyMetadata', () => {
  it('sets what each instruction sets, in Docker image-config fields', () => {
    const c = configAfter([
      'ENV A=1 PATH=/usr/bin:/bin',
      'WORKDIR /srv',
      'WORKDIR app',
      'USER 1000:1000',
      'EXPOSE 80 53/udp',
      'VOLUME ["/data"]',
      'LABEL a=b',
      'STOPSIGNAL SIGQUIT',
      'HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost',
      'SHELL ["/bin/ash", "-c"]',
      'ONBUILD RUN echo child',
      'CMD echo hi',
    ]);
    expect(c.Env).toEqual(['PATH=/usr/bin:/bin', 'A=1']);
    expect(c.WorkingDir).toBe('/srv/app');
    expect(c.User).toBe('1000:1000');
    expect(c.ExposedPorts).toEqual({ '80/tcp': {}, '53/udp': {} });
    expect(c.Volumes).toEqual({ '/data': {} });
    expect(c.Labels).toEqual({ a: 'b' });
    expect(c.StopSignal).toBe('SIGQUIT');
    expect(c.Healthcheck).toEqual({ Test: ['CMD-SHELL', 'wget -q localhost'], Interval: 5e9, Retries: 2 });
    expect(c.Shell).toEqual(['/bin/ash', '-c']);
    expect(c.OnBuild).toEqual(['RUN echo child']);
    expect(c.Cmd).toEqual(['/bin/ash', '-c', 'echo hi']);
  });

  it('ENTRYPOINT resets an inherited CMD, not one set in the same stage', () => {
    expect(configAfter(['ENTRYPOINT ["/app"]']).Cmd).toBeNull();
    expect(configAfter(['CMD ["--flag"]', 'ENTRYPOINT ["/app"]']).Cmd).toEqual(['--flag']);
  });

  it('names history entries as BuildKit does', () => {
    const parsed = parseDockerfile('FROM busybox\nRUN make\nCOPY a b /dst/\n', { file: 'Dockerfile' });
    const [run, copy] = resolveStages(parsed, { platform: 'linux/amd64', buildPlatform: 'linux/amd64' }).target.instructions;
    expect(createdBy(run!)).toBe('RUN /bin/sh -c make # buildkit');
    expect(createdBy(copy!)).toBe('COPY a b /dst/ # buildkit');
  });
});

describe('build progress printers', () => {
  it('plain: numbered steps, output with timestamps, CACHED/DONE/ERROR', () => {
    const out = new StringWriter();
    const p = buildPrinter(out, 'plain');
    p.onProgress({ type: 'step', id: 3, name: '[build 2/5] RUN make' });
    p.onProgress({ type: 'log', id: 3, seconds: 0.1234, text: 'cc main.c' });
    p.onProgress({ type: 'done', id: 3, cached: false, seconds: 0.42 });
    p.onProgress({ type: 'step', id: 4, name: '[build 3/5] COPY a /a' });
    p.onProgress({ type: 'done', id: 4, cached: true, seconds: 0 });
    p.onProgress({ type: 'step', id: 5, name: '[build 4/5] RUN false' });
    p.onProgress({ type: 'error', id: 5, message: 'exit code: 1' });
    expect(out.toString()).toBe('#3 [build 2/5] RUN make\n#3 0.123 cc main.c\n#3 DONE 0.4s\n#4 [build 3/5] COPY a /a\n#4 CACHED\n#5 [build 4/5] RUN false\n#5 ERROR: exit code: 1\n');
  });

  it('tty: one line per finished step, and the output of a failed one', () => {
    const out = new StringWriter();
    const p = buildPrinter(out, 'tty');
    p.onProgress({ type: 'step', id: 1, name: '[1/2] FROM scratch' });
    p.onProgress({ type: 'done', id: 1, cached: true, seconds: 0 });
    p.onProgress({ type: 'step', id: 2, name: '[2/2] RUN false' });
    p.onProgress({ type: 'log', id: 2, seconds: 0.1, text: 'oops' });
    p.onProgress({ type: 'error', id: 2, message: 'exit code: 1' });
    p.finish(false);
    const text = out.toString();
    expect(text).toContain(' => CACHED [1/2] FROM scratch\n');
    expect(text).toContain(' => ERROR [2/2] RUN false\n > oops\n');
    expect(text).toMatch(/\[\+\] Building \d+\.\ds \(1\/2\) FAILED\n$/);
  });
});

describe('parseBuildArgs', () => {
  it('takes K=V, and K alone from the environment (left out when unset)', () => {
    expect(parseBuildArgs(['A=1', 'B=x=y', 'HOME_DIR', 'UNSET'], { HOME_DIR: '/root' })).toEqual({ A: '1', B: 'x=y', HOME_DIR: '/root' });
    expect(() => parseBuildArgs(['=v'], {})).toThrow(/expected KEY=VALUE/);
  });
});
