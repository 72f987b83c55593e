// Errors of the image library. Like undici's errors they are classes with a stable `code`,
// and they carry the object they are about (reference, registry, blob digest, layer path)
// so a controller can put a useful message into a condition without re-deriving context.

export type ImageErrorCode =
  | 'D2P_IMAGE_INVALID_REFERENCE'
  | 'D2P_IMAGE_NOT_FOUND'
  | 'D2P_IMAGE_UNAUTHORIZED'
  | 'D2P_IMAGE_REGISTRY'
  | 'D2P_IMAGE_PLATFORM'
  | 'D2P_IMAGE_DIGEST_MISMATCH'
  | 'D2P_IMAGE_SIZE_MISMATCH'
  | 'D2P_IMAGE_UNSUPPORTED'
  | 'D2P_IMAGE_UNSAFE_LAYER'
  | 'D2P_IMAGE_INVALID'
  | 'D2P_IMAGE_IN_USE';

export interface ImageErrorContext {
  reference?: string;
  registry?: string;
  digest?: string;
  /** Path inside a layer or archive. */
  path?: string;
  /** HTTP status of the registry answer that caused this error. */
  status?: number;
  cause?: unknown;
}

export class ImageError extends Error {
  readonly code: ImageErrorCode;
  readonly context: ImageErrorContext;

  constructor(code: ImageErrorCode, message: string, context: ImageErrorContext = {}) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.name = 'ImageError';
    this.code = code;
    this.context = context;
  }
}

export function isImageError(e: unknown, code?: ImageErrorCode): e is ImageError {
  return e instanceof ImageError && (code === undefined || e.code === code);
}

export { errnoOf as errnoCode } from '../errno';
