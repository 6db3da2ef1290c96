import {execFileSync} from 'node:child_process'
import {X509Certificate} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

export interface SelfSignedCertificate {
  key: string
  cert: string
  /** As Node reports it and Proxmox shows it: `AB:CD:...`. */
  fingerprint256: string
}

/** A fresh self-signed certificate for localhost, as a Proxmox host has after install (node:crypto can't make one). */
export function makeSelfSignedCertificate(commonName = 'pve.test'): SelfSignedCertificate {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-cert-'))
  try {
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
        '-subj', `/CN=${commonName}`, '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      ],
      {stdio: 'pipe'},
    )
    const cert = readFileSync(join(dir, 'cert.pem'), 'utf8')
    return {key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert, fingerprint256: new X509Certificate(cert).fingerprint256}
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}
