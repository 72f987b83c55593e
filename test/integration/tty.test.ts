// `-it` through the built CLI, driven by a real pseudo-terminal (issue 5: "TTY session
// driven by a pseudo-terminal", "exec exit codes"). python3's pty module plays the user's
// terminal emulator: it runs bin/d2p on a pty slave, relays what we type, and changes the
// window size on request (TIOCSWINSZ on the master: the kernel sends the CLI SIGWINCH).
// The daemon runs in-process with the real controllers, runtime and shim.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Writable } from 'node:stream';
import { beforeAll, describe, expect, it, vi } from 'vitest';

import { API_VERSION } from '../../src/api/meta';
import { useTestDaemon } from '../helpers/daemon';
import { requireSandbox } from '../helpers/sandbox-guard';

requireSandbox('tty integration tests');

const IMAGE = 'd2p.test/tty:1';
const BIN = path.resolve(__dirname, '../../bin/d2p');

// argv: cols rows command…; fd 3 takes "COLS ROWS" lines to resize. Exits with the
// command's status (128+n for a signal), as a shell would report it.
const PTY_DRIVER = `
import errno, fcntl, os, pty, select, struct, sys, termios
cols, rows, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
def winsize(fd, c, r): fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', r, c, 0, 0))
pid, master = pty.fork()
if pid == 0:
    winsize(0, cols, rows)
    os.execvp(argv[0], argv)
inputs, ctl = [0, 3], b''
while True:
    ready = select.select([master] + inputs, [], [])[0]
    if master in ready:
        try: data = os.read(master, 4096)
        except OSError as e:
            if e.errno != errno.EIO: raise
            data = b''
        if not data: break
        os.write(1, data)
    if 0 in ready:
        data = os.read(0, 4096)
        if data: os.write(master, data)
        else: inputs.remove(0)
    if 3 in ready:
        data = os.read(3, 4096)
        if not data: inputs.remove(3)
        ctl += data
        while b'\\n' in ctl:
            line, ctl = ctl.split(b'\\n', 1)
            c, r = line.split()
            winsize(master, int(c), int(r))
status = os.waitpid(pid, 0)[1]
sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
`;

const cgroupParent = `d2p-tty-test-${process.pid}`;

beforeAll(() => {
  if (!fs.existsSync(path.resolve(__dirname, '../../dist/src/cli/main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  const python = spawnSync('python3', ['-c', 'import pty']);
  if (python.status !== 0) throw new Error(`python3 with the pty module is needed to drive a terminal: ${python.stderr}`);
}, 60_000);

const harness = useTestDaemon('tty-it', { cgroupParent, exportCgroupParent: true, images: [{ ref: IMAGE }] }, 60_000);

interface Terminal {
  type(text: string): void;
  resize(cols: number, rows: number): void;
  /**
   * Resolves with everything shown so far once it matches, line ends read as "\n": both
   * ptys on the way (the container's and ours) turn "\n" into "\r\n" (termios ONLCR).
   */
  waitFor(wanted: string | RegExp, ms?: number): Promise<string>;
  screen(): string;
  exitCode: Promise<number>;
}

/** bin/d2p ARGS on a pty of cols×rows; the global flags point it at this test's daemon. */
function terminal(args: string[], cols = 80, rows = 24): Terminal {
  const [command, ...rest] = args;
  const cliArgs = [BIN, command, '--root', harness.daemon.paths.root, '--socket', harness.daemon.paths.socket, ...rest];
  const child = spawn('python3', ['-c', PTY_DRIVER, String(cols), String(rows), process.execPath, ...cliArgs], {
    stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
    env: { ...process.env, D2P_CGROUP_PARENT: cgroupParent, TERM: 'xterm' },
  });
  let shown = '';
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (b: Buffer) => {
    shown += b.toString('utf8');
    for (const w of [...waiters]) w();
  });
  let errors = '';
  child.stderr!.on('data', (b: Buffer) => (errors += b.toString('utf8')));
  const exitCode = new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? -1));
  });
  return {
    type: (text) => child.stdin!.write(text),
    resize: (c, r) => (child.stdio[3] as Writable).write(`${c} ${r}\n`),
    screen: () => shown,
    exitCode,
    waitFor: (wanted, ms = 15_000) =>
      new Promise((resolve, reject) => {
        const text = (): string => shown.replace(/\r+\n/g, '\n');
        const matches = (): boolean => (typeof wanted === 'string' ? text().includes(wanted) : wanted.test(text()));
        const check = (): void => {
          if (!matches()) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(text());
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${String(wanted)}; the terminal shows ${JSON.stringify(shown)}; stderr ${JSON.stringify(errors)}`));
        }, ms);
        waiters.add(check);
        check();
      }),
  };
}

async function runningContainer(name: string): Promise<void> {
  await harness.client.images.create({ apiVersion: API_VERSION, kind: 'Image', metadata: { name: 'tty-image', namespace: 'default' }, spec: { ref: IMAGE, pullPolicy: 'IfNotPresent' } }).catch((err: unknown) => {
    if ((err as { reason?: string }).reason !== 'AlreadyExists') throw err;
  });
  await harness.client.containers.create({
    apiVersion: API_VERSION,
    kind: 'Container',
    metadata: { name, namespace: 'default' },
    spec: { image: IMAGE, command: ['sleep', '1000'], stopGracePeriod: '100ms' },
  });
  await vi.waitFor(async () => expect((await harness.client.containers.get('default', name)).status?.phase).toBe('Running'), { timeout: 30_000, interval: 100 });
}

describe('d2p exec -it', () => {
  it('gives a real terminal: /dev/pts/N, the window size and its changes, Ctrl-C to the container, the exit code', async () => {
    await runningContainer('shell');
    const term = terminal(['exec', '-it', 'default/shell', 'sh'], 80, 24);
    await term.waitFor('# ');
    term.type('tty; stty size\r');
    await term.waitFor(/\/dev\/pts\/\d+\n24 80\n/);
    term.resize(100, 30);
    // The CLI hears SIGWINCH and resizes the container's pty before the next command runs.
    await new Promise((r) => setTimeout(r, 300));
    term.type('stty size\r');
    await term.waitFor('30 100\n');
    term.type('sleep 100\r');
    await new Promise((r) => setTimeout(r, 300));
    term.type('\x03');
    term.type('echo status=$?\r');
    // sleep died of SIGINT (130); the shell and the CLI both lived on.
    await term.waitFor('status=130');
    term.type('echo hi; exit 3\r');
    await term.waitFor('hi\n');
    expect(await term.exitCode).toBe(3);
  }, 60_000);

  it('passes exit codes through without a terminal too', async () => {
    const term = terminal(['exec', 'default/shell', 'sh', '-c', 'echo plain; exit 42']);
    await term.waitFor('plain');
    expect(await term.exitCode).toBe(42);
  }, 30_000);
});

describe('d2p run -it', () => {
  it('runs the container\'s shell on a terminal held by its shim, and exits with its code', async () => {
    const term = terminal(['run', '-it', '--rm', '--name', 'interactive', IMAGE, 'sh'], 90, 20);
    await term.waitFor('# ', 30_000);
    term.type('tty; stty size\r');
    await term.waitFor(/\/dev\/pts\/\d+\n20 90\n/);
    term.type('echo hi; exit 3\r');
    await term.waitFor('hi\n');
    expect(await term.exitCode).toBe(3);
    // --rm removed it once it ended.
    await vi.waitFor(async () => expect((await harness.client.containers.list({ namespace: 'default' })).items.map((c) => c.metadata.name)).not.toContain('interactive'), { timeout: 20_000 });
  }, 60_000);
});
