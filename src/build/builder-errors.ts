// The builder's error. Like BuildKit's solver errors it names the step that failed
// ("[build 3/5] RUN make: process "/bin/sh -c make" did not complete successfully: exit
// code: 2") so `d2p build` and a Build's condition point at what to fix. `user` tells a
// controller whether retrying can help: a failing RUN or a missing COPY source will fail
// the same way until the Dockerfile or the context changes.

export type BuildErrorCode =
  | 'D2P_BUILD_STEP_FAILED'
  | 'D2P_BUILD_SOURCE_NOT_FOUND'
  | 'D2P_BUILD_UNSUPPORTED'
  | 'D2P_BUILD_INVALID'
  | 'D2P_BUILD_ABORTED';

export class BuildError extends Error {
  readonly code: BuildErrorCode;
  /** "[build 3/5] RUN make": the step as the progress output shows it. */
  readonly step?: string;
  /** True when the Dockerfile or the context is at fault, false for the machine (retry may help). */
  readonly user: boolean;

  constructor(code: BuildErrorCode, message: string, opts: { step?: string; user?: boolean; cause?: unknown } = {}) {
    super(opts.step ? `${opts.step}: ${message}` : message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'BuildError';
    this.code = code;
    if (opts.step !== undefined) this.step = opts.step;
    this.user = opts.user ?? true;
  }
}

export { errnoOf } from '../errno';
