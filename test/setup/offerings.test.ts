import {describe, expect, it} from 'vitest'

import {sizeOfferings} from '../../src/setup/offerings.js'
import {checkEndpoint, parseOfferingSizes} from '../../src/setup/init-answers.js'

describe('offerings sized from a capacity', () => {
  it('a quarter, half and all of what the host can spare, priced by the share of its cores', () => {
    const offerings = sizeOfferings({cpuCores: 17, memoryMb: 65_536 + 1024, storageGb: 1000, gpuCount: 0}, '0.02')
    expect(offerings.map(({name, cpu_cores, memory_mb, storage_gb, price_per_hour}) => ({name, cpu_cores, memory_mb, storage_gb, price_per_hour}))).toEqual([
      {name: 'small', cpu_cores: 4, memory_mb: 16_384, storage_gb: 225, price_per_hour: '0.08'},
      {name: 'medium', cpu_cores: 8, memory_mb: 32_768, storage_gb: 450, price_per_hour: '0.16'},
      {name: 'large', cpu_cores: 16, memory_mb: 65_536, storage_gb: 900, price_per_hour: '0.32'},
    ])
    expect(offerings.every((offering) => offering.product_type === 'compute' && offering.gpu_count === 0)).toBe(true)
  })

  it('a small host gets what fits, once: sizes that come out the same are offered once, and nothing is free', () => {
    const offerings = sizeOfferings({cpuCores: 1, memoryMb: 1024, storageGb: 4, gpuCount: 0}, '0.000001')
    expect(offerings).toHaveLength(1)
    expect(offerings[0]).toMatchObject({name: 'small', cpu_cores: 1, memory_mb: 512, storage_gb: 3, price_per_hour: '0.000001'})
  })

  it('the answers are checked: sizes, endpoints (no scheme, /api/v1)', () => {
    expect(parseOfferingSizes('all')).toEqual(['small', 'medium', 'large'])
    expect(parseOfferingSizes('none')).toEqual([])
    expect(parseOfferingSizes('large, small,large')).toEqual(['large', 'small'])
    expect(() => parseOfferingSizes('tiny')).toThrow(/unknown size tiny/)
    expect(checkEndpoint('https://api.example.net/')).toBe('https://api.example.net')
    expect(() => checkEndpoint('api.example.net')).toThrow(expect.objectContaining({suggestion: 'pass --endpoint https://api.example.net', exit: 2}))
    expect(() => checkEndpoint('http://127.0.0.1:8787/api/v1/')).toThrow(expect.objectContaining({suggestion: 'pass --endpoint http://127.0.0.1:8787'}))
  })
})
