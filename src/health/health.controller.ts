import { Controller, Get, HttpCode, Inject, Res } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { Lifecycle } from './lifecycle';
import { READINESS_CHECKS, ReadinessCheck } from './readiness';

@ApiTags('health')
@Controller('health')
export class HealthController {
  private readonly checks: ReadinessCheck[];

  constructor(@Inject(READINESS_CHECKS) infra: ReadinessCheck[], lifecycle: Lifecycle) {
    this.checks = [lifecycle, ...infra];
  }

  /** 200 while the process runs. */
  @Get('live')
  @HttpCode(200)
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /** 200 when every part this node needs is reachable, else 503 naming the parts that are not. */
  @Get('ready')
  async ready(@Res({ passthrough: true }) res: Response): Promise<object> {
    const results = await Promise.all(
      this.checks.map(async (c) => [c.name, await c.check().catch((err: unknown) => String(err))] as const),
    );
    const checks = Object.fromEntries(results.map(([name, problem]) => [name, problem === null ? 'up' : 'down']));
    const problems = results.filter(([, problem]) => problem !== null).map(([, problem]) => problem);
    if (problems.length === 0) return { status: 'ok', checks };
    res.status(503);
    return { status: 'unavailable', checks, error: { code: 'unavailable', message: problems.join('; ') } };
  }
}
