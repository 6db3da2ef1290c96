import {readFileSync, writeFileSync} from 'node:fs'
import {delimiter, dirname, join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {FAKE_NVIDIA_SMI} from '../gpu/fake-nvidia-smi.js'
import {parseJson, runCli, tempConfigDir} from '../support/cli.js'

/** init and doctor with GPUs (built CLI; the fake nvidia-smi first on the PATH, playing the machine named). */

interface DoctorJson {
  ok: boolean
  checks: {name: string; status: string; message: string; remedy?: string}[]
}

const onPath = (machine: string) => ({PATH: `${dirname(FAKE_NVIDIA_SMI)}${delimiter}${process.env.PATH ?? ''}`, FAKE_NVIDIA_SMI: machine})
const gpuLine = (json: DoctorJson) => json.checks.find((check) => check.name === 'gpu')

describe('outpost init and doctor on a GPU host (built CLI)', () => {
  it('init suggests a GPU offering per model from nvidia-smi; doctor shows the GPUs', async () => {
    const dir = tempConfigDir()
    const env = {OUTPOST_CONFIG_DIR: dir, ...onPath('eight')}
    const init = await runCli(['init', '--json'], {env})
    expect(init.exitCode, init.stderr).toBe(0)
    const result = parseJson<{gpu: {found: string; suggested_offerings: string[]}; next_steps: string[]}>(init)
    expect(result.gpu).toEqual({found: '8 × NVIDIA A100-SXM4-80GB (81920 MiB), driver 535.183.01', suggested_offerings: ['gpu-1x-a100-sxm4-80gb']})
    expect(result.next_steps.join('\n')).toContain('the config suggests gpu-1x-a100-sxm4-80gb (commented out)')
    const config = readFileSync(join(dir, 'outpost.toml'), 'utf8')
    expect(config).toContain('# NVIDIA A100-SXM4-80GB: 8 on this host (nvidia-smi)')
    expect(config).toContain('# name = "gpu-1x-a100-sxm4-80gb"\n# product_type = "gpu"')

    const doctor = parseJson<DoctorJson>(await runCli(['doctor', '--json'], {env}))
    expect(gpuLine(doctor)).toEqual({name: 'gpu', status: 'pass', message: '8 × NVIDIA A100-SXM4-80GB (81920 MiB), driver 535.183.01'})

    // Uncommented, the suggested offering is a valid one.
    const suggestion = config.slice(config.indexOf("# GPU offerings for this host's GPUs")).split('\n').filter((line) => /^# (\[\[offerings\]\]|\w+ = )/.test(line))
    const uncommented = suggestion.map((line) => line.slice(2).replace('"<your price>"', '"2.5"')).join('\n')
    writeFileSync(join(dir, 'outpost.toml'), `${config}\n${uncommented}\n`)
    expect((await runCli(['doctor', '--json'], {env})).exitCode).toBe(0)
  })

  it('a failing driver is a warning on a host that sells no GPU, a failure on one that does', async () => {
    const dir = tempConfigDir()
    const env = {OUTPOST_CONFIG_DIR: dir, ...onPath('unloaded')}
    const init = parseJson<{gpu: {found: string; suggested_offerings: string[]}}>(await runCli(['init', '--json'], {env}))
    expect(init.gpu.found).toMatch(/^GPUs unknown: nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver/)
    expect(init.gpu.suggested_offerings).toEqual([])
    const warned = await runCli(['doctor', '--json'], {env})
    expect(warned.exitCode).toBe(0)
    expect(gpuLine(parseJson<DoctorJson>(warned))).toMatchObject({status: 'warn', remedy: expect.stringContaining('nvidia-smi')})

    const config = join(dir, 'outpost.toml')
    writeFileSync(config, readFileSync(config, 'utf8') + '\n[[offerings]]\nname = "gpu-1x"\nproduct_type = "gpu"\ncpu_cores = 8\nmemory_mb = 65536\nstorage_gb = 100\ngpu_count = 1\nprice_per_hour = "2"\n')
    const failed = await runCli(['doctor', '--json'], {env})
    expect(failed.exitCode).not.toBe(0)
    expect(gpuLine(parseJson<DoctorJson>(failed))).toMatchObject({status: 'fail'})
  })

  it('docker: an offering selling more GPUs per machine than [gpu] hands out fails, with what is handed out', async () => {
    const dir = tempConfigDir()
    const env = {OUTPOST_CONFIG_DIR: dir, ...onPath('mig')}
    expect((await runCli(['init'], {env})).exitCode).toBe(0)
    const config = join(dir, 'outpost.toml')
    const text = readFileSync(config, 'utf8').replace('type = "local"', 'type = "docker"\n\n[provisioner.docker]\nimage = "outpost-test/busybox:local"\nsocket = "/nonexistent/docker.sock"')
    writeFileSync(config, `${text}\n[[offerings]]\nname = "gpu-2x"\nproduct_type = "gpu"\ncpu_cores = 8\nmemory_mb = 65536\nstorage_gb = 100\ngpu_count = 2\nprice_per_hour = "2"\n`)
    const doctor = parseJson<DoctorJson>(await runCli(['doctor', '--json'], {env}))
    expect(gpuLine(doctor)).toMatchObject({
      status: 'fail',
      message: expect.stringMatching(/^an offering sells 2 GPUs per machine and this host hands out 1: .*handed out: 1 \(NVIDIA A100-SXM4-80GB\); GPU 0 has MIG mode on and is not handed out/),
    })
    writeFileSync(config, `${readFileSync(config, 'utf8')}\n[gpu]\nmig = true\n`)
    expect(gpuLine(parseJson<DoctorJson>(await runCli(['doctor', '--json'], {env})))).toMatchObject({status: 'pass', message: expect.stringContaining('handed out: 0 MIG 0 (NVIDIA A100-SXM4-80GB MIG 3g.40gb), 0 MIG 1')})
  })
})
