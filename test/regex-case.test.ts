import assert from 'node:assert/strict';
import { test } from 'node:test';
// Also sets the flag that gives RegExp its `l` (linear-time engine) flag.
import '../src/expressions.ts';
import { withoutIgnoreCase } from '../src/regex-case.ts';

/*
 * The i flag is rewritten away before a regex reaches the linear engine. V8's backtracking engine with the i
 * flag is the reference: the rewritten regex must run on the linear engine and match the same, with the same
 * groups, for every code unit, every range, and many generated patterns and inputs.
 */

const hex4 = (c: number) => `\\u${c.toString(16).padStart(4, '0')}`;

/** Matches of `pattern` with `flags` as [index, match, ...groups]: by V8 itself, and rewritten on the linear engine. */
function bothWays(pattern: string, flags: string) {
  const reference = new RegExp(pattern, `g${flags}`);
  const { source, flags: rest } = withoutIgnoreCase(pattern, `g${flags}`);
  const linear = new RegExp(source, `${rest}l`);
  const run = (regex: RegExp, text: string) => [...text.matchAll(regex)].map((m) => [m.index, ...m]);
  return {
    source,
    reference: (text: string) => run(reference, text),
    linear: (text: string) => run(linear, text),
  };
}

test('a case-insensitive regex is rewritten into classes of case variants, escapes left as they are', () => {
  const rewrite = (pattern: string, flags = 'gi') => withoutIgnoreCase(pattern, flags).source;
  assert.equal(rewrite('timeout'), '[tT][iI][mM][eE][oO][uU][tT]');
  assert.equal(rewrite('[a-f0-9]'), '[a-fA-F0-9]');
  assert.equal(rewrite('[Z-c]'), '[Z-cA-Cz]', 'Z to c covers Z, [ \\ ] ^ _ ` and a to c');
  assert.equal(rewrite('[^x-z_]+'), '[^x-zX-Z_]+');
  assert.equal(
    rewrite('\\d\\w\\s\\b\\B\\D\\W\\S\\n\\t\\cJ\\-\\.\\/'),
    '\\d\\w\\s\\b\\B\\D\\W\\S\\n\\t\\cJ\\-\\.\\/',
  );
  assert.equal(
    rewrite('\\x41\\u006b\\101'),
    '[Aa][kK][Aa]',
    'letters written as escapes match both cases too',
  );
  assert.equal(rewrite('\\u{2}\\p{L}'), '[uU]{2}[pP]{[Ll]}', 'without the u flag these are u, u, p{L}');
  assert.equal(
    rewrite('(?<incidentNumberAsWritten>ok)\\k<incidentNumberAsWritten>(x)\\2'),
    '(?<incidentNumberAsWritten>[oO][kK])\\k<incidentNumberAsWritten>([xX])\\2',
  );
  assert.equal(
    rewrite('µß'),
    '[\\u00b5\\u039c\\u03bc]ß',
    'µ, Μ and μ are one letter; ß uppercases to SS, so it matches only itself, as in JavaScript',
  );
  assert.equal(rewrite('a(?-i:b)(?m-i:c)'), '[aA](?:b)(?m:c)');
  assert.deepEqual(withoutIgnoreCase('a(?i:b)', 'g'), { source: 'a(?:[bB])', flags: 'g' });
  assert.deepEqual(withoutIgnoreCase('ab', 'gm'), { source: 'ab', flags: 'gm' });
  assert.throws(() => withoutIgnoreCase('a', 'iu'), /without u or v/);
});

