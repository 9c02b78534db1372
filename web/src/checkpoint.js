// C2SP checkpoints (pipelines/core/checkpoint.py): origin, size and root, then extension lines.

import { b64, repr } from './bytes.js';
import { VerificationError } from './errors.js';

const SIZE = /^(0|[1-9][0-9]{0,19})$/;

export function parseCheckpointText(text) {
  const lines = text.split('\n');
  if (lines.length < 4 || lines[lines.length - 1] !== '') {
    throw new VerificationError('malformed checkpoint: want origin, size and root lines ending in a newline');
  }
  const [origin, size, root, ...extensions] = lines.slice(0, -1);
  if (!origin) throw new VerificationError('malformed checkpoint: empty origin');
  if (!SIZE.test(size) || BigInt(size) >= 1n << 64n) throw new VerificationError(`malformed checkpoint: size ${repr(size)} is not a decimal uint64`);
  let rawRoot;
  try {
    rawRoot = b64(root);
  } catch {
    throw new VerificationError('malformed checkpoint: root is not base64');
  }
  if (rawRoot.length !== 32) throw new VerificationError(`malformed checkpoint: root is ${rawRoot.length} bytes, want 32`);
  if (extensions.some((e) => !e)) throw new VerificationError('malformed checkpoint: empty extension line');
  return { origin, size: BigInt(size), root: rawRoot, extensions };
}
