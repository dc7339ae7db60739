/**
 * A log line that an outage would otherwise repeat for every attempt (a login, a reconnect): written at most
 * once per `everyMs`, with how many were left out since the last one.
 */
export class ThrottledLog {
  private lastAt = -Infinity;
  private since = 0;

  constructor(
    private readonly write: (line: string) => void,
    private readonly everyMs: number,
  ) {}

  /** Writes `line`, or counts it when the last one is less than `everyMs` old. */
  note(line: string, now = Date.now()): void {
    if (now - this.lastAt < this.everyMs) {
      this.since++;
      return;
    }
    this.write(this.since > 0 ? `${line} (and ${this.since} more since the last such line)` : line);
    this.lastAt = now;
    this.since = 0;
  }
}
