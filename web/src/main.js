// The page: window.anchorpipeVerify for tools and tests, and the form an auditor uses.
import { anchorpipeVerify } from './verify.js';
import { MAX_PROOF_BYTES } from './proof.js';

window.anchorpipeVerify = anchorpipeVerify;

const $ = (id) => document.getElementById(id);
const state = { proof: null, proofName: '', record: null, recordName: '' };

const KIND_TEXT = {
  tlog: "the operator's transparency log",
  tsa: 'an RFC 3161 time-stamping authority',
  evm: 'an EVM chain',
  witness: 'independent witnesses',
};
const CHECK_TEXT = {
  format: 'The file is a proof (format anchorpipe.proof/1)',
  leaf: 'The leaf commits to the record (agency, id, content digest, salt)',
  content: "The record's content is the one committed to",
  'batch-path': 'The record is in its batch (Merkle path to the batch root)',
  witness: "Witnesses cosigned the log's checkpoint",
  anchored: 'The batch is anchored under what you pinned',
  input: 'The input can be used',
  'checkpoint-signature': "The log's checkpoint signature",
  origin: 'The receipt names its log',
  'log-inclusion': "The batch is in the log's tree",
  tsa: 'The time-stamp token',
  evm: 'The EVM transaction',
};
const HEADLINE = {
  valid: ['VALID', 'The record is committed in a batch anchored under what you pinned, and every kind you required verified.'],
  invalid: ['INVALID', 'A check failed: something in the proof (or the record file) was altered or does not match.'],
  'not-anchored': ['NOT VALID', 'Every check passed, but nothing you pinned vouches for this proof (or a kind you required did not verify).'],
  unusable: ['CANNOT CHECK', 'The input cannot be used: not a proof of this format, or a pin is malformed.'],
};

// A file is sized before it is read (a hostile one must not exhaust the tab): a proof by its format, a pin
// file (keys, roots, blocks) at 1 MiB, a record at 256 MiB.
const MAX_PIN_BYTES = 1 << 20;
const MAX_RECORD_BYTES = 256 << 20;

class TooLarge extends Error {}

function checkSize(file, limit) {
  if (file.size > limit) throw new TooLarge(`${file.name} is ${file.size} bytes, over the ${limit} bytes such a file may hold: not read`);
}

function readFile(file, limit) {
  checkSize(file, limit);
  return file.arrayBuffer().then((b) => new Uint8Array(b));
}

function refuse(err) {
  if (!(err instanceof TooLarge)) throw err;
  render({ outcome: 'unusable', message: err.message, checks: [], anchors: [], policy: '' });
}

function setText(el, text) {
  el.textContent = text;
}

async function loadProof(file) {
  state.proof = await readFile(file, MAX_PROOF_BYTES);
  state.proofName = file.name;
  setText($('proof-name'), `${file.name} (${state.proof.length} bytes)`);
  $('proof-text').value = '';
}

async function loadRecord(file) {
  state.record = await readFile(file, MAX_RECORD_BYTES);
  state.recordName = file.name;
  setText($('record-name'), `${file.name} (${state.record.length} bytes)`);
}

async function appendTo(id, file) {
  checkSize(file, MAX_PIN_BYTES);
  const text = (await file.text()).trim();
  const el = $(id);
  el.value = el.value.trim() ? `${el.value.trim()}\n${text}` : text;
}

