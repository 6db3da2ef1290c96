// Types for the part of quantum-circuit (which ships none) the §12 tests use as an honest simulator.

declare module 'quantum-circuit' {
  export default class QuantumCircuit {
    numQubits: number
    importQASM(qasm: string, done: (errors: unknown[]) => void): void
    run(): void
    measureAllMultishot(shots: number): Record<string, number>
  }
}
