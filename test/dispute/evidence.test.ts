import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {HealthArchive} from '../../src/agent/health-archive.js'
import {Journal} from '../../src/agent/journal.js'
import {Outbox} from '../../src/agent/outbox.js'
import {archiveUsageRecords} from '../../src/agent/usage-archive.js'
import {usageRecord} from '../../src/agent/usage.js'
import type {Contract} from '../../src/core/api/schemas.js'
import {canonicalJson, generateKeyPair, sha256Hex, verifyUsageRecord, type SignedUsageRecord} from '../../src/core/signing.js'
import {evidenceFromAgentState, evidenceFromFile, MAX_EVIDENCE_ITEMS, mergeDrafts} from '../../src/dispute/evidence.js'

const dirs: string[] = []
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-evidence-'))
  dirs.push(dir)
  return dir
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, {recursive: true, force: true})
})

const agentKey = generateKeyPair()
const INTERVAL = 60_000

function contract(id: string): Contract {
  return {
    contract_id: id,
    offering_id: 'offering-1',
    product_type: 'compute',
    cpu_cores: 2,
    memory_mb: 2048,
    storage_gb: 20,
    gpu_count: 0,
    requester_pubkey: 'cd'.repeat(32),
    ssh_pubkey: 'ssh-ed25519 AAAA renter',
    created_at: 1_700_000_000_000,
    status: 'accepted',
  }
}

function records(of: Contract, count: number): SignedUsageRecord[] {
  return Array.from({length: count}, (_, index) => {
    const alignedStart = 1_700_000_040_000 + index * INTERVAL
    return usageRecord(agentKey, of, {alignedStart, start: alignedStart, end: alignedStart + INTERVAL}, INTERVAL)
  })
}

/** A state dir as the agent leaves it: journal entries, the usage archive, and one report still in the outbox. */
function agentStateDir(of: Contract, archived: SignedUsageRecord[], pending: SignedUsageRecord[]): string {
  const stateDir = tempDir()
  const journal = new Journal(join(stateDir, 'journal.jsonl'))
  journal.append({event: 'provision_started', contract_id: of.contract_id, contract: of}, 1_700_000_001_000)
  journal.append({event: 'instance_ready', contract_id: of.contract_id, external_id: 'outpost-x', adopted: false}, 1_700_000_002_000)
  journal.append({event: 'report_delivered', entry_id: '1', kind: 'provisioning', contract_id: of.contract_id, status: 'provisioned'}, 1_700_000_003_000)
  journal.append({event: 'instance_ready', contract_id: 'ef'.repeat(16), external_id: 'other', adopted: false}, 1_700_000_004_000)
  journal.close()
  archiveUsageRecords(stateDir, archived)
  if (pending.length > 0) new Outbox(stateDir).add({kind: 'usage', records: pending})
  return stateDir
}

describe('--auto evidence from the agent state dir', () => {
  const disputed = contract('ab'.repeat(16))

  it("takes the contract's journal entries and its signed usage records (archive and outbox, once each), each hashed", () => {
    const all = records(disputed, 4)
    // The last record was queued twice (a crash), and one is still in the outbox.
    const stateDir = agentStateDir(disputed, [...all.slice(0, 3), all[2] as SignedUsageRecord], [all[3] as SignedUsageRecord])
    const draft = evidenceFromAgentState(stateDir, disputed.contract_id)
    const journalItems = draft.evidence.filter((item) => item.type === 'agent_journal_entry')
    const usageItems = draft.evidence.filter((item) => item.type === 'usage_record')
    expect(journalItems.map((item) => (item.data as {event: string}).event)).toEqual(['provision_started', 'instance_ready', 'report_delivered'])
    expect(usageItems.map((item) => (item.data as SignedUsageRecord).record_id)).toEqual(all.map((record) => record.record_id))
    for (const item of draft.evidence) expect(item.hash).toBe(sha256Hex(canonicalJson(item.data)))
    for (const item of usageItems) expect(verifyUsageRecord(item.data as SignedUsageRecord)).toBe(true)
    expect(draft.provider_response).toContain('4 signed usage record(s)')
    expect(draft.notes.join('\n')).toMatch(/no health checks for this contract/)
  })

  it('leaves out a record whose signature does not verify, and says so', () => {
    const [good, tampered] = records(disputed, 2) as [SignedUsageRecord, SignedUsageRecord]
    const stateDir = agentStateDir(disputed, [good, {...tampered, cpu_core_seconds: tampered.cpu_core_seconds / 2}], [])
    const draft = evidenceFromAgentState(stateDir, disputed.contract_id)
    expect(draft.evidence.filter((item) => item.type === 'usage_record')).toHaveLength(1)
    expect(draft.notes.join('\n')).toMatch(/1 usage record\(s\) whose signature does not verify/)
  })

  it(`groups records evenly when one item each would pass the ${MAX_EVIDENCE_ITEMS}-item limit`, () => {
    const many = records(disputed, 300)
    const draft = evidenceFromAgentState(agentStateDir(disputed, many, []), disputed.contract_id)
    expect(draft.evidence.length).toBeLessThanOrEqual(MAX_EVIDENCE_ITEMS)
    const grouped = draft.evidence.filter((item) => item.type === 'usage_records').flatMap((item) => (item.data as {records: SignedUsageRecord[]}).records)
    expect(grouped.map((record) => record.record_id)).toEqual(many.map((record) => record.record_id))
  })

  it('refuses a state dir with nothing about the contract', () => {
    expect(() => evidenceFromAgentState(tempDir(), disputed.contract_id)).toThrow(/holds nothing about contract/)
  })
})

