/*
 * V8's linear-time regex engine cannot run case-insensitive matching, so a regex with the `i` flag (or an
 * `(?i:...)` group) is rewritten into a case-sensitive one that matches exactly the same strings: each cased
 * character outside a class becomes a class of its case variants (`a` → `[aA]`, `\x41` → `[Aa]`), and each
 * character or range inside a class gains the variants of the characters it covers (`[Z-c]` → `[Z-cA-Cz]`).
 * Only classes are added and `(?i:` becomes `(?:`, so capture groups keep their numbers.
 *
 * JSONata's regex literals take only the `i` and `m` flags, so the rewrite follows the rules without `u`
 * (ECMAScript Canonicalize, ES2025 22.2.2.7.3): two code units match when their canonical forms are equal,
 * the canonical form being the full uppercase mapping, unless that is not one code unit (`ß`, `ŉ`, `ᾀ`: they
 * match only themselves) or would map a non-ASCII character to ASCII (`ſ`, `ı`). The table is built from this
 * runtime's own `toUpperCase`, the same Unicode data its regexes use. Class escapes (`\w`, `\d`, `\s` and their
 * complements) and `.` need nothing: without `u` each is already closed under that relation.
 *
 * Without `u` the pattern follows the web-compatibility grammar (ES2025 Annex B.1.2), whose escapes are easy to
 * misread: `\p{L}` is `p{L}`, `\u{2}` is `uu`, `\xg` is `xg`, `\k` is `k` unless the pattern has named groups,
 * `\101` is an octal `A` unless there are that many groups, `\c` before a non-letter is a backslash, and in a
 * class `\B` is `B` and `\b` is a backspace. Each is read as what it means here.
 */

/** Thrown when a regex's case-insensitive meaning cannot be written case-sensitively. */
export class RegexCaseError extends Error {}

/** A regex source and its flags. */
export interface RegexText {
  source: string;
  flags: string;
}

/** What a piece of pattern stands for: one code unit (`raw` as written in a class), or text copied as is. */
type Atom = { value: number; raw: string } | { value?: undefined; raw: string };

const rewritten = new Map<string, RegexText>();

