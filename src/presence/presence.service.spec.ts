import { Logger } from '@nestjs/common';
import { loadConfig } from '../config/config';
import { Lifecycle } from '../health/lifecycle';
import { MetricsService } from '../metrics/metrics.service';
import { LocalSession, NodeIdInUseError, PresenceStore } from './presence.store';
import { MAX_UNREMOVED, PresenceService } from './presence.service';

/** A store that holds its lease and answers every write, with `overrides` for what a test looks at. */
function fakeStore<O extends object>(overrides: O) {
  return {
    acquireLease: jest.fn(async () => undefined),
    renewLease: jest.fn(async () => true),
    onReconnected: jest.fn(),
    addSession: jest.fn(async () => []),
    refreshSessions: jest.fn(async () => []),
    restoreSessions: jest.fn(async () => []),
    removeSessions: jest.fn(async (): Promise<void> => undefined),
    releaseLease: jest.fn(async () => undefined),
    sweepDeadNodes: jest.fn(async () => 0),
    dataEpoch: jest.fn(async () => 'epoch-1'),
    ...overrides,
  };
}

/** In a describe block: fake timers (promises and immediates still run), and warnings not printed. */
function fakeTimersAndQuietWarnings(): void {
  beforeEach(() => {
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  });
  afterEach(() => {
    jest.useRealTimers();
    jest.restoreAllMocks();
  });
}

/** A service over `store`, with `config`. */
const serviceOver = (config: ReturnType<typeof loadConfig>, store: object) =>
  new PresenceService(config, store as PresenceStore, new MetricsService(config), new Lifecycle());

describe('PresenceService at boot', () => {
  const config = loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent' });
  let service: PresenceService | undefined;

  beforeEach(() => jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined));
  afterEach(async () => {
    await service?.beforeApplicationShutdown();
    service = undefined;
    jest.restoreAllMocks();
  });

  /** A store whose acquireLease fails with each of `failures` in turn, then takes the lease. */
  const storeFailing = (...failures: Error[]) => {
    const acquireLease = jest.fn(async () => {
      const failure = failures.shift();
      if (failure) throw failure;
    });
    const store = {
      acquireLease,
      dataEpoch: jest.fn(async () => 'epoch-1'),
      onReconnected: jest.fn(),
      removeSessions: jest.fn(async () => undefined),
      releaseLease: jest.fn(async () => undefined),
    };
    return { store: store as unknown as PresenceStore, acquireLease };
  };
  const boot = (store: PresenceStore) => (service = new PresenceService(config, store, new MetricsService(config), new Lifecycle())).onModuleInit();

  it('takes the node lease again when Redis went away between its ready and the lease', async () => {
    const { store, acquireLease } = storeFailing(new Error('Reached the max retries per request limit (which is 3)'), new Error('Connection is closed.'));
    await boot(store);
    expect(acquireLease).toHaveBeenCalledTimes(3);
  });

  it('refuses at once a NODE_ID that another live node holds', async () => {
    const { store, acquireLease } = storeFailing(new NodeIdInUseError('n1'));
    await expect(boot(store)).rejects.toBeInstanceOf(NodeIdInUseError);
    expect(acquireLease).toHaveBeenCalledTimes(1);
  });
});

