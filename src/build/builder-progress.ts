// Build progress as BuildKit's two printers show it (moby/buildkit util/progress/progressui):
//  - plain: every step numbered once ("#5 [build 2/5] RUN make"), its output lines with
//    the seconds since it started ("#5 0.412 compiling…"), then "#5 CACHED",
//    "#5 DONE 0.4s" or "#5 ERROR: …";
//  - tty: one summary line per step when it ends ("=> CACHED [build 2/5] RUN make" or
//    "=> [build 2/5] RUN make   0.4s"), the step's output only when it fails, and the
//    "[+] Building 1.2s (9/9) FINISHED" line at the end. No redrawing, so it reads the
//    same in a log file.
import type { Writer } from '../cli/io';
import type { BuildProgress } from './builder';

export type ProgressMode = 'plain' | 'tty' | 'quiet';

export interface BuildPrinter {
  onProgress(e: BuildProgress): void;
  /** The closing line of the tty mode. */
  finish(ok: boolean): void;
}

export function buildPrinter(out: Writer, mode: ProgressMode): BuildPrinter {
  if (mode === 'quiet') return { onProgress: () => undefined, finish: () => undefined };
  return mode === 'plain' ? plainPrinter(out) : ttyPrinter(out);
}

function plainPrinter(out: Writer): BuildPrinter {
  return {
    onProgress(e) {
      switch (e.type) {
        case 'step':
          out.write(`#${e.id} ${e.name}\n`);
          break;
        case 'log':
          out.write(`#${e.id} ${e.seconds.toFixed(3)} ${e.text}\n`);
          break;
        case 'done':
          out.write(e.cached ? `#${e.id} CACHED\n` : `#${e.id} DONE ${e.seconds.toFixed(1)}s\n`);
          break;
        case 'error':
          out.write(`#${e.id} ERROR: ${e.message}\n`);
          break;
        case 'warning':
          out.write(`WARNING: ${e.message}\n`);
          break;
      }
    },
    finish: () => undefined,
  };
}

function ttyPrinter(out: Writer): BuildPrinter {
  const started = performance.now();
  const names = new Map<number, string>();
  const logs = new Map<number, string[]>();
  let done = 0;
  return {
    onProgress(e) {
      switch (e.type) {
        case 'step':
          names.set(e.id, e.name);
          break;
        case 'log':
          logs.set(e.id, [...(logs.get(e.id) ?? []), e.text]);
          break;
        case 'done': {
          done++;
          const name = names.get(e.id) ?? `#${e.id}`;
          out.write(e.cached ? ` => CACHED ${name}\n` : ` => ${name.padEnd(60)} ${e.seconds.toFixed(1)}s\n`);
          break;
        }
        case 'error':
          out.write(` => ERROR ${names.get(e.id) ?? `#${e.id}`}\n`);
          for (const line of (logs.get(e.id) ?? []).slice(-10)) out.write(` > ${line}\n`);
          out.write(` ${e.message}\n`);
          break;
        case 'warning':
          out.write(` WARNING: ${e.message}\n`);
          break;
      }
    },
    finish(ok) {
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      out.write(`[+] Building ${seconds}s (${done}/${names.size}) ${ok ? 'FINISHED' : 'FAILED'}\n`);
    },
  };
}
