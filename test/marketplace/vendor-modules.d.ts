// Types for the parts of two untyped packages the §12 tests use (the server loads snarkjs in a worker, untyped).

declare module 'snarkjs' {
  type MemFile = {type: 'mem'; data: Uint8Array}
  export const groth16: {
    fullProve(input: Record<string, unknown>, wasm: MemFile, zkey: MemFile): Promise<{proof: unknown; publicSignals: string[]}>
    verify(verificationKey: unknown, publicSignals: string[], proof: unknown): Promise<boolean>
  }
}

declare module 'quantum-circuit' {
  export default class QuantumCircuit {
    numQubits: number
    importQASM(qasm: string, done: (errors: unknown[]) => void): void
    run(): void
    measureAllMultishot(shots: number): Record<string, number>
  }
}