describe('PresenceService: a session that ended while the store failed', () => {
  const config = loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent' });
  fakeTimersAndQuietWarnings();

  it('is removed again at the next heartbeat, so it neither counts as online nor leaves its user without a lastSeen', async () => {
    const removeSessions = jest.fn(async (): Promise<void> => undefined).mockRejectedValueOnce(new Error('Connection is closed.'));
    const service = serviceOver(config, fakeStore({ removeSessions }));
    await service.onModuleInit();
    await service.sessionStarted('u1', 's1');
    await expect(service.sessionEnded('u1', 's1')).rejects.toThrow('Connection is closed.');

    await jest.advanceTimersByTimeAsync(config.presenceTtlMs / 3);
    expect(removeSessions.mock.calls).toEqual([
      ['n1', [{ userId: 'u1', sessionId: 's1' }]],
      ['n1', [{ userId: 'u1', sessionId: 's1' }]],
    ]);
    await jest.advanceTimersByTimeAsync(config.presenceTtlMs / 3);
    expect(removeSessions).toHaveBeenCalledTimes(2); // once removed, not again
    await service.beforeApplicationShutdown();
  });

  it(`keeps at most ${MAX_UNREMOVED} to remove again, the first ones (the only ones whose writes may have reached Redis)`, async () => {
    const down = new Error('Connection is closed.');
    const addSession = jest.fn(async () => {
      throw down;
    });
    const removeSessions = jest.fn(async (nodeId: string, sessions: readonly LocalSession[]): Promise<void> => {
      if (sessions.length === 1) throw down;
    });
    const service = serviceOver(config, fakeStore({ addSession, removeSessions }));
    await service.onModuleInit();
    // Logins refused and closed, again and again: every one is ended while Redis is away.
    for (let i = 0; i < MAX_UNREMOVED + 50; i++) {
      await expect(service.sessionStarted('u1', `s${i}`)).rejects.toThrow(down);
      await expect(service.sessionEnded('u1', `s${i}`)).rejects.toThrow(down);
    }
    await jest.advanceTimersByTimeAsync(config.presenceTtlMs / 3);
    const removedAgain = removeSessions.mock.calls.filter(([, sessions]) => sessions.length > 1);
    expect(removedAgain).toHaveLength(1);
    expect(removedAgain[0][1]).toHaveLength(MAX_UNREMOVED);
    expect(removedAgain[0][1][0]).toEqual({ userId: 'u1', sessionId: 's0' });
    await service.beforeApplicationShutdown();
  });
});


describe('PresenceService: SESSION_POLICY=single, a login elsewhere whose claim reply was lost', () => {
  const config = loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent', SESSION_POLICY: 'single' });
  fakeTimersAndQuietWarnings();

  it("ends, at the next heartbeat, this node's sessions that the claim took over (those still here)", async () => {
    const takeDisplaced = jest.fn(async (): Promise<string[]> => []).mockResolvedValueOnce(['s1', 'ended-already']);
    const service = serviceOver(config, fakeStore({ takeDisplaced }));
    const replaced: Array<[string, string]> = [];
    service.onReplaced((userId, sessionId) => replaced.push([userId, sessionId]));
    await service.onModuleInit();
    await service.sessionStarted('u1', 's1');
    await service.sessionStarted('u2', 's2');
    await jest.advanceTimersByTimeAsync(config.presenceTtlMs / 3);
    expect(takeDisplaced).toHaveBeenCalledWith('n1');
    expect(replaced).toEqual([['u1', 's1']]);
    await service.beforeApplicationShutdown();
  });
});

describe('PresenceService: a reconnect to a store that lost its data', () => {
  const config = loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent' });
  beforeEach(() => jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined));
  afterEach(() => jest.restoreAllMocks());

  it("tells the listeners, before it writes its sessions again, when the store's data epoch changed since the node last read it, and only then", async () => {
    let reconnected: () => void = () => undefined;
    const dataEpoch = jest.fn(async () => 'epoch-1');
    const heard: string[] = [];
    const restoreSessions = jest.fn(async () => {
      heard.push('restore');
      return [];
    });
    const service = serviceOver(config, fakeStore({ dataEpoch, restoreSessions, onReconnected: jest.fn((l: () => void) => (reconnected = l)) }));
    service.onStoreLost(() => heard.push('lost'));
    service.onReasserted(() => heard.push('reasserted'));
    await service.onModuleInit();
    const reconnect = async (count: number) => {
      reconnected();
      for (let i = 0; i < 50 && heard.filter((h) => h === 'reasserted').length < count; i++) await Promise.resolve();
    };
    await reconnect(1);
    expect(heard).toEqual(['restore', 'reasserted']);
    dataEpoch.mockResolvedValue('epoch-2'); // Redis came back empty, and a node wrote a new epoch
    await reconnect(2);
    await reconnect(3);
    expect(heard).toEqual(['restore', 'reasserted', 'lost', 'restore', 'reasserted', 'restore', 'reasserted']);
    await service.beforeApplicationShutdown();
  });
});

