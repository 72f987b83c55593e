// Errors of the network libraries (IPAM, DNS, published ports). Like undici's errors they
// are classes with a stable `code`, and they carry the object they are about (network,
// subnet, address, port, holder) so a controller can put a precise message into a
// condition without re-deriving the context.

export type NetworkErrorCode =
  /** A CIDR, address or option that cannot be used as given. */
  | 'D2P_NETWORK_INVALID'
  /** A requested subnet overlaps another network's. */
  | 'D2P_NETWORK_SUBNET_OVERLAP'
  /** Every subnet of the default pools is taken or overlaps a host route. */
  | 'D2P_NETWORK_POOL_EXHAUSTED'
  /** No free address is left in the network's subnet (or ipRange). */
  | 'D2P_NETWORK_SUBNET_FULL'
  /** A requested address (ipv4_address) already belongs to another endpoint. */
  | 'D2P_NETWORK_ADDRESS_IN_USE'
  /** A requested address lies outside the subnet, or is its network/broadcast/gateway address. */
  | 'D2P_NETWORK_ADDRESS_UNAVAILABLE'
  /** A host port is already published (by d2p or by another process). */
  | 'D2P_NETWORK_PORT_IN_USE'
  /** The kernel or a tool (iptables) refused an operation. */
  | 'D2P_NETWORK_SYSTEM';

export interface NetworkErrorContext {
  network?: string;
  subnet?: string;
  address?: string;
  /** Allocation key, e.g. "namespace/container". */
  key?: string;
  /** "hostIP:port/protocol" of a published port. */
  port?: string;
  /** Who holds the port or address: an owner given to d2p, or "pid 123 (nginx)". */
  holder?: string;
  /** errno name when the cause is a system call (EADDRINUSE, EACCES, …). */
  errno?: string;
  cause?: unknown;
}

export class NetworkError extends Error {
  readonly code: NetworkErrorCode;
  readonly context: NetworkErrorContext;

  constructor(code: NetworkErrorCode, message: string, context: NetworkErrorContext = {}) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.name = 'NetworkError';
    this.code = code;
    this.context = context;
  }
}

export function isNetworkError(error: unknown, code?: NetworkErrorCode): error is NetworkError {
  return error instanceof NetworkError && (code === undefined || error.code === code);
}

export { errnoOf } from '../errno';