/** What follows `(`: `?:`, a lookaround, a group name, or modifiers (`?i:`, `?-i:`, `?m-i:`). */
const GROUP_HEAD = /\(\?(?:[:=!]|<[=!]|<[^>]*>|([a-z]*)(?:-([a-z]*))?:)/y;

const CONTROL_ESCAPES: Record<string, number> = { f: 12, n: 10, r: 13, t: 9, v: 11 };

/**
 * The source and flags of a regex that matches what `source` with `flags` matches, without the `i` flag or
 * `i` modifiers. Throws a RegexCaseError when that cannot be written.
 */
export function withoutIgnoreCase(source: string, flags: string): RegexText {
  const key = `${flags}/${source}`;
  let result = rewritten.get(key);
  if (result === undefined) {
    if (/[uv]/.test(flags)) {
      // Never the case for JSONata's literals; the linear-time engine cannot run these flags anyway.
      if (!flags.includes('i')) return { source, flags };
      throw new RegexCaseError('cannot be made case-sensitive: the i flag is rewritten only without u or v');
    }
    result = { source: new Rewriter(source, flags.includes('i')).rewrite(), flags: flags.replace('i', '') };
    if (rewritten.size >= 2000) rewritten.clear();
    rewritten.set(key, result);
  }
  return result;
}

class Rewriter {
  #at = 0;
  #out = '';
  #ignoreCase: boolean;
  readonly #source: string;
  readonly #groups: number;
  readonly #named: boolean;

  constructor(source: string, ignoreCase: boolean) {
    this.#source = source;
    this.#ignoreCase = ignoreCase;
    ({ groups: this.#groups, named: this.#named } = countGroups(source));
  }

  rewrite(): string {
    const src = this.#source;
    const outer: boolean[] = [];
    while (this.#at < src.length) {
      const ch = src[this.#at]!;
      if (ch === '\\') this.#char(this.#escape(false));
      else if (ch === '[') this.#class();
      else if (ch === '(') {
        outer.push(this.#ignoreCase);
        this.#group();
      } else if (ch === ')') {
        this.#ignoreCase = outer.pop() ?? this.#ignoreCase;
        this.#copy(1);
      } else {
        this.#at++;
        this.#char({ value: src.charCodeAt(this.#at - 1), raw: ch });
      }
    }
    return this.#out;
  }

  #copy(length: number): void {
    this.#out += this.#source.slice(this.#at, this.#at + length);
    this.#at += length;
  }

  /** A character outside a class: itself, or the class of its case variants. */
  #char(atom: Atom): void {
    const extra = atom.value === undefined || !this.#ignoreCase ? '' : variants(atom.value, atom.value);
    this.#out += extra === '' ? atom.raw : `[${classChar(atom.value!)}${extra}]`;
  }

  /** `(`, `(?:`, a lookaround, a named group, or a modifier group whose `i` is applied here and dropped. */
  #group(): void {
    GROUP_HEAD.lastIndex = this.#at;
    const head = GROUP_HEAD.exec(this.#source);
    if (head?.[1] === undefined && head?.[2] === undefined) {
      this.#copy(head?.[0].length ?? 1);
      return;
    }
    const [whole, on = '', off = ''] = head;
    if (on.includes('i')) this.#ignoreCase = true;
    if (off.includes('i')) this.#ignoreCase = false;
    const [keepOn, keepOff] = [on.replace('i', ''), off.replace('i', '')];
    this.#out += `(?${keepOn}${keepOff === '' ? '' : `-${keepOff}`}:`;
    this.#at += whole.length;
  }

  /** A class, with each character and range followed by the case variants it lacks. */
  #class(): void {
    const src = this.#source;
    const negated = src[this.#at + 1] === '^';
    this.#out += negated ? '[^' : '[';
    this.#at += negated ? 2 : 1;
    while (this.#at < src.length && src[this.#at] !== ']') {
      const from = this.#classAtom();
      if (src[this.#at] !== '-' || src[this.#at + 1] === ']') {
        this.#out += from.raw + this.#variants(from, from);
        continue;
      }
      this.#at++;
      const to = this.#classAtom();
      if (from.value === undefined || to.value === undefined) {
        // Web-compatibility grammar: a range with a class escape at either end is both ends and a `-`.
        this.#out += `${from.raw}${this.#variants(from, from)}\\-${to.raw}${this.#variants(to, to)}`;
      } else {
        this.#out += `${from.raw}-${to.raw}${this.#variants(from, to)}`;
      }
    }
    this.#out += ']';
    this.#at++;
  }

  #variants(from: Atom, to: Atom): string {
    if (!this.#ignoreCase || from.value === undefined || to.value === undefined) return '';
    return variants(from.value, to.value);
  }

  #classAtom(): Atom {
    if (this.#source[this.#at] === '\\') return this.#escape(true);
    const raw = this.#source[this.#at++]!;
    // Escaped so that the variants written after a character can never join it into a range.
    return { value: raw.charCodeAt(0), raw: raw === '-' ? '\\-' : raw };
  }

  /** The escape at the cursor, read as the web-compatibility grammar reads it without the `u` flag. */
  #escape(inClass: boolean): Atom {
    const src = this.#source;
    const at = this.#at;
    const next = src[at + 1] ?? '';
    const take = (length: number, value?: number): Atom => {
      this.#at += length;
      return { value, raw: src.slice(at, at + length) };
    };
    if ('dDwWsS'.includes(next)) return take(2);
    if (next === 'b' || next === 'B') return inClass ? take(2, next === 'b' ? 8 : 66) : take(2);
    const control = CONTROL_ESCAPES[next];
    if (control !== undefined) return take(2, control);
    if (next === 'c') {
      const letter = src[at + 2] ?? '';
      if (/[a-z]/i.test(letter) || (inClass && /[0-9_]/.test(letter)))
        return take(3, letter.charCodeAt(0) % 32);
      // A backslash standing for itself; the `c` is read next, as a letter.
      this.#at += 1;
      return { value: 92, raw: '\\\\' };
    }
    const hex = next === 'x' ? 2 : next === 'u' ? 4 : undefined;
    if (hex !== undefined && new RegExp(`^[0-9a-f]{${hex}}$`, 'i').test(src.slice(at + 2, at + 2 + hex))) {
      return take(2 + hex, Number.parseInt(src.slice(at + 2, at + 2 + hex), 16));
    }
    if (next === 'k' && this.#named) return take(Math.max(src.indexOf('>', at) + 1 - at, 2));
    if (/[0-9]/.test(next)) return this.#decimal(inClass);
    return take(2, src.charCodeAt(at + 1));
  }

  /** `\1` and on: a backreference when there are that many groups, else an octal escape, or `\8` and `\9`. */
  #decimal(inClass: boolean): Atom {
    const src = this.#source;
    const at = this.#at;
    const digits = /^[0-9]+/.exec(src.slice(at + 1))![0];
    if (!inClass && digits[0] !== '0' && Number(digits) <= this.#groups) {
      this.#at += 1 + digits.length;
      return { raw: src.slice(at, this.#at) };
    }
    const octal = /^(?:[0-3][0-7]{0,2}|[4-7][0-7]?)/.exec(digits)?.[0] ?? '';
    const length = 1 + Math.max(octal.length, 1);
    this.#at += length;
    const raw = src.slice(at, this.#at);
    return { value: octal === '' ? src.charCodeAt(at + 1) : Number.parseInt(octal, 8), raw };
  }
}

/** How many capture groups the pattern has, and whether any is named (which makes `\k` a backreference). */
function countGroups(source: string): { groups: number; named: boolean } {
  let groups = 0;
  let named = false;
  let inClass = false;
  for (let at = 0; at < source.length; at++) {
    const ch = source[at];
    if (ch === '\\') at++;
    else if (inClass) inClass = ch !== ']';
    else if (ch === '[') inClass = true;
    else if (ch === '(' && source[at + 1] !== '?') groups++;
    else if (ch === '(' && /^\?<[^=!]/.test(source.slice(at + 1, at + 4))) {
      groups++;
      named = true;
    }
  }
  return { groups, named };
}

interface CaseTable {
  /** Each code unit's canonical form. */
  canon: Uint16Array;
  /** The code units that share their canonical form with another, in order. */
  cased: number[];
  /** Those code units by canonical form. */
  byCanon: Map<number, number[]>;
}

let table: CaseTable | undefined;

function caseTable(): CaseTable {
  if (table !== undefined) return table;
  const canon = new Uint16Array(0x10000);
  const byCanon = new Map<number, number[]>();
  for (let c = 0; c < 0x10000; c++) {
    const upper = String.fromCharCode(c).toUpperCase();
    const u = upper.length === 1 ? upper.charCodeAt(0) : c;
    canon[c] = c >= 128 && u < 128 ? c : u;
    if (canon[c] === c) continue;
    const same = byCanon.get(canon[c]!);
    if (same === undefined) byCanon.set(canon[c]!, [c]);
    else same.push(c);
  }
  for (const [form, same] of byCanon) if (canon[form] === form) same.push(form);
  for (const [form, same] of byCanon) if (same.length < 2) byCanon.delete(form);
  const cased = [...byCanon.values()].flat().sort((a, b) => a - b);
  table = { canon, cased, byCanon };
  return table;
}

/** The code units outside `from`..`to` that match one inside it case-insensitively, as class members. */
function variants(from: number, to: number): string {
  const { canon, cased, byCanon } = caseTable();
  let low = 0;
  let high = cased.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (cased[mid]! < from) low = mid + 1;
    else high = mid;
  }
  const found = new Set<number>();
  for (let i = low; i < cased.length && cased[i]! <= to; i++) {
    for (const c of byCanon.get(canon[cased[i]!]!)!) if (c < from || c > to) found.add(c);
  }
  const sorted = [...found].sort((a, b) => a - b);
  let text = '';
  for (let i = 0; i < sorted.length; ) {
    let end = i;
    while (sorted[end + 1] === sorted[end]! + 1) end++;
    const first = classChar(sorted[i]!);
    if (end - i >= 2) text += `${first}-${classChar(sorted[end]!)}`;
    else for (let j = i; j <= end; j++) text += classChar(sorted[j]!);
    i = end + 1;
  }
  return text;
}

/** A code unit as a class member: ASCII letters and digits as themselves, anything else escaped. */
function classChar(c: number): string {
  const ch = String.fromCharCode(c);
  return /[0-9A-Za-z]/.test(ch) ? ch : `\\u${c.toString(16).padStart(4, '0')}`;
}
