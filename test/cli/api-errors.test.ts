import {describe, expect, it} from 'vitest'

import {explainApiError} from '../../src/cli/api-errors.js'
import {ApiError} from '../../src/core/api/api-error.js'

const PK = 'ab'.repeat(32)

function refusal(status: number, apiCode: string, request: string, said?: string): ApiError {
  return new ApiError({status, apiCode, message: `${request}: ${status} ${apiCode}${said ? `: ${said}` : ''}`})
}

describe('a marketplace refusal, said in words with what to do', () => {
  it('an unregistered provider and an unknown key point at register', () => {
    expect(explainApiError(refusal(404, 'not_found', `GET /providers/${PK}/stake`, 'provider not found'))).toEqual({
      code: 'not_found',
      exit: 1,
      message: `provider abababababab… is not registered on this marketplace (GET /providers/${PK}/stake: 404 not_found)`,
      suggestion: 'run `outpost register --main-key-file <main key>`: it registers the provider and delegates the agent key',
    })
    expect(explainApiError(refusal(401, 'unknown_key', `GET /providers/${PK}/disputes`, 'who are you'))).toMatchObject({exit: 4, suggestion: expect.stringContaining('outpost register')})
  })

  it('a missing thing names the thing and its id; a state conflict keeps the server\'s reason', () => {
    expect(explainApiError(refusal(404, 'not_found', 'GET /disputes/0123', 'dispute not found'))).toMatchObject({
      message: 'the marketplace has no dispute 0123 (GET /disputes/0123: 404 not_found)',
      suggestion: 'check the dispute id: `outpost dispute list` shows yours',
    })
    expect(explainApiError(refusal(409, 'invalid_transition', 'POST /disputes/0123/accept', 'this dispute is already accepted'))).toMatchObject({
      message: 'this dispute is already accepted (POST /disputes/0123/accept: 409 invalid_transition)',
    })
  })

  it('what it does not know keeps the client\'s own words, and no answer at all is left alone', () => {
    const limited = new ApiError({status: 429, apiCode: 'rate_limited', message: 'POST /x: 429 rate_limited: slow down', suggestion: 'wait'})
    expect(explainApiError(limited)).toMatchObject({message: 'POST /x: 429 rate_limited: slow down', suggestion: 'wait'})
    const down = new ApiError({status: 0, apiCode: 'unreachable', message: 'GET /x: cannot reach http://127.0.0.1:9', suggestion: 'check the network'})
    expect(explainApiError(down)).toMatchObject({message: 'GET /x: cannot reach http://127.0.0.1:9', exit: 5})
  })
})
