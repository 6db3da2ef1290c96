/** `2026-11-28T20:42:16.000Z (in 7.0 days)` */
export function describeTime(at: number, now = Date.now()): string {
  const deltaMs = at - now
  const hours = Math.abs(deltaMs) / 3_600_000
  const span = hours >= 48 ? `${(hours / 24).toFixed(1)} days` : hours >= 1 ? `${hours.toFixed(1)} h` : `${Math.max(0, Math.round(Math.abs(deltaMs) / 1000))} s`
  return `${new Date(at).toISOString()} (${deltaMs >= 0 ? `in ${span}` : `${span} ago`})`
}
