import { Controller, Get, HttpCode, Inject, Res } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiProperty, ApiPropertyOptional, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { ErrorDetailDto } from '../http/api-docs';
import { Lifecycle } from './lifecycle';
import { READINESS_CHECKS, ReadinessCheck } from './readiness';

class LiveDto {
  @ApiProperty({ enum: ['ok'] })
  status!: 'ok';
}

class ReadinessDto {
  @ApiProperty({ enum: ['ok', 'unavailable'] })
  status!: 'ok' | 'unavailable';

  @ApiProperty({
    description: "Each part this node needs, 'up' or 'down': node (down while it shuts down), and in cluster mode redis and rabbitmq",
    type: 'object',
    additionalProperties: { type: 'string', enum: ['up', 'down'] },
    example: { node: 'up', redis: 'up', rabbitmq: 'up' },
  })
  checks!: Record<string, 'up' | 'down'>;

  @ApiPropertyOptional({ type: ErrorDetailDto, description: "With 503: code 'unavailable' and what is down" })
  error?: ErrorDetailDto;
}

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
  @ApiOperation({ summary: 'Liveness: 200 while the process runs' })
  @ApiOkResponse({ type: LiveDto })
  live(): LiveDto {
    return { status: 'ok' };
  }

  /** 200 when every part this node needs is reachable, else 503 naming the parts that are not. */
  @Get('ready')
  @ApiOperation({ summary: 'Readiness: 200 when every part this node needs is reachable and it consumes its queue, else 503 naming what is down' })
  @ApiOkResponse({ type: ReadinessDto })
  @ApiServiceUnavailableResponse({ type: ReadinessDto })
  async ready(@Res({ passthrough: true }) res: Response): Promise<ReadinessDto> {
    const results = await Promise.all(
      this.checks.map(async (c) => [c.name, await c.check().catch((err: unknown) => String(err))] as const),
    );
    const checks = Object.fromEntries(results.map(([name, problem]) => [name, problem === null ? 'up' : 'down'] as const));
    const problems = results.filter(([, problem]) => problem !== null).map(([, problem]) => problem);
    if (problems.length === 0) return { status: 'ok', checks };
    res.status(503);
    return { status: 'unavailable', checks, error: { code: 'unavailable', message: problems.join('; ') } };
  }
}