describe('PresenceService: what nodes that died left', () => {
  const config = loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent' });
  beforeEach(() => jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] }));
  afterEach(() => jest.useRealTimers());

  it('is swept once per presence TTL; a sweep that fails (Redis away) waits for the next', async () => {
    const sweepDeadNodes = jest.fn(async () => 2).mockRejectedValueOnce(new Error('Connection is closed.'));
    const service = serviceOver(config, fakeStore({ sweepDeadNodes }));
    await service.onModuleInit();
    await jest.advanceTimersByTimeAsync(config.presenceTtlMs - 1);
    expect(sweepDeadNodes).not.toHaveBeenCalled();
    await jest.advanceTimersByTimeAsync(1);
    expect(sweepDeadNodes).toHaveBeenCalledTimes(1);
    await jest.advanceTimersByTimeAsync(config.presenceTtlMs);
    expect(sweepDeadNodes).toHaveBeenCalledTimes(2);
    await service.beforeApplicationShutdown();
    await jest.advanceTimersByTimeAsync(config.presenceTtlMs);
    expect(sweepDeadNodes).toHaveBeenCalledTimes(2); // not after the shutdown
  });
});

describe('PresenceService: a heartbeat that finds sessions lapsed', () => {
  const config = loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent' });
  fakeTimersAndQuietWarnings();

  it('has the sessions caught up: their users looked offline, and what was sent to them meanwhile was only stored', async () => {
    const session = { userId: 'u1', sessionId: 's1' };
    const store = fakeStore({ refreshSessions: jest.fn(async () => [] as Array<typeof session>).mockResolvedValueOnce([session]) });
    const service = serviceOver(config, store);
    const reasserted = jest.fn();
    service.onReasserted(reasserted);
    await service.onModuleInit();
    await service.sessionStarted('u1', 's1');

    await jest.advanceTimersByTimeAsync(config.presenceTtlMs / 3);
    expect(reasserted).toHaveBeenCalledTimes(1);
    await jest.advanceTimersByTimeAsync(config.presenceTtlMs / 3);
    expect(store.refreshSessions).toHaveBeenCalledTimes(2);
    expect(reasserted).toHaveBeenCalledTimes(1); // nothing lapsed the second time
    await service.beforeApplicationShutdown();
  });
});

describe('PresenceService under SESSION_POLICY=single: writing the sessions whole', () => {
  const config = loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent', SESSION_POLICY: 'single' });

  it("ends a user's older session on this node that a newer one's claim could not find, and writes only the newer", async () => {
    // The claims find nothing to end: the older session's entry was gone from the store altogether.
    const store = fakeStore({});
    const service = serviceOver(config, store);
    const replaced = jest.fn();
    service.onReplaced(replaced);
    await service.onModuleInit();
    await service.sessionStarted('u1', 'older');
    await service.sessionStarted('u2', 'other');
    await service.sessionStarted('u1', 'newer');

    await service.recheckReplaced();
    expect(store.restoreSessions).toHaveBeenCalledWith(
      'n1',
      [
        { userId: 'u2', sessionId: 'other' },
        { userId: 'u1', sessionId: 'newer' },
      ],
      'single',
    );
    expect(replaced.mock.calls).toEqual([['u1', 'older']]);
    await service.beforeApplicationShutdown();
  });
});

describe('PresenceService: a session that ends while the sessions are written whole', () => {
  // Under single, recheckReplaced writes them whole (as a recovery does under either policy).
  const config = loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent', SESSION_POLICY: 'single' });

  it('is removed again once the write is done: its batch may have written it back after its removal', async () => {
    let written: () => void = () => undefined;
    const restoreSessions = jest.fn(() => new Promise<[]>((resolve) => (written = () => resolve([]))));
    const store = fakeStore({ restoreSessions });
    const service = serviceOver(config, store);
    await service.onModuleInit();
    await service.sessionStarted('u1', 's1');
    await service.sessionStarted('u2', 's2');

    const restored = service.recheckReplaced();
    await service.sessionEnded('u1', 's1');
    written();
    await restored;
    expect(store.removeSessions.mock.calls).toEqual([
      ['n1', [{ userId: 'u1', sessionId: 's1' }]],
      ['n1', [{ userId: 'u1', sessionId: 's1' }]],
    ]);
    await service.beforeApplicationShutdown();
  });
});

