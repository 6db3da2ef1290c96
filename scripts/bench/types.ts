/** One figure printed by `npm run bench`. Ratios against a reference measured in the same run go in `ratio`. */
export interface BenchRow {
  group: string
  name: string
  value: number
  unit: string
  /** value divided by a reference figure measured in the same run. */
  ratio?: number
  /** What the ratio is against, or the target. */
  note?: string
}

export type BenchSection = () => Promise<BenchRow[]>
