// The JSON rules of pipelines/core/jsontext.py, for the browser: strict, bounded, the same as the CLI.
//
// - integers within ±(2^53 − 1), numbers finite;
// - no object repeats a key;
// - at most 64 levels of nested arrays and objects;
// - valid Unicode: no lone surrogates, in keys or values.
//
// JSON.parse would silently keep the last of two equal keys and round big integers, so this is a small
// recursive-descent parser. Objects are null-prototype objects (a "__proto__" key is just a key).

export class JSONTextError extends Error {}

export const MAX_DEPTH = 64;
const MAX_SAFE = 2n ** 53n - 1n;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/y;

/** A number written with a fraction or an exponent (a Python float): kept apart when `tagFloats`, so that
 * fields the CLI wants as integers (pydantic StrictInt) refuse it. */
export class JFloat {
  constructor(value) { this.value = value; }
}

export function hasLoneSurrogate(s) {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const n = s.charCodeAt(i + 1);
      if (!(n >= 0xdc00 && n <= 0xdfff)) return true;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return true;
  }
  return false;
}

/** Text from bytes: strict UTF-8, a byte-order mark kept (and then refused as not JSON, as Python does). */
export function decodeUtf8(bytes) {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new JSONTextError('not UTF-8');
  }
}

export function loads(text, { tagFloats = false } = {}) {
  let pos = 0;
  const ws = () => {
    while (pos < text.length) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) pos++;
      else break;
    }
  };
  const fail = (what) => {
    throw new JSONTextError(`not JSON: ${what} at char ${pos}`);
  };
  const string = () => {
    pos++; // opening quote
    let out = '';
    let start = pos;
    for (;;) {
      if (pos >= text.length) fail('unterminated string');
      const c = text.charCodeAt(pos);
      if (c === 0x22) {
        out += text.slice(start, pos);
        pos++;
        return out;
      }
      if (c < 0x20) fail('invalid control character in a string');
      if (c === 0x5c) {
        out += text.slice(start, pos);
        const e = text[pos + 1];
        const simple = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
        if (e in simple) {
          out += simple[e];
          pos += 2;
        } else if (e === 'u') {
          const hex = text.slice(pos + 2, pos + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('invalid \\u escape');
          out += String.fromCharCode(parseInt(hex, 16));
          pos += 6;
        } else fail('invalid escape');
        start = pos;
      } else pos++;
    }
  };
  const value = (depth) => {
    ws();
    if (pos >= text.length) fail('expecting a value');
    const c = text[pos];
    if (c === '{' || c === '[') {
      if (depth > MAX_DEPTH) throw new JSONTextError(`nesting deeper than ${MAX_DEPTH}`);
      pos++;
      if (c === '[') {
        const arr = [];
        ws();
        if (text[pos] === ']') { pos++; return arr; }
        for (;;) {
          arr.push(value(depth + 1));
          ws();
          if (text[pos] === ',') { pos++; continue; }
          if (text[pos] === ']') { pos++; return arr; }
          fail("expecting ',' or ']'");
        }
      }
      const obj = Object.create(null);
      ws();
      if (text[pos] === '}') { pos++; return obj; }
      for (;;) {
        ws();
        if (text[pos] !== '"') fail('expecting a property name in double quotes');
        const key = string();
        if (hasLoneSurrogate(key)) throw new JSONTextError(`string ${JSON.stringify(key.slice(0, 40))} holds a lone surrogate (not valid Unicode)`);
        ws();
        if (text[pos] !== ':') fail("expecting ':'");
        pos++;
        const v = value(depth + 1);
        if (Object.prototype.hasOwnProperty.call(obj, key)) throw new JSONTextError(`key ${JSON.stringify(key)} appears twice in one object`);
        obj[key] = v;
        ws();
        if (text[pos] === ',') { pos++; continue; }
        if (text[pos] === '}') { pos++; return obj; }
        fail("expecting ',' or '}'");
      }
    }
    if (c === '"') {
      const s = string();
      if (hasLoneSurrogate(s)) throw new JSONTextError(`string ${JSON.stringify(s.slice(0, 40))} holds a lone surrogate (not valid Unicode)`);
      return s;
    }
    if (text.startsWith('true', pos)) { pos += 4; return true; }
    if (text.startsWith('false', pos)) { pos += 5; return false; }
    if (text.startsWith('null', pos)) { pos += 4; return null; }
    if (text.startsWith('NaN', pos) || text.startsWith('Infinity', pos) || text.startsWith('-Infinity', pos)) {
      throw new JSONTextError('NaN and Infinity are not JSON numbers');
    }
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (!m) fail('expecting a value');
    pos += m[0].length;
    if (m[1] === undefined && m[2] === undefined) {
      const big = BigInt(m[0]);
      if (big > MAX_SAFE || big < -MAX_SAFE) throw new JSONTextError(`integer ${m[0].slice(0, 20)} is outside ±(2**53 - 1)`);
      return Number(big);
    }
    const f = Number(m[0]);
    if (!Number.isFinite(f)) throw new JSONTextError(`number ${m[0].slice(0, 20)} is not finite`);
    return tagFloats ? new JFloat(f) : f;
  };
  const result = value(1);
  ws();
  if (pos !== text.length) fail('extra data');
  return result;
}
