// The policy (pipelines/core/policy.py): what the auditor pinned and what must verify.

import { InputError } from './errors.js';
import { loads } from './jsontext.js';
import { ALG_COSIGNATURE_V1, ALG_ED25519, parseVkey } from './note.js';
import { parsePemRoots } from './tsa.js';

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

/** The policy in one line, as the CLI's verdicts end. */
export function describe(policy) {
  const keys = policy.logKeys.map((k) => `${k.name}+${k.id.toString(16).padStart(8, '0')}`).join(', ') || 'none';
  const rule = [...policy.require].sort().join(' and ') || 'any one';
  const nBlocks = [...policy.blocks.values()].reduce((n, s) => n + s.size, 0);
  const witnesses = policy.witnesses.length ? `; witnesses: ${policy.witnessQuorum} of ${policy.witnesses.length} pinned` : '';
  return `pinned log keys: ${keys}; TSA roots: ${policy.roots.length}; EVM: ${nBlocks} pinned blocks${witnesses}; required: ${rule}`;
}
