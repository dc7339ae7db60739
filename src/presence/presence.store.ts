import { SessionPolicy } from '../config/config';

/** One Socket.IO connection of a user, on some node. */
export interface SessionRef {
  readonly nodeId: string;
  readonly sessionId: string;
}

/** A session as both stores key it in a user's presence: `nodeId|sessionId` (a node id has no `|`). */
export function memberOf(nodeId: string, sessionId: string): string {
  return `${nodeId}|${sessionId}`;
}

/** The session of a member (memberOf). */
export function parseMember(member: string): SessionRef {
  const bar = member.indexOf('|');
  return { nodeId: member.slice(0, bar), sessionId: member.slice(bar + 1) };
}

export interface LocalSession {
  readonly userId: string;
  readonly sessionId: string;
}

export interface UserPresence {
  readonly userId: string;
  readonly online: boolean;
  /** Epoch ms when the user's last session ended; null while online or for a user never seen. */
  readonly lastSeen: number | null;
  readonly sessions: readonly SessionRef[];
}

export interface ClusterPresence {
  readonly online: number;
  readonly sessions: number;
  readonly nodes: ReadonlyArray<{ readonly nodeId: string; readonly sessions: number }>;
}

/** Another live node holds the NODE_ID this node was asked to use. */
export class NodeIdInUseError extends Error {
  override readonly name = 'NodeIdInUseError';
  constructor(readonly nodeId: string) {
    super(`NODE_ID "${nodeId}" is held by another live node of this cluster`);
  }
}

/** This node's lease expired (it was paused or cut off) and its presence writes are refused. */
export class LeaseLostError extends Error {
  override readonly name = 'LeaseLostError';
  constructor(readonly nodeId: string) {
    super(`node lease of "${nodeId}" was lost`);
  }
}

/**
 * Which node holds which user's sessions.
 *
 * The contract both implementations keep (tested by test/contracts/presence-store.contract.ts against each):
 * - A node holds a lease while it renews it; a lease not renewed within the lease time disappears, and from
 *   then on that node's sessions are skipped by every lookup, even while their own entries have TTL left.
 * - A session entry not refreshed within the presence TTL disappears.
 * - Writes of sessions are fenced by the lease: a node whose lease expired gets LeaseLostError and must
 *   re-acquire before writing again, so a paused node cannot overwrite newer presence.
 * - `lastSeen` is when the user's last session ended (or, for a node that died, its last heartbeat).
 * - `addSession` with policy `single` is atomic across the cluster: it removes every other live session of
 *   the user and returns them, so of two simultaneous logins exactly one stays.
 * - `refreshSessions` extends only entries that still exist (a session removed by a newer login stays
 *   removed); `restoreSessions` writes them whole (after the store lost them).
 */
export abstract class PresenceStore {
  /** Claims the node's lease. Waits up to one lease time for a dead holder's lease to lapse; throws NodeIdInUseError if a live node renews it. */
  abstract acquireLease(nodeId: string): Promise<void>;
  /** Extends the lease; false when it had already been lost. */
  abstract renewLease(nodeId: string): Promise<boolean>;
  abstract releaseLease(nodeId: string): Promise<void>;

  /**
   * Registers a session; with policy `single`, removes the user's other sessions and returns those of nodes that
   * hold their lease, lapsed entries included (a store that hung past the TTL's margin lets an entry lapse while
   * its session stays connected), for the caller to end as replaced.
   */
  abstract addSession(userId: string, ref: SessionRef, policy: SessionPolicy): Promise<SessionRef[]>;
  abstract removeSessions(nodeId: string, sessions: readonly LocalSession[]): Promise<void>;
  /**
   * Heartbeat: extends the TTL of every listed session of this node that the store still has. Returns those
   * whose entry had lapsed before (the store's clock ran past it: a store that hung longer than the TTL's
   * margin): they looked offline until now, and what was sent to them meanwhile was only stored.
   */
  abstract refreshSessions(nodeId: string, sessions: readonly LocalSession[]): Promise<LocalSession[]>;
  /**
   * The ids of this node's sessions that a newer login took over (policy `single`) since the last call, and
   * forgets them: the claiming node learns them from `addSession` and has them ended, but a reply lost (a
   * partition at that moment) would leave such a session connected and offline to everyone.
   */
  abstract takeDisplaced(nodeId: string): Promise<string[]>;
  /**
   * Writes every listed session of this node again, whether the store still has it or not. With policy
   * `single`, a session whose user has a live session on another node (a newer login while this node was cut
   * off) is not written: those are returned, for the node to end as replaced.
   */
  abstract restoreSessions(nodeId: string, sessions: readonly LocalSession[], policy: SessionPolicy): Promise<LocalSession[]>;
  /** Listeners run each time the store's connection comes back after a loss. */
  abstract onReconnected(listener: () => void): void;

  /** Live nodes holding at least one session of the user. */
  abstract nodesOf(userId: string): Promise<string[]>;
  abstract presenceOf(userId: string): Promise<UserPresence>;
  abstract cluster(): Promise<ClusterPresence>;
  /**
   * The store's data epoch: an id that stays the same for as long as the store keeps its data, and is new once
   * it lost it (a Redis restarted without its data); made by the first caller to find none.
   */
  abstract dataEpoch(): Promise<string>;
  /**
   * Clears up after nodes that died without a clean stop and whose id nobody took again: once a session entry of
   * a node without a lease has expired, it goes, and its last heartbeat becomes its user's lastSeen (unless a
   * later end is there); a node with nothing left leaves the cluster's node list. Entries not yet expired stay
   * (the node may be paused and come back). Every node runs it now and then; returns how many sessions it cleared.
   */
  abstract sweepDeadNodes(): Promise<number>;
}
