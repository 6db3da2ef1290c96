/**
 * Where each key of a TOML text is defined, so a config error can name the line. @iarna/toml gives values without
 * positions; this scanner reads only the structure (table headers and `key =` lines), skipping the contents of
 * multi-line strings and arrays, which is all the error messages need.
 */
export type ConfigPath = readonly PropertyKey[]

export class KeyLines {
  private readonly lines = new Map<string, number>()

  constructor(text: string) {
    scan(text, (path, line) => {
      const id = pathId(path)
      if (!this.lines.has(id)) this.lines.set(id, line)
    })
  }

  /** The 1-based line that defines `path`, else the line of its nearest defined ancestor (a table header). */
  lineOf(path: ConfigPath): number | undefined {
    for (let length = path.length; length > 0; length--) {
      const line = this.lines.get(pathId(path.slice(0, length)))
      if (line !== undefined) return line
    }
    return undefined
  }

  /** The line that defines exactly `path`, or undefined when the text doesn't set it. */
  exactLineOf(path: ConfigPath): number | undefined {
    return this.lines.get(pathId(path))
  }
}

function pathId(path: ConfigPath): string {
  return JSON.stringify(path.map((key) => (typeof key === 'number' ? key : String(key))))
}

interface Cursor {
  text: string
  at: number
}

const BARE_KEY = /[A-Za-z0-9_-]/

/** Reads a dotted key (bare, "basic" or 'literal' parts) at the cursor; undefined when there is none. */
function readKey(cursor: Cursor): string[] | undefined {
  const parts: string[] = []
  for (;;) {
    skipBlanks(cursor)
    const char = cursor.text[cursor.at]
    if (char === '"' || char === "'") {
      const end = stringEnd(cursor.text, cursor.at, char)
      if (end === undefined) return undefined
      parts.push(unquote(cursor.text.slice(cursor.at, end), char))
      cursor.at = end
    } else {
      const start = cursor.at
      while (cursor.at < cursor.text.length && BARE_KEY.test(cursor.text[cursor.at] ?? '')) cursor.at++
      if (cursor.at === start) return undefined
      parts.push(cursor.text.slice(start, cursor.at))
    }
    skipBlanks(cursor)
    if (cursor.text[cursor.at] !== '.') return parts
    cursor.at++
  }
}

function unquote(quoted: string, quote: string): string {
  const inner = quoted.slice(1, -1)
  if (quote === "'") return inner
  try {
    return JSON.parse(`"${inner.replaceAll(/\\U([0-9A-Fa-f]{8})/g, (_, hex: string) => String.fromCodePoint(Number.parseInt(hex, 16)))}"`) as string
  } catch {
    return inner
  }
}

function skipBlanks(cursor: Cursor): void {
  while (cursor.text[cursor.at] === ' ' || cursor.text[cursor.at] === '\t') cursor.at++
}

/** The index just past a single-line string starting at `start`, or undefined when it doesn't close. */
function stringEnd(text: string, start: number, quote: string): number | undefined {
  for (let index = start + 1; index < text.length; index++) {
    const char = text[index]
    if (char === '\n') return undefined
    if (quote === '"' && char === '\\') index++
    else if (char === quote) return index + 1
  }
  return undefined
}

type Visit = (path: PropertyKey[], line: number) => void

function scan(text: string, visit: Visit): void {
  const cursor: Cursor = {text, at: 0}
  let table: PropertyKey[] = []
  const arrayTableCounts = new Map<string, number>()
  const lineAt = lineFinder(text)
  while (cursor.at < text.length) {
    const line = lineAt(cursor.at)
    skipBlanks(cursor)
    const char = text[cursor.at]
    if (char === '[') {
      const isArray = text[cursor.at + 1] === '['
      cursor.at += isArray ? 2 : 1
      const key = readKey(cursor)
      if (key) {
        const parent = resolveTable(key.slice(0, -1), arrayTableCounts)
        table = [...parent, key.at(-1) ?? '']
        if (isArray) {
          const id = pathId(table)
          const index = arrayTableCounts.get(id) ?? 0
          arrayTableCounts.set(id, index + 1)
          visit(table, line)
          table = [...table, index]
        }
        visit(table, line)
      }
    } else if (char !== '#' && char !== '\n' && char !== undefined) {
      const key = readKey(cursor)
      if (key && text[cursor.at] === '=') {
        cursor.at++
        for (let length = 1; length <= key.length; length++) visit([...table, ...key.slice(0, length)], line)
        skipValue(cursor)
      }
    }
    skipToNextLine(cursor)
  }
}

/** A header like [offerings.extra] under [[offerings]] refers to the latest element of the array. */
function resolveTable(parts: string[], arrayTableCounts: Map<string, number>): PropertyKey[] {
  const resolved: PropertyKey[] = []
  for (const part of parts) {
    resolved.push(part)
    const count = arrayTableCounts.get(pathId(resolved))
    if (count !== undefined) resolved.push(count - 1)
  }
  return resolved
}

/** The 1-based line of a character index: a binary search of the line starts. */
function lineFinder(text: string): (index: number) => number {
  const starts = [0]
  for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) starts.push(at + 1)
  return (index) => {
    let low = 0
    let high = starts.length - 1
    while (low < high) {
      const middle = Math.ceil((low + high) / 2)
      if ((starts[middle] ?? 0) <= index) low = middle
      else high = middle - 1
    }
    return low + 1
  }
}

/** Moves past a value, across the lines of a multi-line string or of an array or inline table that spans lines. */
function skipValue(cursor: Cursor): void {
  const {text} = cursor
  let depth = 0
  while (cursor.at < text.length) {
    const char = text[cursor.at] ?? ''
    if (char === '"' || char === "'") {
      const triple = text.startsWith(char.repeat(3), cursor.at)
      if (triple) {
        const close = text.indexOf(char.repeat(3), cursor.at + 3)
        cursor.at = close === -1 ? text.length : close + 3
        while (text[cursor.at] === char) cursor.at++
      } else {
        cursor.at = stringEnd(text, cursor.at, char) ?? text.indexOf('\n', cursor.at)
        if (cursor.at === -1) cursor.at = text.length
      }
      continue
    }
    if (char === '[' || char === '{') depth++
    else if (char === ']' || char === '}') depth--
    else if (char === '#') {
      const end = text.indexOf('\n', cursor.at)
      cursor.at = end === -1 ? text.length : end
      continue
    } else if (char === '\n' && depth <= 0) return
    cursor.at++
  }
}

function skipToNextLine(cursor: Cursor): void {
  const end = cursor.text.indexOf('\n', cursor.at)
  cursor.at = end === -1 ? cursor.text.length : end + 1
}
