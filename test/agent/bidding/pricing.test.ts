import {describe, expect, it} from 'vitest'

import {inPeakWindow, quoteOrder, withFloor, type PricingRules} from '../../../src/agent/bidding/pricing.js'
import type {Resources} from '../../../src/agent/bidding/resources.js'

const PRICES = {cpu_core: '0.1', memory_gb: '0.05', storage_gb: '0.001', gpu: '1.2'}
const rules = (overrides: Partial<PricingRules> = {}): PricingRules => ({
  strategy: 'dynamic',
  prices: PRICES,
  floor_price: '0',
  peak: {start_hour: 18, end_hour: 22, multiplier: '1.25'},
  scarcity: {above_percent: 80, multiplier: '1.5'},
  ...overrides,
})
const machine = (overrides: Partial<Resources> = {}): Resources => ({cpuCores: 2, memoryMb: 2048, storageGb: 20, gpuCount: 0, ...overrides})
const utc = (hour: number, minute = 0) => Date.UTC(2026, 10, 21, hour, minute)
const cpuUse = (used: number, capacity = 10) => ({resource: 'cpu cores', used, capacity})

describe('quoteOrder: the price of an order, exactly, to 6 decimals', () => {
  // Off-peak (06:00 UTC) and 10% used unless a case says otherwise.
  const cases: {name: string; rules?: Partial<PricingRules>; need?: Partial<Resources>; at?: number; used?: number; price: string; why?: RegExp}[] = [
    {name: 'base: 2 cores, 2 GiB, 20 GB', price: '0.32', why: /^dynamic: base 0\.32$/},
    {name: 'GPUs are priced per GPU', need: {gpuCount: 2}, price: '2.72'},
    {name: 'memory per GiB of the MiB asked: 1000 MiB at 0.01 is 0.009765625, rounded half up', rules: {prices: {...PRICES, cpu_core: '0', storage_gb: '0', memory_gb: '0.01'}}, need: {memoryMb: 1000}, price: '0.009766'},
    {name: 'exactly half a micro-unit rounds up', rules: {prices: {cpu_core: '0', storage_gb: '0', gpu: '0', memory_gb: '0.000001'}}, need: {memoryMb: 512}, price: '0.000001'},
    {name: 'under half a micro-unit rounds down', rules: {prices: {cpu_core: '0', storage_gb: '0', gpu: '0', memory_gb: '0.000001'}}, need: {memoryMb: 511}, price: '0'},
    {name: 'peak window: inside', at: utc(19, 30), price: '0.4', why: /× peak 1\.25 \(18-22 UTC\) = 0\.4$/},
    {name: 'peak window: its first hour counts', at: utc(18), price: '0.4'},
    {name: 'peak window: its end hour does not', at: utc(22), price: '0.32'},
    {name: 'peak window wrapping midnight: inside', rules: {peak: {start_hour: 22, end_hour: 6, multiplier: '2'}}, at: utc(3), price: '0.64'},
    {name: 'peak window wrapping midnight: outside', rules: {peak: {start_hour: 22, end_hour: 6, multiplier: '2'}}, at: utc(12), price: '0.32'},
    {name: 'no peak window configured', rules: {peak: undefined}, at: utc(19), price: '0.32'},
    {name: 'scarcity: 90% used is above 80%', used: 9, price: '0.48', why: /× scarcity 1\.5 \(cpu cores 90% used > 80%\)/},
    {name: 'scarcity: 80% used is not above 80%', used: 8, price: '0.32'},
    {name: 'peak and scarcity multiply, rounded once at the end', rules: {prices: {cpu_core: '0.333333', memory_gb: '0', storage_gb: '0', gpu: '0'}}, need: {cpuCores: 1}, at: utc(20), used: 9, price: '0.624999'},
    {name: 'one rounding: 3 × 0.000001 × 1.5 = 0.0000045 rounds to 0.000005', rules: {prices: {cpu_core: '0.000001', memory_gb: '0', storage_gb: '0', gpu: '0'}, peak: undefined}, need: {cpuCores: 3}, used: 9, price: '0.000005'},
    {name: 'fixed strategy: no multipliers, in peak hours and scarce', rules: {strategy: 'fixed'}, at: utc(19), used: 10, price: '0.32', why: /^fixed: base 0\.32$/},
    {name: 'floor: the price is raised to it', rules: {floor_price: '0.5'}, price: '0.5', why: /raised to the floor 0\.5$/},
    {name: 'floor: a price above it is kept', rules: {floor_price: '0.3'}, price: '0.32'},
    {name: 'floor applies after the multipliers', rules: {floor_price: '0.45'}, at: utc(19), price: '0.45'},
    {name: 'large amounts stay exact', rules: {prices: {cpu_core: '12345.678901', memory_gb: '0', storage_gb: '0', gpu: '0'}}, need: {cpuCores: 10_000}, price: '123456789.01'},
  ]
  it.each(cases)('$name → $price', ({rules: overrides, need, at, used, price, why}) => {
    const quote = quoteOrder(rules(overrides), {requirements: machine(need), at: at ?? utc(6), utilisation: cpuUse(used ?? 1)})
    expect(quote.price).toBe(price)
    expect(quote.micro).toBe(BigInt(Math.round(Number(price) * 1e6)))
    if (why) expect(quote.why).toMatch(why)
  })

  it('has no scarcity when the utilisation is unknown', () => {
    expect(quoteOrder(rules(), {requirements: machine(), at: utc(6), utilisation: undefined}).price).toBe('0.32')
  })
})

describe('withFloor (every strategy, the script too)', () => {
  it.each([
    {micro: 1_000_000n, floor: '0.5', price: '1'},
    {micro: 100_000n, floor: '0.5', price: '0.5'},
    {micro: 0n, floor: '0', price: '0'},
  ])('$micro micro with floor $floor → $price', ({micro, floor, price}) => {
    expect(withFloor(micro, floor, 'script').price).toBe(price)
  })
})

describe('inPeakWindow', () => {
  it.each([
    [0, 0, 1, true],
    [0, 1, 0, false],
    [23, 22, 2, true],
    [1, 22, 2, true],
    [2, 22, 2, false],
    [21, 22, 2, false],
  ])('hour %i in %i-%i UTC: %s', (hour, start, end, inside) => {
    expect(inPeakWindow(utc(hour, 59), {start_hour: start, end_hour: end})).toBe(inside)
  })
})
