// anchorpipe's offline proof verification, in the browser: the steps, policy and check names of
// pipelines/core/verify.py (docs/proof-format.md §6), with the same outcome for every input the CLI is given.
//
// Every failed step raises VerificationError naming its check; NotAnchored when every check passed but nothing
// pinned vouches for the batch (or a required kind did not verify); NoTrustedSignature for a receipt nothing
// pinned can check (listed as unchecked, counting for nothing); InputError for input that cannot be used.

import { sha256 } from '@noble/hashes/sha2.js';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { ed25519 } from '@noble/curves/ed25519.js';
import canonicalize from 'canonicalize';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { RLP } from '@ethereumjs/rlp';
import { verifyMerkleProof } from '@ethereumjs/mpt';

import { JSONTextError, decodeUtf8, loads } from './jsontext.js';
import { InputError, ProofFormatError, parseProof } from './proof.js';

export class VerificationError extends Error {
  constructor(message, check = null) {
    super(message);
    this.check = check;
  }
}
export class NotAnchored extends VerificationError {}
export class NoTrustedSignature extends VerificationError {}
export class BadSignature extends VerificationError {}

const enc = new TextEncoder();
const utf8 = (s) => enc.encode(s);
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const unhex = (s) => {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
};
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
};
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const u16 = (n) => new Uint8Array([n >> 8, n & 0xff]);
const lp = (b) => {
  if (b.length > 0xffff) throw new VerificationError(`length-prefixed field is ${b.length} bytes, at most 65535`);
  return concat(u16(b.length), b);
};
const u64 = (n) => {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
};
const beInt = (b) => (b.length ? BigInt(`0x${hex(b)}`) : 0n);
const isoZ = (date) => date.toISOString().replace('.000Z', 'Z');
const repr = (s) => `'${String(s).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

/** base64 as Python's base64.b64decode(text, validate=True) reads it. */
export function b64(text, what = 'base64') {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw new InputError(`${what} is not valid base64`);
  const bin = atob(text);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
const b64enc = (bytes) => btoa(String.fromCharCode(...bytes));

// ---- RFC 9162 Merkle trees (pipelines/core/merkle.py), sizes as BigInt (a checkpoint's size is a uint64).

const leafHash = (data) => sha256(concat(new Uint8Array([0]), data));
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

const LEAF_FORMAT = utf8('anchorpipe.leaf/1');
const ENTRY_FORMAT = utf8('anchorpipe.entry/1');

export function recordLeafHash(agency, id, digest, salt) {
  return leafHash(concat(lp(LEAF_FORMAT), lp(utf8(agency)), lp(utf8(id)), digest, salt));
}

function batchEntry(id, root, size, sealedAt) {
  return concat(lp(ENTRY_FORMAT), lp(utf8(id)), root, u64(size), lp(utf8(sealedAt)));
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

// ---- C2SP signed notes, checkpoints and cosignatures (note.py, checkpoint.py, cosignature.py).

const SIG_PREFIX = '\u2014 ';
const NOTE_CONTROL = /[\x00-\x09\x0b-\x1f]/;
const ALG_ED25519 = 0x01;
const ALG_COSIGNATURE_V1 = 0x04;

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

function edVerify(pub, message, sig) {
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

function parseSignatureLine(line) {
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

const u32 = (b) => ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;

function openNote(note, verifiers) {
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

function verifyCosignatures(note, witnesses) {
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

// ---- RFC 3161 time-stamp tokens (pipelines/core/tsa.py), with pkijs for the CMS.

const SHA256_OID = '2.16.840.1.101.3.4.2.1';
const TST_INFO_OID = '1.2.840.113549.1.9.16.1.4';
const SIGNED_DATA_OID = '1.2.840.113549.1.7.2';
const EKU_OID = '2.5.29.37';
const TIME_STAMPING_OID = '1.3.6.1.5.5.7.3.8';
const NAMES = { '2.5.4.3': 'CN', '2.5.4.6': 'C', '2.5.4.7': 'L', '2.5.4.8': 'ST', '2.5.4.10': 'O', '2.5.4.11': 'OU' };

const bufferOf = (u8) => u8.buffer.slice(u8.byteOffset, u8.byteOffset + u8.byteLength);

function fromDer(bytes, what) {
  const asn = asn1js.fromBER(bufferOf(bytes));
  if (asn.offset === -1 || asn.offset !== bytes.length) throw new Error(`${what}: not DER (${asn.result.error || 'trailing bytes'})`);
  return asn.result;
}

function nameText(name) {
  return name.typesAndValues.slice().reverse()
    .map((tv) => `${NAMES[tv.type] || tv.type}=${tv.value.valueBlock.value}`).join(',');
}

/** The roots of a PEM file's text: every certificate in it (InputError if there is none). */
export function parsePemRoots(pem) {
  const blocks = [...String(pem).matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)];
  if (!blocks.length) throw new InputError('not a PEM certificate file: no certificate found');
  return blocks.map((m) => {
    try {
      return pkijs.Certificate.fromBER(bufferOf(b64(m[1].replace(/\s+/g, ''), 'certificate')));
    } catch (exc) {
      throw new InputError(`not a PEM certificate file: ${exc.message}`);
    }
  });
}

async function verifyToken(tokenB64, note, roots) {
  let signed, tst;
  const want = sha256(utf8(note));
  try {
    let der;
    try {
      der = b64(tokenB64);
    } catch {
      throw new Error('token is not base64');
    }
    const info = new pkijs.ContentInfo({ schema: fromDer(der, 'TimeStampToken') });
    if (info.contentType !== SIGNED_DATA_OID) throw new Error(`content type ${info.contentType}, want signed data`);
    signed = new pkijs.SignedData({ schema: info.content });
    if (signed.encapContentInfo.eContentType !== TST_INFO_OID || !signed.encapContentInfo.eContent) {
      throw new Error('the signed content is not a TSTInfo');
    }
    const content = new Uint8Array(signed.encapContentInfo.eContent.getValue());
    tst = new pkijs.TSTInfo({ schema: fromDer(content, 'TSTInfo') });
  } catch (exc) {
    throw new VerificationError(`token: not a well-formed RFC 3161 TimeStampToken (${exc.message})`);
  }
  const imprint = tst.messageImprint;
  if (imprint.hashAlgorithm.algorithmId !== SHA256_OID) {
    throw new VerificationError(`message imprint: algorithm ${imprint.hashAlgorithm.algorithmId}, want SHA-256`);
  }
  const stamped = new Uint8Array(imprint.hashedMessage.valueBlock.valueHexView);
  if (!equal(stamped, want)) {
    throw new VerificationError(`message imprint: the token stamps ${hex(stamped)}, not SHA-256 of the checkpoint `
      + `(${hex(want)}): it is a token for something else`);
  }
  if (!roots.length) throw new NoTrustedSignature('no TSA root certificate pinned (--tsa-root)');
  if (!signed.signerInfos.length) throw new VerificationError('token: The signed data has 0 signer infos.');
  // The signature and the certificate chain to a pinned root, at the token's genTime.
  let result;
  try {
    result = await signed.verify({
      signer: 0, data: bufferOf(utf8(note)), trustedCerts: roots, checkChain: true, extendedMode: true,
    });
  } catch (exc) {
    throw new NoTrustedSignature(`signature and certificate chain: not signed under a pinned TSA root (${exc.message || exc})`);
  }
  if (!result.signatureVerified) {
    throw new NoTrustedSignature('signature and certificate chain: not signed under a pinned TSA root (the signature does not verify)');
  }
  if (signed.signerInfos.length !== 1) throw new VerificationError(`token: Expected exactly one SignerInfo, got ${signed.signerInfos.length}.`);
  const leaf = result.signerCertificate;
  const eku = (leaf.extensions || []).find((x) => x.extnID === EKU_OID);
  const notTsa = (why) => new VerificationError('TSA certificate: not a time-stamping certificate (a TSA\'s certificate must '
    + `carry the critical extended key usage timeStamping): ${why}`);
  if (!eku) throw notTsa('The certificate does not contain the critical EKU extension.');
  if (!eku.critical) throw notTsa('The EKU extension is not critical.');
  if (!eku.parsedValue?.keyPurposes?.includes(TIME_STAMPING_OID)) {
    throw notTsa('The EKU extension does not have KeyPurposeID id-kp-timeStamping.');
  }
  return { genTime: tst.genTime, signer: nameText(leaf.subject) };
}

// ---- EVM receipts (pipelines/core/evm.py), with the Ethereum Foundation's rlp and Merkle-Patricia trie.

const PAYLOAD_TAG = utf8('anchorpipe.checkpoint/1\n');
const bytesOf = (x) => {
  if (!(x instanceof Uint8Array)) throw new TypeError('a list where bytes were expected');
  return x;
};

function txChainAndData(raw) {
  try {
    if (raw.length && (raw[0] === 1 || raw[0] === 2)) {
      const fields = RLP.decode(raw.slice(1));
      return [beInt(bytesOf(fields[0])), bytesOf(fields[raw[0] === 1 ? 6 : 7])];
    }
    const fields = RLP.decode(raw);
    const v = beInt(bytesOf(fields[6]));
    if (v < 35n) throw new VerificationError('transaction: a legacy transaction without a chain id (EIP-155) replays anywhere');
    return [(v - 35n) / 2n, bytesOf(fields[5])];
  } catch (exc) {
    if (exc instanceof VerificationError) throw exc;
    throw new VerificationError(`transaction: raw_tx is not a signed transaction (${exc.message})`);
  }
}

async function verifyEvmReceipt(a, checkpointText) {
  const raw = unhex(a.raw_tx);
  const txHash = hex(keccak_256(raw));
  if (txHash !== a.tx_hash) throw new VerificationError(`transaction: raw_tx hashes to ${txHash}, not tx_hash ${a.tx_hash}`);
  const [chainId, data] = txChainAndData(raw);
  if (chainId !== BigInt(a.chain_id)) {
    throw new VerificationError(`chain id: the transaction is for chain ${chainId}, the receipt says ${a.chain_id}`);
  }
  if (!equal(data, concat(PAYLOAD_TAG, utf8(checkpointText)))) {
    throw new VerificationError('transaction data: it does not commit to the checkpoint the receipt names');
  }
  const header = unhex(a.header);
  const blockHash = hex(keccak_256(header));
  if (blockHash !== a.block_hash) throw new VerificationError(`header: it hashes to ${blockHash}, not block_hash ${a.block_hash}`);
  let txRoot, number, timestamp;
  try {
    const fields = RLP.decode(header);
    txRoot = bytesOf(fields[4]);
    number = beInt(bytesOf(fields[8]));
    timestamp = beInt(bytesOf(fields[11]));
  } catch (exc) {
    throw new VerificationError(`header: not a block header (${exc.message})`);
  }
  if (number !== BigInt(a.block_number)) {
    throw new VerificationError(`header: it is of block ${number}, the receipt says ${a.block_number}`);
  }
  let found;
  try {
    const nodes = a.trie_proof.map((n) => {
      const b = unhex(n);
      RLP.decode(b); // each node must be RLP, as the CLI decodes them
      return b;
    });
    found = await verifyMerkleProof(RLP.encode(a.tx_index), nodes, { root: txRoot });
  } catch (exc) {
    throw new VerificationError(`trie proof: it does not verify under the header's transactionsRoot (${exc.message})`);
  }
  if (!found || !equal(found, raw)) {
    throw new VerificationError(`trie proof: transaction ${a.tx_index} under the header's transactionsRoot is not raw_tx`);
  }
  return { chainId: Number(chainId), number: Number(number), hash: a.block_hash, timestamp: Number(timestamp) };
}

