// EVM receipts (pipelines/core/evm.py), with the Ethereum Foundation's rlp and Merkle-Patricia trie.

import { keccak_256 } from '@noble/hashes/sha3.js';
import { RLP } from '@ethereumjs/rlp';
import { verifyMerkleProof } from '@ethereumjs/mpt';

import { beInt, concat, equal, hex, unhex, utf8 } from './bytes.js';
import { VerificationError } from './errors.js';

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

/** The block the receipt's transaction is in, if the transaction commits to the checkpoint text. */
export async function verifyEvmReceipt(a, checkpointText) {
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
