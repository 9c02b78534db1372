// A batch as an entry of the log (pipelines/core/logentry.py).

import { concat, lp, u64, utf8 } from './bytes.js';

const ENTRY_FORMAT = utf8('anchorpipe.entry/1');

export function batchEntry(id, root, size, sealedAt) {
  return concat(lp(ENTRY_FORMAT), lp(utf8(id)), root, u64(size), lp(utf8(sealedAt)));
}
