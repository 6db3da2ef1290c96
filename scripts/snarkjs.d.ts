/** The parts of snarkjs (which ships no types) that the scripts and tests call. */
declare module 'snarkjs' {
  interface Curve {
    terminate(): Promise<void>
  }
  type Proof = {pi_a: string[]; pi_b: string[][]; pi_c: string[]; protocol: string; curve: string}
  export const curves: {getCurveFromName(name: string): Promise<Curve>}
  export const powersOfTau: {
    newAccumulator(curve: Curve, power: number, file: string): Promise<unknown>
    beacon(oldFile: string, newFile: string, name: string, beaconHash: string, iterationsExp: number): Promise<unknown>
    preparePhase2(oldFile: string, newFile: string): Promise<void>
  }
  export const zKey: {
    newZKey(r1cs: string, ptau: string, zkey: string): Promise<unknown>
    beacon(oldFile: string, newFile: string, name: string, beaconHash: string, iterationsExp: number): Promise<unknown>
    exportVerificationKey(zkey: string): Promise<Record<string, unknown>>
  }
  export const groth16: {
    verify(verificationKey: Record<string, unknown>, publicSignals: string[], proof: Proof): Promise<boolean>
    fullProve(input: Record<string, unknown>, wasm: Uint8Array | string, zkey: Uint8Array | string): Promise<{proof: Proof; publicSignals: string[]}>
  }
}
