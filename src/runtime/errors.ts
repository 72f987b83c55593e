// Runtime errors: classes with stable `code` strings (undici's style), carrying the
// container id and, for native failures, the errno shape of the shim or addon.

export interface NativeErrorInfo {
  code: string;
  errno: number;
  syscall: string;
  path: string;
  message: string;
}

export class RuntimeError extends Error {
  readonly code: string = 'D2P_RUNTIME_ERROR';
  readonly containerId?: string;

  constructor(message: string, containerId?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.containerId = containerId;
  }
}

export class ContainerNotFoundError extends RuntimeError {
  override readonly code = 'D2P_RUNTIME_NOT_FOUND';
  constructor(id: string, message = `container "${id}" not found`) {
    super(message, id);
  }
}

/** A bundle directory without its complete record: create never finished. Only delete() clears it. */
export class IncompleteBundleError extends ContainerNotFoundError {
  constructor(
    id: string,
    readonly dir: string,
  ) {
    super(id, `container "${id}" was never completely created (${dir} has no whole record.json); delete it to clear it`);
  }
}

export class ContainerExistsError extends RuntimeError {
  override readonly code = 'D2P_RUNTIME_EXISTS';
  constructor(id: string) {
    super(`container "${id}" already exists`, id);
  }
}

/** The container is not in a state that allows the operation (e.g. start while running). */
export class ContainerStateError extends RuntimeError {
  override readonly code = 'D2P_RUNTIME_INVALID_STATE';
  readonly status: string;
  constructor(id: string, status: string, wanted: string) {
    super(`container "${id}" is ${status}; ${wanted}`, id);
    this.status = status;
  }
}

/** The container description can't be turned into a runnable config; `field` names it. */
export class InvalidSpecError extends RuntimeError {
  override readonly code = 'D2P_RUNTIME_INVALID_SPEC';
  readonly field: string;
  constructor(id: string, field: string, why: string) {
    super(`container "${id}": ${field}: ${why}`, id);
    this.field = field;
  }
}

/** The shim failed to create or exec the container; `native` is its errno report. */
export class ShimError extends RuntimeError {
  override readonly code = 'D2P_RUNTIME_SHIM';
  readonly native?: NativeErrorInfo;
  constructor(id: string, what: string, native?: NativeErrorInfo, cause?: unknown) {
    super(`container "${id}": ${what}${native ? `: ${native.message}` : ''}`, id, { cause });
    this.native = native;
  }
}

export class CgroupError extends RuntimeError {
  override readonly code = 'D2P_RUNTIME_CGROUP';
  readonly path: string;
  constructor(id: string, path: string, what: string, cause?: unknown) {
    super(`container "${id}": ${what} (${path})${cause instanceof Error ? `: ${cause.message}` : ''}`, id, { cause });
    this.path = path;
  }
}

export { errnoOf as errnoCode } from '../errno';
