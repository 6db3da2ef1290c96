import {describe, expect, it} from 'vitest'

import {prettyLine} from '../../src/agent/logger.js'
import {failureText, publicHealthDetails} from '../../src/core/failure.js'
import {oneLine, printable} from '../../src/core/printable.js'
import {renderTable} from '../../src/ui/table.js'

/** What a hostile peer writes to take over a terminal: colours, a cleared screen, a new window title, a hidden line. */
const HOSTILE = 'ok\u001b[2J\u001b]0;pwned\u0007 \u009b31m\u202Egnp.exe\r\nroot password: '

describe('printable: what a remote party wrote reaches the terminal as text', () => {
  it('shows every control character, C1 and bidirectional override as ?', () => {
    expect(printable(HOSTILE)).toBe('ok?[2J?]0;pwned? ?31m?gnp.exe??root password: ')
    expect(printable(HOSTILE)).not.toMatch(/[\p{Cc}\u202E]/u)
  })

  it('keeps line feeds only when asked, and bounds the length', () => {
    expect(printable('one\ntwo\u001b', {multiline: true})).toBe('one\ntwo?')
    expect(printable('x'.repeat(300), {max: 10})).toBe(`${'x'.repeat(10)}…`)
  })

  it('oneLine folds a multi-line text to one short line', () => {
    expect(oneLine('TASK ERROR:\n  disk\t\tfull\r\n', 200)).toBe('TASK ERROR: disk full')
    expect(oneLine(HOSTILE)).not.toMatch(/[\p{Cc}\n]/u)
  })

  it('the agent\'s pretty log, tables and failure reports print no control character from a peer', () => {
    const line = prettyLine(JSON.stringify({level: 40, time: 0, msg: `refused ${HOSTILE}`, code: HOSTILE, details: {description: HOSTILE}}))
    expect(line.slice(0, -1)).not.toMatch(/[\p{Cc}\u202E]/u)
    expect(renderTable(['id', 'description'], [['d1', HOSTILE]])).not.toMatch(/(?!\n)[\p{Cc}\u202E]/u)
    expect(failureText('backend_error', HOSTILE)).not.toMatch(/[\p{Cc}\n\u202E]/u)
  })
})

describe('failure reports to the marketplace', () => {
  it('carry a category and the agent\'s own sentence', () => {
    expect(failureText('no_capacity')).toBe('no_capacity: the provider has no room for this machine now')
    expect(failureText('exceeds_offering', 'the contract asks more than the offering: cpu_cores 64 > 8')).toBe('exceeds_offering: the contract asks more than the offering: cpu_cores 64 > 8')
    expect(failureText('request_refused', 'y'.repeat(1000)).length).toBeLessThan(240)
  })

  it('health details keep the state words, not node names or the backend\'s error', () => {
    expect(publicHealthDetails({state: 'RUNNING', nodes: 'gpu-node-07.internal', reason: 'Resources\nmore', guest_agent: 'QEMU guest agent is not running at /var/run/qemu-server/101.qga'})).toEqual({
      state: 'RUNNING',
      reason: 'Resources more',
    })
    expect(publicHealthDetails({error: 'connect ECONNREFUSED 10.0.3.7:8006 (pve-internal-3)'})).toEqual({error: 'the provider could not read the state of the machine'})
  })
})
