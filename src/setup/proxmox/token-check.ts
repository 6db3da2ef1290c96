import {ExitCode, UserError, describeError} from '../../core/errors.js'
import {ProxmoxApiError, ProxmoxConnection, TlsFingerprintMismatchError} from '../../provisioners/proxmox/connection.js'
import {ClusterResources, Version} from '../../provisioners/proxmox/schemas.js'

export interface TokenCheckTarget {
  host: string
  port: number
  tokenId: string
  tokenSecret: string
  /** Read from the host over SSH, so the API is trusted by what the operator's SSH session saw. */
  tlsFingerprint: string
  templateVmids: number[]
}

export interface TokenCheckResult {
  pve_version: string
  /** The templates the token can see: proof that its role reaches the VMs, not only that it logs in. */
  templates_visible: number[]
}

/** Thrown when the API answers 401: the token (or its secret) is not accepted. */
export class TokenRefusedError extends UserError {}

/** One API call with the token, pinned to the host's certificate, and a look at the templates through it. */
export async function checkToken(target: TokenCheckTarget): Promise<TokenCheckResult> {
  const connection = new ProxmoxConnection({
    host: target.host,
    port: target.port,
    tokenId: target.tokenId,
    tokenSecret: target.tokenSecret,
    tlsFingerprint: target.tlsFingerprint,
    requestTimeoutMs: 15_000,
  })
  const endpoint = connection.endpoint
  try {
    const version = await connection.call('reading the Proxmox version', Version, (api) => api.version.$get())
    const resources = await connection.call('listing VMs', ClusterResources, (api) => api.cluster.resources.$get({type: 'vm'}))
    const visible = resources.filter((item) => item.template && item.vmid !== undefined && target.templateVmids.includes(item.vmid)).map((item) => item.vmid as number)
    const missing = target.templateVmids.filter((vmid) => !visible.includes(vmid))
    if (missing.length > 0) {
      throw new UserError(`token ${target.tokenId} works but does not see template ${missing.join(', ')} at ${endpoint}`, {
        code: 'token_cannot_see_templates',
        suggestion: 'check the ACL of the token user (pveum acl list) and that --api-host is this node or its cluster',
      })
    }
    return {pve_version: version.version, templates_visible: visible.sort((a, b) => a - b)}
  } catch (error) {
    if (error instanceof UserError) throw error
    if (error instanceof ProxmoxApiError && error.status === 401) {
      throw new TokenRefusedError(`the Proxmox API at ${endpoint} refused token ${target.tokenId}`, {code: 'token_refused', exit: ExitCode.refused, cause: error})
    }
    if (error instanceof TlsFingerprintMismatchError) {
      throw new UserError(`${endpoint} is not the host the SSH session read: ${error.message}`, {
        code: 'tls_fingerprint_mismatch',
        exit: ExitCode.refused,
        suggestion: 'point --api-host/--api-port at the same Proxmox node as --host',
      })
    }
    throw new UserError(`the Proxmox API at ${endpoint} could not be checked: ${describeError(error)}`, {
      code: 'proxmox_unreachable',
      exit: ExitCode.unreachable,
      suggestion: `check that this machine reaches ${endpoint} (--api-host, --api-port, firewall)`,
    })
  } finally {
    await connection.close()
  }
}

/** Whether a secret from an earlier run still works; any failure other than a refusal is an error of its own. */
export async function secretStillWorks(target: TokenCheckTarget): Promise<boolean> {
  try {
    await checkToken({...target, templateVmids: []})
    return true
  } catch (error) {
    if (error instanceof TokenRefusedError) return false
    throw error
  }
}