// ---- The policy (pipelines/core/verify.py Policy.of) and the pins.

export const POLICY_KINDS = ['evm', 'tlog', 'tsa', 'witness'];

/** `{"chain_id": N, "blocks": [{"number": n, "hash": h}]}`, a list of such, or their JSON text: chain -> hashes. */
export function parseEvmBlocks(value) {
  const out = new Map();
  if (value === undefined || value === null) return out;
  const docs = [];
  for (const v of Array.isArray(value) ? value : [value]) {
    let doc = v;
    if (typeof v === 'string') {
      try {
        doc = loads(v);
      } catch (exc) {
        throw new InputError(`evm blocks: ${exc.message}`);
      }
    }
    docs.push(...(Array.isArray(doc) ? doc : [doc]));
  }
  for (const chain of docs) {
    if (!chain || typeof chain !== 'object' || !Array.isArray(chain.blocks) || !Number.isInteger(Number(chain.chain_id))) {
      throw new InputError('evm blocks: want {"chain_id": N, "blocks": [{"number": n, "hash": "..."}]}');
    }
    const id = Number(chain.chain_id);
    if (!out.has(id)) out.set(id, new Set());
    for (const b of chain.blocks) {
      if (!b || typeof b !== 'object' || b.hash === undefined) throw new InputError('evm blocks: every block needs a "hash"');
      out.get(id).add(String(b.hash).toLowerCase().replace(/^0x/, ''));
    }
  }
  return out;
}

