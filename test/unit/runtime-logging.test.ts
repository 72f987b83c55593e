// The TypeScript half of log rotation, terminals and attach without root: Docker's
// json-file option rules turned into shim annotations, consoleSize and stdin in
// config.json, and the attach.sock frame format (addon/src/shim/attach.h).
import { describe, expect, it } from 'vitest';

import { dataFrames, END_FRAME, resizeFrame } from '../../src/runtime/attach';
import { InvalidSpecError } from '../../src/runtime/errors';
import { ANNOTATION, buildOciConfig, parseLogSize } from '../../src/runtime/oci';
import type { ContainerConfig } from '../../src/runtime/types';

const paths = { rootfs: '/b/rootfs', upper: '/b/upper', work: '/b/work', hosts: '/b/hosts', resolvConf: '/b/resolv.conf', hostname: '/b/hostname' };
const user = { uid: 0, gid: 0, additionalGids: [] };

function oci(extra: Partial<ContainerConfig>) {
  const config: ContainerConfig = { id: 'c1', rootfs: { lowerDirs: ['/layers/a'] }, command: ['sh'], ...extra };
  return buildOciConfig({ config, user, paths, cgroupDirs: [] });
}

describe('parseLogSize (go-units RAMInBytes, as Docker reads max-size)', () => {
  it.each([
    ['1k', 1024],
    ['10m', 10 * 1024 * 1024],
    ['1g', 1024 ** 3],
    ['512', 512],
    ['2KB', 2048],
    ['1.5k', 1536],
    ['3 MiB', 3 * 1024 * 1024],
  ])('%s is %d bytes', (text, bytes) => expect(parseLogSize(text)).toBe(bytes));
  it.each(['', 'k', '10x', '-1k', '1kk'])('refuses %j', (text) => expect(parseLogSize(text)).toBeUndefined());
});

describe('logging options → shim annotations', () => {
  it('passes max-size in bytes and max-file through', () => {
    const a = oci({ logging: { driver: 'json-file', options: { 'max-size': '10m', 'max-file': '3' } } }).annotations;
    expect(a[ANNOTATION.logMaxSize]).toBe(String(10 * 1024 * 1024));
    expect(a[ANNOTATION.logMaxFile]).toBe('3');
  });

  it('adds nothing without options: the log never rotates', () => {
    const a = oci({}).annotations;
    expect(a[ANNOTATION.logMaxSize]).toBeUndefined();
    expect(a[ANNOTATION.logMaxFile]).toBeUndefined();
    expect(a[ANNOTATION.logDriver]).toBeUndefined();
  });

  it('gives the local driver Docker\'s defaults of 20m and 5 files', () => {
    const a = oci({ logging: { driver: 'local' } }).annotations;
    expect([a[ANNOTATION.logMaxSize], a[ANNOTATION.logMaxFile]]).toEqual([String(20 * 1024 * 1024), '5']);
  });

  it('marks the none driver so nothing is kept', () => {
    expect(oci({ logging: { driver: 'none' } }).annotations[ANNOTATION.logDriver]).toBe('none');
  });

  it.each([
    [{ driver: 'syslog' }, 'logging.driver', /syslog/],
    [{ options: { 'max-size': 'lots' } }, 'logging.options.max-size', /lots/],
    [{ options: { 'max-size': '1k', 'max-file': '0' } }, 'logging.options.max-file', /at least 1/],
    [{ options: { 'max-file': '3' } }, 'logging.options.max-file', /needs max-size/],
    [{ options: { 'max-bytes': '1k' } }, 'logging.options.max-bytes', /unknown option/],
    [{ options: { compress: 'true', 'max-size': '1k' } }, 'logging.options.compress', /not supported/],
    [{ driver: 'none', options: { 'max-size': '1k' } }, 'logging.options', /no options/],
  ])('refuses %j naming %s', (logging, field, why) => {
    let error: unknown;
    try {
      oci({ logging });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidSpecError);
    expect((error as InvalidSpecError).field).toBe(field);
    expect((error as Error).message).toMatch(why);
  });
});

describe('terminal and stdin in config.json', () => {
  it('sets terminal, TERM and consoleSize (runtime-spec width/height) for a tty container', () => {
    const c = oci({ tty: true, consoleSize: { cols: 120, rows: 40 } });
    expect(c.process.terminal).toBe(true);
    expect(c.process.consoleSize).toEqual({ width: 120, height: 40 });
    expect(c.process.env).toContain('TERM=xterm');
  });

  it('ignores consoleSize without a terminal and refuses a bad one', () => {
    expect(oci({ consoleSize: { cols: 120, rows: 40 } }).process.consoleSize).toBeUndefined();
    expect(() => oci({ tty: true, consoleSize: { cols: 0, rows: 40 } })).toThrow(/consoleSize.cols/);
  });

  it('opens stdin only when asked', () => {
    expect(oci({ stdinOpen: true }).annotations[ANNOTATION.stdin]).toBe('open');
    expect(oci({}).annotations[ANNOTATION.stdin]).toBeUndefined();
  });
});

describe('attach.sock frames', () => {
  it('splits data into frames of at most 4096 bytes with a big-endian length', () => {
    const data = Buffer.alloc(5000, 0x61);
    const frames = dataFrames(data);
    expect(frames.map((f) => [String.fromCharCode(f[0]), f.readUInt16BE(1), f.length])).toEqual([
      ['d', 4096, 4099],
      ['d', 904, 907],
    ]);
    expect(Buffer.concat(frames.map((f) => f.subarray(3)))).toEqual(data);
  });

  it('encodes a resize as cols then rows and refuses impossible sizes', () => {
    expect([...resizeFrame(300, 2)]).toEqual([0x72, 0, 4, 0x01, 0x2c, 0, 2]);
    expect(() => resizeFrame(0, 10)).toThrow(RangeError);
    expect(() => resizeFrame(70000, 10)).toThrow(RangeError);
  });

  it('ends stdin with an empty "e" frame', () => expect([...END_FRAME]).toEqual([0x65, 0, 0]));
});
