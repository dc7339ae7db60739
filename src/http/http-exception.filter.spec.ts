import type { ArgumentsHost } from '@nestjs/common';
import { HttpExceptionFilter } from './http-exception.filter';

/** What the filter answers, through a stand-in for Express' response. */
function answer(exception: unknown): { status: number; body: unknown } {
  const sent = { status: 0, body: undefined as unknown };
  const res = {
    setHeader: () => res,
    status: (status: number) => ((sent.status = status), res),
    json: (body: unknown) => ((sent.body = body), res),
  };
  const host = { switchToHttp: () => ({ getResponse: () => res }) } as unknown as ArgumentsHost;
  new HttpExceptionFilter().catch(exception, host);
  return sent;
}

/** An error as body-parser hands it on: http-errors' fields set on the error it met. */
function bodyParserError(message: string, fields: Record<string, unknown>): Error {
  return Object.assign(new Error(message), { status: fields.status ?? 400, statusCode: fields.status ?? 400, expose: true, ...fields });
}

describe('HttpExceptionFilter', () => {
  it("answers a body the node could not read for its own failure 503 unavailable, without the server's paths (found by a review)", () => {
    const err = bodyParserError("EMFILE: too many open files, open '/srv/app/node_modules/iconv-lite/encodings/index.js'", {
      code: 'EMFILE',
      errno: -24,
      syscall: 'open',
    });
    const { status, body } = answer(err);
    expect(status).toBe(503);
    expect(body).toEqual({ error: { code: 'unavailable', message: 'the server could not read the request body (EMFILE); retry' } });
  });

  it("still answers the client's own faults in a body as body-parser rates them", () => {
    const tooLarge = bodyParserError('request entity too large', { status: 413, type: 'entity.too.large' });
    expect(answer(tooLarge)).toEqual({ status: 413, body: { error: { code: 'payload_too_large', message: 'request body: request entity too large' } } });
    const aborted = bodyParserError('request aborted', { code: 'ECONNABORTED', type: 'request.aborted' });
    expect(answer(aborted).status).toBe(400);
  });
});