export function makePolicy({ logVkeys = [], witnessVkeys = [], witnessQuorum = null, tsaRoots = [], evmBlocks = null,
  require = [] } = {}) {
  const kinds = new Set(require);
  const unknown = [...kinds].filter((k) => !POLICY_KINDS.includes(k)).sort();
  if (unknown.length) throw new InputError(`unknown anchor kind(s) ${JSON.stringify(unknown)}; known: ${JSON.stringify(POLICY_KINDS)}`);
  const logKeys = logVkeys.map((t) => parseVkey(t, ALG_ED25519));
  const witnesses = witnessVkeys.flatMap((t) => String(t).split(/\r?\n/)).filter((t) => t.trim())
    .map((t) => parseVkey(t, ALG_COSIGNATURE_V1));
  const roots = tsaRoots.flatMap((pem) => parsePemRoots(pem));
  const blocks = parseEvmBlocks(evmBlocks);
  if (witnessQuorum !== null && witnessQuorum !== undefined && !(Number.isInteger(witnessQuorum) && witnessQuorum >= 1)) {
    throw new InputError(`the witness quorum must be a whole number of at least 1, got ${witnessQuorum}`);
  }
  const quorum = (witnessQuorum === null || witnessQuorum === undefined) && witnesses.length
    ? Math.floor(witnesses.length / 2) + 1 : (witnessQuorum || 0);
  if (quorum > witnesses.length) {
    throw new InputError(`a witness quorum of ${quorum} needs at least that many pinned witness keys (--witness), ${witnesses.length} given`);
  }
  if (quorum || kinds.has('witness')) {
    if (!witnesses.length) throw new InputError('requiring witness cosignatures needs pinned witness keys (--witness VKEY)');
    kinds.add('witness');
  }
  return { logKeys, witnesses, roots, blocks, require: kinds, witnessQuorum: witnesses.length ? Math.max(quorum, 1) : 0 };
}