/** A file dropped anywhere on the page goes where its content says it belongs. */
async function classify(file) {
  if (file.size > MAX_PIN_BYTES) return loadRecord(file); // too large for a proof or a pin: a record, or refused
  const text = await file.text();
  const t = text.trim();
  if (t.includes('-----BEGIN CERTIFICATE-----')) return appendTo('tsa-roots', file);
  if (/^[^\s+]+\+[0-9a-fA-F]{8}\+[A-Za-z0-9+/=]+$/m.test(t) && !t.startsWith('{')) {
    const firstKey = t.split(/\s+/)[0].split('+')[2] || '';
    return appendTo(firstKey.startsWith('B') ? 'witness-keys' : 'log-keys', file); // base64 of 0x04... vs 0x01...
  }
  if (t.startsWith('{') || t.startsWith('[')) {
    if (/"chain_id"/.test(t) && /"blocks"/.test(t)) return appendTo('evm-blocks', file);
    if (/"format"\s*:\s*"anchorpipe\.proof\//.test(t)) return loadProof(file);
  }
  return loadRecord(file);
}

const lines = (id) => $(id).value.split(/\r?\n/).map((s) => s.trim()).filter(Boolean);

function options() {
  const require = [...document.querySelectorAll('input[name=require]:checked')].map((el) => el.value);
  const quorum = $('witness-quorum').value.trim();
  const pems = $('tsa-roots').value.trim();
  const evm = $('evm-blocks').value.trim();
  const opts = {
    logVkeys: lines('log-keys'),
    witnessVkeys: lines('witness-keys'),
    witnessQuorum: quorum ? Number(quorum) : null,
    tsaRoots: pems ? [pems] : [],
    evmBlocks: evm || null,
    require,
  };
  if (state.record) {
    opts.record = state.record;
    opts.recordBytes = $('record-bytes').checked;
  }
  return opts;
}

function icon(ok) {
  if (ok === true) return ['✔', 'ok'];
  if (ok === false) return ['✘', 'bad'];
  return ['–', 'none'];
}

function render(verdict) {
  const out = $('result');
  out.replaceChildren();
  out.dataset.outcome = verdict.outcome;
  out.hidden = false;
  const [word, meaning] = HEADLINE[verdict.outcome];
  const head = document.createElement('div');
  head.className = `verdict ${verdict.outcome}`;
  head.id = 'verdict';
  const big = document.createElement('strong');
  big.textContent = word;
  const small = document.createElement('span');
  small.textContent = meaning;
  head.append(big, small);
  out.append(head);
  if (verdict.message) {
    const msg = document.createElement('p');
    msg.className = 'message';
    msg.textContent = verdict.message;
    out.append(msg);
  }
  const list = document.createElement('ol');
  list.className = 'checks';
  for (const c of verdict.checks) {
    const li = document.createElement('li');
    const [sym, cls] = icon(c.ok);
    li.className = cls;
    const mark = document.createElement('span');
    mark.className = 'mark';
    mark.textContent = sym;
    const name = document.createElement('b');
    name.textContent = CHECK_TEXT[c.name] || c.name.replace(/^anchor (\d+) \((\w+)\)$/, (_, n, k) => `Anchor ${n}: ${KIND_TEXT[k] || k}`);
    const detail = document.createElement('div');
    detail.className = 'detail';
    detail.textContent = c.detail;
    li.append(mark, name, detail);
    list.append(li);
  }
  out.append(list);
  if (verdict.anchors.length) {
    const h = document.createElement('h3');
    h.textContent = 'Anchors';
    const table = document.createElement('table');
    const hr = table.insertRow();
    for (const t of ['kind', 'verdict', 'time', 'what it proved, or why not']) {
      const th = document.createElement('th');
      th.textContent = t;
      hr.append(th);
    }
    for (const a of verdict.anchors) {
      const r = table.insertRow();
      r.className = a.verdict;
      for (const v of [`${a.kind} (${KIND_TEXT[a.kind] || a.kind})`, a.verdict, a.time || '', a.detail]) r.insertCell().textContent = v;
    }
    out.append(h, table);
  }
  if (verdict.policy) {
    const p = document.createElement('p');
    p.className = 'policy';
    p.textContent = `What you pinned and required: ${verdict.policy}.`;
    out.append(p);
  }
}

async function run() {
  const pasted = $('proof-text').value;
  const proof = pasted.trim() ? pasted : state.proof;
  if (!proof) {
    render({ outcome: 'unusable', message: 'Give a proof: drop its file, choose it, or paste its text.', checks: [], anchors: [] });
    return;
  }
  $('verify').disabled = true;
  try {
    render(await anchorpipeVerify(proof, options()));
  } finally {
    $('verify').disabled = false;
  }
}

function wire() {
  $('proof-file').addEventListener('change', (e) => e.target.files[0] && loadProof(e.target.files[0]).catch(refuse));
  $('record-file').addEventListener('change', (e) => e.target.files[0] && loadRecord(e.target.files[0]).catch(refuse));
  $('record-clear').addEventListener('click', () => {
    state.record = null;
    $('record-file').value = '';
    setText($('record-name'), 'none: the content will not be checked');
  });
  for (const [input, target] of [['log-file', 'log-keys'], ['witness-file', 'witness-keys'], ['tsa-file', 'tsa-roots'],
    ['evm-file', 'evm-blocks']]) {
    $(input).addEventListener('change', async (e) => {
      for (const f of e.target.files) await appendTo(target, f).catch(refuse);
    });
  }
  $('verify').addEventListener('click', run);
  const zone = document.body;
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', async (e) => {
    e.preventDefault();
    zone.classList.remove('dragging');
    for (const f of e.dataTransfer.files) await classify(f).catch(refuse);
  });
  $('drop-any').addEventListener('change', async (e) => {
    for (const f of e.target.files) await classify(f).catch(refuse);
  });
  document.documentElement.dataset.ready = 'true';
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', wire);
else wire();
