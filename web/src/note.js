// C2SP signed notes and their keys (pipelines/core/note.py).

import { sha256 } from '@noble/hashes/sha2.js';
import { ed25519 } from '@noble/curves/ed25519.js';

import { b64, concat, hex, repr, u32, utf8 } from './bytes.js';
import { BadSignature, InputError, NoTrustedSignature, VerificationError } from './errors.js';

const SIG_PREFIX = '\u2014 ';
const NOTE_CONTROL = /[\x00-\x09\x0b-\x1f]/;
export const ALG_ED25519 = 0x01;
export const ALG_COSIGNATURE_V1 = 0x04;

function keyId(name, pub, alg) {
  const d = sha256(concat(utf8(name), new Uint8Array([0x0a, alg]), pub));
  return ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]) >>> 0;
}

/** A vkey `<name>+<8 hex key ID>+<base64(type || Ed25519 public key)>`; InputError if malformed. */
export function parseVkey(text, alg = ALG_ED25519) {
  const what = alg === ALG_ED25519 ? 'verifier key' : 'witness key';
  const s = String(text).trim();
  const i = s.indexOf('+');
  const j = i < 0 ? -1 : s.indexOf('+', i + 1);
  if (j < 0 || !/^[0-9a-fA-F]{8}$/.test(s.slice(i + 1, j))) {
    throw new InputError(`${what} must look like <name>+<8 hex digits>+<base64 key>`);
  }
  const name = s.slice(0, i);
  const hexId = s.slice(i + 1, j);
  if (!name || /[\s+]/u.test(name)) throw new InputError(`key name ${repr(name)} is invalid: want non-empty, without spaces or '+'`);
  const raw = b64(s.slice(j + 1), what);
  if (raw.length !== 33 || raw[0] !== alg) {
    throw new InputError(`${what} is not of signature type 0x${alg.toString(16).padStart(2, '0')} with a 32-byte Ed25519 key`);
  }
  const id = parseInt(hexId, 16) >>> 0;
  if (keyId(name, raw.slice(1), alg) !== id) throw new InputError(`${what} id ${hexId} does not match its name and key`);
  return { name, id, publicKey: raw.slice(1), alg };
}

export function edVerify(pub, message, sig) {
  try {
    return sig.length === 64 && ed25519.verify(sig, message, pub, { zip215: false });
  } catch {
    return false;
  }
}

export function splitNote(note) {
  if (utf8(note).length > 1 << 20) throw new VerificationError('note is larger than 1 MiB');
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw new VerificationError('malformed note: no blank line before the signatures');
  if (NOTE_CONTROL.test(note)) throw new VerificationError('malformed note: control characters');
  return [note.slice(0, split + 1), note.slice(split + 2, -1).split('\n')];
}

// name+keyid of the first `limit` signature lines of a note, unverified: what the note says signed it, for a
// message naming the key an auditor did not pin (names cut to 64 characters), as claimed_signers in note.py.
export function claimedSigners(note, limit = 3) {
  let lines;
  try {
    lines = splitNote(note)[1];
  } catch {
    return [];
  }
  const out = [];
  for (const line of lines.slice(0, limit)) {
    try {
      const [name, sig] = parseSignatureLine(line);
      out.push(`${name.slice(0, 64)}+${hex(sig.slice(0, 4))}`);
    } catch {
      // an unreadable line names no one
    }
  }
  return out;
}

export function parseSignatureLine(line) {
  if (!line.startsWith(SIG_PREFIX)) throw new VerificationError(`malformed signature line ${repr(line.slice(0, 40))}`);
  const rest = line.slice(SIG_PREFIX.length);
  const cut = rest.lastIndexOf(' ');
  const name = cut < 0 ? '' : rest.slice(0, cut);
  let sig;
  try {
    sig = b64(rest.slice(cut + 1));
  } catch {
    throw new VerificationError(`malformed signature from ${repr(name)}`);
  }
  if (!name || sig.length < 5) throw new VerificationError(`malformed signature line ${repr(line.slice(0, 40))}`);
  return [name, sig];
}


/** The note's text and the names of the pinned keys whose signatures verify; NoTrustedSignature if none. */
export function openNote(note, verifiers) {
  const [text, lines] = splitNote(note);
  if (lines.length > 100) throw new VerificationError(`note has ${lines.length} signatures, at most 100 are read`);
  const verified = [];
  for (const line of lines) {
    const [name, sig] = parseSignatureLine(line);
    const v = verifiers.find((k) => k.name === name && k.id === u32(sig));
    if (!v) continue;
    if (!edVerify(v.publicKey, utf8(text), sig.slice(4))) throw new BadSignature(`signature by ${name} does not verify`);
    verified.push(name);
  }
  if (!verified.length) throw new NoTrustedSignature('note is not signed by any trusted key');
  return [text, verified];
}
