import {ExitCode, UserError} from '../errors.js'

const LOOPBACK_NAMES = new Set(['localhost', '[::1]'])

/** 127.0.0.0/8, ::1 and localhost: addresses that never leave this machine. */
export function isLoopbackHost(hostname: string): boolean {
  const name = hostname.toLowerCase()
  if (LOOPBACK_NAMES.has(name)) return true
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name)
}

/**
 * The endpoint as a URL, refusing what a signed client must not talk to: anything but http(s), and `http://` to a
 * host that is not loopback unless insecure HTTP is explicitly allowed.
 */
export function checkEndpoint(endpoint: string, allowInsecureHttp = false): URL {
  let url: URL
  try {
    url = new URL(endpoint)
  } catch {
    throw new UserError('the marketplace endpoint is not a URL', {code: 'invalid_endpoint', exit: ExitCode.config, suggestion: 'set [marketplace] endpoint to an https:// URL'})
  }
  if (url.protocol === 'https:') return url
  if (url.protocol !== 'http:') {
    throw new UserError(`the marketplace endpoint ${url.origin} is not http(s)`, {code: 'invalid_endpoint', exit: ExitCode.config, suggestion: 'set [marketplace] endpoint to an https:// URL'})
  }
  if (isLoopbackHost(url.hostname) || allowInsecureHttp) return url
  throw new UserError(`refusing to send signed requests to ${url.origin} over plain HTTP`, {
    code: 'insecure_endpoint',
    exit: ExitCode.config,
    suggestion: 'use the https:// endpoint, or on a network you trust set [marketplace] allow_insecure_http = true (OUTPOST_MARKETPLACE_ALLOW_INSECURE_HTTP, --allow-insecure-http)',
  })
}
