// C2SP tlog-cosignature/v1 cosignatures of a checkpoint (pipelines/core/cosignature.py).

import { beInt, u32, utf8 } from './bytes.js';
import { BadSignature, VerificationError } from './errors.js';
import { edVerify, parseSignatureLine, splitNote } from './note.js';

/** The pinned witnesses whose cosignatures of the note verify, each once: [{witness, timestamp}]. */
export function verifyCosignatures(note, witnesses) {
  const [text, lines] = splitNote(note);
  const found = new Map();
  for (const line of lines) {
    const [name, sig] = parseSignatureLine(line);
    for (const key of witnesses.filter((w) => w.name === name)) {
      if (sig.length < 4 || u32(sig) !== key.id) continue;
      if (sig.length !== 76) throw new VerificationError(`cosignature by ${key.name} is ${sig.length} bytes, want 76`);
      const timestamp = beInt(sig.slice(4, 12));
      const message = utf8(`cosignature/v1\ntime ${timestamp}\n${text}`);
      if (timestamp >= 1n << 63n || !edVerify(key.publicKey, message, sig.slice(12))) {
        throw new BadSignature(`cosignature by witness ${key.name} does not verify`);
      }
      if (!found.has(name)) found.set(name, { witness: name, timestamp });
    }
  }
  return [...found.values()];
}