test('(?i:) and (?-i:) groups turn case-insensitivity on and off for their own contents only', () => {
  const linear = (pattern: string, flags = '') => {
    const rewritten = withoutIgnoreCase(pattern, flags);
    return new RegExp(rewritten.source, `${rewritten.flags}l`);
  };
  const matches = (regex: RegExp, texts: string[]) => texts.filter((text) => regex.test(text));
  assert.deepEqual(matches(linear('^a(?i:b)c$'), ['abc', 'aBc', 'Abc', 'abC']), ['abc', 'aBc']);
  assert.deepEqual(matches(linear('^a(?-i:b)c$', 'i'), ['abc', 'AbC', 'aBc']), ['abc', 'AbC']);
  assert.deepEqual(matches(linear('^(?-i:a(?i:b)c)d$', 'i'), ['aBcD', 'abcd', 'Abcd', 'abCd']), [
    'aBcD',
    'abcd',
  ]);
  assert.deepEqual(matches(linear('^(?:σ+|(?-i:b))$', 'i'), ['ΣΣ', 'B', 'b']), ['ΣΣ', 'b']);
  assert.deepEqual(linear('(?-i:(S*\\S)*ı)', 'i').exec('asſı')?.[1], 'ſ', 'S* inside (?-i:) takes no s');
});

test('every code unit and many ranges match the same rewritten on the linear engine as with the i flag', () => {
  const units = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
  const all = String.fromCharCode(...units(0, 0x10000));
  // Code units with case: changed by toUpperCase or toLowerCase, or another's uppercase. Only these can be in
  // a class of case variants, so the linear engine (~5 ms for all 65,536) scans them and the pattern's own.
  const cased = new Set(units(0, 128));
  for (const c of units(0, 0x10000)) {
    const [unit, upper] = [String.fromCharCode(c), String.fromCharCode(c).toUpperCase()];
    if (upper === unit && unit.toLowerCase() === unit) continue;
    cased.add(c);
    if (upper.length === 1) cased.add(upper.charCodeAt(0));
  }
  const casedText = String.fromCharCode(...cased);
  const matched = (regex: RegExp, text: string) => [...text.matchAll(regex)].map((m) => m[0].charCodeAt(0));
  const compare = (pattern: string, covers: number[]) => {
    const { source, flags } = withoutIgnoreCase(pattern, 'gi');
    const where = `/${pattern}/i → /${source}/`;
    assert.deepEqual(matched(new RegExp(source, flags), all), matched(new RegExp(pattern, 'gi'), all), where);
    const some = covers.every((c) => cased.has(c))
      ? casedText
      : String.fromCharCode(...new Set([...covers, ...cased]));
    assert.deepEqual(
      matched(new RegExp(source, `${flags}l`), some),
      matched(new RegExp(pattern, 'gi'), some),
      where,
    );
  };

  const uncased = units(0, 0x10000).filter((c) => !cased.has(c));
  const runs = uncased
    .filter((c, i) => uncased[i - 1] !== c - 1)
    .map((c) => {
      let end = c;
      while (end < 0xffff && !cased.has(end + 1)) end++;
      return `${hex4(c)}-${hex4(end)}`;
    });
  assert.deepEqual(
    matched(new RegExp(`[${runs.join('')}]`, 'gi'), all),
    uncased,
    'nothing else matches these',
  );
  for (const c of uncased) assert.equal(withoutIgnoreCase(hex4(c), 'gi').source, hex4(c));
  for (const c of cased) {
    compare(hex4(c), [c]);
    compare(`[${hex4(c)}]`, [c]);
  }
  const random = seeded(7);
  const ends = [
    0x40, 0x41, 0x5a, 0x5b, 0x60, 0x61, 0x7a, 0x7b, 0xb5, 0xc0, 0xdf, 0xff, 0x130, 0x17f, 0x3a3, 0x212a,
  ];
  for (let n = 0; n < 400; n++) {
    const pick = () =>
      random() < 0.5 ? ends[Math.floor(random() * ends.length)]! : Math.floor(random() * 0x600);
    const [low, high] = [pick(), pick()].sort((a, b) => a - b) as [number, number];
    compare(`[${random() < 0.3 ? '^' : ''}${hex4(low)}-${hex4(high)}]`, units(low, high + 1));
  }
});

