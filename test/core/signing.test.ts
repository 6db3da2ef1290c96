import {execFileSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import nacl from 'tweetnacl'
import {describe, expect, it} from 'vitest'

import {delegationMessage, signDelegation, verifyDelegation, type AgentPermission} from '../../src/core/delegation.js'
import {fromHex, toHex} from '../../src/core/hex.js'
import {openSealedCredentials, sealCredentials} from '../../src/core/sealing.js'
import {
  canonicalJson,
  fingerprint,
  generateKeyPair,
  hostHeaderOf,
  keyPairFromSeed,
  requestSigningMessage,
  signBytes,
  signRequest,
  signUsageRecord,
  usageRecordMessage,
  verifyHex,
  verifyUsageRecord,
  type RequestToSign,
  type SignedUsageRecord,
} from '../../src/core/signing.js'

const vectors = JSON.parse(readFileSync(new URL('../fixtures/signing-vectors.json', import.meta.url), 'utf8')) as {
  agent_key: {seed: string; public_key: string}
  provider_key: {seed: string; public_key: string}
  requests: {timestamp: number; nonce: string; method: string; host: string; path_and_query: string; body: string; message: string; signature: string}[]
  delegation: {agent_pubkey: string; provider_pubkey: string; permissions: AgentPermission[]; expires_at: number; label: string; message: string; signature: string}
  usage_record: SignedUsageRecord & {message: string}
}

const agent = keyPairFromSeed(fromHex(vectors.agent_key.seed, 32, 'seed'))
const provider = keyPairFromSeed(fromHex(vectors.provider_key.seed, 32, 'seed'))

function requestFromVector(vector: (typeof vectors.requests)[number]): RequestToSign {
  return {timestamp: vector.timestamp, nonce: vector.nonce, method: vector.method, host: vector.host, pathAndQuery: vector.path_and_query, body: vector.body}
}

describe('keys', () => {
  it('derives the public key of a fixed seed exactly as tweetnacl does', () => {
    expect(toHex(agent.publicKey)).toBe(vectors.agent_key.public_key)
    expect(toHex(provider.publicKey)).toBe(vectors.provider_key.public_key)
  })

  it('prints an ssh-style SHA-256 fingerprint', () => {
    expect(fingerprint(agent.publicKey)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/)
    expect(fingerprint(agent.publicKey)).not.toBe(fingerprint(provider.publicKey))
  })

  it('signs byte-identically to tweetnacl for random keys and messages', () => {
    for (let index = 0; index < 20; index++) {
      const pair = generateKeyPair()
      const message = nacl.randomBytes(index * 7)
      const reference = nacl.sign.detached(message, nacl.sign.keyPair.fromSeed(pair.seed).secretKey)
      expect(toHex(signBytes(message, pair.seed))).toBe(toHex(reference))
    }
  })
})

describe('request signing (PROTOCOL §2)', () => {
  it.each(vectors.requests.map((vector, index) => [index, vector] as const))('matches test vector %i byte for byte', (_index, vector) => {
    const request = requestFromVector(vector)
    expect(requestSigningMessage(request)).toBe(vector.message)
    const headers = signRequest(agent, request)
    expect(headers['X-Outpost-Signature']).toBe(vector.signature)
    expect(headers['X-Outpost-Key']).toBe(vectors.agent_key.public_key)
    expect(headers['X-Outpost-Timestamp']).toBe(String(vector.timestamp))
    expect(headers['X-Outpost-Nonce']).toBe(vector.nonce)
    expect(verifyHex(vector.message, vector.signature, vectors.agent_key.public_key)).toBe(true)
  })

  const [post, get] = vectors.requests as [(typeof vectors.requests)[0], (typeof vectors.requests)[0]]
  const tampered: [string, RequestToSign][] = [
    ['method', {...requestFromVector(post), method: 'PUT'}],
    ['host', {...requestFromVector(post), host: '127.0.0.1:8788'}],
    ['path', {...requestFromVector(post), pathAndQuery: post.path_and_query.replace('heartbeat', 'heartbeaT')}],
    ['query', {...requestFromVector(get), pathAndQuery: get.path_and_query.replace('wait=25', 'wait=26')}],
    ['added query', {...requestFromVector(post), pathAndQuery: post.path_and_query + '?x=1'}],
    ['body', {...requestFromVector(post), body: post.body.replace('"active_contracts":0', '"active_contracts":1')}],
    ['timestamp', {...requestFromVector(post), timestamp: post.timestamp + 1}],
    ['nonce', {...requestFromVector(post), nonce: post.nonce.replace(/.$/, '0')}],
  ]
  it.each(tampered)('fails verification when one byte of the %s changes', (_what, request) => {
    expect(verifyHex(requestSigningMessage(request), post.signature, vectors.agent_key.public_key)).toBe(false)
  })

  it('signs the v2 message: the host is its fifth line, lower case; a v1 message (no host line) does not verify', () => {
    expect(post.message.split('\n')).toEqual([
      'outpost-request-v2',
      String(post.timestamp),
      post.nonce,
      'POST',
      '127.0.0.1:8787',
      post.path_and_query,
      '9c704bf4066d03eb6168330261001f418dd75f8c8f1df11a25267ace10c2b971',
    ])
    expect(requestSigningMessage({...requestFromVector(post), host: '127.0.0.1:8787'.toUpperCase()})).toBe(post.message)
    const v1 = ['outpost-request-v1', post.timestamp, post.nonce, 'POST', post.path_and_query, post.message.split('\n')[6]].join('\n')
    expect(verifyHex(v1, toHex(signBytes(v1, agent.seed)), vectors.agent_key.public_key)).toBe(true)
    expect(verifyHex(requestSigningMessage(requestFromVector(post)), toHex(signBytes(v1, agent.seed)), vectors.agent_key.public_key)).toBe(false)
  })

  it('takes the host as fetch sends it: lower case, the port only when not the default', () => {
    expect(hostHeaderOf('http://127.0.0.1:8787/api')).toBe('127.0.0.1:8787')
    expect(hostHeaderOf('https://Market.EXAMPLE:443')).toBe('market.example')
    expect(hostHeaderOf('https://market.example:8443')).toBe('market.example:8443')
    expect(hostHeaderOf('http://[0:0:0:0:0:0:0:1]:8787')).toBe('[::1]:8787')
  })

  // A third implementation: the message's bytes joined here by hand, its body digest and signature by the openssl CLI.
  it('agrees with the openssl command line on a vector built byte by byte', () => {
    const [, , contract] = vectors.requests as [unknown, unknown, (typeof vectors.requests)[0]]
    const scratch = mkdtempSync(join(tmpdir(), 'outpost-openssl-'))
    try {
      writeFileSync(join(scratch, 'body'), contract.body)
      const digest = /([0-9a-f]{64})\s*$/.exec(execFileSync('openssl', ['dgst', '-sha256', join(scratch, 'body')], {encoding: 'utf8'}))?.[1]
      const lines = ['outpost-request-v2', '1795000000456', '0f1e2d3c4b5a69788796a5b4c3d2e1f0', 'POST', '[::1]:8787', '/api/v1/contracts', digest ?? '']
      const message = Buffer.from(lines.join('\n'), 'utf8')
      writeFileSync(join(scratch, 'message'), message)
      // PKCS#8 for an Ed25519 seed: the fixed RFC 8410 prefix, then the 32 seed bytes.
      const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(vectors.agent_key.seed, 'hex')])
      writeFileSync(join(scratch, 'key.pem'), `-----BEGIN PRIVATE KEY-----\n${der.toString('base64')}\n-----END PRIVATE KEY-----\n`)
      const signature = execFileSync('openssl', ['pkeyutl', '-sign', '-rawin', '-inkey', join(scratch, 'key.pem'), '-in', join(scratch, 'message')])
      expect(message.toString('utf8')).toBe(contract.message)
      expect(signature.toString('hex')).toBe(contract.signature)
      expect(requestSigningMessage(requestFromVector(contract))).toBe(message.toString('utf8'))
      expect(signRequest(agent, requestFromVector(contract))['X-Outpost-Signature']).toBe(signature.toString('hex'))
    } finally {
      rmSync(scratch, {recursive: true, force: true})
    }
  })

  it('never throws on malformed signatures or keys', () => {
    expect(verifyHex('m', 'zz', vectors.agent_key.public_key)).toBe(false)
    expect(verifyHex('m', post.signature, 'abc')).toBe(false)
    expect(verifyHex('m', post.signature.toUpperCase(), vectors.agent_key.public_key)).toBe(false)
  })
})

