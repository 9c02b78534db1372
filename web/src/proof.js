// Proof format anchorpipe.proof/1 (docs/proof-format.md §4, pipelines/core/proof.py, anchors.py, fields.py):
// the same rules as the CLI's pydantic models, every problem a ProofFormatError (check "format").

import { InputError, ProofFormatError } from './errors.js';
import { JFloat, JSONTextError, decodeUtf8, loads } from './jsontext.js';

export const PROOF_FORMAT = 'anchorpipe.proof/1';
export const MAX_PROOF_BYTES = 1 << 20;

const HEX32 = /^[0-9a-f]{64}$/;
const BATCH_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
// pydantic's regex engine (Rust) reads \d as any Unicode decimal digit.
const TIMESTAMP = /^\p{Nd}{4}-\p{Nd}{2}-\p{Nd}{2}T\p{Nd}{2}:\p{Nd}{2}:\p{Nd}{2}(\.\p{Nd}{1,6})?Z$/u;
// Python's re.match with "$" also matches before one final newline (pipelines/core/commitment.py).
const AGENCY = /^[a-z0-9][a-z0-9._-]{0,62}\n?$/;
const CONTROL = /[\x00-\x1f\x7f]/;
const TOKEN = /^[A-Za-z0-9+/]+={0,2}$/;
const HEXBYTES = /^(?:[0-9a-f]{2})*$/;

const cpLen = (s) => {
  let n = 0;
  for (const _ of s) n++; // eslint-disable-line no-unused-vars
  return n;
};
const utf8Len = (s) => new TextEncoder().encode(s).length;

class Fields {
  constructor(where) {
    this.where = where;
    this.errors = [];
  }
  err(path, msg) {
    this.errors.push(`${path || 'document'}: ${msg}`);
  }
}

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof JFloat);

function model(e, path, v, spec) {
  // spec: {name: [required, checker]}; extra members forbidden.
  const at = (k) => (path ? `${path}.${k}` : k);
  if (!isObj(v)) {
    e.err(path, 'Input should be a valid dictionary or instance');
    return;
  }
  for (const [k, [required, check]] of Object.entries(spec)) {
    if (!Object.prototype.hasOwnProperty.call(v, k)) {
      if (required) e.err(at(k), 'Field required');
    } else check(e, at(k), v[k]);
  }
  for (const k of Object.keys(v)) if (!(k in spec)) e.err(at(k), 'Extra inputs are not permitted');
}

const str = (pattern, { min = 0, max = Infinity, what } = {}) => (e, path, v) => {
  if (typeof v !== 'string') return e.err(path, 'Input should be a valid string');
  const n = cpLen(v);
  if (n < min) return e.err(path, `String should have at least ${min} character(s)`);
  if (n > max) return e.err(path, `String should have at most ${max} characters`);
  if (pattern && !pattern.test(v)) e.err(path, `String should match pattern ${what || pattern.source}`);
};
const strictInt = (min) => (e, path, v) => {
  if (typeof v !== 'number' || !Number.isInteger(v)) return e.err(path, 'Input should be a valid integer');
  if (v < min) e.err(path, `Input should be greater than or equal to ${min}`);
};
const tuple = (maxLen, item) => (e, path, v) => {
  if (!Array.isArray(v)) return e.err(path, 'Input should be a valid tuple');
  if (v.length > maxLen) return e.err(path, `Tuple should have at most ${maxLen} items after validation, not ${v.length}`);
  v.forEach((x, i) => item(e, `${path}.${i}`, x));
};
const literal = (want) => (e, path, v) => {
  if (v !== want) e.err(path, `Input should be '${want}'`);
};
const hex32 = str(HEX32, { what: 'of 64 lowercase hex digits' });
const note = str(null, { min: 1, max: 16384 });
const hexBytes = str(HEXBYTES, { max: 262144, what: 'of lowercase hex bytes' });

const agency = (e, path, v) => {
  if (typeof v !== 'string') return e.err(path, 'Input should be a valid string');
  if (!AGENCY.test(v)) e.err(path, `Value error, agency name ${JSON.stringify(v)} is invalid: want 1-63 of a-z 0-9 . _ - starting with a-z or 0-9`);
};
const recordId = (e, path, v) => {
  if (typeof v !== 'string') return e.err(path, 'Input should be a valid string');
  const size = utf8Len(v);
  if (!(size > 0 && size <= 256)) return e.err(path, `Value error, record id must be 1-256 UTF-8 bytes, got ${size}`);
  if (CONTROL.test(v)) e.err(path, 'Value error, record id must not contain control characters');
};