function describe(policy) {
  const keys = policy.logKeys.map((k) => `${k.name}+${k.id.toString(16).padStart(8, '0')}`).join(', ') || 'none';
  const rule = [...policy.require].sort().join(' and ') || 'any one';
  const nBlocks = [...policy.blocks.values()].reduce((n, s) => n + s.size, 0);
  const witnesses = policy.witnesses.length ? `; witnesses: ${policy.witnessQuorum} of ${policy.witnesses.length} pinned` : '';
  return `pinned log keys: ${keys}; TSA roots: ${policy.roots.length}; EVM: ${nBlocks} pinned blocks${witnesses}; required: ${rule}`;
}

// ---- The steps.

function includedInLog(index, path, size, root, batch) {
  const entry = batchEntry(batch.id, unhex(batch.root), batch.size, batch.sealed_at);
  verifyInclusion(index, size, leafHash(entry), path.map(unhex), root);
}

function verifyTlogAnchor(anchor, batch, logKeys) {
  let cp, signers;
  try {
    const [text, names] = openNote(anchor.checkpoint, logKeys);
    cp = parseCheckpointText(text);
    signers = names;
  } catch (exc) {
    if (exc instanceof NoTrustedSignature) throw exc;
    if (exc instanceof VerificationError) throw new VerificationError(exc.message, 'checkpoint-signature');
    throw exc;
  }
  if (cp.origin !== anchor.origin) {
    throw new VerificationError(`checkpoint origin is ${repr(cp.origin)}, the receipt names ${repr(anchor.origin)}`, 'origin');
  }
  try {
    includedInLog(anchor.index, anchor.path, cp.size, cp.root, batch);
  } catch (exc) {
    if (exc instanceof VerificationError) throw new VerificationError(exc.message, 'log-inclusion');
    throw exc;
  }
  return `batch is entry ${anchor.index} of log ${repr(cp.origin)} at size ${cp.size}, checkpoint signed by pinned key ${signers.join(', ')}`;
}

