import {tmpdir} from 'node:os'
import {describe, expect, it} from 'vitest'

import {HandleList, parseFixedProperties, TpmTools, tpmIdentity, tpmUnreachable} from '../../src/attest/tpm-tools.js'
import {AttestationSection} from '../../src/core/config/schema.js'

/** What tpm2-tools 5 prints, recorded from swtpm and from a host without a TPM: the parsers hold to these shapes. */

const PROPERTIES_FIXED = `TPM2_PT_FAMILY_INDICATOR:
  raw: 0x322E3000
  value: "2.0"
TPM2_PT_LEVEL:
  raw: 0
TPM2_PT_REVISION:
  raw: 0xA4
  value: 1.64
TPM2_PT_MANUFACTURER:
  raw: 0x49424D00
  value: "IBM"
TPM2_PT_VENDOR_STRING_1:
  raw: 0x53572020
  value: "SW"
TPM2_PT_VENDOR_STRING_2:
  raw: 0x2054504D
  value: "TPM"
TPM2_PT_VENDOR_STRING_3:
  raw: 0x0
  value: ""
TPM2_PT_VENDOR_TPM_TYPE:
  raw: 0x1
TPM2_PT_FIRMWARE_VERSION_1:
  raw: 0x20191023
TPM2_PT_FIRMWARE_VERSION_2:
  raw: 0x163800
TPM2_PT_PS_TYPE:
  raw: 0x0
  value: "unknown"
`

const NO_DEVICE = `ERROR:tcti:src/tss2-tcti/tcti-device.c:452:Tss2_Tcti_Device_Init() Failed to open specified TCTI device file /dev/tpmrm0: No such file or directory
ERROR:tcti:src/tss2-tcti/tctildr-dl.c:154:tcti_from_file() Could not initialize TCTI file: device
ERROR:tcti:src/tss2-tcti/tctildr.c:428:Tss2_TctiLdr_Initialize_Ex() Failed to instantiate TCTI
ERROR: Could not load tcti, got: "device:/dev/tpmrm0"`

const SWTPM_DOWN = `WARNING:tcti:src/util/io.c:262:socket_connect() Failed to connect to host 127.0.0.1, port 1: errno 111: Connection refused
ERROR:tcti:src/tss2-tcti/tcti-swtpm.c:614:Tss2_Tcti_Swtpm_Init() Cannot connect to swtpm TPM socket
ERROR:tcti:src/tss2-tcti/tctildr.c:428:Tss2_TctiLdr_Initialize_Ex() Failed to instantiate TCTI
ERROR: Could not load tcti, got: "swtpm:host=127.0.0.1,port=1"`

describe('tpm2-tools output parsers', () => {
  it('reads who made the TPM from tpm2_getcap properties-fixed', () => {
    expect(tpmIdentity(PROPERTIES_FIXED)).toEqual({family: '2.0', manufacturer: 'IBM', vendor: 'SW TPM', firmware: '2019102300163800'})
    expect(parseFixedProperties(PROPERTIES_FIXED).get('TPM2_PT_REVISION')).toEqual({raw: 0xa4, value: '1.64'})
  })

  it('refuses a device that is not a TPM 2.0, and output that is not properties', () => {
    expect(() => tpmIdentity(PROPERTIES_FIXED.replace('0x322E3000', '0x312E3200'))).toThrow(/not a TPM 2.0/)
    expect(() => tpmIdentity('hello\nworld')).toThrow(/not a TPM 2.0/)
  })

  it('reads handle lists, empty ones included, and refuses anything else', () => {
    expect(HandleList.parse('- 0x1C00002\n- 0x1C08000\n')).toEqual([0x01c00002, 0x01c08000])
    expect(HandleList.parse('')).toEqual([])
    expect(HandleList.safeParse('0x1C00002\n').success).toBe(false)
    expect(HandleList.safeParse('- 0x1C00002 extra\n').success).toBe(false)
  })
})

describe('errors that say what to do', () => {
  it('a missing device, a refused permission, a stopped software TPM and an unknown TCTI each get their remedy', () => {
    expect(tpmUnreachable('device:/dev/tpmrm0', NO_DEVICE)).toMatchObject({code: 'tpm_unreachable', exit: 5, message: expect.stringContaining('No such file'), suggestion: expect.stringContaining('no TPM at /dev/tpmrm0')})
    expect(tpmUnreachable('device:/dev/tpmrm0', NO_DEVICE.replace('No such file or directory', 'Permission denied')).suggestion).toMatch(/tss group/)
    expect(tpmUnreachable('swtpm:host=127.0.0.1,port=1', SWTPM_DOWN).suggestion).toMatch(/start the software TPM/)
    expect(tpmUnreachable('bogus:x', 'ERROR: Could not load tcti, got: "bogus:x"').suggestion).toMatch(/not a TCTI tpm2-tools knows/)
  })

  it('a tool that is not installed is tpm2_tools_missing, with the package to install', async () => {
    await expect(new TpmTools('device:/dev/null').run('tpm2_outpost_no_such_tool', [], tmpdir())).rejects.toMatchObject({code: 'tpm2_tools_missing', exit: 3, suggestion: expect.stringContaining('apt-get install -y tpm2-tools')})
  })
})

describe('[attestation] config', () => {
  it('defaults to off, the kernel resource manager and PCRs 0-7; refuses a selection or handle it could not use', () => {
    expect(AttestationSection.parse({})).toEqual({enabled: false, tcti: 'device:/dev/tpmrm0', pcrs: 'sha256:0,1,2,3,4,5,6,7', ak_handle: '0x81010002'})
    expect(AttestationSection.parse({pcrs: 'sha256:0,7+sha1:0'}).pcrs).toBe('sha256:0,7+sha1:0')
    for (const pcrs of ['sha256:24', 'sha256:', 'md5:0', 'sha256:0,,1']) expect(AttestationSection.safeParse({pcrs}).success, pcrs).toBe(false)
    expect(AttestationSection.safeParse({ak_handle: '0x01c00002'}).success).toBe(false)
  })
})
