import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { Injectable } from '@nestjs/common';
import { AppConfig } from '../config/config';
import { InjectConfig } from '../config/config.module';
import {
  ClusterPresence,
  LeaseLostError,
  LocalSession,
  NodeIdInUseError,
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
    this.nodeSessions.set(nodeId, new Map());
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

  async addSession(userId: string, ref: SessionRef): Promise<void> {
    await this.refreshSessions(ref.nodeId, [{ userId, sessionId: ref.sessionId }]);
  }

  async refreshSessions(nodeId: string, sessions: readonly LocalSession[]): Promise<void> {
    if (!this.holds(nodeId)) throw new LeaseLostError(nodeId);
    const now = Date.now();
    const ttl = this.config.presenceTtlMs;
    let byNode = this.nodeSessions.get(nodeId);
    if (!byNode) this.nodeSessions.set(nodeId, (byNode = new Map<string, string>()));
    for (const s of sessions) {
      let user = this.entries.get(s.userId);
      if (!user) this.entries.set(s.userId, (user = new Map<string, number>()));
      user.set(`${nodeId}|${s.sessionId}`, now + ttl);
      for (const [member, expiry] of user) if (expiry < now - ttl) user.delete(member);
      byNode.set(s.sessionId, s.userId);
    }
  }

  async removeSessions(nodeId: string, sessions: readonly LocalSession[]): Promise<void> {
    const now = Date.now();
    for (const s of sessions) {
      const user = this.entries.get(s.userId);
      user?.delete(`${nodeId}|${s.sessionId}`);
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
      const bar = member.indexOf('|');
      const nodeId = member.slice(0, bar);
      if (expiry > now && this.leaseAlive(nodeId, now)) sessions.push({ nodeId, sessionId: member.slice(bar + 1) });
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
