import {describe, expect, it} from 'vitest'

import {formatAmount, parseAmount} from '../../src/core/decimal.js'

describe('amounts', () => {
  it.each([
    ['0', 0n],
    ['5000', 5_000_000_000n],
    ['12.5', 12_500_000n],
    ['0.000001', 1n],
    ['18.000000', 18_000_000n],
    ['123456789012345678901234567890.123456', 123_456_789_012_345_678_901_234_567_890_123_456n],
  ])('parses %s exactly', (text, micro) => {
    expect(parseAmount(text)).toBe(micro)
  })

  it('adds without float error', () => {
    expect(formatAmount(parseAmount('0.1') + parseAmount('0.2'))).toBe('0.3')
    expect(formatAmount(parseAmount('19') * 1000n)).toBe('19000')
  })

  it.each(['', '-1', '1e3', '0.1234567', '01', '1.', '.5', 'NaN', ' 1', '1,5'])('refuses "%s" with a clear error', (text) => {
    expect(() => parseAmount(text, 'stake amount')).toThrow(/stake amount: .* is not a decimal amount/)
  })
})
