// Bytes, hex, base64 and the framing of pipelines/core/framing.py, shared by the checker's modules.

import { InputError, VerificationError } from './errors.js';

const enc = new TextEncoder();
export const utf8 = (s) => enc.encode(s);
export const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
export const unhex = (s) => {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
};
export const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
};
export const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const u16 = (n) => new Uint8Array([n >> 8, n & 0xff]);
/** A field prefixed with its length as a big-endian uint16. */
export const lp = (b) => {
  if (b.length > 0xffff) throw new VerificationError(`length-prefixed field is ${b.length} bytes, at most 65535`);
  return concat(u16(b.length), b);
};
export const u64 = (n) => {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
};
export const u32 = (b) => ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
export const beInt = (b) => (b.length ? BigInt(`0x${hex(b)}`) : 0n);
export const isoZ = (date) => date.toISOString().replace('.000Z', 'Z');
/** A string quoted as Python's repr() quotes it, so messages read as the CLI's. */
export const repr = (s) => `'${String(s).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

/** base64 as Python's base64.b64decode(text, validate=True) reads it. */
export function b64(text, what = 'base64') {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw new InputError(`${what} is not valid base64`);
  const bin = atob(text);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