test('generated case-insensitive patterns match the same rewritten on the linear engine, groups included', () => {
  const random = seeded(42);
  const any = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const letters = [...'aAbkKsSiIzZxyp_', ...'ſ K µ μ Σ σ ς ß ẞ İ ı ǅ é Ÿ ᾀ ﬁ ⓐ'.split(' ')];
  const escapes = String.raw`\d \D \w \W \s \S \b \B \n \t \0 \- \. \\ \[ \] \x41 \x6b \xe9 \xC9 \u0041 \u00b5
    \u212a \u017F \u03a3 \101 \141 \7 \12 \8 \cA \cj \c1 \c_ \c \a \e \k \p{L} \u{2} \xg \ug \1 \2 \10 \K \P`.split(
    /\s+/,
  );
  const punctuation = [...'-^$.{}|,0123'];
  const classAtom = () => (random() < 0.5 ? any(letters) : random() < 0.6 ? any(escapes) : any(punctuation));
  const charClass = () => {
    let body = random() < 0.3 ? '^' : '';
    for (let n = Math.floor(random() * 4); n >= 0; n--)
      body += random() < 0.4 ? `${classAtom()}-${classAtom()}` : classAtom();
    return `[${body}]`;
  };
  // No (?i:) or (?-i:) here: once V8 stops optimizing the regexes it compiles (after ~1 MB of regex code),
  // its backtracking engine lets them leak out of their group (/σ+|(?-i:b|)|/i no longer matches Σ). They are
  // checked against the ECMAScript semantics instead, below.
  const opens = ['(', '(?:', '(?<=', '(?<!', '(?m:', '(?s-m:'];
  let names = 0;
  const term = (depth: number): string => {
    const roll = random();
    const atom =
      roll < 0.35
        ? any(letters)
        : roll < 0.55
          ? any(escapes)
          : roll < 0.75
            ? charClass()
            : roll < 0.82
              ? any(punctuation)
              : depth > 2
                ? '.'
                : `${random() < 0.15 ? `(?<n${names++}>` : any(opens)}${sequence(depth + 1)})`;
    return atom + any(['', '', '', '*', '+', '?', '{2}', '{1,3}', '*?']);
  };
  const sequence = (depth: number): string => {
    let text = '';
    for (let n = Math.floor(random() * 4); n >= 0; n--) text += random() < 0.1 ? '|' : term(depth);
    return text;
  };

  let compared = 0;
  for (let n = 0; n < 4000; n++) {
    names = 0;
    const pattern = sequence(0);
    const flags = any(['i', 'i', 'im', '']);
    try {
      new RegExp(pattern, flags);
    } catch {
      continue; // not a regex (JSONata would not parse it)
    }
    let pair: ReturnType<typeof bothWays>;
    try {
      pair = bothWays(pattern, flags);
    } catch (error) {
      // Only what the linear engine refuses with or without case (backreferences, lookahead) may fail here.
      assert.throws(
        () => new RegExp(pattern, `g${flags.replace('i', '')}l`),
        `/${pattern}/${flags}: ${error}`,
      );
      continue;
    }
    const alphabet = [
      ...new Set(`${pattern}${pattern.toUpperCase()}${pattern.toLowerCase()}aAkKsSſK\n\b\x01\x11\x1f`),
    ];
    for (let m = 0; m < 40; m++) {
      let text = '';
      for (let k = Math.floor(random() * 10); k > 0; k--) text += any(alphabet);
      assert.deepEqual(
        pair.linear(text),
        pair.reference(text),
        `/${pattern}/${flags} → /${pair.source}/ on ${JSON.stringify(text)}`,
      );
    }
    compared++;
  }
  assert.ok(compared > 2000, `only ${compared} patterns compared`);
});

/** A small deterministic generator (mulberry32), so a failure names a pattern that fails again. */
function seeded(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
