import {randomBytes} from 'node:crypto'
import {connect, type Socket} from 'node:net'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {generateKeyPair, randomHex, sha256Hex} from '../../src/core/signing.js'
import {send, signedHeaders} from '../support/harness.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

/**
 * The server commits the requests of one event-loop turn together (group commit). What must hold whatever the
 * batching: no answer goes out before what it wrote is committed, and a batch SQLite rolls back (a full disk) turns
 * every answer in it into a 500, never a success whose writes are gone.
 */
let devnet: Devnet

beforeAll(async () => {
  devnet = await startDevnet()
})
afterAll(() => devnet.stop())

interface RawAnswer {
  status: number
}

/** A keep-alive connection whose request bytes can be handed to the kernel at a moment the test chooses. */
async function openConnection(): Promise<Socket> {
  const {hostname, port} = new URL(devnet.endpoint)
  const socket = connect({host: hostname, port: Number(port)})
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  return socket
}

function programRequest(program: Buffer, nonce: string, timestamp: number): Buffer {
  const headers = signedHeaders(devnet, renter, 'POST', '/programs', {rawBody: program, nonce, timestamp})
  const host = new URL(devnet.endpoint).host
  const head = [
    'POST /api/v1/programs HTTP/1.1',
    `host: ${host}`,
    'content-type: application/octet-stream',
    `content-length: ${program.length}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ]
  return Buffer.concat([Buffer.from(head.join('\r\n') + '\r\n\r\n'), program])
}

function answerOf(socket: Socket): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    socket.once('data', (chunk: Buffer) => resolve({status: Number(/^HTTP\/1\.1 (\d{3})/.exec(chunk.toString('latin1'))?.[1] ?? 0)}))
    socket.once('error', reject)
  })
}

/** Blocks this thread, the in-process server's too, so requests written meanwhile are read in one turn. */
function blockEventLoop(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

const renter = generateKeyPair()

describe('group commit', () => {
  it('answers each request of a batch only once the batch commits: one SQLite rolls back fails every request in it (500), and an identical retry is then taken once', async () => {
    const small = randomBytes(200)
    // 16 pages of 4 KiB and more, and well under a loopback socket's buffer: both requests reach the kernel in full
    // while this thread is blocked, so the server reads them in one turn.
    const large = randomBytes(64 * 1024)
    const pages = devnet.server.db.pragma('page_count', {simple: true}) as number
    // Room for the small program, not for the large one: the large one's insert fails SQLITE_FULL, and SQLite rolls
    // back the whole transaction, the small one's writes with it.
    devnet.server.db.pragma(`max_page_count = ${pages + 12}`)
    const [first, second] = [await openConnection(), await openConnection()]
    try {
      const smallNonce = randomHex(16)
      const timestamp = devnet.clock.now()
      const smallRequest = programRequest(small, smallNonce, timestamp)
      await new Promise((resolve) => setTimeout(resolve, 20))
      const answers = [answerOf(first), answerOf(second)]
      first.write(smallRequest)
      second.write(programRequest(large, randomHex(16), timestamp))
      blockEventLoop(100)
      const statuses = (await Promise.all(answers)).map((answer) => answer.status)
      expect(statuses).toEqual([500, 500])
      expect((await send(devnet, 'GET', `/programs/${sha256Hex(small)}`)).status).toBe(404)

      devnet.server.db.pragma('max_page_count = 1073741823')
      const retried = answerOf(first)
      first.write(smallRequest)
      // Its nonce went with the rolled-back batch, so the same signed request is new to the server: taken, once.
      expect((await retried).status).toBe(201)
      const replay = answerOf(first)
      first.write(smallRequest)
      expect((await replay).status).toBe(401)
    } finally {
      first.destroy()
      second.destroy()
    }
  })
})
