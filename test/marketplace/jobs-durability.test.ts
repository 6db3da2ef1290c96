import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {canonicalJson, generateKeyPair} from '../../src/core/signing.js'
import {waitFor} from '../support/marketplace.js'
import {send} from '../support/harness.js'
import {createJob, envelope, GHZ_3, jobBody, jobProvider, lease, simulate, stakeOf, submit, uploadProgram, type LeaseAnswer} from './job-fixtures.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

/** §12 across a restart: a result whose verification the server didn't finish is verified when it starts again. */

const dataDir = mkdtempSync(join(tmpdir(), 'outpost-jobs-durability-'))
afterAll(() => rmSync(dataDir, {recursive: true, force: true}))

describe('§12 results across a restart', () => {
  it('a lease left submitted (the server stopped mid-verification) is verified and paid after the restart; the same envelope gets that verdict', async () => {
    let market: Devnet = await startDevnet({dataDir})
    const provider = await jobProvider(market, {stake: '100'})
    const job = await createJob(market, generateKeyPair(), jobBody('quantum_circuit', await uploadProgram(market, generateKeyPair(), Buffer.from(GHZ_3)), '{"shots": 50, "seed": 2}'))
    const leased = await lease(market, provider, job.job_id)
    const signed = envelope(leased, Buffer.from(JSON.stringify(simulate(GHZ_3, 50))), provider.agent)
    // The state the server writes when it takes a result, before its verification ends: then it stops.
    market.server.db.prepare("UPDATE leases SET status = 'submitted', envelope = ?, submitted_at = ? WHERE lease_id = ?").run(canonicalJson(signed), Date.now(), leased.lease_id)
    await market.server.stop()

    market = await startDevnet({dataDir})
    try {
      const settled = await waitFor(async () => {
        const leases = (await send<{leases: LeaseAnswer[]}>(market, 'GET', `/providers/${provider.pk}/leases`, {key: provider.agent})).body.leases
        return leases.find((item) => item.lease_id === leased.lease_id)?.status === 'accepted'
      }, 30_000, 50)
      expect(settled).toBe(true)
      expect(await stakeOf(market, provider)).toMatchObject({staked: '100', locked: '0', rewards_pending: '2.5'})
      expect((await submit(market, provider, leased.lease_id, signed)).body).toEqual({verdict: 'accepted', reward: '2.5'})
    } finally {
      await market.server.stop()
    }
  })
})
