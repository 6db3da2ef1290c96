import {describe, expect, it} from 'vitest'

import {formatAmount, parseAmount} from '../../src/core/decimal.js'
import {ExitCode, UserError} from '../../src/core/errors.js'
import {parseStakeAmount, summarize, tierNameFor} from '../../src/stake/stake.js'

const PK = 'ab'.repeat(32)

describe('stake amounts are exact', () => {
  it('0.1 + 0.2 is 0.3, not 0.30000000000000004', () => {
    expect(0.1 + 0.2).not.toBe(0.3)
    expect(formatAmount(parseStakeAmount('0.1') + parseStakeAmount('0.2'))).toBe('0.3')
  })

  it.each([
    ['1000', '1000'],
    ['12.5', '12.5'],
    ['12.500000', '12.5'],
    ['0.000001', '0.000001'],
    [' 7 ', '7'],
    // Above 18 tokens a 1e18-scaled int64 overflows; micro-units in BigInt never do.
    ['19', '19'],
    ['18446744073709.551616', '18446744073709.551616'],
    ['123456789012345678901234567890.123456', '123456789012345678901234567890.123456'],
  ])('"%s" reads as %s', (text, canonical) => {
    expect(formatAmount(parseStakeAmount(text))).toBe(canonical)
  })

  it('sums of very large amounts stay exact', () => {
    const large = parseStakeAmount('999999999999999999999999999999.999999')
    expect(formatAmount(large + parseStakeAmount('0.000001'))).toBe('1000000000000000000000000000000')
    expect(formatAmount(large - large + parseStakeAmount('0.000001'))).toBe('0.000001')
  })

  it.each(['abc', '1.1234567', '1e3', '-5', '', '0x10', '1,000', '.5', '5.', 'NaN', 'Infinity', '01', '1 000'])('refuses "%s" with a usage error', (text) => {
    let caught: unknown
    try {
      parseStakeAmount(text)
    } catch (error) {
      caught = error
    }
    expect(caught).toBeInstanceOf(UserError)
    expect(caught).toMatchObject({code: 'invalid_amount', exit: ExitCode.usage})
    expect((caught as UserError).suggestion).toMatch(/decimal|positive/)
  })

  it.each(['0', '0.0', '0.000000'])('refuses "%s": a stake change must be above zero', (text) => {
    expect(() => parseStakeAmount(text)).toThrow(/above zero/)
  })
})

describe('tiers and what the next one takes', () => {
  it.each([
    ['0', 'unstaked'],
    ['999.999999', 'unstaked'],
    ['1000', 'consumer'],
    ['2499.999999', 'consumer'],
    ['2500', 'workstation'],
    ['5000', 'datacenter'],
    ['10000', 'enterprise'],
    ['24999.999999', 'enterprise'],
    ['25000', 'frontier'],
    ['1000000', 'frontier'],
  ])('%s staked is %s', (staked, tier) => {
    expect(tierNameFor(parseAmount(staked))).toBe(tier)
  })

  it.each([
    ['999.9', {name: 'consumer', minimum: '1000', needed: '0.1', max_concurrent_contracts: 4}],
    ['0', {name: 'consumer', minimum: '1000', needed: '1000', max_concurrent_contracts: 4}],
    ['10000.000001', {name: 'frontier', minimum: '25000', needed: '14999.999999', max_concurrent_contracts: null}],
    ['25000', null],
  ])('with %s staked the next tier is %j', (staked, next) => {
    const summary = summarize(PK, {staked, tier: tierNameFor(parseAmount(staked)), max_concurrent_contracts: 2, unbonding: [], rewards_pending: '0'})
    expect(summary.next_tier).toEqual(next)
  })

  it('adds up the unbonding amounts exactly', () => {
    const summary = summarize(PK, {
      staked: '0',
      tier: 'unstaked',
      max_concurrent_contracts: 2,
      unbonding: [
        {amount: '0.1', release_at: 1},
        {amount: '0.2', release_at: 2},
      ],
      rewards_pending: '0',
    })
    expect(summary.unbonding_total).toBe('0.3')
  })
})