describe('delegations (PROTOCOL §3)', () => {
  const terms = {
    agentPubkey: vectors.delegation.agent_pubkey,
    providerPubkey: vectors.delegation.provider_pubkey,
    permissions: vectors.delegation.permissions,
    expiresAt: vectors.delegation.expires_at,
    label: vectors.delegation.label,
  }

  it('builds the exact text with sorted permissions and signs it like the vector', () => {
    expect(delegationMessage(terms)).toBe(vectors.delegation.message)
    expect(signDelegation(provider, terms)).toBe(vectors.delegation.signature)
    expect(verifyDelegation(terms, vectors.delegation.signature)).toBe(true)
  })

  it('writes "never" for a delegation without expiry', () => {
    expect(delegationMessage({...terms, expiresAt: null}).split('\n')[4]).toBe('never')
  })

  it('refuses a delegation whose permissions, expiry, label or provider changed', () => {
    expect(verifyDelegation({...terms, permissions: [...terms.permissions, 'benchmark']}, vectors.delegation.signature)).toBe(false)
    expect(verifyDelegation({...terms, expiresAt: terms.expiresAt + 1}, vectors.delegation.signature)).toBe(false)
    expect(verifyDelegation({...terms, label: 'host-2'}, vectors.delegation.signature)).toBe(false)
    expect(verifyDelegation({...terms, providerPubkey: vectors.agent_key.public_key}, vectors.delegation.signature)).toBe(false)
  })
})