function attested(note, anchors, batch) {
  const cp = parseCheckpointText(splitNote(note)[0]);
  for (const t of anchors) {
    if (t.type === 'tlog' && t.checkpoint === note) {
      includedInLog(t.index, t.path, cp.size, cp.root, batch);
      return cp;
    }
  }
  throw new VerificationError('no tlog receipt under the checkpoint this anchor attests: nothing shows the batch is in that tree');
}

async function checkAnchor(anchor, anchors, batch, policy) {
  if (anchor.type === 'tlog') {
    if (!policy.logKeys.length) throw new NoTrustedSignature(`log ${anchor.origin}: no log key pinned`);
    try {
      return { kind: 'tlog', verdict: 'verified', detail: verifyTlogAnchor(anchor, batch, policy.logKeys), time: null };
    } catch (exc) {
      if (exc instanceof NoTrustedSignature) throw new NoTrustedSignature(`log ${anchor.origin}: its checkpoint is signed by no pinned key`);
      throw exc;
    }
  }
  const cp = attested(anchor.checkpoint, anchors, batch);
  if (anchor.type === 'tsa') {
    const stamp = await verifyToken(anchor.token, anchor.checkpoint, policy.roots);
    const when = isoZ(stamp.genTime);
    return { kind: 'tsa', verdict: 'verified', time: when, detail: `time-stamped by ${stamp.signer} at ${when} (pinned TSA root): `
      + `log ${repr(cp.origin)} at size ${cp.size}, which holds the batch` };
  }
  const block = await verifyEvmReceipt(anchor, splitNote(anchor.checkpoint)[0]);
  const where = `block ${block.number} (${block.hash}) of chain ${block.chainId}`;
  if (!policy.blocks.get(block.chainId)?.has(block.hash)) {
    throw new NoTrustedSignature(`transaction ${anchor.tx_hash} is in ${where}; that block hash remains to be checked on the `
      + 'canonical chain (--evm-rpc URL or --evm-trusted-blocks FILE)');
  }
  const when = isoZ(new Date(block.timestamp * 1000));
  return { kind: 'evm', verdict: 'verified', time: when, detail: `written to ${where} at ${when}, a block hash you pinned: `
    + `log ${repr(cp.origin)} at size ${cp.size}, which holds the batch` };
}

const CHECK_OF_KIND = { tlog: 'tlog', tsa: 'tsa', evm: 'evm' };

