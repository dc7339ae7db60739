import { EventEmitter } from 'node:events';
import { loadConfig } from '../config/config';
import { Lifecycle } from '../health/lifecycle';
import { MetricsService } from '../metrics/metrics.service';
import { SwitchboardGateway } from './switchboard.gateway';

/** A stand-in for a Socket.IO socket: records what is emitted, in order. */
function fakeSocket(id: string, userId: string) {
  const emitted: string[] = [];
  const conn = Object.assign(new EventEmitter(), { close: jest.fn(), readyState: 'open' });
  const socket = Object.assign(new EventEmitter(), {
    id,
    connected: true,
    conn,
    data: { userId },
    emit: (event: string) => {
      emitted.push(event);
      return true;
    },
    onAny: () => undefined,
    disconnect: jest.fn(),
  });
  return { socket, emitted };
}

describe('SwitchboardGateway: receipts only to registered sessions', () => {
  it('sends no message:status to a session before its `session` event', async () => {
    const config = loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent' });
    let register!: (v: never[]) => void;
    const presence = { sessionStarted: jest.fn(() => new Promise((r) => (register = r))), sessionEnded: jest.fn(async () => undefined) };
    const messages = { inboxOf: jest.fn(async () => ({ messages: [], lastSeq: 0, readUpTo: 0 })), endSessions: jest.fn() };
    const gw = new SwitchboardGateway(config, {} as never, messages as never, presence as never, new Lifecycle(), new MetricsService(config), {} as never);
    const { socket, emitted } = fakeSocket('s1', 'alice');
    const connecting = gw.handleConnection(socket as never);
    // A receipt for alice arrives while her new session's presence write is under way (a Redis round trip).
    const reached = gw.deliverStatus('alice', { id: 'm1', to: 'bob', status: 'delivered' });
    register([]);
    await connecting;
    expect(reached).toBe(1); // counted: no reroute to the user's other nodes, which had their copy
    expect(emitted).toEqual(['session']);
  });

  it('sends no message:status to a session whose registration failed', async () => {
    const config = loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent' });
    const presence = { sessionStarted: jest.fn(async () => { throw new Error('Redis down'); }), sessionEnded: jest.fn(async () => undefined) };
    const gw = new SwitchboardGateway(config, {} as never, {} as never, presence as never, new Lifecycle(), new MetricsService(config), {} as never);
    jest.spyOn((gw as unknown as { logger: { error: () => void } }).logger, 'error').mockImplementation(() => undefined);
    const { socket, emitted } = fakeSocket('s1', 'alice');
    await gw.handleConnection(socket as never);
    const reachedStatus = gw.deliverStatus('alice', { id: 'm1', to: 'bob', status: 'read' });
    const reachedMsg = gw.deliverMessage({ id: '0190', from: 'bob', to: 'alice', seq: 1, json: '{}' });
    expect(reachedStatus).toBe(1);
    expect(emitted).toEqual([]);
    // Still pushed into its stream (held, not emitted): the count is unchanged.
    expect(reachedMsg).toBe(1);
  });
});

describe('SwitchboardGateway: token expiry', () => {
  afterEach(() => jest.useRealTimers());

  function connectedGateway() {
    const config = loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent' });
    const presence = { sessionStarted: jest.fn(async () => []), sessionEnded: jest.fn(async () => undefined) };
    const messages = { inboxOf: jest.fn(async () => ({ messages: [], lastSeq: 0, readUpTo: 0 })), endSessions: jest.fn() };
    const gw = new SwitchboardGateway(config, {} as never, messages as never, presence as never, new Lifecycle(), new MetricsService(config), {} as never);
    return { gw, expiries: (gw as unknown as { expiries: { size: number } }).expiries };
  }

  it('ends a session once its token expires, with token_expired', async () => {
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
    const { gw, expiries } = connectedGateway();
    const { socket, emitted } = fakeSocket('s1', 'alice');
    Object.assign(socket.data, { expiresAt: Date.now() + 2_000 });
    await gw.handleConnection(socket as never);
    expect(expiries.size).toBe(1);
    jest.advanceTimersByTime(1_000);
    expect(emitted).toEqual(['session']);
    jest.advanceTimersByTime(2_000);
    expect(emitted).toEqual(['session', 'session:ended']);
    expect(socket.disconnect).toHaveBeenCalledWith(true);
  });

  it('forgets the expiry of a session that disconnects first', async () => {
    const { gw, expiries } = connectedGateway();
    const { socket } = fakeSocket('s1', 'alice');
    Object.assign(socket.data, { expiresAt: Date.now() + 3_600_000 });
    await gw.handleConnection(socket as never);
    expect(expiries.size).toBe(1);
    gw.handleDisconnect(socket as never);
    expect(expiries.size).toBe(0);
  });
});
