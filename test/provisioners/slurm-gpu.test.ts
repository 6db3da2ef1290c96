import {describe, expect, it} from 'vitest'

import {gresGpus, gresGpuTypes} from '../../src/provisioners/slurm/commands.js'

describe('SLURM GRES as GPU capacity', () => {
  it('counts the GPUs of sinfo %G and names their types, the models a contract can ask for', () => {
    const gres = 'gpu:a100:4(S:0-1),gpu:h100:2,gpu:1,shard:8'
    expect(gresGpus(gres)).toBe(7)
    expect(gresGpuTypes(gres)).toEqual(['a100', 'h100'])
    expect(gresGpuTypes('(null)')).toEqual([])
  })
})