describe('PresenceService: a lease taken again whose restore failed (found by a code review)', () => {
  fakeTimersAndQuietWarnings();
  beforeEach(() => jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined));

  it('writes the sessions whole at a later heartbeat: taking the lease cleared their entries, which a heartbeat only extends', async () => {
    const config = loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent', PRESENCE_TTL_SECONDS: '30' });
    let leaseHeld = true;
    const store = fakeStore({
      acquireLease: jest.fn(async () => void (leaseHeld = true)),
      renewLease: jest.fn(async () => leaseHeld),
      restoreSessions: jest.fn(async (): Promise<string[]> => {
        throw new Error('OOM command not allowed when used memory > maxmemory');
      }),
    });
    const service = serviceOver(config, store);
    await service.onModuleInit();
    await service.sessionStarted('bob', 's1');
    leaseHeld = false; // the lease lapsed (a pause): taking it again clears this node's entries
    await jest.advanceTimersByTimeAsync(2_000); // a renewal finds it lost, takes it again, and the restore fails
    store.restoreSessions.mockImplementation(async () => []); // Redis has room again
    await jest.advanceTimersByTimeAsync(60_000);
    await service.beforeApplicationShutdown();
    expect(store.restoreSessions).toHaveBeenCalledTimes(2);
  });
});

/** Found by the regression review: heartbeatFailed was set before the reassert's restore, so a heartbeat falling while it ran wrote everything again. */
describe('PresenceService: a heartbeat while a reassert rewrites the sessions (found by regression reviews)', () => {
  fakeTimersAndQuietWarnings();
  beforeEach(() => jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined));

  /** A service over a store whose first rewrite takes until the test lets it finish (many sessions, a Redis just back). */
  async function slowRewrite(refreshFailsUntilReconnect: boolean) {
    const config = loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent', PRESENCE_TTL_SECONDS: '30' });
    let reconnected!: () => void;
    let finishSlowRestore!: () => void;
    let down = refreshFailsUntilReconnect;
    const store = fakeStore({
      onReconnected: jest.fn((l: () => void) => (reconnected = l)),
      refreshSessions: jest.fn(async (): Promise<string[]> => {
        if (down) throw new Error('Connection is closed.');
        return [];
      }),
      restoreSessions: jest.fn((): Promise<string[]> =>
        store.restoreSessions.mock.calls.length === 1 ? new Promise((r) => (finishSlowRestore = () => r([]))) : Promise.resolve([]),
      ),
    });
    const service = serviceOver(config, store);
    let catchUps = 0;
    service.onReasserted(() => catchUps++);
    await service.onModuleInit();
    await service.sessionStarted('bob', 's1');
    const reconnect = () => {
      down = false;
      reconnected();
    };
    return { service, store, reconnect, finish: () => finishSlowRestore(), catchUps: () => catchUps };
  }

  it('writes the sessions whole once and catches them up once', async () => {
    const t = await slowRewrite(false);
    await jest.advanceTimersByTimeAsync(9_900);
    t.reconnect(); // Redis 'ready' after a short outage: reassert
    await jest.advanceTimersByTimeAsync(200); // the heartbeat (every 10 s) falls while the rewrite is under way
    t.finish();
    await jest.advanceTimersByTimeAsync(1);
    await t.service.beforeApplicationShutdown();
    expect({ restores: t.store.restoreSessions.mock.calls.length, catchUps: t.catchUps() }).toEqual({ restores: 1, catchUps: 1 });
  });

  it('also after an outage that failed a heartbeat: the next heartbeat shares the rewrite under way', async () => {
    const t = await slowRewrite(true);
    await jest.advanceTimersByTimeAsync(10_000); // a heartbeat fails: Redis is away
    await jest.advanceTimersByTimeAsync(9_900);
    t.reconnect();
    await jest.advanceTimersByTimeAsync(200); // the next heartbeat, marked to write whole, falls during the reassert's
    t.finish();
    await jest.advanceTimersByTimeAsync(1);
    await t.service.beforeApplicationShutdown();
    expect({ restores: t.store.restoreSessions.mock.calls.length, catchUps: t.catchUps() }).toEqual({ restores: 1, catchUps: 1 });
  });
});
