import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { EventEmitter } from 'node:events';
import type { INestApplicationContext } from '@nestjs/common';
import { IoAdapter } from '@nestjs/platform-socket.io';
import type { MessageMappingProperties } from '@nestjs/websockets';
import { of } from 'rxjs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server, type Socket } from 'socket.io';
import { io as ioClient } from 'socket.io-client';
import { loadConfig } from '../config/config';
import { originAllowed, SwitchboardIoAdapter } from './io-adapter';

const request = (headers: IncomingHttpHeaders): IncomingMessage => ({ headers }) as unknown as IncomingMessage;

describe('originAllowed', () => {
  const listed = new Set(['https://app.example.com', 'http://localhost:5173']);
  const none = new Set<string>();

  it('lets in a client that sends no Origin (servers, tests)', () => {
    expect(originAllowed(request({ host: 'chat.example.com' }), none)).toBe(true);
    expect(originAllowed(request({}), listed)).toBe(true);
  });

  it('lets in a listed origin', () => {
    expect(originAllowed(request({ host: 'chat.example.com', origin: 'https://app.example.com' }), listed)).toBe(true);
    expect(originAllowed(request({ host: 'chat.example.com', origin: 'http://localhost:5173' }), listed)).toBe(true);
  });

  it('lets in the same origin as the Host header, listed or not', () => {
    expect(originAllowed(request({ host: 'chat.example.com', origin: 'https://chat.example.com' }), none)).toBe(true);
    expect(originAllowed(request({ host: 'localhost:3000', origin: 'http://localhost:3000' }), listed)).toBe(true);
  });

  it.each([
    ['another host', 'https://evil.example.com'],
    ['the same host on another port', 'http://chat.example.com:8080'],
    ['a listed origin on another port', 'http://localhost:5174'],
    ['a subdomain of a listed origin', 'https://x.app.example.com'],
    ['a listed origin with a trailing slash', 'https://app.example.com/'],
  ])('refuses %s', (_what, origin) => {
    expect(originAllowed(request({ host: 'chat.example.com', origin }), listed)).toBe(false);
  });

  it('refuses a cross origin when no origins are listed (same-origin only)', () => {
    expect(originAllowed(request({ host: 'chat.example.com', origin: 'https://app.example.com' }), none)).toBe(false);
  });

  it.each(['null', 'not a url', '://missing-scheme'])('refuses an unparsable origin %p', (origin) => {
    expect(originAllowed(request({ host: 'chat.example.com', origin }), listed)).toBe(false);
  });

  it('refuses an origin when the request has no Host header', () => {
    expect(originAllowed(request({ origin: 'https://chat.example.com' }), none)).toBe(false);
  });
});

describe('SwitchboardIoAdapter.bindMessageHandlers', () => {
  const config = loadConfig({ LOG_LEVEL: 'silent' });
  const socket = new EventEmitter() as unknown as Socket;
  const transform = (data: unknown) => of(data);
  const app = {} as INestApplicationContext;
  afterEach(() => jest.restoreAllMocks());

  it('sets up nothing for a socket when there are no @SubscribeMessage handlers', () => {
    const bind = jest.spyOn(IoAdapter.prototype, 'bindMessageHandlers');
    new SwitchboardIoAdapter(app, config).bindMessageHandlers(socket, [], transform);
    expect(bind).not.toHaveBeenCalled();
  });

  it("hands real handlers to Nest's adapter", () => {
    const bind = jest.spyOn(IoAdapter.prototype, 'bindMessageHandlers').mockImplementation(() => undefined);
    const handlers: MessageMappingProperties[] = [{ message: 'x', methodName: 'x', callback: () => of(undefined), isAckHandledManually: false }];
    new SwitchboardIoAdapter(app, config).bindMessageHandlers(socket, handlers, transform);
    expect(bind).toHaveBeenCalledWith(socket, handlers, transform);
  });
});

describe("Socket.IO's ack counter, which the adapter starts at random (startAckIdsAtRandom)", () => {
  it("is the namespace's `_ids`: an ack asked of a socket carries the number set there", async () => {
    const http = createServer();
    const server = new Server(http);
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const { port } = http.address() as AddressInfo;
    // A Socket.IO upgrade that renamed it would leave every process numbering its acks from 0 again.
    expect(server.of('/')._ids).toBe(0);
    server.of('/')._ids = 123_456_789;
    server.on('connection', (socket) => socket.emit('hello', () => undefined));
    const client = ioClient(`http://127.0.0.1:${port}`, { transports: ['websocket'] });
    try {
      const packet = await new Promise<string>((resolve) =>
        client.io.on('open', () => client.io.engine.on('packet', (p: { type: string; data?: unknown }) => {
          if (p.type === 'message' && typeof p.data === 'string' && p.data.startsWith('2')) resolve(p.data);
        })),
      );
      expect(packet).toBe('2123456789["hello"]');
    } finally {
      client.close();
      await server.close();
    }
  });
});