const ANCHORS = {
  tlog: {
    type: [true, literal('tlog')],
    origin: [true, str(null, { min: 1, max: 256 })],
    index: [true, strictInt(0)],
    path: [false, tuple(64, hex32)],
    checkpoint: [true, note],
  },
  tsa: {
    type: [true, literal('tsa')],
    tsa: [true, str(null, { max: 512 })],
    checkpoint: [true, note],
    token: [true, str(TOKEN, { max: 65536, what: 'of base64' })],
  },
  evm: {
    type: [true, literal('evm')],
    checkpoint: [true, note],
    chain_id: [true, strictInt(1)],
    tx_hash: [true, hex32],
    block_number: [true, strictInt(0)],
    block_hash: [true, hex32],
    tx_index: [true, strictInt(0)],
    raw_tx: [true, hexBytes],
    trie_proof: [false, tuple(64, hexBytes)],
    header: [true, hexBytes],
  },
};

const anchor = (e, path, v) => {
  if (!isObj(v)) return e.err(path, 'Input should be a valid dictionary or object to extract fields from');
  if (!Object.prototype.hasOwnProperty.call(v, 'type')) return e.err(path, "Unable to extract tag using discriminator 'type'");
  const spec = typeof v.type === 'string' ? ANCHORS[v.type] : undefined;
  if (!Object.prototype.hasOwnProperty.call(ANCHORS, v.type) || !spec) {
    return e.err(path, `Input tag ${JSON.stringify(String(v.type))} found using 'type' does not match any of the expected tags: 'tlog', 'tsa', 'evm'`);
  }
  model(e, `${path}.${v.type}`, v, spec);
};

const PROOF = {
  format: [true, literal(PROOF_FORMAT)],
  record: [true, (e, p, v) => model(e, p, v, {
    agency: [true, agency], id: [true, recordId], content_sha256: [true, hex32], salt: [true, hex32],
  })],
  leaf_hash: [true, hex32],
  batch: [true, (e, p, v) => {
    const before = e.errors.length;
    model(e, p, v, {
      id: [true, str(BATCH_ID, { what: 'of a batch id' })],
      index: [true, strictInt(0)],
      size: [true, strictInt(1)],
      root: [true, hex32],
      path: [false, tuple(64, hex32)],
      sealed_at: [true, str(TIMESTAMP, { what: 'of an RFC 3339 UTC time' })],
    });
    if (e.errors.length === before && v.index >= v.size) {
      e.err(p, `Value error, batch index ${v.index} is not below batch size ${v.size}`);
    }
  }],
  anchors: [true, tuple(16, anchor)],
};

/** A proof document from its text or bytes; ProofFormatError saying what is wrong (pipelines/core/proof.py). */
export function parseProof(raw) {
  const size = typeof raw === 'string' ? utf8Len(raw) : raw.length;
  if (size > MAX_PROOF_BYTES) throw new ProofFormatError(`proof is ${size} bytes, more than the ${MAX_PROOF_BYTES} allowed`);
  let data;
  try {
    data = loads(typeof raw === 'string' ? raw : decodeUtf8(raw), { tagFloats: true });
  } catch (exc) {
    if (exc instanceof JSONTextError) throw new ProofFormatError(`proof is not JSON by anchorpipe's rules: ${exc.message}`);
    throw exc;
  }
  if (!isObj(data) || data.format !== PROOF_FORMAT) {
    const got = isObj(data) ? JSON.stringify(data.format instanceof JFloat ? data.format.value : data.format ?? null)
      : (Array.isArray(data) ? 'list' : typeof data);
    throw new ProofFormatError(`not an anchorpipe proof: format is ${got}, want '${PROOF_FORMAT}'`);
  }
  const e = new Fields();
  model(e, '', data, PROOF);
  if (e.errors.length) {
    const more = e.errors.length - 5;
    throw new ProofFormatError(`malformed proof: ${e.errors.slice(0, 5).join('; ')}${more > 0 ? ` (and ${more} more)` : ''}`);
  }
  return {
    record: { ...data.record },
    leaf_hash: data.leaf_hash,
    batch: { ...data.batch, path: data.batch.path ?? [] },
    anchors: data.anchors.map((a) => ({ ...a, ...(a.type === 'tlog' ? { path: a.path ?? [] } : {}),
      ...(a.type === 'evm' ? { trie_proof: a.trie_proof ?? [] } : {}) })),
  };
}
