// The errors of the checker (pipelines/errors.py): InputError for input that cannot be used; VerificationError naming
// the check that failed; NoTrustedSignature for a receipt nothing pinned can check; BadSignature for one that fails.

export class InputError extends Error {}
export class ProofFormatError extends InputError {}

export class VerificationError extends Error {
  constructor(message, check = null) {
    super(message);
    this.check = check;
  }
}
export class NotAnchored extends VerificationError {}
export class NoTrustedSignature extends VerificationError {}
export class BadSignature extends VerificationError {}
