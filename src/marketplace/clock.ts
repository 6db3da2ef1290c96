/** Where the server reads the time. Tests pass one they can move forward to expire contracts, locks and unbonding. */
export interface Clock {
  now(): number
}

export const systemClock: Clock = {now: () => Date.now()}