async function checkAnchors(proof, policy, report) {
  const { anchors, batch } = proof;
  const logged = [];
  for (const [n, anchor] of anchors.entries()) {
    let verdict;
    try {
      verdict = await checkAnchor(anchor, anchors, batch, policy);
    } catch (exc) {
      if (exc instanceof NoTrustedSignature) {
        report.anchors.push({ kind: anchor.type, verdict: 'unchecked', detail: exc.message, time: null });
        report.checks.push({ name: `anchor ${n} (${anchor.type})`, ok: null, detail: `unchecked: ${exc.message}` });
        continue;
      }
      if (exc instanceof VerificationError) {
        throw new VerificationError(`anchor ${n} (${anchor.type}): ${exc.message}`, exc.check || CHECK_OF_KIND[anchor.type]);
      }
      throw exc;
    }
    report.checks.push({ name: `anchor ${n} (${anchor.type})`, ok: true, detail: verdict.detail });
    report.anchors.push(verdict);
    if (!report.anchored.has(anchor.type)) report.anchored.set(anchor.type, verdict.detail);
    if (anchor.type === 'tlog') logged.push([n, anchor]);
  }
  if (policy.witnesses.length) checkWitnesses(logged, policy, report);
  const verified = new Set(report.anchored.keys());
  if (verified.size && [...policy.require].every((k) => verified.has(k))) return;
  let why;
  if (!anchors.length) why = 'the proof carries no anchor';
  else {
    const missing = [...policy.require].filter((k) => !verified.has(k)).sort();
    const unchecked = report.anchors.filter((v) => v.verdict !== 'verified').map((v) => `${v.kind}: ${v.detail}`);
    why = [...(missing.length ? [`required anchor kind(s) ${JSON.stringify(missing)} did not verify`] : []), ...unchecked].join('; ');
  }
  const missing = [...policy.require].filter((k) => !verified.has(k));
  const onlyWitness = verified.size > 0 && missing.length === 1 && missing[0] === 'witness';
  throw new NotAnchored(`consistent but not anchored under a pinned key or root: ${why} (${describe(policy)})`,
    onlyWitness ? 'witness' : 'anchored');
}

function checkWitnesses(logged, policy, report) {
  let best = [];
  for (const [n, anchor] of logged) {
    let found;
    try {
      found = verifyCosignatures(anchor.checkpoint, policy.witnesses);
    } catch (exc) {
      if (exc instanceof VerificationError) throw new VerificationError(`anchor ${n} (tlog): ${exc.message}`, 'witness');
      throw exc;
    }
    if (found.length > best.length) best = found;
  }
  const names = best.map((c) => c.witness).join(', ') || 'none';
  if (best.length >= policy.witnessQuorum) {
    const when = isoZ(new Date(Number(best.reduce((m, c) => (c.timestamp > m ? c.timestamp : m), 0n)) * 1000));
    const detail = `the log's checkpoint is cosigned by ${best.length} pinned witness(es) (${names}); quorum `
      + `${policy.witnessQuorum} of ${policy.witnesses.length}: no split view`;
    report.checks.push({ name: 'witness', ok: true, detail });
    report.anchors.push({ kind: 'witness', verdict: 'verified', detail, time: when });
    report.anchored.set('witness', detail);
  } else {
    const detail = `the log's checkpoint is cosigned by ${best.length} of the pinned witnesses (${names}); ${policy.witnessQuorum} required`;
    report.checks.push({ name: 'witness', ok: null, detail: `unchecked: ${detail}` });
    report.anchors.push({ kind: 'witness', verdict: 'unchecked', detail, time: null });
  }
}

/**
 * Verify a proof as `anchorpipe verify PROOF --json` does, and return the same verdict:
 * {valid, outcome: valid|invalid|not-anchored|unusable, check, message, checks: [{name, ok, detail}],
 *  content_checked, anchors: [{kind, verdict, detail, time}]}.
 */
