/**
 * Text a remote party wrote (a marketplace's error code, a renter's dispute description, a contract field, a
 * backend's message) made safe to print: a terminal acts on control characters instead of showing them (an escape
 * sequence can recolour, move the cursor, retitle the window or hide what follows), and bidirectional overrides make
 * text read differently from what it holds. Every place that prints such text goes through these two functions.
 */

/** C0 and C1 control characters (DEL included), line and paragraph separators, and bidirectional overrides. */
const UNPRINTABLE = /[\p{Cc}\u2028\u2029\u202A-\u202E\u2066-\u2069]/gu
/** The same, but keeping line feeds: for text that is printed on several lines on purpose (a stack trace, a table). */
const UNPRINTABLE_BUT_LINE_FEED = /(?!\n)\p{Cc}|[\u2028\u2029\u202A-\u202E\u2066-\u2069]/gu

export interface PrintableOptions {
  /** At most this many characters (then an ellipsis); default: no bound. */
  max?: number
  /** Keep line feeds (each other control character still becomes `?`). */
  multiline?: boolean
}

/** `text` with every control character replaced by `?`, cut at `max` characters. */
export function printable(text: string, options: PrintableOptions = {}): string {
  const clean = text.replace(options.multiline ? UNPRINTABLE_BUT_LINE_FEED : UNPRINTABLE, '?')
  return options.max !== undefined && clean.length > options.max ? `${clean.slice(0, options.max)}…` : clean
}

/**
 * One short line of `text` for another party to read: line breaks and runs of blanks become one space, control
 * characters `?`, at most `max` characters.
 */
export function oneLine(text: string, max = 200): string {
  return printable(text.replace(/[\s\u2028\u2029]+/gu, ' ').trim(), {max})
}
