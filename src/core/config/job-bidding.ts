import {z} from 'zod'

import {isAmount} from '../decimal.js'

/**
 * `[jobs.bidding]`: how the agent bids in §13 sealed-bid auctions for jobs. A fragment of the `[jobs]` section: the
 * provider's cost model per job kind, the filters a job must pass before it is priced, and the strategy.
 */

const amount = z.string().refine(isAmount, 'expected a decimal string with at most 6 fractional digits, like "0.25"')
/** Prices per unit of work are small (a constraint costs far less than a micro-token), so they take 18 digits. */
export const UNIT_PRICE_PATTERN = /^(0|[1-9]\d{0,29})(\.\d{1,18})?$/
const unitPrice = z.string().regex(UNIT_PRICE_PATTERN, 'expected a decimal string with at most 18 fractional digits, like "0.0000025"')
const digest = z.string().regex(/^[0-9a-f]{64}$/, 'expected a program digest: 64 lowercase hex characters (sha256)')

/** What one unit of work is, per kind (the README and the decision line say it in these words). */
export const WORK_UNITS = {
  zk_proof: 'constraint',
  quantum_circuit: 'shot × qubit × layer',
  container: 'CPU-second',
} as const

const kindPricing = (unit: string) =>
  z.strictObject({
    price_per_unit: unitPrice.describe(`Price per ${unit}, a decimal string (up to 18 fractional digits)`),
    floor: amount.default('0').describe('No fee goes below this, whatever the work'),
    margin: amount.default('0').describe('Added on top of the cost, as a fraction: "0.2" bids the cost plus 20%'),
  })

export const JobBiddingZkSection = kindPricing('constraint (the proving key\'s domain: the constraint count rounded up to a power of two)')
export const JobBiddingQuantumSection = kindPricing('shot × qubit × layer (shots × circuit width × depth)')
export const JobBiddingContainerSection = kindPricing('CPU-second (estimated run time × the job\'s cpu_cores)')
export type KindPricing = z.infer<typeof JobBiddingZkSection>

export const JobBiddingScriptSection = z.strictObject({
  command: z.string().min(1).describe('Executable called as `<command> bid` with the job as JSON on stdin; prints {"fee": "1.25"} or {"decline": "why"}; relative to this config file'),
  timeout_seconds: z.number().int().min(1).max(300).default(5).describe('Longest the script may take to answer; it is killed after'),
})

export const JobBiddingSection = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Bid in sealed-bid auctions for jobs (PROTOCOL §13) while `outpost run` runs'),
    strategy: z
      .enum(['builtin', 'script'])
      .default('builtin')
      .describe('builtin: the price per unit of work of the kind, plus the margin; script: the operator program answers a fee or a decline'),
    max_concurrent: z
      .number()
      .int()
      .min(1)
      .max(256)
      .default(2)
      .describe('Most jobs won and not done at once, outstanding commitments included (a commitment may win)'),
    deadline_margin_seconds: z
      .number()
      .int()
      .min(0)
      .max(86_400)
      .default(30)
      .describe('Slack kept before a deadline: a job is bid on only when its estimated run time plus this fits before its deadline'),
    max_input_bytes: z.number().int().min(0).default(16 * 1024 * 1024).describe('Largest input bid on, in bytes'),
    program_allow: z.array(digest).default([]).describe('Bid only on jobs of these programs, by digest (empty: any)'),
    program_deny: z.array(digest).default([]).describe('Never bid on jobs of these programs, by digest'),
    zk_proof: JobBiddingZkSection.optional().describe('Cost model of zk_proof jobs (without it, none is bid on by the builtin strategy)'),
    quantum_circuit: JobBiddingQuantumSection.optional().describe('Cost model of quantum_circuit jobs'),
    container: JobBiddingContainerSection.optional().describe('Cost model of container jobs'),
    script: JobBiddingScriptSection.optional().describe('The pricing program (strategy = "script")'),
  })
  .superRefine((section, context) => {
    if (section.strategy === 'script' && section.script === undefined) {
      context.addIssue({code: 'custom', path: ['script'], message: '[jobs.bidding.script] is required when strategy = "script"'})
    }
  })
export type JobBiddingConfig = z.output<typeof JobBiddingSection>