describe('usage records (PROTOCOL §7)', () => {
  const {message, signature, ...record} = vectors.usage_record

  it('signs the canonical JSON of the record exactly like the vector', () => {
    expect(usageRecordMessage(record)).toBe(message)
    const {signer: _signer, ...unsigned} = record
    const signed = signUsageRecord(agent, unsigned)
    expect(signed.signature).toBe(signature)
    expect(verifyUsageRecord(signed)).toBe(true)
  })

  it('stays verifiable on its own and fails when a field changes', () => {
    expect(verifyUsageRecord({...record, signature})).toBe(true)
    expect(verifyUsageRecord({...record, signature, cpu_core_seconds: record.cpu_core_seconds + 1})).toBe(false)
    expect(verifyUsageRecord({...record, signature, signer: vectors.provider_key.public_key})).toBe(false)
  })

  it('sorts keys at every depth and leaves no spaces', () => {
    expect(canonicalJson({b: 1, a: {d: [1, {z: 'x', y: null}], c: 'é'}})).toBe('{"a":{"c":"é","d":[1,{"y":null,"z":"x"}]},"b":1}')
  })
})

describe('sealed credentials (PROTOCOL §7)', () => {
  it('opens only with the renter key, and the layout is pk ‖ nonce ‖ box', () => {
    const renter = generateKeyPair()
    const credentials = {username: 'root', password: 'correct horse battery staple'}
    const sealed = sealCredentials(credentials, renter.publicKey)
    const bytes = Buffer.from(sealed, 'base64')
    expect(bytes.length).toBe(32 + 24 + nacl.box.overheadLength + JSON.stringify(credentials).length)
    expect(openSealedCredentials(sealed, renter.seed)).toEqual(credentials)
    expect(() => openSealedCredentials(sealed, generateKeyPair().seed)).toThrow(/do not open/)
  })

  it('can be opened by an independent tweetnacl + ed2curve reader', async () => {
    const {default: ed2curve} = await import('ed2curve')
    const renter = nacl.sign.keyPair()
    const sealed = Buffer.from(sealCredentials({k: 'v'}, renter.publicKey), 'base64')
    const opened = nacl.box.open(sealed.subarray(56), sealed.subarray(32, 56), sealed.subarray(0, 32), ed2curve.convertSecretKey(renter.secretKey))
    expect(opened && JSON.parse(Buffer.from(opened).toString('utf8'))).toEqual({k: 'v'})
  })

  it('seals to many keys that an independent ed2curve reader opens, and refuses what is no curve point', async () => {
    const {default: ed2curve} = await import('ed2curve')
    for (let round = 0; round < 50; round++) {
      const renter = nacl.sign.keyPair()
      const sealed = Buffer.from(sealCredentials({round}, renter.publicKey), 'base64')
      const opened = nacl.box.open(sealed.subarray(56), sealed.subarray(32, 56), sealed.subarray(0, 32), ed2curve.convertSecretKey(renter.secretKey))
      expect(opened && JSON.parse(Buffer.from(opened).toString('utf8'))).toEqual({round})
    }
    let notOnCurve = 0
    for (let candidate = 2; candidate < 40; candidate++) {
      const key = new Uint8Array(32)
      key[0] = candidate
      if (ed2curve.convertPublicKey(key)) continue
      notOnCurve++
      expect(() => sealCredentials({k: 'v'}, key)).toThrow(/not a valid Ed25519 point/)
    }
    expect(notOnCurve).toBeGreaterThan(5)
    // y = 1 and y = 0 are small-order points: no shared key to seal with.
    expect(() => sealCredentials({k: 'v'}, Uint8Array.from({length: 32}, (_, index) => (index === 0 ? 1 : 0)))).toThrow(/not a valid Ed25519 point/)
    expect(() => sealCredentials({k: 'v'}, new Uint8Array(32))).toThrow(/not a valid Ed25519 point/)
  })

  it('refuses a truncated box with a clear error', () => {
    expect(() => openSealedCredentials('AAAA', generateKeyPair().seed)).toThrow(/too short/)
  })
})
