import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {BULK_MAX_BYTES} from '../../src/marketplace/bench-routes.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

describe('devnet bulk routes for the network benchmark (unsigned, outside PROTOCOL v1)', () => {
  let devnet: Devnet
  beforeAll(async () => {
    devnet = await startDevnet()
  })
  afterAll(() => devnet.stop())

  it('reads and drops an upload, answering how many bytes came', async () => {
    const body = Buffer.alloc(3 * 1024 * 1024, 1)
    const answer = await fetch(`${devnet.endpoint}/api/v1/bench/upload`, {method: 'POST', headers: {'content-type': 'application/octet-stream'}, body})
    expect(answer.status).toBe(200)
    expect(await answer.json()).toEqual({received_bytes: body.length})
  })

  it('sends as many random bytes as asked, up to 16 MiB, and refuses more or a malformed count', async () => {
    const answer = await fetch(`${devnet.endpoint}/api/v1/bench/download?bytes=100000`)
    expect(answer.status).toBe(200)
    expect(answer.headers.get('content-type')).toBe('application/octet-stream')
    const bytes = Buffer.from(await answer.arrayBuffer())
    expect(bytes.length).toBe(100_000)
    // Random, not a pattern a link could compress.
    expect(new Set(bytes.subarray(0, 1000)).size).toBeGreaterThan(200)
    for (const query of [`bytes=${BULK_MAX_BYTES + 1}`, 'bytes=0', 'bytes=ten', 'bytes=1&x=1']) {
      expect((await fetch(`${devnet.endpoint}/api/v1/bench/download?${query}`)).status, query).toBe(400)
    }
  })

  it('refuses an upload over 16 MiB', async () => {
    const answer = await fetch(`${devnet.endpoint}/api/v1/bench/upload`, {method: 'POST', headers: {'content-type': 'application/octet-stream'}, body: Buffer.alloc(BULK_MAX_BYTES + 1)})
    expect(answer.status).toBe(413)
  })
})
