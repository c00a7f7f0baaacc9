/*
 * SMS segments (3GPP TS 23.038 / GSM 03.38, TS 23.040 concatenation): a text made only of the GSM 7-bit
 * default alphabet travels as GSM-7, 160 septets in one message or 153 per part once split (the 7 others hold
 * the concatenation header); anything else as UCS-2 (UTF-16 in practice), 70 code units alone or 67 per part.
 * Characters of the extension table are sent as ESC + character and take 2 septets.
 */

const GSM_BASIC = new Set(
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' +
    '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà',
);
const GSM_EXTENSION = new Set('\f^{}\\[~]|€');

const LIMITS = {
  'GSM-7': { single: 160, part: 153 },
  'UCS-2': { single: 70, part: 67 },
} as const;

export type SmsEncoding = keyof typeof LIMITS;

/** `GSM-7` when every character is in the GSM 03.38 default alphabet or its extension table, else `UCS-2`. */
export function smsEncoding(text: string): SmsEncoding {
  for (const char of text) {
    if (!GSM_BASIC.has(char) && !GSM_EXTENSION.has(char)) return 'UCS-2';
  }
  return 'GSM-7';
}

/** Septets (GSM-7) or UTF-16 code units (UCS-2) of each character, in order. */
function sizes(text: string, encoding: SmsEncoding): number[] {
  const out: number[] = [];
  for (const char of text) out.push(encoding === 'GSM-7' ? (GSM_EXTENSION.has(char) ? 2 : 1) : char.length);
  return out;
}

/**
 * How many messages `text` is sent as. An escape sequence or a surrogate pair is never split between parts,
 * so a part may hold one unit less than its limit. An empty text is one (empty) message.
 */
export function smsSegments(text: string): number {
  const encoding = smsEncoding(text);
  const { single, part } = LIMITS[encoding];
  const units = sizes(text, encoding);
  if (units.reduce((sum, n) => sum + n, 0) <= single) return 1;
  let parts = 1;
  let used = 0;
  for (const n of units) {
    if (used + n > part) {
      parts += 1;
      used = 0;
    }
    used += n;
  }
  return parts;
}

/** What an SMS is made of; `url` is kept whole whenever it fits. */
export interface SmsParts {
  title: string;
  text: string;
  url: string | null;
}

const graphemer = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

function graphemes(text: string): string[] {
  return Array.from(graphemer.segment(text), (s) => s.segment);
}

function compose(title: string, text: string, url: string): string {
  const head = title !== '' && text !== '' ? `${title}: ${text}` : title || text;
  return head !== '' && url !== '' ? `${head} ${url}` : head || url;
}

/**
 * The first `count` graphemes of `pieces` and an ellipsis, or '' for none. The ellipsis is `...` while the
 * message would otherwise stay GSM-7: `…` is not in the GSM alphabet and would turn all of it into UCS-2, which
 * holds less than half as much.
 */
function cut(pieces: string[], count: number, rest: (piece: string) => string): string {
  const kept = pieces.slice(0, count).join('').trimEnd();
  if (kept === '') return '';
  return smsEncoding(rest(kept)) === 'GSM-7' ? `${kept}...` : `${kept}…`;
}

/** The largest `count` in [0, max] for which `fits(count)`, or -1 when even 0 does not fit. */
function largest(max: number, fits: (count: number) => boolean): number {
  if (!fits(0)) return -1;
  let low = 0;
  let high = max;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (fits(mid)) low = mid;
    else high = mid - 1;
  }
  return low;
}

/**
 * `title: text url` in at most `maxSegments` messages: the text is shortened first (ending in an ellipsis), then
 * the title; the URL is kept whole unless it alone is too long, in which case the whole message is cut. Cuts
 * fall between graphemes, so no surrogate pair or combined emoji is split.
 */
export function fitSms(parts: SmsParts, maxSegments: number): string {
  const budget = Math.max(1, Math.floor(maxSegments));
  const fits = (text: string) => smsSegments(text) <= budget;
  const url = parts.url ?? '';
  const full = compose(parts.title, parts.text, url);
  if (fits(full)) return full;
  // No more graphemes than single-segment septets can ever fit; bounds the search on very long texts.
  const cap = budget * LIMITS['GSM-7'].single;

  const text = graphemes(parts.text).slice(0, cap);
  const withText = (kept: string) => compose(parts.title, kept, url);
  const textCount = largest(text.length, (n) => fits(withText(cut(text, n, withText))));
  if (textCount >= 0) return withText(cut(text, textCount, withText));

  const title = graphemes(parts.title).slice(0, cap);
  const withTitle = (kept: string) => compose(kept, '', url);
  const titleCount = largest(title.length, (n) => fits(withTitle(cut(title, n, withTitle))));
  if (titleCount >= 0) return withTitle(cut(title, titleCount, withTitle));

  const all = graphemes(full).slice(0, cap);
  const alone = (kept: string) => kept;
  const count = largest(all.length, (n) => fits(cut(all, n, alone)));
  return cut(all, Math.max(count, 0), alone);
}
