import { randomBytes } from 'node:crypto';
import { setTimeout as pause } from 'node:timers/promises';
import { AppConfig } from '../../src/config/config';
import {
  ClusterPresence,
  LeaseLostError,
  LocalSession,
  NodeIdInUseError,
  PresenceStore,
} from '../../src/presence/presence.store';

/**
 * The contract of PresenceStore (src/presence/presence.store.ts), one suite run against every implementation.
 *
 * Timings are short so expiry can be observed: a 600 ms node lease and a 3 s presence TTL. Nothing sleeps
 * to let something happen; conditions are polled with `waitFor`, which fails naming what it waited for.
 */

/** Env the contract runs presence with (merged by the factory into its own base env). */
export const PRESENCE_CONTRACT_ENV: Readonly<Record<string, string>> = {
  NODE_LEASE_MS: '600',
  PRESENCE_TTL_SECONDS: '3',
};

const POLL_MS = 50;

/**
 * Re-checks `check` every 50 ms until it returns true; resolves with the milliseconds it took. An exception
 * thrown by `check` (e.g. a failed `expect` about something that must hold all along) fails at once.
 */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    const waited = Date.now() - started;
    if (waited >= timeoutMs) throw new Error(`waitFor: gave up after ${waited} ms (limit ${timeoutMs} ms) waiting for: ${what}`);
    await pause(Math.min(POLL_MS, timeoutMs - waited + 1));
  }
}

/** A node process's timers: renews the lease and, optionally, refreshes its sessions like PresenceService does. */
export interface LeaseHolder {
  /** Stops the timers, waits for a tick in flight; returns what went wrong meanwhile (a lost lease, an error). */
  stop(): Promise<string[]>;
}

export function holdLease(
  store: PresenceStore,
  nodeId: string,
  config: AppConfig,
  sessions?: () => readonly LocalSession[],
): LeaseHolder {
  const failures: string[] = [];
  const refreshEvery = Math.floor(config.presenceTtlMs / 3);
  let lastRefresh = Date.now();
  let inFlight: Promise<void> = Promise.resolve();
  let busy = false;
  const tick = async (): Promise<void> => {
    if (!(await store.renewLease(nodeId))) failures.push(`renewLease(${nodeId}) returned false`);
    if (sessions && Date.now() - lastRefresh >= refreshEvery) {
      lastRefresh = Date.now();
      await store.refreshSessions(nodeId, sessions());
    }
  };
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    inFlight = tick()
      .catch((err: unknown) => {
        failures.push(`holder of ${nodeId}: ${String(err)}`);
      })
      .finally(() => {
        busy = false;
      });
  }, Math.floor(config.nodeLeaseMs / 4));
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await inFlight;
      return failures;
    },
  };
}

export interface PresenceBackend {
  readonly config: AppConfig;
  /** The store a (further) node uses; see PresenceContractTraits.multiProcess. */
  node(): PresenceStore;
}

export interface PresenceContractTraits {
  /**
   * true: every `node()` call is another process of the cluster, with its own lease token, on one shared
   * backend (Redis). false: the backend is a single in-process store, and `node()` always returns it; it
   * plays every node id of a test (embedded mode runs one process, so "another process" does not exist,
   * and the tests that need one are skipped).
   */
  readonly multiProcess: boolean;
}

export interface PresenceStoreFactory {
  /** A backend sharing no state with any earlier `open`, configured from `env` merged into the factory's base env. */
  open(env: Readonly<Record<string, string>>): PresenceBackend;
  /** Frees all `open` made: quits clients, removes keys. */
  close(): Promise<void>;
}

const rand = (): string => randomBytes(4).toString('hex');
/** A cluster overview with its nodes in id order, so that actual and expected compare whatever the order. */
const normalized = (c: ClusterPresence): ClusterPresence => ({
  online: c.online,
  sessions: c.sessions,
  nodes: c.nodes.map((n) => ({ nodeId: n.nodeId, sessions: n.sessions })).sort((a, b) => a.nodeId.localeCompare(b.nodeId)),
});

/** Slack between the test's clock and the store's (Redis TIME), and for event-loop delays. */
const CLOCK_SLACK_MS = 100;
const LONG = 20_000;

