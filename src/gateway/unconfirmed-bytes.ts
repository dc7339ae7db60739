/** What a SessionStream tells of the bytes it has emitted and not had confirmed. */
export interface PushAccount {
  add(bytes: number): void;
  release(bytes: number): void;
}

/**
 * The bytes of messages a node has emitted to its sessions and not had confirmed, all sessions together
 * (`switchboard_push_unconfirmed_bytes`): what its clients may not have read yet, counted as the JSON's length
 * (its bytes for ASCII). Each session's is bounded by its window (SessionStream), the node's total by nothing: any
 * number of sessions may stop reading (the README's "Stalled clients, together").
 */
export class UnconfirmedBytes implements PushAccount {
  private used = 0;

  get bytes(): number {
    return this.used;
  }

  add(bytes: number): void {
    this.used += bytes;
  }

  release(bytes: number): void {
    this.used -= bytes;
  }
}

/** For a stream that answers to no count. */
export const UNCOUNTED: PushAccount = { add: () => undefined, release: () => undefined };
