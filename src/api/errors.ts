// Errors that cross the API are Kubernetes Status objects: a stable `reason`, an HTTP
// `code`, a human `message`, and `details.causes` naming the offending field paths.
// Inside TypeScript they are ApiError values carrying the same fields (undici's style:
// classes with stable `code` strings).

export type StatusReason =
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'Invalid'
  | 'BadRequest'
  | 'MethodNotAllowed'
  | 'Gone'
  | 'RequestEntityTooLarge'
  | 'UnsupportedMediaType'
  | 'InternalError'
  | 'ServiceUnavailable';

export interface StatusCause {
  /** JSON path of the field, e.g. "spec.template.ports[0].containerPort". */
  field?: string;
  reason?: string;
  message: string;
}

export interface StatusObject {
  kind: 'Status';
  apiVersion: 'v1';
  status: 'Failure';
  message: string;
  reason: StatusReason;
  code: number;
  details?: { name?: string; kind?: string; causes?: StatusCause[] };
}

const HTTP_CODE: Record<StatusReason, number> = {
  NotFound: 404,
  AlreadyExists: 409,
  Conflict: 409,
  Invalid: 422,
  BadRequest: 400,
  MethodNotAllowed: 405,
  Gone: 410,
  RequestEntityTooLarge: 413,
  UnsupportedMediaType: 415,
  InternalError: 500,
  ServiceUnavailable: 503,
};

export class ApiError extends Error {
  readonly reason: StatusReason;
  readonly httpCode: number;
  readonly details?: StatusObject['details'];
  /** Stable machine-readable code, e.g. "D2P_NOT_FOUND". */
  readonly code: string;

  constructor(reason: StatusReason, message: string, details?: StatusObject['details']) {
    super(message);
    this.name = 'ApiError';
    this.reason = reason;
    this.httpCode = HTTP_CODE[reason];
    this.details = details;
    this.code = `D2P_${reason.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase()}`;
  }

  toStatus(): StatusObject {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      code: this.httpCode,
      ...(this.details ? { details: this.details } : {}),
    };
  }

  static fromStatus(s: StatusObject): ApiError {
    return new ApiError(s.reason, s.message, s.details);
  }
}

export const notFound = (kind: string, ns: string | undefined, name: string) =>
  new ApiError('NotFound', `${kind.toLowerCase()} "${ns ? ns + '/' : ''}${name}" not found`, { kind, name });

export const alreadyExists = (kind: string, ns: string | undefined, name: string) =>
  new ApiError('AlreadyExists', `${kind.toLowerCase()} "${ns ? ns + '/' : ''}${name}" already exists`, { kind, name });

export const conflict = (kind: string, ns: string | undefined, name: string, why: string) =>
  new ApiError(
    'Conflict',
    `Operation cannot be fulfilled on ${kind.toLowerCase()} "${ns ? ns + '/' : ''}${name}": ${why}`,
    { kind, name },
  );

export const invalid = (kind: string, name: string, causes: StatusCause[]) =>
  new ApiError(
    'Invalid',
    `${kind} "${name}" is invalid: ${causes.map((c) => (c.field ? `${c.field}: ${c.message}` : c.message)).join('; ')}`,
    { kind, name, causes },
  );

export function isApiError(e: unknown, reason?: StatusReason): e is ApiError {
  return e instanceof ApiError && (reason === undefined || e.reason === reason);
}
