import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { Injectable } from '@nestjs/common';
import { AppConfig, SessionPolicy } from '../config/config';
import { InjectConfig } from '../config/config.module';
import {
  ClusterPresence,
  LeaseLostError,
  LocalSession,
  memberOf,
  NodeIdInUseError,
  parseMember,
  PresenceStore,
  SessionRef,
  UserPresence,
} from './presence.store';

interface Lease {
  token: string;
  expiresAt: number;
}

/** In-process presence for embedded mode: the same contract as RedisPresenceStore, kept in Maps. */
@Injectable()
export class MemoryPresenceStore extends PresenceStore {
  private readonly token = randomUUID();
  private readonly leases = new Map<string, Lease>();
  /** userId -> (`nodeId|sessionId` -> expiry ms) */
  private readonly entries = new Map<string, Map<string, number>>();
  private readonly nodeSessions = new Map<string, Map<string, string>>();
  /** Per node, the sessions a newer login took over since its last heartbeat (takeDisplaced). */
  private readonly displaced = new Map<string, Set<string>>();
  private readonly seen = new Map<string, number>();

  constructor(@InjectConfig() private readonly config: AppConfig) {
    super();
  }

  private leaseAlive(nodeId: string, now = Date.now()): boolean {
    const lease = this.leases.get(nodeId);
    return lease !== undefined && lease.expiresAt > now;
  }

  private holds(nodeId: string): boolean {
    return this.leaseAlive(nodeId) && this.leases.get(nodeId)?.token === this.token;
  }

  async acquireLease(nodeId: string): Promise<void> {
    const deadline = Date.now() + this.config.nodeLeaseMs + 500;
    while (this.leaseAlive(nodeId)) {
      if (Date.now() > deadline) throw new NodeIdInUseError(nodeId);
      await delay(Math.min(250, this.config.nodeLeaseMs / 4));
    }
    this.leases.set(nodeId, { token: this.token, expiresAt: Date.now() + this.config.nodeLeaseMs });
    // The sessions a previous holder of this node id left behind go with it; their last heartbeat is their users' lastSeen.
    for (const [sessionId, userId] of this.nodeSessions.get(nodeId) ?? []) this.endDeadSession(nodeId, sessionId, userId);
    this.nodeSessions.set(nodeId, new Map());
  }

  /** A session of a node that died goes; its last heartbeat is its user's lastSeen, unless a later end is. */
  private endDeadSession(nodeId: string, sessionId: string, userId: string): void {
    const member = memberOf(nodeId, sessionId);
    const expiry = this.entries.get(userId)?.get(member);
    if (expiry === undefined) return;
    this.seen.set(userId, Math.max(this.seen.get(userId) ?? 0, expiry - this.config.presenceTtlMs));
    this.entries.get(userId)?.delete(member);
  }

  /** In-process: the data lives as long as the process. */
  async dataEpoch(): Promise<string> {
    return this.token;
  }

  async sweepDeadNodes(): Promise<number> {
    const now = Date.now();
    let swept = 0;
    for (const [nodeId, sessions] of this.nodeSessions) {
      if (this.leaseAlive(nodeId, now)) continue;
      for (const [sessionId, userId] of sessions) {
        if ((this.entries.get(userId)?.get(memberOf(nodeId, sessionId)) ?? 0) > now) continue;
        this.endDeadSession(nodeId, sessionId, userId);
        sessions.delete(sessionId);
        swept++;
      }
      if (sessions.size === 0) this.nodeSessions.delete(nodeId);
    }
    return swept;
  }

  async renewLease(nodeId: string): Promise<boolean> {
    if (!this.holds(nodeId)) return false;
    this.leases.set(nodeId, { token: this.token, expiresAt: Date.now() + this.config.nodeLeaseMs });
    return true;
  }

  async releaseLease(nodeId: string): Promise<void> {
    if (this.leases.get(nodeId)?.token === this.token) {
      this.leases.delete(nodeId);
      this.nodeSessions.delete(nodeId);
    }
  }

  async addSession(userId: string, ref: SessionRef, policy: SessionPolicy): Promise<SessionRef[]> {
    if (!this.holds(ref.nodeId)) throw new LeaseLostError(ref.nodeId);
    const displaced: SessionRef[] = [];
    if (policy === 'single') {
      // As the Redis store: every other session goes, and those of a node that holds its lease are ended, a
      // lapsed entry's too (its session may still be connected there).
      for (const member of [...(this.entries.get(userId)?.keys() ?? [])]) {
        if (member === memberOf(ref.nodeId, ref.sessionId)) continue;
        const other = parseMember(member);
        this.entries.get(userId)?.delete(member);
        this.nodeSessions.get(other.nodeId)?.delete(other.sessionId);
        if (this.leaseAlive(other.nodeId)) {
          displaced.push(other);
          this.displacedOf(other.nodeId).add(other.sessionId);
        }
      }
    }
    this.write(ref.nodeId, [{ userId, sessionId: ref.sessionId }], 'restore');
    return displaced;
  }

