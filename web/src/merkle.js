// RFC 9162 Merkle trees (pipelines/core/merkle.py), sizes as BigInt (a checkpoint's size is a uint64).

import { sha256 } from '@noble/hashes/sha2.js';

import { concat, equal, hex } from './bytes.js';
import { VerificationError } from './errors.js';

export const leafHash = (data) => sha256(concat(new Uint8Array([0]), data));
const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));
const bitLength = (n) => (n === 0n ? 0 : n.toString(2).length);
const popcount = (n) => [...n.toString(2)].filter((c) => c === '1').length;

export function rootFromInclusionProof(index, size, leaf, proof) {
  index = BigInt(index);
  size = BigInt(size);
  if (!(index >= 0n && index < size)) throw new VerificationError(`leaf index ${index} is outside a tree of size ${size}`);
  const inner = bitLength(index ^ (size - 1n));
  const border = popcount(index >> BigInt(inner));
  if (proof.length !== inner + border) {
    throw new VerificationError(`inclusion proof has ${proof.length} hashes, want ${inner + border} for index ${index} of ${size}`);
  }
  proof.forEach((h, i) => {
    if (h.length !== 32) throw new VerificationError(`inclusion proof hash ${i} is ${h.length} bytes, want 32`);
  });
  let seed = leaf;
  for (let i = 0; i < inner; i++) seed = ((index >> BigInt(i)) & 1n) === 0n ? nodeHash(seed, proof[i]) : nodeHash(proof[i], seed);
  for (const h of proof.slice(inner)) seed = nodeHash(h, seed);
  return seed;
}

export function verifyInclusion(index, size, leaf, proof, root) {
  const got = rootFromInclusionProof(index, size, leaf, proof);
  if (!equal(got, root)) throw new VerificationError(`inclusion proof leads to root ${hex(got)}, want ${hex(root)}`);
}

// ---- The record's commitment (pipelines/core/commitment.py) and the log's entry (logentry.py).