export async function anchorpipeVerify(proofText, options = {}) {
  const report = { checks: [], anchors: [], anchored: new Map(), contentChecked: false };
  let outcome = 'valid';
  let check = null;
  let message = '';
  try {
    const policy = makePolicy(options);
    report.policy = describe(policy);
    let proof;
    try {
      proof = parseProof(proofText);
    } catch (exc) {
      report.checks.push({ name: 'format', ok: false, detail: exc.message });
      throw exc;
    }
    report.checks.push({ name: 'format', ok: true, detail: `a proof of format anchorpipe.proof/1 for record ${repr(proof.record.id)} of agency ${repr(proof.record.agency)}` });
    let digest = null;
    if (options.record !== undefined && options.record !== null) {
      if (options.recordBytes) {
        digest = sha256(typeof options.record === 'string' ? utf8(options.record) : new Uint8Array(options.record));
      } else {
        digest = contentSha256(options.record);
      }
    }
    await verifyProof(proof, policy, digest, report);
  } catch (exc) {
    if (exc instanceof NotAnchored) {
      [outcome, check, message] = ['not-anchored', exc.check, `NOT VALID: ${exc.message}`];
    } else if (exc instanceof VerificationError) {
      [outcome, check, message] = ['invalid', exc.check, `INVALID: ${exc.message}`];
    } else if (exc instanceof InputError) {
      [outcome, check, message] = ['unusable', exc instanceof ProofFormatError ? 'format' : null, exc.message];
    } else {
      // A bug or an unexpected input: never valid.
      [outcome, check, message] = ['unusable', null, `the checker failed: ${exc && exc.message ? exc.message : exc}`];
    }
    if (outcome !== 'unusable' || check === 'format') {
      const last = report.checks[report.checks.length - 1];
      if (!(last && last.ok === false)) report.checks.push({ name: check || 'input', ok: false, detail: message });
    } else {
      report.checks.push({ name: 'input', ok: false, detail: message });
    }
  }
  return {
    valid: outcome === 'valid',
    outcome,
    check,
    message,
    checks: report.checks,
    content_checked: report.contentChecked,
    anchors: report.anchors,
    policy: report.policy || null,
  };
}

async function verifyProof(proof, policy, digest, report) {
  const rec = proof.record;
  const leaf = recordLeafHash(rec.agency, rec.id, unhex(rec.content_sha256), unhex(rec.salt));
  if (hex(leaf) !== proof.leaf_hash) {
    throw new VerificationError(`leaf hash ${proof.leaf_hash} does not commit to the record (computed ${hex(leaf)})`, 'leaf');
  }
  report.checks.push({ name: 'leaf', ok: true, detail: `leaf hash commits to agency ${repr(rec.agency)}, record ${repr(rec.id)}` });
  if (digest !== null) {
    if (hex(digest) !== rec.content_sha256) {
      throw new VerificationError(`record content hashes to ${hex(digest)}, the proof commits to ${rec.content_sha256}`, 'content');
    }
    report.checks.push({ name: 'content', ok: true, detail: 'record content matches content_sha256' });
    report.contentChecked = true;
  } else {
    report.checks.push({ name: 'content', ok: null, detail: "NOT CHECKED: the record's content (give the record file)" });
  }
  const b = proof.batch;
  try {
    verifyInclusion(b.index, b.size, leaf, b.path.map(unhex), unhex(b.root));
  } catch (exc) {
    if (exc instanceof VerificationError) throw new VerificationError(exc.message, 'batch-path');
    throw exc;
  }
  report.checks.push({ name: 'batch-path', ok: true, detail: `leaf ${b.index} of ${b.size} is included in batch ${b.id} with root ${b.root}` });
  await checkAnchors(proof, policy, report);
  const kinds = [...report.anchored.keys()].sort().join(', ');
  report.checks.push({ name: 'anchored', ok: true, detail: `anchored: ${kinds} (${describe(policy)})` });
}

export { b64enc };