  async takeDisplaced(nodeId: string): Promise<string[]> {
    const ids = [...(this.displaced.get(nodeId) ?? [])];
    this.displaced.delete(nodeId);
    return ids;
  }

  private displacedOf(nodeId: string): Set<string> {
    let ids = this.displaced.get(nodeId);
    if (!ids) this.displaced.set(nodeId, (ids = new Set()));
    return ids;
  }

  async refreshSessions(nodeId: string, sessions: readonly LocalSession[]): Promise<LocalSession[]> {
    if (!this.holds(nodeId)) throw new LeaseLostError(nodeId);
    return this.write(nodeId, sessions, 'refresh');
  }

  async restoreSessions(nodeId: string, sessions: readonly LocalSession[], policy: SessionPolicy): Promise<LocalSession[]> {
    if (!this.holds(nodeId)) throw new LeaseLostError(nodeId);
    // As the Redis store: with `single`, a session whose user is live on another node was replaced meanwhile.
    const kept: LocalSession[] = [];
    const replaced: LocalSession[] = [];
    for (const s of sessions) {
      const elsewhere = policy === 'single' && (await this.nodesOf(s.userId)).some((n) => n !== nodeId);
      (elsewhere ? replaced : kept).push(s);
    }
    this.write(nodeId, kept, 'restore');
    return replaced;
  }

  /** In-process: never disconnected. */
  onReconnected(): void {}

  /** Returns the sessions whose entry had lapsed (of a refresh: those it wrote again). */
  private write(nodeId: string, sessions: readonly LocalSession[], mode: 'refresh' | 'restore'): LocalSession[] {
    const lapsed: LocalSession[] = [];
    const now = Date.now();
    const ttl = this.config.presenceTtlMs;
    let byNode = this.nodeSessions.get(nodeId);
    if (!byNode) this.nodeSessions.set(nodeId, (byNode = new Map<string, string>()));
    for (const s of sessions) {
      const member = memberOf(nodeId, s.sessionId);
      let user = this.entries.get(s.userId);
      const expiry = user?.get(member);
      if (mode === 'refresh' && expiry === undefined) continue;
      if (expiry !== undefined && expiry <= now) lapsed.push(s);
      if (!user) this.entries.set(s.userId, (user = new Map<string, number>()));
      user.set(member, now + ttl);
      for (const [m, expiry] of user) if (expiry < now - ttl) user.delete(m);
      byNode.set(s.sessionId, s.userId);
    }
    return lapsed;
  }

  async removeSessions(nodeId: string, sessions: readonly LocalSession[]): Promise<void> {
    const now = Date.now();
    for (const s of sessions) {
      const user = this.entries.get(s.userId);
      user?.delete(memberOf(nodeId, s.sessionId));
      if (user?.size === 0) this.entries.delete(s.userId);
      this.seen.set(s.userId, now);
      this.nodeSessions.get(nodeId)?.delete(s.sessionId);
    }
  }

  async nodesOf(userId: string): Promise<string[]> {
    const nodes = new Set<string>();
    for (const s of (await this.presenceOf(userId)).sessions) nodes.add(s.nodeId);
    return [...nodes];
  }

  async presenceOf(userId: string): Promise<UserPresence> {
    const now = Date.now();
    const sessions: SessionRef[] = [];
    let seen = this.seen.get(userId) ?? 0;
    for (const [member, expiry] of this.entries.get(userId) ?? []) {
      const session = parseMember(member);
      if (expiry > now && this.leaseAlive(session.nodeId, now)) sessions.push(session);
      else seen = Math.max(seen, expiry - this.config.presenceTtlMs);
    }
    const online = sessions.length > 0;
    return { userId, online, lastSeen: online || seen === 0 ? null : seen, sessions };
  }

  async cluster(): Promise<ClusterPresence> {
    const users = new Set<string>();
    const nodes: Array<{ nodeId: string; sessions: number }> = [];
    for (const [nodeId, sessions] of [...this.nodeSessions].sort(([a], [b]) => a.localeCompare(b))) {
      if (!this.leaseAlive(nodeId)) continue;
      sessions.forEach((u) => users.add(u));
      nodes.push({ nodeId, sessions: sessions.size });
    }
    return { online: users.size, sessions: nodes.reduce((n, x) => n + x.sessions, 0), nodes };
  }
}