describe('--file evidence', () => {
  it('hashes attached files and data, keeps a matching written hash, refuses a wrong one', () => {
    const dir = tempDir()
    mkdirSync(join(dir, 'logs'))
    writeFileSync(join(dir, 'logs', 'syslog.txt'), 'Nov 21 10:00:00 host kernel: all fine\n')
    const data = {uptime_seconds: 86_400, checks: 1440}
    writeFileSync(
      join(dir, 'evidence.json'),
      JSON.stringify({
        provider_response: 'The machine ran the whole period.',
        evidence: [
          {type: 'log', description: 'host syslog', file: 'logs/syslog.txt'},
          {type: 'uptime', description: 'uptime summary', data, hash: sha256Hex(canonicalJson(data))},
          {type: 'external', description: 'status page', url: 'https://status.example/acme', hash: 'aa'.repeat(32)},
        ],
      }),
    )
    const draft = evidenceFromFile(join(dir, 'evidence.json'))
    expect(draft.provider_response).toBe('The machine ran the whole period.')
    expect(draft.evidence).toEqual([
      {type: 'log', description: 'host syslog', hash: sha256Hex('Nov 21 10:00:00 host kernel: all fine\n'), data: {file: 'syslog.txt', size_bytes: 38}},
      {type: 'uptime', description: 'uptime summary', hash: sha256Hex(canonicalJson(data)), data},
      {type: 'external', description: 'status page', hash: 'aa'.repeat(32), url: 'https://status.example/acme'},
    ])

    writeFileSync(join(dir, 'wrong.json'), JSON.stringify({evidence: [{type: 'log', description: 'x', file: 'logs/syslog.txt', hash: 'bb'.repeat(32)}]}))
    expect(() => evidenceFromFile(join(dir, 'wrong.json'))).toThrow(/is not the SHA-256 of its file/)
    writeFileSync(join(dir, 'missing.json'), JSON.stringify({evidence: [{type: 'log', description: 'x', file: 'nope.txt'}]}))
    expect(() => evidenceFromFile(join(dir, 'missing.json'))).toThrow(/no file .*nope\.txt/)
    writeFileSync(join(dir, 'bare.json'), JSON.stringify({evidence: [{type: 'log', description: 'x'}]}))
    expect(() => evidenceFromFile(join(dir, 'bare.json'))).toThrow(/give a file, data or a hash/)
    writeFileSync(join(dir, 'typo.json'), JSON.stringify({evidence: [{type: 'log', description: 'x', hash: 'aa'.repeat(32), fiel: 'a'}]}))
    expect(() => evidenceFromFile(join(dir, 'typo.json'))).toThrow(/evidence\.0: .*fiel/)
    writeFileSync(join(dir, 'broken.json'), '{"evidence": [')
    expect(() => evidenceFromFile(join(dir, 'broken.json'))).toThrow(/cannot read .* as JSON/)
  })

  it('merging refuses more items than the marketplace takes at once', () => {
    const item = {type: 'x', description: 'x', hash: 'aa'.repeat(32)}
    const half = {evidence: Array.from({length: 60}, () => item), notes: []}
    expect(() => mergeDrafts([half, half])).toThrow(/at most 100/)
  })
})

describe('--auto evidence of uptime from the health archive', () => {
  const disputed = contract('cd'.repeat(16))

  it('summarises the archived checks in one item: counts, ratio, longest gap, the checks that failed, a hash of them all', () => {
    const stateDir = agentStateDir(disputed, records(disputed, 1), [])
    const day = Date.UTC(2026, 10, 30, 23, 58)
    const checks = [0, 60, 120, 300, 360].map((seconds, index) => ({
      contract_id: disputed.contract_id,
      status: index === 3 ? ('unhealthy' as const) : ('healthy' as const),
      checked_at: day + seconds * 1000,
      ...(index === 3 ? {details: {reason: 'port closed'}} : {}),
    }))
    // Written in two batches with one check twice (a crash between the write and the send): read once.
    new HealthArchive(stateDir).add(checks.slice(0, 3))
    new HealthArchive(stateDir).add(checks.slice(2))
    const draft = evidenceFromAgentState(stateDir, disputed.contract_id)
    const item = draft.evidence.find((entry) => entry.type === 'health_checks')
    expect(item?.data).toMatchObject({
      contract_id: disputed.contract_id,
      checks: 5,
      by_status: {healthy: 4, unhealthy: 1, unknown: 0},
      healthy_ratio: 0.8,
      longest_gap_seconds: 180,
      days: [
        {day: '2026-11-30', checks: 2, healthy: 2},
        {day: '2026-12-01', checks: 3, healthy: 2},
      ],
      not_healthy: [checks[3]],
      checks_sha256: sha256Hex(canonicalJson(checks)),
    })
    expect(item?.hash).toBe(sha256Hex(canonicalJson(item?.data)))
    expect(item?.description).toContain('80.00% healthy (1 unhealthy, 0 unknown), longest gap between checks 180 s')
    expect(draft.provider_response).toContain('5 health check(s)')
    expect(draft.notes.join('\n')).not.toMatch(/health checks/)
  })

  it('says when there are none', () => {
    const stateDir = agentStateDir(disputed, records(disputed, 1), [])
    expect(evidenceFromAgentState(stateDir, disputed.contract_id).notes.join('\n')).toMatch(/no health checks for this contract/)
  })
})
