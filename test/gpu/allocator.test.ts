import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {journalAllocationLog} from '../../src/agent/gpus.js'
import {Journal, journalState, readJournal} from '../../src/agent/journal.js'
import {GpuAllocator, GpuShortageError, type AllocationLog, type GpuUnit} from '../../src/gpu/allocator.js'

const dir = mkdtempSync(join(tmpdir(), 'outpost-gpu-allocator-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))

const h100 = (n: number): GpuUnit => ({id: `GPU-h100-${n}`, model: 'h100'})
const a10 = (n: number): GpuUnit => ({id: `GPU-a10-${n}`, model: 'A10'})
const UNITS = [h100(0), h100(1), h100(2), a10(0)]

function memoryLog(): AllocationLog & {events: string[]} {
  const events: string[] = []
  return {events, allocated: (holder, ids) => events.push(`allocated ${holder} ${ids.join(',')}`), released: (holder) => events.push(`released ${holder}`)}
}

function shortage(run: () => unknown): GpuShortageError {
  try {
    run()
  } catch (error) {
    if (error instanceof GpuShortageError) return error
    throw error
  }
  throw new Error('expected a GpuShortageError')
}

describe('GpuAllocator', () => {
  it('hands out free devices, logs before it returns them, and gives a holder its own again', () => {
    const log = memoryLog()
    const allocator = new GpuAllocator(UNITS, new Map(), log)
    expect(allocator.allocate('contract:a', {count: 2}).map((unit) => unit.id)).toEqual(['GPU-h100-0', 'GPU-h100-1'])
    expect(log.events).toEqual(['allocated contract:a GPU-h100-0,GPU-h100-1'])
    expect(allocator.allocate('contract:a', {count: 2}).map((unit) => unit.id)).toEqual(['GPU-h100-0', 'GPU-h100-1'])
    expect(log.events).toHaveLength(1)
    expect(allocator.holderOf('GPU-h100-1')).toBe('contract:a')
    expect(allocator.free()).toEqual({count: 2, models: ['A10', 'h100']})
    expect(allocator.total()).toEqual({count: 4, models: ['A10', 'h100']})
  })

  it('never gives a device to two holders: a busy host says who holds them, and it may free up', () => {
    const allocator = new GpuAllocator(UNITS, new Map(), memoryLog())
    allocator.allocate('contract:a', {count: 2, model: 'H100'})
    allocator.allocate('job:b', {count: 1})
    const busy = shortage(() => allocator.allocate('contract:c', {count: 1, model: 'h100'}))
    expect(busy.permanent).toBe(false)
    expect(busy.message).toBe('1 GPU of model h100 asked for: 0 of 3 free, the others held by contract:a, job:b')
    expect(allocator.allocate('contract:d', {count: 1}).map((unit) => unit.id)).toEqual(['GPU-a10-0'])
    expect(allocator.release('contract:a')).toBe(true)
    expect(allocator.release('contract:a')).toBe(false)
    expect(allocator.allocate('contract:c', {count: 1, model: 'h100'}).map((unit) => unit.id)).toEqual(['GPU-h100-0'])
  })

  it('more devices, or a model, than the host has is a permanent shortage', () => {
    const allocator = new GpuAllocator(UNITS, new Map(), memoryLog())
    const many = shortage(() => allocator.allocate('contract:a', {count: 5}))
    expect(many.permanent).toBe(true)
    expect(many.message).toBe('5 GPUs asked for: this host has 4 (1 × A10, 3 × h100)')
    expect(shortage(() => allocator.allocate('contract:a', {count: 1, model: 'b200'})).permanent).toBe(true)
    const none = shortage(() => new GpuAllocator([], new Map(), memoryLog()).allocate('contract:a', {count: 1}))
    expect(none.message).toBe('1 GPU asked for: this host hands out no GPU')
  })

  it('after a restart the journal keeps who holds what: nothing is handed out twice, a release is kept too', () => {
    const path = join(dir, 'restart.jsonl')
    const first = new Journal(path)
    const before = new GpuAllocator(UNITS, new Map(), journalAllocationLog(first))
    before.allocate('contract:a', {count: 1})
    before.allocate('contract:b', {count: 2, model: 'h100'})
    before.allocate('job:c', {count: 1, model: 'A10'})
    before.release('job:c')
    first.close()

    const state = journalState(readJournal(path).entries)
    expect(state.gpus).toEqual(
      new Map([
        ['contract:a', ['GPU-h100-0']],
        ['contract:b', ['GPU-h100-1', 'GPU-h100-2']],
      ]),
    )
    const second = new Journal(path)
    const after = new GpuAllocator(UNITS, state.gpus, journalAllocationLog(second))
    expect(after.heldBy('contract:b')?.map((unit) => unit.id)).toEqual(['GPU-h100-1', 'GPU-h100-2'])
    expect(after.free()).toEqual({count: 1, models: ['A10']})
    expect(shortage(() => after.allocate('contract:d', {count: 1, model: 'h100'})).permanent).toBe(false)
    expect(after.allocate('contract:d', {count: 1}).map((unit) => unit.id)).toEqual(['GPU-a10-0'])
    second.close()
  })

  it('a device held before a restart and no longer listed stays held, so it is not handed out if it comes back', () => {
    const allocator = new GpuAllocator([h100(1)], new Map([['contract:a', ['GPU-h100-0']]]), memoryLog())
    expect(allocator.holderOf('GPU-h100-0')).toBe('contract:a')
    expect(allocator.heldBy('contract:a')).toEqual([{id: 'GPU-h100-0', model: 'unknown'}])
    expect(allocator.free().count).toBe(1)
  })
})
