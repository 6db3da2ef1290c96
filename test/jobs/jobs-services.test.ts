import {appendFileSync, mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'

import type {Lease} from '../../src/core/api/job-schemas.js'
import {archiveResultEnvelope, readResultEnvelopes, resultArchiveDir} from '../../src/core/result-archive.js'
import {generateKeyPair, sha256Hex, signResultEnvelope} from '../../src/core/signing.js'
import {leaseTotals, slaLines} from '../../src/jobs/leases.js'
import {checkOutput, exampleJob, guessKind} from '../../src/jobs/run-local.js'

const dirs: string[] = []
afterEach(() => dirs.splice(0).forEach((dir) => rmSync(dir, {recursive: true, force: true})))

const JOB = 'a'.repeat(32)

function envelope(leaseId: string, output = Buffer.from('{"counts":{"0":1}}')) {
  return signResultEnvelope(generateKeyPair(), {
    job_id: JOB,
    lease_id: leaseId,
    program_digest: 'b'.repeat(64),
    input_digest: 'c'.repeat(64),
    output: {digest: sha256Hex(output), size_bytes: output.length, data_b64: output.toString('base64')},
    started_at: 1,
    finished_at: 2,
  })
}

function lease(status: Lease['status'], extra: Partial<Lease> = {}): Lease {
  return {lease_id: 'd'.repeat(32), job_id: JOB, agent_pubkey: 'e'.repeat(64), status, leased_at: 1, expires_at: 2, deadline: 3, ...extra}
}

describe('the result archive (core/result-archive.ts)', () => {
  it('keeps each envelope of a job once, and reads back only those that verify', () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'outpost-results-'))
    dirs.push(stateDir)
    const first = envelope('1'.repeat(32))
    const second = envelope('2'.repeat(32))
    archiveResultEnvelope(stateDir, first)
    archiveResultEnvelope(stateDir, first)
    archiveResultEnvelope(stateDir, second)
    const file = join(resultArchiveDir(stateDir), `${JOB}.jsonl`)
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(2)
    appendFileSync(file, JSON.stringify({...second, output: {...second.output, size_bytes: 1}}) + '\nnot json\n')
    expect(readResultEnvelopes(stateDir, JOB)).toEqual({envelopes: [first, second], skipped: 2})
    expect(readResultEnvelopes(stateDir, 'f'.repeat(32))).toEqual({envelopes: [], skipped: 0})
    expect(() => readResultEnvelopes(stateDir, '../x')).toThrow('not a job id')
  })
})

describe('jobs services', () => {
  it('totals: rewards of accepted leases, collateral forfeited, counts in the lease life order', () => {
    const totals = leaseTotals([lease('rejected', {forfeited: '4'}), lease('accepted', {reward: '1.5'}), lease('expired', {forfeited: '0.5'}), lease('accepted', {reward: '0.75'})])
    expect(totals).toEqual({leases: 4, by_status: {accepted: 2, rejected: 1, expired: 1}, rewards: '2.25', forfeited: '4.5'})
    expect(Object.keys(totals.by_status)).toEqual(['accepted', 'rejected', 'expired'])
  })

  it('SLA lines say what is not known yet', () => {
    const lines = slaLines({provider_pubkey: 'p', days: 7, leases: 0, accepted: 0, rejected: 0, expired: 0, failed: 0, on_time_percent: null, latency_ms: {p50: null, p95: null}, traps: {passed: 0, failed: 0}})
    expect(lines).toContain('on time       - (no results yet)')
    expect(lines).toContain('latency       p50 -, p95 - (lease to result)')
  })

  it('tells a program\'s kind from its bytes', () => {
    expect(guessKind(exampleJob('multiplier').program)).toBe('zk_proof')
    expect(guessKind(exampleJob('ghz').program)).toBe('quantum_circuit')
    expect(guessKind(Buffer.from('{"image": "busybox", "command": ["true"]}'))).toBe('container')
    expect(guessKind(Buffer.from('hello'))).toBeUndefined()
  })

  it('checks an output for its kind, and names what is wrong', () => {
    expect(checkOutput('quantum_circuit', Buffer.from('{"counts":{"00":3,"11":5}}'), Buffer.from('{"shots":8,"seed":1}'))).toBe('8 shots over 2 outcome(s): 11×5, 00×3')
    expect(() => checkOutput('quantum_circuit', Buffer.from('{"counts":{"00":3}}'), Buffer.from('{"shots":8,"seed":1}'))).toThrow('the counts sum to 3, not the 8 shots')
    expect(() => checkOutput('zk_proof', Buffer.from('{"proof":{}}'), Buffer.alloc(0))).toThrow('expected {proof, public_signals}')
    expect(checkOutput('container', Buffer.from('abc'), Buffer.alloc(0))).toBe('3 bytes left at /output')
  })
})
