/** The kinds of job PROTOCOL §12 names; apart from the job schemas so that reading a config doesn't build them. */
export const JOB_KINDS = ['zk_proof', 'quantum_circuit', 'container'] as const
export type JobKind = (typeof JOB_KINDS)[number]
