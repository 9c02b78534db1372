// RFC 3161 time-stamp tokens (pipelines/core/tsa.py), with pkijs for the CMS.

import { sha256 } from '@noble/hashes/sha2.js';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';

import { b64, equal, hex, utf8 } from './bytes.js';
import { InputError, NoTrustedSignature, VerificationError } from './errors.js';

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

/** The token's time and signer, if it stamps the note and chains to a pinned root at its genTime. */
export async function verifyToken(tokenB64, note, roots) {
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