export function presenceStoreContract(
  name: string,
  makeFactory: () => PresenceStoreFactory | Promise<PresenceStoreFactory>,
  traits: PresenceContractTraits,
): void {
  describe(`PresenceStore contract: ${name}`, () => {
    const itWithTwoProcesses = traits.multiProcess ? it : it.skip;
    let factory: PresenceStoreFactory;
    let backend: PresenceBackend;
    let config: AppConfig;
    let holders: LeaseHolder[] = [];

    const hold = (store: PresenceStore, nodeId: string, sessions?: () => readonly LocalSession[]): LeaseHolder => {
      const h = holdLease(store, nodeId, config, sessions);
      holders.push(h);
      return h;
    };
    const node = (): string => `n-${rand()}`;
    const user = (): string => `u-${rand()}`;
    const sid = (): string => `s-${rand()}`;
    /** Two nodes of the cluster, `a` holding the lease of `n1` and `b` that of `n2`. */
    const twoNodes = async () => {
      const [a, b, n1, n2] = [backend.node(), backend.node(), node(), node()];
      await a.acquireLease(n1);
      await b.acquireLease(n2);
      return { a, b, n1, n2 };
    };
    const sortedNodesOf = async (store: PresenceStore, userId: string): Promise<string[]> =>
      (await store.nodesOf(userId)).sort();

    beforeAll(async () => {
      factory = await makeFactory();
    });
    afterAll(async () => {
      await factory.close();
    });
    beforeEach(() => {
      backend = factory.open(PRESENCE_CONTRACT_ENV);
      config = backend.config;
    });
    afterEach(async () => {
      await Promise.all(holders.map((h) => h.stop()));
      holders = [];
    });

    itWithTwoProcesses("(Redis only: the memory store's nodes share one token) acquireLease by the lease's own holder (a command resent after its reply was lost) succeeds at once, its sessions kept", async () => {
      const a = backend.node();
      const n = node();
      await a.acquireLease(n);
      const u = user();
      await a.addSession(u, { nodeId: n, sessionId: sid() }, 'multi');
      const started = Date.now();
      await a.acquireLease(n);
      expect(Date.now() - started).toBeLessThan(config.nodeLeaseMs);
      expect(await a.nodesOf(u)).toEqual([n]);
      await a.releaseLease(n);
    });

    it('acquireLease, renewLease, releaseLease: a held lease renews; a released one is free at once and fences writes', async () => {
      const a = backend.node();
      const n = node();
      await a.acquireLease(n);
      expect(await a.renewLease(n)).toBe(true);
      const u = user();
      await a.addSession(u, { nodeId: n, sessionId: sid() }, 'multi');
      expect(await a.nodesOf(u)).toEqual([n]);

      await a.releaseLease(n);
      expect(await a.renewLease(n)).toBe(false);
      // Released: the node's sessions are skipped at once, and writes are refused.
      expect(await a.nodesOf(u)).toEqual([]);
      expect((await a.presenceOf(u)).online).toBe(false);
      expect((await a.cluster()).nodes.map((x) => x.nodeId)).not.toContain(n);
      await expect(a.addSession(user(), { nodeId: n, sessionId: sid() }, 'multi')).rejects.toBeInstanceOf(LeaseLostError);

      // Free at once, without waiting for a lapse (another process where there is one).
      const b = backend.node();
      const started = Date.now();
      await b.acquireLease(n);
      expect(Date.now() - started).toBeLessThan(config.nodeLeaseMs);
      expect(await b.renewLease(n)).toBe(true);
    });

    it('renewLease keeps a lease and its sessions past several lease times', async () => {
      const a = backend.node();
      const n = node();
      const u = user();
      const s = sid();
      await a.acquireLease(n);
      await a.addSession(u, { nodeId: n, sessionId: s }, 'multi');
      const holder = hold(a, n);
      const started = Date.now();
      await waitFor(
        `3 lease times (${3 * config.nodeLeaseMs} ms) to pass while ${n} stays live`,
        async () => {
          expect(await a.nodesOf(u)).toEqual([n]);
          return Date.now() - started >= 3 * config.nodeLeaseMs;
        },
        3 * config.nodeLeaseMs + 1000,
      );
      expect(await holder.stop()).toEqual([]);
      expect(await a.renewLease(n)).toBe(true);
    }, LONG);

    itWithTwoProcesses('(Redis only: needs a second process) acquiring a NODE_ID whose lease is being renewed throws NodeIdInUseError', async () => {
      const a = backend.node();
      const b = backend.node();
      const n = node();
      const u = user();
      await a.acquireLease(n);
      await a.addSession(u, { nodeId: n, sessionId: sid() }, 'multi');
      const holder = hold(a, n);

      const started = Date.now();
      const refused = b.acquireLease(n);
      await expect(refused).rejects.toBeInstanceOf(NodeIdInUseError);
      await expect(refused).rejects.toMatchObject({ nodeId: n });
      // It gave a possibly dead holder one lease time to lapse before refusing.
      expect(Date.now() - started).toBeGreaterThanOrEqual(config.nodeLeaseMs - CLOCK_SLACK_MS);

      // The live holder keeps its lease and its sessions; the refused process cannot write.
      expect(await holder.stop()).toEqual([]);
      expect(await a.renewLease(n)).toBe(true);
      expect(await b.renewLease(n)).toBe(false);
      expect(await b.nodesOf(u)).toEqual([n]);
      await expect(b.addSession(user(), { nodeId: n, sessionId: sid() }, 'multi')).rejects.toBeInstanceOf(LeaseLostError);
    }, LONG);

    it('a lease its holder stops renewing lapses, and another (process) can then acquire the NODE_ID', async () => {
      const a = backend.node();
      const n = node();
      await a.acquireLease(n);
      const b = backend.node();
      const started = Date.now();
      await b.acquireLease(n); // waits (up to one lease time) for a's lease to lapse
      expect(Date.now() - started).toBeLessThan(config.nodeLeaseMs + 1000);
      expect(await b.renewLease(n)).toBe(true);
      const u = user();
      await b.addSession(u, { nodeId: n, sessionId: sid() }, 'multi');
      expect(await b.nodesOf(u)).toEqual([n]);
      if (traits.multiProcess) {
        // The old holder is fenced off by the new one.
        expect(await a.renewLease(n)).toBe(false);
        await expect(a.addSession(user(), { nodeId: n, sessionId: sid() }, 'multi')).rejects.toBeInstanceOf(LeaseLostError);
        await expect(a.refreshSessions(n, [])).rejects.toBeInstanceOf(LeaseLostError);
        expect(await b.renewLease(n)).toBe(true);
      }
    }, LONG);

    it("a NODE_ID taken again after its holder died: the sessions it left go, and their users' lastSeen is their last heartbeat", async () => {
      const a = backend.node();
      const n = node();
      const u = user();
      await a.acquireLease(n);
      const connectedAt = Date.now();
      await a.addSession(u, { nodeId: n, sessionId: sid() }, 'multi');
      const b = backend.node();
      await b.acquireLease(n); // a's lease lapses: the node "died" without removing its session
      const p = await b.presenceOf(u);
      expect(p.online).toBe(false);
      expect(p.sessions).toEqual([]);
      expect(p.lastSeen).toBeGreaterThanOrEqual(connectedAt - 1000);
      expect(p.lastSeen).toBeLessThanOrEqual(Date.now());
    }, LONG);

    it("a user whose node died, its id never taken again: lastSeen stays that node's last heartbeat past twice the TTL, not an earlier end", async () => {
      const a = backend.node();
      const [earlier, n, u] = [node(), node(), user()];
      await a.acquireLease(earlier);
      hold(a, earlier);
      const before = sid();
      await a.addSession(u, { nodeId: earlier, sessionId: before }, 'multi');
      await a.removeSessions(earlier, [{ userId: u, sessionId: before }]);
      const endedBefore = (await a.presenceOf(u)).lastSeen;
      await waitFor('the clock to pass the earlier end', () => Date.now() > (endedBefore ?? 0) + 10, 1_000);
      await a.acquireLease(n);
      await a.addSession(u, { nodeId: n, sessionId: sid() }, 'multi'); // then n "dies": its lease is not renewed
      const addedAt = Date.now();
      let lastSeen: number | null = null;
      await waitFor('u offline once the lease lapsed', async () => {
        const p = await a.presenceOf(u);
        return !p.online && (lastSeen = p.lastSeen) !== null;
      }, 5_000);
      expect(lastSeen).toBeGreaterThan(endedBefore ?? 0);
      await waitFor('twice the presence TTL to pass, lastSeen unchanged all along', async () => {
        expect((await a.presenceOf(u)).lastSeen).toBe(lastSeen);
        return Date.now() > addedAt + 2 * config.presenceTtlMs + 500;
      }, 3 * config.presenceTtlMs);
    }, LONG);

    it("sweepDeadNodes: a node that died, its id never taken again, is cleared once its entries expired: its users' lastSeen is written as their last heartbeat", async () => {
      const a = backend.node();
      const [live, dead, u, other] = [node(), node(), user(), user()];
      await a.acquireLease(live);
      const liveSid = sid();
      hold(a, live, () => [{ userId: other, sessionId: liveSid }]);
      await a.addSession(other, { nodeId: live, sessionId: liveSid }, 'multi');
      await a.acquireLease(dead);
      await a.addSession(u, { nodeId: dead, sessionId: sid() }, 'multi'); // then dead "dies": its lease is not renewed
      const addedAt = Date.now();
      expect(await a.sweepDeadNodes()).toBe(0); // its lease holds
      await waitFor(`${dead}'s lease to lapse`, async () => (await a.nodesOf(u)).length === 0, config.nodeLeaseMs + 1000);
      expect(await a.sweepDeadNodes()).toBe(0); // its entry has not expired: the node may be paused and come back
      const lastSeen = (await a.presenceOf(u)).lastSeen;
      expect(lastSeen).toBeGreaterThanOrEqual(addedAt - 1000);

      await waitFor("the dead node's entry to expire", () => Date.now() > addedAt + config.presenceTtlMs + CLOCK_SLACK_MS, 2 * config.presenceTtlMs);
      expect(await a.sweepDeadNodes()).toBe(1);
      expect(await a.sweepDeadNodes()).toBe(0);
      // The entry is gone: the lastSeen read now is the one the sweep wrote.
      expect(await a.presenceOf(u)).toEqual({ userId: u, online: false, lastSeen, sessions: [] });
      expect(normalized(await a.cluster())).toEqual({ online: 1, sessions: 1, nodes: [{ nodeId: live, sessions: 1 }] });
      expect((await a.presenceOf(other)).online).toBe(true); // a live node's sessions are left alone
    }, LONG);

    itWithTwoProcesses('(Redis only: needs a second process) sweepDeadNodes leaves a node that came back from a pause as it is, and it writes its sessions again', async () => {
      const paused = backend.node();
      const [n, u] = [node(), user()];
      const s = sid();
      await paused.acquireLease(n);
      await paused.addSession(u, { nodeId: n, sessionId: s }, 'multi');
      const addedAt = Date.now();
      await waitFor("the paused node's entry to expire", () => Date.now() > addedAt + config.presenceTtlMs + CLOCK_SLACK_MS, 2 * config.presenceTtlMs);
      const sweeper = backend.node();
      expect(await sweeper.sweepDeadNodes()).toBe(1);
      // Back from the pause: the node finds its lease lost, takes it again and writes its sessions whole (PresenceService.restore).
      expect(await paused.renewLease(n)).toBe(false);
      await paused.acquireLease(n);
      await paused.restoreSessions(n, [{ userId: u, sessionId: s }], 'multi');
      hold(paused, n, () => [{ userId: u, sessionId: s }]);
      expect(await sweeper.sweepDeadNodes()).toBe(0);
      expect(await sweeper.presenceOf(u)).toEqual({ userId: u, online: true, lastSeen: null, sessions: [{ nodeId: n, sessionId: s }] });
      expect(normalized(await sweeper.cluster())).toEqual({ online: 1, sessions: 1, nodes: [{ nodeId: n, sessions: 1 }] });
    }, LONG);

    it('dataEpoch: the same for every node of the cluster, call after call, as long as the store keeps its data', async () => {
      const [a, b] = [backend.node(), backend.node()];
      const first = await a.dataEpoch();
      expect(first).toMatch(/.{8,}/);
      expect(await b.dataEpoch()).toBe(first);
      expect(await a.dataEpoch()).toBe(first);
    });

    it('addSession: nodesOf returns the node; presenceOf is online with the session and lastSeen null', async () => {
      const a = backend.node();
      const n = node();
      const u = user();
      const s = sid();
      await a.acquireLease(n);
      hold(a, n);
      await a.addSession(u, { nodeId: n, sessionId: s }, 'multi');
      expect(await a.nodesOf(u)).toEqual([n]);
      expect(await a.presenceOf(u)).toEqual({ userId: u, online: true, lastSeen: null, sessions: [{ nodeId: n, sessionId: s }] });
    });

    it('two sessions on two nodes: nodesOf returns both nodes (each once), presenceOf lists every session', async () => {
      const { a, b, n1, n2 } = await twoNodes();
      const u = user();
      const [s1, s2, s3] = [sid(), sid(), sid()];
      hold(a, n1);
      hold(b, n2);
      await a.addSession(u, { nodeId: n1, sessionId: s1 }, 'multi');
      await b.addSession(u, { nodeId: n2, sessionId: s2 }, 'multi');
      await b.addSession(u, { nodeId: n2, sessionId: s3 }, 'multi');
      expect(await sortedNodesOf(a, u)).toEqual([n1, n2].sort());
      expect(await sortedNodesOf(b, u)).toEqual([n1, n2].sort());
      const p = await a.presenceOf(u);
      expect(p.online).toBe(true);
      expect(p.lastSeen).toBeNull();
      expect([...p.sessions].sort((x, y) => x.sessionId.localeCompare(y.sessionId))).toEqual(
        [
          { nodeId: n1, sessionId: s1 },
          { nodeId: n2, sessionId: s2 },
          { nodeId: n2, sessionId: s3 },
        ].sort((x, y) => x.sessionId.localeCompare(y.sessionId)),
      );
    });

    it('removeSessions: online while a session is left; after the last one, offline with lastSeen = now (epoch ms)', async () => {
      const { a, b, n1, n2 } = await twoNodes();
      const u = user();
      const [s1, s2] = [sid(), sid()];
      hold(a, n1);
      hold(b, n2);
      await a.addSession(u, { nodeId: n1, sessionId: s1 }, 'multi');
      await b.addSession(u, { nodeId: n2, sessionId: s2 }, 'multi');

      await a.removeSessions(n1, [{ userId: u, sessionId: s1 }]);
      expect(await a.nodesOf(u)).toEqual([n2]);
      expect(await a.presenceOf(u)).toEqual({ userId: u, online: true, lastSeen: null, sessions: [{ nodeId: n2, sessionId: s2 }] });

      const before = Date.now();
      await b.removeSessions(n2, [{ userId: u, sessionId: s2 }]);
      const after = Date.now();
      expect(await a.nodesOf(u)).toEqual([]);
      const p = await a.presenceOf(u);
      expect(p).toMatchObject({ userId: u, online: false, sessions: [] });
      expect(typeof p.lastSeen).toBe('number');
      expect(p.lastSeen).toBeGreaterThanOrEqual(before - CLOCK_SLACK_MS);
      expect(p.lastSeen).toBeLessThanOrEqual(after + CLOCK_SLACK_MS);
    });

    it('a user never seen: offline, lastSeen null, no sessions, no nodes', async () => {
      const a = backend.node();
      const u = user();
      expect(await a.nodesOf(u)).toEqual([]);
      expect(await a.presenceOf(u)).toEqual({ userId: u, online: false, lastSeen: null, sessions: [] });
    });

    it("a node whose lease lapsed is skipped by nodesOf and presenceOf at once, while its session entries still have TTL left", async () => {
      const dead = backend.node();
      const live = backend.node();
      const [nDead, nLive] = [node(), node()];
      const [u, alone] = [user(), user()];
      await dead.acquireLease(nDead);
      await live.acquireLease(nLive);
      hold(live, nLive);
      const wroteAt = Date.now();
      await dead.addSession(u, { nodeId: nDead, sessionId: sid() }, 'multi');
      await dead.addSession(alone, { nodeId: nDead, sessionId: sid() }, 'multi');
      const sLive = sid();
      await live.addSession(u, { nodeId: nLive, sessionId: sLive }, 'multi');
      expect(await sortedNodesOf(live, u)).toEqual([nDead, nLive].sort());

      // nDead stops renewing. Its entries live until wroteAt + TTL; its lease lapses after one lease time.
      await waitFor(`nodesOf(${u}) to drop ${nDead} once its lease lapsed`, async () => (await live.nodesOf(u)).length === 1, config.nodeLeaseMs + 1000);
      const detectedAfter = Date.now() - wroteAt;
      expect(detectedAfter).toBeLessThan(config.presenceTtlMs - 1000);
      expect(await live.nodesOf(u)).toEqual([nLive]);
      expect(await live.presenceOf(u)).toEqual({ userId: u, online: true, lastSeen: null, sessions: [{ nodeId: nLive, sessionId: sLive }] });

      // A user whose only session was on the dead node is offline, lastSeen = the dead node's last write.
      expect(await live.nodesOf(alone)).toEqual([]);
      const p = await live.presenceOf(alone);
      expect(p).toMatchObject({ userId: alone, online: false, sessions: [] });
      expect(typeof p.lastSeen).toBe('number');
      expect(p.lastSeen).toBeGreaterThanOrEqual(wroteAt - CLOCK_SLACK_MS);
      expect(p.lastSeen).toBeLessThanOrEqual(wroteAt + 500);
      // Still well within the session entries' TTL.
      expect(Date.now() - wroteAt).toBeLessThan(config.presenceTtlMs);
    }, LONG);

    it('SESSION_POLICY=single: a new session removes and returns the live others, on any node; a refresh does not bring them back', async () => {
      const { a, b, n1, n2 } = await twoNodes();
      const u = user();
      const [s1, s2, s3] = [sid(), sid(), sid()];
      expect(await a.addSession(u, { nodeId: n1, sessionId: s1 }, 'single')).toEqual([]);
      expect(await a.addSession(u, { nodeId: n1, sessionId: s2 }, 'multi')).toEqual([]);
      const displaced = await b.addSession(u, { nodeId: n2, sessionId: s3 }, 'single');
      expect(displaced).toHaveLength(2);
      expect(displaced).toEqual(expect.arrayContaining([{ nodeId: n1, sessionId: s1 }, { nodeId: n1, sessionId: s2 }]));
      expect((await a.presenceOf(u)).sessions).toEqual([{ nodeId: n2, sessionId: s3 }]);
      await a.refreshSessions(n1, [{ userId: u, sessionId: s1 }, { userId: u, sessionId: s2 }]);
      expect(await a.nodesOf(u)).toEqual([n2]);
      expect((await a.cluster()).nodes).toEqual(expect.arrayContaining([{ nodeId: n1, sessions: 0 }, { nodeId: n2, sessions: 1 }]));
    });

    it("SESSION_POLICY=single: the sessions a new login took over are kept for their node's heartbeat to take, once (the claim's reply may be lost)", async () => {
      const { a, b, n1, n2 } = await twoNodes();
      const [u, other] = [user(), user()];
      const [s1, s2, s3] = [sid(), sid(), sid()];
      await a.addSession(u, { nodeId: n1, sessionId: s1 }, 'single');
      await a.addSession(other, { nodeId: n1, sessionId: s2 }, 'multi');
      expect(await a.takeDisplaced(n1)).toEqual([]);
      await b.addSession(u, { nodeId: n2, sessionId: s3 }, 'single');
      expect(await a.takeDisplaced(n1)).toEqual([s1]);
      expect(await a.takeDisplaced(n1)).toEqual([]);
      expect(await b.takeDisplaced(n2)).toEqual([]);
    });

    it('SESSION_POLICY=single: a restore does not write back a session that a newer login replaced, and returns it', async () => {
      const { a, b, n1, n2 } = await twoNodes();
      const [u, alone] = [user(), user()];
      const [old, newer, other] = [sid(), sid(), sid()];
      await a.addSession(u, { nodeId: n1, sessionId: old }, 'single');
      await a.addSession(alone, { nodeId: n1, sessionId: other }, 'single');
      // A newer login on n2 (n1 was cut off, say: the claim removes n1's entry but cannot end its session).
      await b.addSession(u, { nodeId: n2, sessionId: newer }, 'single');
      const replaced = await a.restoreSessions(n1, [{ userId: u, sessionId: old }, { userId: alone, sessionId: other }], 'single');
      expect(replaced).toEqual([{ userId: u, sessionId: old }]);
      expect((await a.presenceOf(u)).sessions).toEqual([{ nodeId: n2, sessionId: newer }]);
      expect((await a.presenceOf(alone)).sessions).toEqual([{ nodeId: n1, sessionId: other }]);
      // With multi, a restore writes everything back.
      expect(await a.restoreSessions(n1, [{ userId: u, sessionId: old }], 'multi')).toEqual([]);
      expect((await a.presenceOf(u)).sessions).toHaveLength(2);
    });

    it('fencing: a store whose lease lapsed gets LeaseLostError from addSession and refreshSessions, and writes nothing', async () => {
      const a = backend.node();
      const n = node();
      const [u, later] = [user(), user()];
      const s = sid();
      await a.acquireLease(n);
      await a.addSession(u, { nodeId: n, sessionId: s }, 'multi');
      await waitFor(`the lease of ${n} to lapse (nodesOf(${u}) empty)`, async () => (await a.nodesOf(u)).length === 0, config.nodeLeaseMs + 1000);

      const refused = a.addSession(later, { nodeId: n, sessionId: sid() }, 'multi');
      await expect(refused).rejects.toBeInstanceOf(LeaseLostError);
      await expect(refused).rejects.toMatchObject({ nodeId: n });
      await expect(a.refreshSessions(n, [{ userId: u, sessionId: s }])).rejects.toBeInstanceOf(LeaseLostError);
      await expect(a.refreshSessions(n, [])).rejects.toBeInstanceOf(LeaseLostError);
      await expect(a.restoreSessions(n, [{ userId: u, sessionId: s }], 'multi')).rejects.toBeInstanceOf(LeaseLostError);
      expect(await a.renewLease(n)).toBe(false);
      expect(await a.presenceOf(later)).toEqual({ userId: later, online: false, lastSeen: null, sessions: [] });

      // Re-acquired, the node writes again: a refresh alone does not bring back what the lapse removed, a restore does.
      await a.acquireLease(n);
      await a.refreshSessions(n, [{ userId: u, sessionId: s }]);
      expect(await a.nodesOf(u)).toEqual([]);
      expect(await a.restoreSessions(n, [{ userId: u, sessionId: s }], 'multi')).toEqual([]);
      await a.addSession(later, { nodeId: n, sessionId: sid() }, 'multi');
      expect(await a.nodesOf(u)).toEqual([n]);
      expect(await a.nodesOf(later)).toEqual([n]);
    }, LONG);

    it('refreshSessions keeps entries alive past the TTL; an entry not refreshed disappears after the TTL', async () => {
      const a = backend.node();
      const n = node();
      const [kept, dropped] = [user(), user()];
      const [sKept, sDropped] = [sid(), sid()];
      await a.acquireLease(n);
      const wroteAt = Date.now();
      await a.addSession(kept, { nodeId: n, sessionId: sKept }, 'multi');
      await a.addSession(dropped, { nodeId: n, sessionId: sDropped }, 'multi');
      const holder = hold(a, n, () => [{ userId: kept, sessionId: sKept }]);

      const waited = await waitFor(
        `the unrefreshed session of ${dropped} to disappear (TTL ${config.presenceTtlMs} ms)`,
        async () => {
          expect(await a.nodesOf(kept)).toEqual([n]);
          return !(await a.presenceOf(dropped)).online;
        },
        config.presenceTtlMs + 1500,
      );
      expect(waited).toBeGreaterThanOrEqual(config.presenceTtlMs - 500);
      expect(Date.now() - wroteAt).toBeGreaterThanOrEqual(config.presenceTtlMs - CLOCK_SLACK_MS);
      expect(await a.nodesOf(dropped)).toEqual([]);
      const gone = await a.presenceOf(dropped);
      expect(gone).toMatchObject({ userId: dropped, online: false, sessions: [] });
      expect(typeof gone.lastSeen).toBe('number');

      // Written at the same moment, the refreshed entry outlived the TTL.
      expect(await a.presenceOf(kept)).toEqual({ userId: kept, online: true, lastSeen: null, sessions: [{ nodeId: n, sessionId: sKept }] });
      expect(await holder.stop()).toEqual([]);
    }, LONG);

    it('refreshSessions writes again an entry that lapsed while the lease held, and returns its session (it looked offline meanwhile)', async () => {
      const a = backend.node();
      const n = node();
      const u = user();
      const session = { userId: u, sessionId: sid() };
      await a.acquireLease(n);
      await a.addSession(u, { nodeId: n, sessionId: session.sessionId }, 'multi');
      expect(await a.refreshSessions(n, [session])).toEqual([]);
      // The lease renewed, the session not refreshed (as when the store hung past the TTL's margin): it lapses.
      const holder = hold(a, n);
      await waitFor(`the session of ${u} to lapse (TTL ${config.presenceTtlMs} ms)`, async () => !(await a.presenceOf(u)).online, config.presenceTtlMs + 1500);

      expect(await a.refreshSessions(n, [session])).toEqual([session]);
      expect(await a.nodesOf(u)).toEqual([n]);
      expect(await a.refreshSessions(n, [session])).toEqual([]);
      expect(await holder.stop()).toEqual([]);
    }, LONG);

    it('SESSION_POLICY=single: a new session also returns an older one whose entry lapsed while its node held the lease (it may still be connected)', async () => {
      const a = backend.node();
      const [n1, n2] = [node(), node()];
      await a.acquireLease(n1);
      const u = user();
      const [old, sameNode] = [sid(), sid()];
      await a.addSession(u, { nodeId: n1, sessionId: old }, 'single');
      // The lease renewed, the entry not refreshed (the store hung past the TTL's margin): it lapses.
      hold(a, n1);
      await waitFor(`the session of ${u} to lapse (TTL ${config.presenceTtlMs} ms)`, async () => !(await a.presenceOf(u)).online, config.presenceTtlMs + 1500);
      expect(await a.addSession(u, { nodeId: n1, sessionId: sameNode }, 'single')).toEqual([{ nodeId: n1, sessionId: old }]);
      // A node whose lease is gone holds nothing to end: its lapsed entries just go.
      const b = backend.node();
      await b.acquireLease(n2);
      const gone = sid();
      await b.addSession(u, { nodeId: n2, sessionId: gone }, 'multi');
      await b.releaseLease(n2);
      expect(await a.addSession(u, { nodeId: n1, sessionId: sid() }, 'single')).toEqual([{ nodeId: n1, sessionId: sameNode }]);
    }, LONG);

    it('cluster(): counts distinct online users, sessions and sessions per node, and leaves out dead nodes', async () => {
      const a = backend.node();
      const b = backend.node();
      const c = backend.node();
      const [nA, nB, nC] = [node(), node(), node()];
      const [u1, u2, u3] = [user(), user(), user()];
      const [s1, s2, s3, s4] = [sid(), sid(), sid(), sid()];
      await a.acquireLease(nA);
      await b.acquireLease(nB);
      await c.acquireLease(nC);
      hold(a, nA);
      hold(b, nB);
      await a.addSession(u1, { nodeId: nA, sessionId: s1 }, 'multi');
      await a.addSession(u2, { nodeId: nA, sessionId: s2 }, 'multi');
      await b.addSession(u1, { nodeId: nB, sessionId: s3 }, 'multi');
      await c.addSession(u3, { nodeId: nC, sessionId: s4 }, 'multi'); // nC is never renewed

      const all = await a.cluster();
      expect(normalized(all)).toEqual(
        normalized({
          online: 3,
          sessions: 4,
          nodes: [
            { nodeId: nA, sessions: 2 },
            { nodeId: nB, sessions: 1 },
            { nodeId: nC, sessions: 1 },
          ],
        }),
      );

      await waitFor(`cluster() to leave out ${nC} once its lease lapsed`, async () => !(await a.cluster()).nodes.some((x) => x.nodeId === nC), config.nodeLeaseMs + 1000);
      const live = await b.cluster();
      expect(normalized(live)).toEqual(
        normalized({
          online: 2,
          sessions: 3,
          nodes: [
            { nodeId: nA, sessions: 2 },
            { nodeId: nB, sessions: 1 },
          ],
        }),
      );

      await a.removeSessions(nA, [{ userId: u2, sessionId: s2 }]);
      const after = await a.cluster();
      expect(normalized(after)).toEqual(
        normalized({
          online: 1,
          sessions: 2,
          nodes: [
            { nodeId: nA, sessions: 1 },
            { nodeId: nB, sessions: 1 },
          ],
        }),
      );
    }, LONG);

    it('cluster(): lists a live node that holds no session yet, with 0 sessions', async () => {
      const a = backend.node();
      const n = node();
      await a.acquireLease(n);
      hold(a, n);
      expect(await a.cluster()).toEqual({ online: 0, sessions: 0, nodes: [{ nodeId: n, sessions: 0 }] });
    });

    itWithTwoProcesses('(Redis only: needs a second process) releaseLease by a process that does not hold the lease changes nothing', async () => {
      const holderStore = backend.node();
      const other = backend.node();
      const n = node();
      const u = user();
      await holderStore.acquireLease(n);
      hold(holderStore, n);
      await holderStore.addSession(u, { nodeId: n, sessionId: sid() }, 'multi');

      await other.releaseLease(n);
      expect(await holderStore.renewLease(n)).toBe(true);
      expect(await other.nodesOf(u)).toEqual([n]);
      expect((await other.presenceOf(u)).online).toBe(true);
      const c = await other.cluster();
      expect(normalized(c)).toEqual(
        normalized({
          online: 1,
          sessions: 1,
          nodes: [{ nodeId: n, sessions: 1 }],
        }),
      );
    });

    itWithTwoProcesses('(Redis only: needs a second process) a process taking over a lapsed NODE_ID does not inherit the old sessions once they expired', async () => {
      const old = backend.node();
      const n = node();
      const u = user();
      await old.acquireLease(n);
      await old.addSession(u, { nodeId: n, sessionId: sid() }, 'multi');
      await waitFor(`the lease of ${n} to lapse`, async () => (await old.nodesOf(u)).length === 0, config.nodeLeaseMs + 1000);

      // A restarted process with the same NODE_ID, heartbeating with no sessions of its own.
      const fresh = backend.node();
      await fresh.acquireLease(n);
      hold(fresh, n, () => []);
      await waitFor(`the old session entry of ${u} to expire (TTL ${config.presenceTtlMs} ms)`, async () => !(await fresh.presenceOf(u)).online, config.presenceTtlMs + 1500);

      expect(await fresh.cluster()).toEqual({ online: 0, sessions: 0, nodes: [{ nodeId: n, sessions: 0 }] });
    }, LONG);
  });
}
