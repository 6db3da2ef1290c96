/**
 * Regenerates the zk_proof example from its circuit source: `npm run zk:example` compiles
 * templates/jobs/multiplier/multiplier.circom with circom2 and makes the Groth16 proving key and verification key
 * from the committed Powers of Tau (examples/zk/pot11_final.ptau); `npm run zk:example -- --ptau` makes the Powers of
 * Tau again first (about 40 s). No step uses secret randomness (beacons with a fixed hash), so every run gives the
 * same bytes, which test/executors/zk-example.test.ts checks.
 */
import {copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {execa} from 'execa'
import * as snarkjs from 'snarkjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
export const EXAMPLE_DIR = join(ROOT, 'templates/jobs/multiplier')
export const PTAU = join(ROOT, 'examples/zk/pot11_final.ptau')
/** The beacon of both ceremonies: a fixed, public value, so anyone can redo them. */
const BEACON_HASH = '0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'
const BEACON_ITERATIONS_EXP = 10
const PTAU_POWER = 11

/** The artefacts made from the circuit, by file name (as committed in templates/jobs/multiplier/). */
export type ZkArtefacts = Record<'multiplier.wasm' | 'multiplier.zkey' | 'verification_key.json', string>

/** Powers of Tau for BN254 up to 2^11 constraints: new, one beacon contribution, phase 2 prepared. */
export async function makePtau(target: string, workDir: string): Promise<void> {
  const curve = await snarkjs.curves.getCurveFromName('bn128')
  await snarkjs.powersOfTau.newAccumulator(curve, PTAU_POWER, join(workDir, 'pot_0000.ptau'))
  await snarkjs.powersOfTau.beacon(join(workDir, 'pot_0000.ptau'), join(workDir, 'pot_beacon.ptau'), 'outpost example', BEACON_HASH, BEACON_ITERATIONS_EXP)
  await snarkjs.powersOfTau.preparePhase2(join(workDir, 'pot_beacon.ptau'), target)
}

/** Compiles the circuit and runs the Groth16 setup from `ptau`; the artefacts are written in `workDir`. */
export async function makeCircuitArtefacts(ptau: string, workDir: string): Promise<ZkArtefacts> {
  await execa('circom2', [join(EXAMPLE_DIR, 'multiplier.circom'), '--r1cs', '--wasm', '-o', workDir], {preferLocal: true, localDir: ROOT})
  const r1cs = join(workDir, 'multiplier.r1cs')
  const initialKey = join(workDir, 'multiplier_0000.zkey')
  const zkey = join(workDir, 'multiplier.zkey')
  await snarkjs.zKey.newZKey(r1cs, ptau, initialKey)
  await snarkjs.zKey.beacon(initialKey, zkey, 'outpost example phase 2', BEACON_HASH, BEACON_ITERATIONS_EXP)
  const verificationKey = join(workDir, 'verification_key.json')
  // As `snarkjs zkey export verificationkey` writes it: one space of indentation, no final newline.
  writeFileSync(verificationKey, JSON.stringify(await snarkjs.zKey.exportVerificationKey(zkey), null, 1))
  return {'multiplier.wasm': join(workDir, 'multiplier_js', 'multiplier.wasm'), 'multiplier.zkey': zkey, 'verification_key.json': verificationKey}
}

/** snarkjs's thread pool keeps a process alive until it is stopped. */
export async function stopSnarkjs(): Promise<void> {
  await (globalThis as {curve_bn128?: {terminate(): Promise<void>}}).curve_bn128?.terminate()
}

async function main(): Promise<void> {
  const workDir = mkdtempSync(join(tmpdir(), 'outpost-zk-example-'))
  try {
    if (process.argv.includes('--ptau')) {
      process.stderr.write(`making ${PTAU} (about 40 s)...\n`)
      await makePtau(join(workDir, 'pot11_final.ptau'), workDir)
      copyFileSync(join(workDir, 'pot11_final.ptau'), PTAU)
    }
    process.stderr.write('compiling the circuit and running the Groth16 setup...\n')
    const artefacts = await makeCircuitArtefacts(PTAU, workDir)
    mkdirSync(EXAMPLE_DIR, {recursive: true})
    for (const [name, path] of Object.entries(artefacts)) {
      copyFileSync(path, join(EXAMPLE_DIR, name))
      process.stderr.write(`wrote ${join(EXAMPLE_DIR, name)}\n`)
    }
  } finally {
    rmSync(workDir, {recursive: true, force: true})
    await stopSnarkjs()
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main()
