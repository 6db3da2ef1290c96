import {describe, expect, it} from 'vitest'

import {parseDuration} from '../../src/core/duration.js'

describe('the one duration parser', () => {
  it('reads a number with its unit, ms to weeks, and a bare 0', () => {
    expect(parseDuration('500ms', '--x')).toBe(500)
    expect(parseDuration('30s', '--x')).toBe(30_000)
    expect(parseDuration('1.5m', '--x')).toBe(90_000)
    expect(parseDuration('24h', '--x')).toBe(86_400_000)
    expect(parseDuration('7d', '--x')).toBe(604_800_000)
    expect(parseDuration('2w', '--x')).toBe(1_209_600_000)
    expect(parseDuration(' 0 ', '--x')).toBe(0)
  })

  it('refuses a bare number as a usage error that names the flag and lists the units', () => {
    for (const text of ['30', '1.5', '24']) {
      expect(() => parseDuration(text, '--grace')).toThrow(
        expect.objectContaining({code: 'invalid_duration', exit: 2, message: `--grace: "${text}" is a number without a unit: write a number and one of the units ms, s, m, h, d or w (like 500ms, 30s, 15m, 24h, 7d, 2w)`}),
      )
    }
  })

  it('refuses what is not a duration, with the same units', () => {
    for (const text of ['a week', '5y', '-3h', 'h', '']) {
      expect(() => parseDuration(text, '--grace')).toThrow(expect.objectContaining({code: 'invalid_duration', exit: 2, message: expect.stringContaining('is not a duration: write a number and one of the units ms, s, m, h, d or w')}))
    }
  })
})
