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

describe('SwitchboardGateway: the push budget closes connections that hold bytes unwritten and write none', () => {
  const MiB = 1024 * 1024;

  /** A node with PUSH_BUDGET_MB=1 and `count` sessions, whose connections' writes the test sets. */
  async function node(count: number) {
    const config = loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent', PUSH_BUDGET_MB: '1' });
    const presence = { sessionStarted: jest.fn(async () => []), sessionEnded: jest.fn(async () => undefined) };
    const messages = { inboxOf: jest.fn(async () => ({ messages: [], lastSeq: 0, readUpTo: 0 })) };
    const gw = new SwitchboardGateway(config, {} as never, messages as never, presence as never, new Lifecycle(), new MetricsService(config), {} as never);
    jest.spyOn((gw as unknown as { logger: { warn: () => void } }).logger, 'warn').mockImplementation(() => undefined);
    const sessions = [];
    for (let i = 0; i < count; i++) {
      const { socket } = fakeSocket(`s${i}`, `user${i}`);
      await gw.handleConnection(socket as never);
      const writes = { unwritten: 0, written: 0 };
      Object.assign(socket.data, { writes: { unwritten: () => writes.unwritten, written: () => writes.written } });
      sessions.push({ conn: socket.conn, writes });
    }
    const check = () => (gw as unknown as { shed(): void }).shed();
    return { sessions, check };
  }

  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('leaves a connection that wrote some since the last check, however much it holds (a slow link)', async () => {
    const { sessions: [slow], check } = await node(1);
    slow.writes.unwritten = 5 * MiB;
    check();
    jest.advanceTimersByTime(1000);
    slow.writes.written += 64 * 1024;
    check();
    expect(slow.conn.close).not.toHaveBeenCalled();
  });

  it('closes one that wrote nothing since the last check, at that check', async () => {
    const { sessions: [stuck], check } = await node(1);
    stuck.writes.unwritten = 5 * MiB;
    check();
    expect(stuck.conn.close).not.toHaveBeenCalled();
    jest.advanceTimersByTime(1000);
    check();
    expect(stuck.conn.close).toHaveBeenCalledWith(true);
  });

  it('closes the ones holding the most first, and no more once the rest are within the budget', async () => {
    const { sessions: [small, large, reading], check } = await node(3);
    small.writes.unwritten = 0.6 * MiB;
    large.writes.unwritten = 0.8 * MiB;
    reading.writes.unwritten = 0.3 * MiB;
    check();
    jest.advanceTimersByTime(1000);
    reading.writes.written += 1000;
    check();
    expect(large.conn.close).toHaveBeenCalled();
    expect(small.conn.close).not.toHaveBeenCalled();
    expect(reading.conn.close).not.toHaveBeenCalled();
  });

  it('closes nothing while all together hold no more than the budget, and compares only with the check just before', async () => {
    const { sessions: [stuck], check } = await node(1);
    stuck.writes.unwritten = 0.9 * MiB;
    check();
    jest.advanceTimersByTime(1000);
    check();
    expect(stuck.conn.close).not.toHaveBeenCalled();
    // Past it after a long quiet spell: the check of long ago is no measure of progress.
    jest.advanceTimersByTime(60_000);
    stuck.writes.unwritten = 5 * MiB;
    check();
    expect(stuck.conn.close).not.toHaveBeenCalled();
    jest.advanceTimersByTime(1000);
    check();
    expect(stuck.conn.close).toHaveBeenCalled();
  });
});
