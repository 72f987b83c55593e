// Streaming exec and attachable containers through the real runtime and shim (issue 5:
// "exec exit codes", "-it gives a real TTY"): output arrives while the process runs, stdin
// is delivered, kill reaches the process, a terminal comes from the container's own
// devpts and follows resizes, and a container's first process can be driven over attach.sock.
import * as fs from 'node:fs';
import type { Readable } from 'node:stream';

import { describe, expect, it } from 'vitest';

import { attach, ShimError, type ContainerConfig } from '../../src/runtime/index';
import { runtimeHarness } from '../helpers/runtime-harness';
import { requireSandbox } from '../helpers/sandbox-guard';

requireSandbox('streaming exec integration tests');

const harness = runtimeHarness('exec');
const { container } = harness;

/** Collects a stream's text and resolves once it contains `wanted`. */
function reader(stream: Readable): { text: () => string; waitFor: (wanted: string | RegExp, ms?: number) => Promise<string> } {
  let text = '';
  const waiters: (() => void)[] = [];
  stream.on('data', (b: Buffer) => {
    text += b.toString('utf8');
    waiters.splice(0).forEach((w) => w());
  });
  const matches = (wanted: string | RegExp): boolean => (typeof wanted === 'string' ? text.includes(wanted) : wanted.test(text));
  return {
    text: () => text,
    waitFor: (wanted, ms = 10_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${String(wanted)}; got ${JSON.stringify(text)}`)), ms);
        const check = (): void => {
          if (matches(wanted)) {
            clearTimeout(timer);
            resolve(text);
          } else waiters.push(check);
        };
        check();
      }),
  };
}

async function sleeper(id: string, extra: Partial<ContainerConfig> = {}): Promise<void> {
  await harness.runtime.run(container(id, ['sleep', '1000'], { stopGracePeriod: '100ms', ...extra }));
}

describe('execStream without a terminal', () => {
  it('delivers stdout while the process still runs, and kill ends it with 128+signal', async () => {
    await sleeper('stream');
    const session = await harness.runtime.execStream('stream', { args: ['sh', '-c', 'echo first; echo err >&2; sleep 100; echo never'] });
    const out = reader(session.stdout);
    const err = reader(session.stderr!);
    await out.waitFor('first\n');
    await err.waitFor('err\n');
    expect(session.stdin).toBeNull();
    session.kill('SIGKILL');
    expect(await session.exitCode).toBe(137);
    expect(out.text()).toBe('first\n');
  });

  it('delivers stdin as it is written and passes the exit code through', async () => {
    await sleeper('stdin');
    const session = await harness.runtime.execStream('stdin', { args: ['sh', '-c', 'read a; echo "got $a"; read b; echo "then $b"; exit 7'], stdin: true });
    const out = reader(session.stdout);
    session.stdin!.write('one\n');
    await out.waitFor('got one\n');
    session.stdin!.end('two\n');
    expect(await session.exitCode).toBe(7);
    expect(out.text()).toBe('got one\nthen two\n');
  });

  it('forwards a catchable signal to the process', async () => {
    await sleeper('term');
    const session = await harness.runtime.execStream('term', { args: ['sh', '-c', 'trap "echo caught; exit 5" TERM; echo ready; while true; do sleep 0.05; done'] });
    const out = reader(session.stdout);
    await out.waitFor('ready\n');
    session.kill('TERM');
    expect(await session.exitCode).toBe(5);
    expect(out.text()).toContain('caught\n');
  });

  it('rejects with the shim\'s errno report when the command does not exist', async () => {
    await sleeper('missing');
    const session = await harness.runtime.execStream('missing', { args: ['no-such-command'] });
    await expect(session.exitCode).rejects.toThrow(ShimError);
    await expect(session.exitCode).rejects.toThrow(/no-such-command/);
  });

  it('keeps the buffered exec: exit codes, stdin, stdout and stderr apart', async () => {
    await sleeper('buffered');
    const r = await harness.runtime.exec('buffered', { args: ['sh', '-c', 'cat; echo oops >&2; exit 3'], stdin: 'in\n' });
    expect(r).toEqual({ exitCode: 3, stdout: Buffer.from('in\n'), stderr: Buffer.from('oops\n') });
  });
});

describe('execStream with a terminal', () => {
  it('opens the pty in the container\'s devpts as the controlling terminal, with the given size', async () => {
    await sleeper('tty');
    const session = await harness.runtime.execStream('tty', { args: ['sh', '-c', 'tty; stty size; echo TERM=$TERM; ps -o pid,tty,comm >/dev/null; exit 4'], tty: true, cols: 91, rows: 33 });
    expect(session.stderr).toBeNull();
    const out = reader(session.stdout);
    expect(await session.exitCode).toBe(4);
    // A terminal turns \n into \r\n (termios ONLCR).
    expect(out.text()).toMatch(/^\/dev\/pts\/\d+\r\n33 91\r\nTERM=xterm\r\n$/);
  });

  it('follows a resize, and Ctrl-C interrupts the foreground command, not the shell', async () => {
    await sleeper('ttyint');
    const session = await harness.runtime.execStream('ttyint', { args: ['sh'], tty: true, stdin: true, cols: 80, rows: 24 });
    const out = reader(session.stdout);
    session.stdin!.write('stty size\n');
    await out.waitFor('24 80');
    session.resize(120, 40);
    session.stdin!.write('stty size\n');
    await out.waitFor('40 120');
    session.stdin!.write('sleep 100\n');
    // Give the shell time to start sleep in the foreground before interrupting it.
    await new Promise((r) => setTimeout(r, 300));
    session.stdin!.write('\x03');
    await out.waitFor('^C');
    // The shell survived the interrupt and saw sleep die of SIGINT.
    session.stdin!.write('echo status=$?\n');
    await out.waitFor('status=130');
    session.stdin!.write('exit 3\n');
    expect(await session.exitCode).toBe(3);
  });
});

describe('attaching to a container\'s first process', () => {
  it('drives a terminal container over attach.sock: prompt replayed, input, resize, exit code', async () => {
    await harness.runtime.run(container('attach-tty', ['sh'], { tty: true, stdinOpen: true, consoleSize: { cols: 70, rows: 20 } }));
    const session = await attach(harness.runtime.attachPath('attach-tty'));
    const out = reader(session.output);
    // busybox sh prints its prompt before anyone attached: the shim kept it.
    await out.waitFor('# ');
    session.write('tty; stty size\n');
    await out.waitFor(/\/dev\/pts\/\d+\r\n20 70\r\n/);
    session.resize(100, 30);
    session.write('stty size; echo hi; exit 3\n');
    await out.waitFor('30 100');
    const exit = await harness.runtime.wait('attach-tty');
    expect(exit.exitCode).toBe(3);
    expect(out.text()).toContain('hi\r\n');
    // Docker writes a terminal's output to the json-file log as stream "stdout".
    const records = fs.readFileSync(harness.runtime.logPath('attach-tty'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { log: string; stream: string });
    expect(records.map((r) => r.log).join('')).toContain('hi\r\n');
    expect(new Set(records.map((r) => r.stream))).toEqual(new Set(['stdout']));
    expect(fs.existsSync(harness.runtime.attachPath('attach-tty'))).toBe(false);
  });

  it('feeds stdin through a pipe without a terminal and closes it on request', async () => {
    await harness.runtime.run(container('attach-pipe', ['sh', '-c', 'while read l; do echo "line $l"; done; echo eof; exit 6'], { stdinOpen: true }));
    const session = await attach(harness.runtime.attachPath('attach-pipe'));
    session.write('a\nb\n');
    session.endInput();
    const exit = await harness.runtime.wait('attach-pipe');
    expect(exit.exitCode).toBe(6);
    const log = fs.readFileSync(harness.runtime.logPath('attach-pipe'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { log: string }).log);
    expect(log).toEqual(['line a\n', 'line b\n', 'eof\n']);
  });

  it('has no attach socket for a container without tty or stdin', async () => {
    await sleeper('plain');
    expect(fs.existsSync(harness.runtime.attachPath('plain'))).toBe(false);
  });
});
