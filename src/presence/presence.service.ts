import { setTimeout as delay } from 'node:timers/promises';
import { BeforeApplicationShutdown, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { shutdownStep } from '../common/finishes-within';
import { ThrottledLog } from '../common/throttled-log';
import { AppConfig, BOOT_WAIT_MS } from '../config/config';
import { InjectConfig } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { Lifecycle } from '../health/lifecycle';
import { LeaseLostError, LocalSession, NodeIdInUseError, PresenceStore, SessionRef } from './presence.store';
import { RedisVersionError } from '../redis/lua-script';

/** How many ended sessions whose removal failed wait for the next heartbeat at most (keepUnremoved). */
export const MAX_UNREMOVED = 10_000;
const UNKEPT_LOG_EVERY_MS = 10_000;
/** How often a boot tries to take the node lease while the store fails (acquireLeaseAtBoot). */
const BOOT_RETRY_PAUSE_MS = 250;

/**
 * This node's side of presence: holds the node lease, records the sessions the gateway opens and closes,
 * and keeps their entries alive with heartbeats.
 */
@Injectable()
export class PresenceService implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('PresenceService');
  /** sessionId -> userId of the sessions on this node. */
  private readonly local = new Map<string, string>();
  private timers: NodeJS.Timeout[] = [];
  private beating = false;
  private readonly reassertedListeners: Array<() => void> = [];
  private readonly storeLostListeners: Array<() => void> = [];
  /** The store's data epoch as this node last read it (PresenceStore.dataEpoch). */
  private epoch: string | undefined;
  private readonly replacedListeners: Array<(userId: string, sessionId: string) => void> = [];
  /** One lease recovery at a time: the renewal timer, the heartbeat and a reconnect may all notice the loss. */
  private recovering: Promise<void> | undefined;
  /**
   * A heartbeat failed while the connection stayed up (Redis refused the writes: full, say). Entries not
   * refreshed expire, and a refresh only extends entries that exist: the next heartbeat writes them whole.
   */
  private heartbeatFailed = false;
  /** The rewrite under way after the store or the lease was lost, if any (rewrite()). */
  private rewriting?: Promise<void>;
  /** Sessions that ended while the store failed to remove them: removed again at the next heartbeat. */
  private unremoved: LocalSession[] = [];
  private readonly unkeptLog = new ThrottledLog((line) => this.logger.warn(line), UNKEPT_LOG_EVERY_MS);

  constructor(
    @InjectConfig() private readonly config: AppConfig,
    private readonly store: PresenceStore,
    private readonly metrics: MetricsService,
    private readonly lifecycle: Lifecycle,
  ) {}

  async onModuleInit(): Promise<void> {
    await this.acquireLeaseAtBoot();
    this.timers = [
      setInterval(() => void this.renewLease(), Math.floor(this.config.nodeLeaseMs / 3)),
      setInterval(() => void this.heartbeat(), Math.floor(this.config.presenceTtlMs / 3)),
      setInterval(() => void this.sweepDeadNodes(), this.config.presenceTtlMs),
    ];
    this.timers.forEach((t) => t.unref());
    this.store.onReconnected(() => void this.reassert());
  }

  /**
   * The boot waited for Redis to be ready, but it may go away again before the lease is taken (both restarting
   * after a host reboot, say): a store error other than the NODE_ID refusal is tried again for up to
   * BOOT_WAIT_MS, as the wait for Redis itself is.
   */
  private async acquireLeaseAtBoot(): Promise<void> {
    const deadline = Date.now() + BOOT_WAIT_MS;
    for (;;) {
      try {
        await this.store.acquireLease(this.config.nodeId);
        break;
      } catch (err) {
        if (err instanceof NodeIdInUseError || err instanceof RedisVersionError || Date.now() >= deadline) throw err;
        this.logger.warn(`could not take the node lease yet, trying again: ${String(err)}`);
        await delay(BOOT_RETRY_PAUSE_MS);
      }
    }
    // Unread (the store went away again), the first reconnect reads it, and cannot tell a loss before it.
    await this.checkEpoch();
  }

  /**
   * Listeners run after this node wrote its presence again following a loss of the store's connection or of
   * its lease: its users may have looked offline meanwhile, and what was sent to them is in their inboxes.
   */
  onReasserted(listener: () => void): void {
    this.reassertedListeners.push(listener);
  }

  private reasserted(): void {
    this.reassertedListeners.forEach((l) => l());
  }

  /**
   * Listeners run when the node, back at the store, finds its data epoch changed (Redis came back without its
   * data, or was flushed): every seq starts again. Before the node writes its presence again, so that no push
   * of a new message reaches a session that has not started again yet.
   */
  onStoreLost(listener: () => void): void {
    this.storeLostListeners.push(listener);
  }

  private async checkEpoch(): Promise<void> {
    try {
      const epoch = await this.store.dataEpoch();
      if (this.epoch !== undefined && epoch !== this.epoch) {
        this.logger.warn('the store came back without its data (Redis restarted empty, or flushed): every seq starts again');
        this.storeLostListeners.forEach((l) => l());
      }
      this.epoch = epoch;
    } catch (err) {
      this.logger.warn(`could not read the store's data epoch: ${String(err)}`);
    }
  }

  /**
   * Listeners end a local session that a newer login replaced while this node was cut off (SESSION_POLICY
   * single): the login's claim could not reach it, so the node finds out as it writes its sessions again.
   */
  onReplaced(listener: (userId: string, sessionId: string) => void): void {
    this.replacedListeners.push(listener);
  }

  /**
   * After this node's RabbitMQ connection came back. Under SESSION_POLICY single a login elsewhere may have
   * sent this node an end-session it never got: held in its queue past the queue's message TTL, it
   * dead-lettered, and no other node holds that session. Writing the sessions again finds those.
   */
  async recheckReplaced(): Promise<void> {
    if (this.config.sessionPolicy !== 'single') return;
    try {
      await this.restore();
    } catch (err) {
      if (err instanceof LeaseLostError) await this.recoverLease();
      else this.logger.warn(`could not check the sessions for newer logins: ${String(err)}`);
    }
  }

  /**
   * Writes this node's sessions whole, which makes up for any failed heartbeat; the ones a newer login replaced
   * meanwhile are ended instead. Under SESSION_POLICY single that includes an older session of a user who has a
   * newer one on this node: a login's claim ends the entries it finds, but an entry gone from the store
   * altogether (a store that refused writes for longer than twice the TTL) it cannot find.
   */
  private async restore(): Promise<void> {
    const sessions = this.sessions();
    const older = this.config.sessionPolicy === 'single' ? olderOfSameUser(sessions) : new Set<LocalSession>();
    const kept = older.size > 0 ? sessions.filter((s) => !older.has(s)) : sessions;
    const replaced = await this.store.restoreSessions(this.config.nodeId, kept, this.config.sessionPolicy);
    this.heartbeatFailed = false;
    // A session that ended while the write was under way may have been removed before its batch was written
    // (the store writes large restores in batches): written back, it would look online until this node stops.
    const ended = kept.filter((s) => !this.local.has(s.sessionId));
    if (ended.length > 0) {
      this.keepUnremoved(ended);
      await this.removeAgain().catch((err: unknown) => this.logger.warn(`could not remove ${ended.length} ended session(s): ${String(err)}`));
    }
    for (const { userId, sessionId } of [...older, ...replaced]) this.replacedListeners.forEach((l) => l(userId, sessionId));
  }

  /**
   * The local record changes before the store is written, so a close that races an open wins. Returns the
   * sessions this one displaced (SESSION_POLICY=single), which the caller must end.
   */
  async sessionStarted(userId: string, sessionId: string): Promise<SessionRef[]> {
    this.local.set(sessionId, userId);
    this.metrics.sessions.set(this.local.size);
    return this.store.addSession(userId, { nodeId: this.config.nodeId, sessionId }, this.config.sessionPolicy);
  }

  /** A removal the store fails (Redis away for a moment) is tried again at the next heartbeat; the caller hears of the failure. */
  async sessionEnded(userId: string, sessionId: string): Promise<void> {
    if (!this.local.delete(sessionId)) return;
    this.metrics.sessions.set(this.local.size);
    try {
      await this.store.removeSessions(this.config.nodeId, [{ userId, sessionId }]);
    } catch (err) {
      this.keepUnremoved([{ userId, sessionId }]);
      throw err;
    }
  }

  /**
   * At most MAX_UNREMOVED wait, the first ones: through a Redis outage every login is refused and closed, and a
   * store that may have carried out a write whose reply was lost must be asked to undo it, but only the writes in
   * flight when the connection went away can have reached Redis; later ones are refused before they are sent.
   * Kept all, 200 clients retrying for a minute left 1,400 (found by a review). One left out, if Redis wrote it
   * all the same, counts in `GET /presence` until this node stops.
   */
  private keepUnremoved(sessions: readonly LocalSession[]): void {
    const room = Math.max(0, MAX_UNREMOVED - this.unremoved.length);
    if (room < sessions.length) this.unkeptLog.note(`ended sessions not kept for removal: ${MAX_UNREMOVED} already wait for the store`);
    this.unremoved.push(...sessions.slice(0, room));
  }

  /** This node's sessions, oldest first (as they started). */
  private sessions(): LocalSession[] {
    return [...this.local].map(([sessionId, userId]) => ({ sessionId, userId }));
  }

  private async renewLease(): Promise<void> {
    try {
      if (await this.store.renewLease(this.config.nodeId)) return;
      await this.recoverLease();
    } catch (err) {
      this.logger.warn(`lease renewal failed: ${String(err)}`);
    }
  }

  private async heartbeat(): Promise<void> {
    if (this.beating) return;
    this.beating = true;
    try {
      await this.removeAgain();
      if (this.heartbeatFailed) {
        await this.rewrite();
        this.logger.log('presence written whole after a failed heartbeat');
      } else await this.refresh();
      await this.endDisplaced();
    } catch (err) {
      if (err instanceof LeaseLostError) await this.recoverLease();
      else {
        this.heartbeatFailed = true;
        this.logger.warn(`presence heartbeat failed: ${String(err)}`);
      }
    } finally {
      this.beating = false;
    }
  }

  /**
   * SESSION_POLICY=single: this node's sessions that a newer login took over are ended as replaced. The claiming
   * node has them ended over RabbitMQ already, unless it never learnt whom it displaced: Redis carried out its
   * claim and the reply was lost (a partition at that moment), which left such a session connected and offline
   * to everyone (found by a review). One ended already is no longer here.
   */
  private async endDisplaced(): Promise<void> {
    if (this.config.sessionPolicy !== 'single') return;
    for (const sessionId of await this.store.takeDisplaced(this.config.nodeId)) {
      const userId = this.local.get(sessionId);
      if (userId !== undefined) this.replacedListeners.forEach((l) => l(userId, sessionId));
    }
  }

  /** What nodes that died left in the store; a failure (Redis away, which is logged elsewhere) waits for the next round. */
  private async sweepDeadNodes(): Promise<void> {
    try {
      const swept = await this.store.sweepDeadNodes();
      if (swept > 0) this.logger.log(`cleared ${swept} sessions of nodes that stopped without a clean shutdown`);
    } catch (err) {
      this.logger.debug(`sweep of dead nodes failed: ${String(err)}`);
    }
  }

  /**
   * Left in the store, an ended session would count in `GET /presence` for as long as this node holds its
   * lease, and its user would get no lastSeen.
   */
  private async removeAgain(): Promise<void> {
    if (this.unremoved.length === 0) return;
    const sessions = this.unremoved;
    this.unremoved = [];
    try {
      await this.store.removeSessions(this.config.nodeId, sessions);
    } catch (err) {
      // Sessions that ended meanwhile came after these.
      const newer = this.unremoved;
      this.unremoved = [];
      this.keepUnremoved(sessions);
      this.keepUnremoved(newer);
      throw err;
    }
  }

  /**
   * A refresh that found entries lapsed (the store hung longer than the TTL's margin, while this node kept its
   * lease): those users looked offline meanwhile, and what was sent to them then was only stored.
   */
  private async refresh(): Promise<void> {
    const lapsed = await this.store.refreshSessions(this.config.nodeId, this.sessions());
    if (lapsed.length === 0) return;
    this.logger.warn(`${lapsed.length} session(s) had lapsed in the store (it did not answer for a while): catching them up`);
    this.reasserted();
  }

  /**
   * The lease lapsed (the node was paused or cut off): take a new one, then write this node's sessions again.
   * Never rejects. If another live node has taken this NODE_ID meanwhile, this node cannot serve under it
   * any more and asks to be shut down.
   */
  private recoverLease(): Promise<void> {
    this.recovering ??= this.retakeLease().finally(() => (this.recovering = undefined));
    return this.recovering;
  }

  private async retakeLease(): Promise<void> {
    this.logger.error('node lease was lost; re-acquiring it and re-registering local sessions');
    try {
      await this.store.acquireLease(this.config.nodeId);
      // Taking the lease cleared this node's entries, and a heartbeat only extends entries that exist: written
      // whole now, or by the next heartbeat if that fails (found by a code review). A rewrite begun before the
      // lease was taken may have written before it cleared them: this one waits for it, then writes again.
      await this.rewriting?.catch(() => undefined);
      await this.rewrite();
    } catch (err) {
      if (err instanceof NodeIdInUseError) this.lifecycle.requestShutdown(err.message);
      else this.logger.warn(`lease recovery failed, will try again: ${String(err)}`);
    }
  }

  /**
   * After the store or the lease was lost: checks the data epoch, writes the sessions whole, and has them caught
   * up (their users may have looked offline, and what was sent to them meanwhile was stored). A failed heartbeat
   * and a reconnect's reassert come together after an outage: they share the rewrite under way, where each ran
   * its own before (every session written and caught up twice; found by a regression review). One that fails
   * leaves it to the next heartbeat.
   */
  private rewrite(): Promise<void> {
    this.rewriting ??= this.rewriteNow().finally(() => (this.rewriting = undefined));
    return this.rewriting;
  }

  private async rewriteNow(): Promise<void> {
    try {
      await this.checkEpoch();
      await this.restore();
    } catch (err) {
      this.heartbeatFailed = true;
      throw err;
    }
    this.reasserted();
  }

  /** The store is back after an outage: keep or retake the lease, write every local session again. */
  private async reassert(): Promise<void> {
    try {
      if (await this.store.renewLease(this.config.nodeId)) {
        await this.rewrite();
        this.logger.log('presence re-asserted after a reconnect');
      } else {
        await this.recoverLease();
      }
    } catch (err) {
      this.logger.warn(`could not re-assert presence: ${String(err)}`);
    }
  }

  /** Runs after the gateway closed its sessions: removes what is left, then gives the lease back. */
  async beforeApplicationShutdown(): Promise<void> {
    this.timers.forEach((t) => clearInterval(t));
    // A store that does not answer leaves the sessions to the lease's expiry.
    await shutdownStep(this.logger, 'presence cleanup', async () => {
      await this.store.removeSessions(this.config.nodeId, this.sessions());
      this.local.clear();
      await this.store.releaseLease(this.config.nodeId);
    });
  }
}

/** Of sessions listed oldest first, those of a user who has a newer one among them. */
function olderOfSameUser(sessions: readonly LocalSession[]): Set<LocalSession> {
  const newest = new Map<string, LocalSession>();
  for (const s of sessions) newest.set(s.userId, s);
  return new Set(sessions.filter((s) => newest.get(s.userId) !== s));
}
