// The string formats the schemas in crd-schemas/ name ("format": "cidr" …), in one object,
// because the validators generated at build time (hack/build-validators.js) reach them
// with `require("./formats").formats[name]` — ajv's standalone code cannot carry
// functions, only a reference to a module that exports them
// (https://ajv.js.org/standalone.html, "Using formats"). The run-time compiled validators
// register the very same objects, so both paths accept exactly the same strings.
//
// This module must stay cheap to load: the CLI requires it on every validation.
import * as net from 'node:net';
import type { Format } from 'ajv';
import { fullFormats } from 'ajv-formats/dist/formats';
import { durationProblem } from './duration';

export const formats: Readonly<Record<string, Format>> = {
  // ajv-formats' RFC 3339 date-time and dotted-quad IPv4, as before.
  'date-time': fullFormats['date-time'],
  ipv4: fullFormats.ipv4,
  'go-duration': { type: 'string', validate: (s: string) => durationProblem(s) === undefined },
  ip: { type: 'string', validate: (s: string) => net.isIP(s) !== 0 },
  'ip-or-host-gateway': { type: 'string', validate: (s: string) => s === 'host-gateway' || net.isIP(s) !== 0 },
  cidr: { type: 'string', validate: isNetworkCidr },
};

/** "address/prefix" naming a network: prefix in range and host bits zero, as Docker requires of --subnet. */
export function isNetworkCidr(s: string): boolean {
  const slash = s.indexOf('/');
  if (slash < 0) return false;
  const address = s.slice(0, slash);
  const prefixText = s.slice(slash + 1);
  const family = net.isIP(address);
  if ((family !== 4 && family !== 6) || address.includes('%') || !/^\d{1,3}$/.test(prefixText)) return false;
  const bits = family === 4 ? 32 : 128;
  const prefix = Number(prefixText);
  if (prefix > bits) return false;
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  return (addressToBigInt(address, family) & hostMask) === 0n;
}

/** Address as an integer; only called on strings net.isIP accepted. */
function addressToBigInt(address: string, family: 4 | 6): bigint {
  if (family === 4) return address.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
  return ipv6Groups(address).reduce((acc, group) => (acc << 16n) | BigInt(group), 0n);
}

/** The eight 16-bit groups of an IPv6 address, expanding "::" and a dotted IPv4 tail (RFC 4291 §2.2). */
function ipv6Groups(address: string): number[] {
  const toGroups = (part: string): number[] => {
    if (part === '') return [];
    return part.split(':').flatMap((piece) => {
      if (!piece.includes('.')) return [parseInt(piece, 16)];
      const [a, b, c, d] = piece.split('.').map(Number);
      return [(a << 8) | b, (c << 8) | d];
    });
  };
  const [head, tail] = address.split('::');
  if (tail === undefined) return toGroups(head);
  const headGroups = toGroups(head);
  const tailGroups = toGroups(tail);
  return [...headGroups, ...new Array<number>(8 - headGroups.length - tailGroups.length).fill(0), ...tailGroups];
}
