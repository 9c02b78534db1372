// anchorpipe's offline proof verification, in the browser: the steps, policy and check names of
// pipelines/core/verify.py (docs/proof-format.md §6), with the same outcome for every input the CLI is given.
//
// Every failed step raises VerificationError naming its check; NotAnchored when every check passed but nothing
// pinned vouches for the batch (or a required kind did not verify); NoTrustedSignature for a receipt nothing
// pinned can check (listed as unchecked, counting for nothing); InputError for input that cannot be used.

import { sha256 } from '@noble/hashes/sha2.js';

import { hex, isoZ, repr, unhex, utf8 } from './bytes.js';
import { parseCheckpointText } from './checkpoint.js';
import { contentSha256, recordLeafHash } from './commitment.js';
import { verifyCosignatures } from './cosignature.js';
import { InputError, NoTrustedSignature, ProofFormatError, VerificationError } from './errors.js';
import { verifyEvmReceipt } from './evm.js';
import { batchEntry } from './logentry.js';
import { leafHash, verifyInclusion } from './merkle.js';
import { claimedSigners, openNote, splitNote } from './note.js';
import { describe, makePolicy } from './policy.js';
import { parseProof } from './proof.js';
import { verifyToken } from './tsa.js';

export class NotAnchored extends VerificationError {}

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
      if (exc instanceof NoTrustedSignature) {
        const claimed = claimedSigners(anchor.checkpoint).join(', ') || 'no readable key';
        throw new NoTrustedSignature(`log ${anchor.origin}: its checkpoint is signed by no pinned key (its note says it is signed by ${claimed})`);
      }
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
