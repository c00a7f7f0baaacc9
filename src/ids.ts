import { createHash, randomBytes } from 'node:crypto';

// Crockford's base32: sortable as text, no ambiguous letters.
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

let lastTime = 0;
let lastRandom: Uint8Array = new Uint8Array(10);

/**
 * A new id, `prefix_` then 26 base32 characters: 48 bits of milliseconds and 80 random bits (ULID layout).
 * Ids made later sort after earlier ones, also within one millisecond, so they double as creation order.
 */
export function newId(prefix: string, now = Date.now()): string {
  let random: Uint8Array;
  if (now <= lastTime) {
    random = increment(lastRandom);
    now = lastTime;
  } else {
    random = randomBytes(10);
  }
  lastTime = now;
  lastRandom = random;
  let out = '';
  let time = now;
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[time % 32] + out;
    time = Math.floor(time / 32);
  }
  // 80 random bits as 16 base32 characters, 5 bits each.
  let bits = 0;
  let value = 0;
  for (const byte of random) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(value >> bits) & 31];
    }
  }
  return `${prefix}_${out}`;
}

function increment(bytes: Uint8Array): Uint8Array {
  const next: Uint8Array = Uint8Array.from(bytes);
  for (let i = next.length - 1; i >= 0; i--) {
    if (next[i] === 255) {
      next[i] = 0;
    } else {
      next[i] = next[i]! + 1;
      break;
    }
  }
  return next;
}

/** A random secret token with a readable prefix, e.g. `hrd_src_...`; 32 random bytes. */
export function newToken(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}

/** Tokens are high-entropy random strings, so one SHA-256 is the right hash to store (no salt or KDF needed). */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

/** SHA-256 of a string, hex. */
export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
