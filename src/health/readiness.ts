/** A part the node needs in order to serve; readiness is the AND of all of them. */
export interface ReadinessCheck {
  readonly name: string;
  /** null when ready, else what is wrong. */
  check(): Promise<string | null>;
}

export const READINESS_CHECKS = Symbol('READINESS_CHECKS');
