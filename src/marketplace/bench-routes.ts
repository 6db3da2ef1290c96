import {randomBytes} from 'node:crypto'
import {z} from 'zod'

import {parseQuery, type Reply, type Route, type RouteRequest} from './routes.js'
import {NoQuery} from './schemas.js'

/**
 * Devnet additions for `outpost benchmark run --type network` (not in PROTOCOL v1, which has no route that moves a
 * large body without signing it): a bulk upload that reads and drops its body, and a bulk download of random bytes,
 * both unsigned, so that upload and download measure the link and not per-request signing and hashing. The address
 * rate limit applies as to every request.
 */
export const BULK_MAX_BYTES = 16 * 1024 * 1024

const DownloadQuery = z.object({bytes: z.coerce.number().int().min(1).max(BULK_MAX_BYTES)}).strict()

export function buildBenchRoutes(): Route[] {
  let payload: Buffer | undefined
  return [
    {
      method: 'POST',
      segments: ['bench', 'upload'],
      access: {kind: 'public'},
      rawBodyLimit: BULK_MAX_BYTES,
      handle: (request: RouteRequest): Reply => {
        parseQuery(NoQuery, request.query)
        return {status: 200, body: {received_bytes: request.rawBody.length}}
      },
    },
    {
      method: 'GET',
      segments: ['bench', 'download'],
      access: {kind: 'public'},
      handle: (request: RouteRequest): Reply => {
        const {bytes} = parseQuery(DownloadQuery, request.query)
        // Random, so that nothing on the way can compress it; made once, on the first download.
        payload ??= randomBytes(BULK_MAX_BYTES)
        return {status: 200, bytes: payload.subarray(0, bytes)}
      },
    },
  ]
}
