// The record's commitment (pipelines/core/commitment.py): its leaf and the digest of its content.

import { sha256 } from '@noble/hashes/sha2.js';
import canonicalize from 'canonicalize';

import { concat, lp, utf8 } from './bytes.js';
import { InputError } from './errors.js';
import { JSONTextError, decodeUtf8, loads } from './jsontext.js';
import { leafHash } from './merkle.js';

const LEAF_FORMAT = utf8('anchorpipe.leaf/1');

export function recordLeafHash(agency, id, digest, salt) {
  return leafHash(concat(lp(LEAF_FORMAT), lp(utf8(agency)), lp(utf8(id)), digest, salt));
}

/** SHA-256 of a JSON value's RFC 8785 (JCS) canonical bytes, from a record file's text or bytes. */
export function contentSha256(record) {
  let value;
  try {
    value = loads(typeof record === 'string' ? record : decodeUtf8(record));
  } catch (exc) {
    if (exc instanceof JSONTextError) throw new InputError(`record: ${exc.message}`);
    throw exc;
  }
  let canonical;
  try {
    canonical = canonicalize(value);
  } catch (exc) {
    throw new InputError(`content cannot be canonicalised (RFC 8785): ${exc.message}`);
  }
  return sha256(utf8(canonical));
}

