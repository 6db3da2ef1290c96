import {describe, expect, it} from 'vitest'

import {KeyLines} from '../../../src/core/config/locate.js'

const TEXT = [
  'top = 1', // 1
  '[marketplace] # the marketplace', // 2
  'endpoint = "http://x" # a comment with key = 3', // 3
  '[provisioner.local]', // 4
  'command = [', // 5
  '  "/bin/sh", # first', // 6
  '  "-c",', // 7
  ']', // 8
  'note = """', // 9
  'fake = 1', // 10
  '[fake]', // 11
  '"""', // 12
  "literal = '''x = 1", // 13
  "'''", // 14
  '[[offerings]]', // 15
  'name = "a"', // 16
  '[[offerings]]', // 17
  '  "quoted key" . inner = { a = 1 }', // 18
  '[offerings.extra]', // 19
  'depth = 2', // 20
  '[ "provisioner" . proxmox . ip_pool ]', // 21
  "'first' = \"192.0.2.1\"", // 22
].join('\n')

describe('the lines of config keys', () => {
  const lines = new KeyLines(TEXT)

  it('finds keys in tables, dotted, quoted and array tables, skipping multi-line values', () => {
    expect(lines.exactLineOf(['top'])).toBe(1)
    expect(lines.exactLineOf(['marketplace', 'endpoint'])).toBe(3)
    expect(lines.exactLineOf(['provisioner', 'local', 'command'])).toBe(5)
    expect(lines.exactLineOf(['provisioner', 'local', 'note'])).toBe(9)
    expect(lines.exactLineOf(['provisioner', 'local', 'fake'])).toBeUndefined()
    expect(lines.exactLineOf(['fake'])).toBeUndefined()
    expect(lines.exactLineOf(['provisioner', 'local', 'literal'])).toBe(13)
    expect(lines.exactLineOf(['offerings', 0, 'name'])).toBe(16)
    expect(lines.exactLineOf(['offerings', 1])).toBe(17)
    expect(lines.exactLineOf(['offerings', 1, 'quoted key', 'inner'])).toBe(18)
    expect(lines.exactLineOf(['offerings', 1, 'extra', 'depth'])).toBe(20)
    expect(lines.exactLineOf(['provisioner', 'proxmox', 'ip_pool', 'first'])).toBe(22)
  })

  it('falls back to the nearest table for a key the text does not set', () => {
    expect(lines.lineOf(['offerings', 0, 'cpu_cores'])).toBe(15)
    expect(lines.lineOf(['provisioner', 'local', 'command', 1])).toBe(5)
    expect(lines.lineOf(['offerings', 1, 'quoted key', 'inner', 'a'])).toBe(18)
    expect(lines.lineOf(['logging', 'level'])).toBeUndefined()
  })

  it('survives an unterminated string and a broken header', () => {
    expect(new KeyLines('a = "open\nb = 2\n').exactLineOf(['b'])).toBe(2)
    expect(new KeyLines('a = """never closed\nb = 2').exactLineOf(['b'])).toBeUndefined()
    expect(new KeyLines('[[').lineOf(['x'])).toBeUndefined()
  })
})
