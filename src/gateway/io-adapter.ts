import type { IncomingMessage } from 'node:http';
import { INestApplicationContext } from '@nestjs/common';
import { IoAdapter } from '@nestjs/platform-socket.io';
import type { Server, ServerOptions } from 'socket.io';
import { AppConfig, maxPacketBytes } from '../config/config';
import { switchboardParser } from './pre-encoded';

/**
 * Socket.IO server options from the node's config: both transports, packets up to maxPacketBytes, and the Origin check of CORS_ORIGINS
 * (unset: same-origin only). Clients that send no Origin (servers, tests) are let in. The parser writes
 * stored messages into their packets as they are (pre-encoded.ts); on the wire it is Socket.IO's own.
 */
export class SwitchboardIoAdapter extends IoAdapter {
  constructor(
    app: INestApplicationContext,
    private readonly config: AppConfig,
  ) {
    super(app);
  }

  override createIOServer(port: number, options?: ServerOptions): Server {
    const allowed = new Set(this.config.corsOrigins);
    return super.createIOServer(port, {
      ...options,
      parser: switchboardParser,
      transports: ['polling', 'websocket'],
      maxHttpBufferSize: maxPacketBytes(this.config),
      cors: allowed.size > 0 ? { origin: [...allowed], credentials: true } : undefined,
      allowRequest: (req: IncomingMessage, callback: (err: string | null | undefined, success: boolean) => void) =>
        callback(null, originAllowed(req, allowed)),
    }) as Server;
  }

  /**
   * The gateway answers client events from its own handler table, so Nest has no `@SubscribeMessage`
   * handlers to bind; left alone, it would still build an rxjs disconnect stream for every socket (about
   * 0.6 KB each, measured with heap snapshots).
   */
  override bindMessageHandlers(...args: Parameters<IoAdapter['bindMessageHandlers']>): void {
    if (args[1].length > 0) super.bindMessageHandlers(...args);
  }
}

export function originAllowed(req: IncomingMessage, allowed: ReadonlySet<string>): boolean {
  const origin = req.headers.origin;
  if (!origin) return true;
  if (allowed.has(origin)) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}
