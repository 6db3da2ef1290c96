import {Writable} from 'node:stream'
import {describe, expect, it} from 'vitest'

import {createLogger, prettyLine} from '../../src/agent/logger.js'

function capture(): {stream: Writable; text: () => string} {
  let text = ''
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString()
      done()
    },
  })
  return {stream, text: () => text}
}

describe('agent logger', () => {
  it('redacts secrets wherever a caller puts them', () => {
    const out = capture()
    const log = createLogger({level: 'debug', format: 'json', stream: out.stream})
    log.info({password: 'hunter2', instance: {sealed_credentials: 'c2VhbGVk'}, nested: {deeper: {secret_key: 'abcd'}}, contract_id: 'c1'}, 'provisioned')
    expect(out.text()).not.toMatch(/hunter2|c2VhbGVk|abcd/)
    expect(out.text()).toContain('"contract_id":"c1"')
    expect(out.text()).toContain('[redacted]')
  })

  it('writes short human lines when asked for pretty output', () => {
    const out = capture()
    createLogger({level: 'info', format: 'pretty', stream: out.stream}).warn({contract_id: 'c1', reason: 'port in use'}, 'provisioning failed')
    expect(out.text()).toMatch(/^\d\d:\d\d:\d\d\.\d{3} WARN {2}provisioning failed {2}contract_id=c1 reason="port in use"\n$/)
    expect(prettyLine('not json')).toBe('not json')
  })
})
